// Tests of common/tls.hpp: contexts, handshakes, verification and data transfer.
//
// Each test makes its own small PKI with the OpenSSL API (a CA, a server certificate
// signed by it for mx.test and 192.0.2.1, a self-signed one for mx.test, keys on
// P-256) as PEM files in a mkdtemp directory under /tmp, removed at the end. Client
// and server Streams run in one thread over a non-blocking socketpair, driven by a
// poll() loop that honours want_read/want_write the way the daemons' select() loops
// do. Every loop is bounded (iterations and a poll timeout), so a bug fails the test
// instead of hanging it. After every Stream and Context call the thread's OpenSSL
// error queue must be empty: tls.hpp promises that no error outlives its call.
#include <common/fd.hpp>
#include <common/tls.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <system_error>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

using smtp::Fd;
using smtp::tls::Context;
using smtp::tls::Stream;
using Status = Stream::Status;

// Long enough for a handshake under valgrind; a stuck loop fails after this.
constexpr int poll_timeout_ms = 5000;
constexpr int max_iterations = 100000;

struct PkeyFree {
    void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
struct X509Free {
    void operator()(X509* x) const noexcept { X509_free(x); }
};
struct BioFree {
    void operator()(BIO* b) const noexcept { BIO_free(b); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using BioPtr = std::unique_ptr<BIO, BioFree>;

void check_queue_empty() { CHECK(ERR_peek_error() == 0); }

// A fresh directory, removed with everything in it when the test ends.
class TempDir {
public:
    TempDir() {
        std::string pattern = "/tmp/tls-test-XXXXXX";
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path_ = pattern;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    std::string operator/(std::string_view rest) const { return path_ + "/" + std::string(rest); }

private:
    std::string path_;
};

PkeyPtr make_key() {
    PkeyPtr key(EVP_EC_gen("P-256"));
    REQUIRE(key);
    return key;
}

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    REQUIRE(ext != nullptr);
    const int added = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    REQUIRE(added == 1);
}

// A certificate for `key` named `common_name`, signed by `issuer_key` under
// `issuer` (nullptr: self-signed). `san` empty: no subjectAltName.
X509Ptr make_cert(EVP_PKEY* key, const char* common_name, long serial, bool is_ca, const char* san,
                  X509* issuer, EVP_PKEY* issuer_key) {
    X509Ptr cert(X509_new());
    REQUIRE(cert);
    X509* x = cert.get();
    REQUIRE(X509_set_version(x, X509_VERSION_3) == 1);
    REQUIRE(ASN1_INTEGER_set(X509_get_serialNumber(x), serial) == 1);
    REQUIRE(X509_gmtime_adj(X509_getm_notBefore(x), -3600) != nullptr);
    REQUIRE(X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600) != nullptr);
    REQUIRE(X509_set_pubkey(x, key) == 1);
    X509_NAME* name = X509_get_subject_name(x);
    REQUIRE(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                       reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0) == 1);
    X509* signer = issuer != nullptr ? issuer : x;
    REQUIRE(X509_set_issuer_name(x, X509_get_subject_name(signer)) == 1);
    add_extension(x, signer, NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    add_extension(x, signer, NID_subject_key_identifier, "hash");
    if (is_ca) add_extension(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    if (*san != '\0') add_extension(x, signer, NID_subject_alt_name, san);
    REQUIRE(X509_sign(x, issuer_key != nullptr ? issuer_key : key, EVP_sha256()) > 0);
    return cert;
}

void write_cert(const std::string& path, X509* cert) {
    BioPtr bio(BIO_new_file(path.c_str(), "w"));
    REQUIRE(bio);
    REQUIRE(PEM_write_bio_X509(bio.get(), cert) == 1);
}

void write_key(const std::string& path, EVP_PKEY* key) {
    BioPtr bio(BIO_new_file(path.c_str(), "w"));
    REQUIRE(bio);
    REQUIRE(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
}

// The test PKI, as PEM files.
struct Pki {
    TempDir dir;
    std::string ca_cert = dir / "ca.pem";
    std::string server_cert = dir / "server.pem";  // for mx.test and 192.0.2.1, by the CA
    std::string server_key = dir / "server.key";
    std::string self_cert = dir / "self.pem";  // for mx.test, self-signed
    std::string self_key = dir / "self.key";
    std::string other_key = dir / "other.key";          // matches no certificate
    std::string encrypted_key = dir / "encrypted.key";  // the server's, with a passphrase

    Pki() {
        const PkeyPtr ca_key = make_key();
        const X509Ptr ca = make_cert(ca_key.get(), "Test CA", 1, true, "", nullptr, nullptr);
        const PkeyPtr key = make_key();
        const X509Ptr server =
            make_cert(key.get(), "mx.test", 2, false, "DNS:mx.test,IP:192.0.2.1", ca.get(), ca_key.get());
        const PkeyPtr self_signed_key = make_key();
        const X509Ptr self =
            make_cert(self_signed_key.get(), "mx.test", 3, false, "DNS:mx.test", nullptr, nullptr);
        const PkeyPtr other = make_key();
        write_cert(ca_cert, ca.get());
        write_cert(server_cert, server.get());
        write_key(server_key, key.get());
        write_cert(self_cert, self.get());
        write_key(self_key, self_signed_key.get());
        write_key(other_key, other.get());
        BioPtr bio(BIO_new_file(encrypted_key.c_str(), "w"));
        REQUIRE(bio);
        static const char passphrase[] = "secret";
        REQUIRE(PEM_write_bio_PrivateKey(bio.get(), key.get(), EVP_aes_256_cbc(),
                                         reinterpret_cast<const unsigned char*>(passphrase),
                                         static_cast<int>(sizeof passphrase - 1), nullptr, nullptr) == 1);
        check_queue_empty();
    }

    std::shared_ptr<const Context> server(bool self_signed = false) const {
        std::string error;
        auto context = self_signed ? Context::server(self_cert, self_key, error)
                                   : Context::server(server_cert, server_key, error);
        check_queue_empty();
        REQUIRE_MESSAGE(context, error);
        return context;
    }
    std::shared_ptr<const Context> client() const {
        std::string error;
        auto context = Context::client(ca_cert, error);
        check_queue_empty();
        REQUIRE_MESSAGE(context, error);
        return context;
    }
};

// A connected, non-blocking pair of sockets: [0] the client's, [1] the server's.
struct SocketPair {
    Fd client;
    Fd server;
    SocketPair() {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
        client = Fd(fds[0]);
        server = Fd(fds[1]);
    }
};

bool terminal(Status s) { return s == Status::done || s == Status::failed; }

short events_for(Status s) {
    if (s == Status::want_read) return POLLIN;
    if (s == Status::want_write) return POLLOUT;
    return 0;
}

// Waits until one of the sockets is ready for what its stream asked; false on timeout.
bool wait_for(int fd_a, short events_a, int fd_b, short events_b) {
    pollfd fds[2] = {{fd_a, events_a, 0}, {fd_b, events_b, 0}};
    const int n = ::poll(fds, 2, poll_timeout_ms);
    REQUIRE(n >= 0);
    return n > 0;
}

struct HandshakeOutcome {
    Status client = Status::want_write;
    Status server = Status::want_read;
};

// Runs both handshakes until each is done or failed, or until neither can move (one
// side failed and the other waits for bytes that will never come).
HandshakeOutcome handshake(Stream& client, int client_fd, Stream& server, int server_fd) {
    HandshakeOutcome out;
    for (int i = 0; i < max_iterations; ++i) {
        if (!terminal(out.client)) {
            out.client = client.handshake().status;
            check_queue_empty();
        }
        if (!terminal(out.server)) {
            out.server = server.handshake().status;
            check_queue_empty();
        }
        if (terminal(out.client) && terminal(out.server)) return out;
        if (!wait_for(client_fd, events_for(out.client), server_fd, events_for(out.server))) return out;
    }
    FAIL("handshake loop did not end");
    return out;
}

// One side of a transfer: what it sends, what it has received.
struct Peer {
    Peer(Stream& s, int socket, std::string data) : stream(s), fd(socket), to_send(std::move(data)) {}

    Stream& stream;
    int fd;
    std::string to_send;
    std::size_t sent = 0;
    std::string received;
    std::size_t expected = 0;
    std::size_t buffer_size = 16384;
    bool saw_buffered_input = false;
    bool saw_want_write = false;
    Status read_status = Status::want_read;
    Status write_status = Status::want_write;

    bool finished() const { return sent == to_send.size() && received.size() == expected; }

    // Moves what the socket allows; returns whether anything moved.
    bool step() {
        bool moved = false;
        // Like a daemon's loop: write while the socket takes it, then read all there is.
        while (sent < to_send.size()) {
            const auto r = stream.write(std::string_view(to_send).substr(sent));
            check_queue_empty();
            write_status = r.status;
            REQUIRE_MESSAGE(r.status != Status::failed, stream.error());
            REQUIRE(r.status != Status::closed);
            if (r.status != Status::done) {
                saw_want_write = saw_want_write || r.status == Status::want_write;
                break;
            }
            REQUIRE(r.bytes > 0);
            REQUIRE(r.bytes <= to_send.size() - sent);
            sent += r.bytes;
            moved = true;
        }
        std::vector<char> buffer(buffer_size);
        while (received.size() < expected) {
            const auto r = stream.read(buffer);
            check_queue_empty();
            read_status = r.status;
            REQUIRE_MESSAGE(r.status != Status::failed, stream.error());
            REQUIRE(r.status != Status::closed);
            if (r.status != Status::done) break;
            REQUIRE(r.bytes > 0);
            REQUIRE(r.bytes <= buffer.size());
            received.append(buffer.data(), r.bytes);
            moved = true;
            if (stream.has_buffered_input()) saw_buffered_input = true;
        }
        return moved;
    }

    short events() const {
        short e = 0;
        if (sent < to_send.size()) e |= events_for(write_status);
        if (received.size() < expected) e |= events_for(read_status);
        return e;
    }
};

// Sends a.to_send to b and b.to_send to a, at the same time.
void transfer(Peer& a, Peer& b) {
    a.expected = b.to_send.size();
    b.expected = a.to_send.size();
    for (int i = 0; i < max_iterations; ++i) {
        const bool moved_a = a.step();
        const bool moved_b = b.step();
        if (a.finished() && b.finished()) return;
        if (!moved_a && !moved_b)
            REQUIRE_MESSAGE(wait_for(a.fd, a.events(), b.fd, b.events()), "transfer stuck");
    }
    FAIL("transfer loop did not end");
}

std::string pattern(std::size_t size, unsigned seed) {
    std::string s(size, '\0');
    unsigned x = seed;
    for (char& c : s) {
        x = x * 1103515245u + 12345u;
        c = static_cast<char>(x >> 16);
    }
    return s;
}

// A client and a server stream on one socket pair, with the handshake run.
struct Connection {
    SocketPair sockets;
    Stream client;
    Stream server;
    HandshakeOutcome outcome;

    Connection(const Context& client_context, const Context& server_context, std::string_view host,
               bool require_verified)
        : client(Stream::connect(client_context, sockets.client.get(), host, require_verified)),
          server(Stream::accept(server_context, sockets.server.get())) {
        check_queue_empty();
        outcome = handshake(client, sockets.client.get(), server, sockets.server.get());
    }
};

// Reads once, waiting up to the poll timeout for the socket when the stream asks.
Stream::Result read_waiting(Stream& stream, int fd, std::span<char> buffer) {
    for (int i = 0; i < 100; ++i) {
        const auto r = stream.read(buffer);
        check_queue_empty();
        if (r.status != Status::want_read && r.status != Status::want_write) return r;
        pollfd p{fd, events_for(r.status), 0};
        REQUIRE(::poll(&p, 1, poll_timeout_ms) == 1);
    }
    FAIL("read did not finish");
    return {};
}

}  // namespace

TEST_SUITE("tls") {
    TEST_CASE("a handshake completes and bytes arrive intact both ways") {
        const Pki pki;
        const auto server_context = pki.server();
        const auto client_context = pki.client();
        Connection c(*client_context, *server_context, "mx.test", false);
        REQUIRE(c.outcome.client == Status::done);
        REQUIRE(c.outcome.server == Status::done);
        CHECK(c.client.error().empty());
        CHECK(c.server.error().empty());
        for (const Stream* s : {&c.client, &c.server}) {
            CHECK(s->protocol().substr(0, 6) == "TLSv1.");
            CHECK(!s->cipher().empty());
            CHECK(s->cipher_bits() >= 128);
        }
        CHECK(c.client.protocol() == c.server.protocol());
        CHECK(c.client.cipher() == c.server.cipher());
        // smtpd asks for no client certificate, so the server side never says verified.
        CHECK(!c.server.verified());
        CHECK(c.server.verify_error().empty());

        Peer client{c.client, c.sockets.client.get(), "EHLO client.test\r\n"};
        Peer server{c.server, c.sockets.server.get(), "250 mx.test\r\n"};
        transfer(client, server);
        CHECK(server.received == "EHLO client.test\r\n");
        CHECK(client.received == "250 mx.test\r\n");
    }

    TEST_CASE("1 MiB each way arrives intact through 1000-byte reads") {
        const Pki pki;
        const auto server_context = pki.server();
        const auto client_context = pki.client();
        Connection c(*client_context, *server_context, "mx.test", true);
        REQUIRE(c.outcome.client == Status::done);
        REQUIRE(c.outcome.server == Status::done);

        const std::size_t mib = 1024 * 1024;
        Peer client{c.client, c.sockets.client.get(), pattern(mib, 1)};
        Peer server{c.server, c.sockets.server.get(), pattern(mib, 2)};
        client.buffer_size = 1000;
        server.buffer_size = 1000;
        transfer(client, server);
        CHECK(server.received == client.to_send);
        CHECK(client.received == server.to_send);
        // Records are up to 16 KiB: most of each stays decrypted inside OpenSSL, where
        // only has_buffered_input() tells a select() loop about it.
        CHECK(client.saw_buffered_input);
        CHECK(server.saw_buffered_input);
        // 1 MiB is more than the socket pair holds: writes had to wait for the reader.
        CHECK(client.saw_want_write);
        CHECK(server.saw_want_write);
    }

    TEST_CASE("a write that has to wait is finished by a retry from a moved buffer") {
        const Pki pki;
        const auto server_context = pki.server();
        const auto client_context = pki.client();
        Connection c(*client_context, *server_context, "mx.test", false);
        REQUIRE(c.outcome.client == Status::done);
        REQUIRE(c.outcome.server == Status::done);
        // Fill the socket until the client's write asks to wait.
        const std::string chunk = pattern(64 * 1024, 3);
        std::string sent;
        Stream::Result r;
        for (int i = 0; i < 1000; ++i) {
            r = c.client.write(chunk);
            check_queue_empty();
            if (r.status != Status::done) break;
            sent += chunk.substr(0, r.bytes);
        }
        REQUIRE(r.status == Status::want_write);
        // Retry from a copy (another address) beginning with the same bytes, while
        // the server drains the socket.
        const std::string moved = chunk + "tail";
        Peer server{c.server, c.sockets.server.get(), ""};
        server.expected = sent.size() + moved.size();
        std::size_t retried = 0;
        for (int i = 0; i < max_iterations && (retried < moved.size() || !server.finished()); ++i) {
            bool progress = server.step();
            if (retried < moved.size()) {
                r = c.client.write(std::string_view(moved).substr(retried));
                check_queue_empty();
                REQUIRE_MESSAGE(r.status != Status::failed, c.client.error());
                if (r.status == Status::done) {
                    retried += r.bytes;
                    progress = true;
                }
            }
            if (!progress)
                REQUIRE(wait_for(c.sockets.client.get(), retried < moved.size() ? events_for(r.status) : 0,
                                 c.sockets.server.get(), server.events()));
        }
        CHECK(server.received == sent + moved);
    }

    TEST_CASE("the right CA and host name verify, with verification required") {
        const Pki pki;
        const auto server_context = pki.server();
        const auto client_context = pki.client();
        Connection c(*client_context, *server_context, "mx.test", true);
        CHECK(c.outcome.client == Status::done);
        CHECK(c.outcome.server == Status::done);
        CHECK(c.client.verified());
        CHECK(c.client.verify_error().empty());
        CHECK(c.client.error().empty());
    }

    TEST_CASE("an IP address is checked against the certificate's IP addresses") {
        const Pki pki;
        const auto server_context = pki.server();
        const auto client_context = pki.client();
        {
            Connection c(*client_context, *server_context, "192.0.2.1", true);
            CHECK(c.outcome.client == Status::done);
            CHECK(c.client.verified());
        }
        {
            Connection c(*client_context, *server_context, "192.0.2.2", false);
            CHECK(c.outcome.client == Status::done);
            CHECK(!c.client.verified());
            CHECK(c.client.verify_error() == "IP address mismatch");
        }
    }

    TEST_CASE("SNI carries a host name and is left out for an address") {
        const Pki pki;
        const auto server_context = pki.server();
        const auto client_context = pki.client();
        // The test reaches into the server's SSL_CTX to see what the client sent.
        std::vector<std::string> names;
        auto callback = [](SSL* ssl, int*, void* arg) {
            const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
            static_cast<std::vector<std::string>*>(arg)->push_back(name != nullptr ? name : "(none)");
            return SSL_TLSEXT_ERR_OK;
        };
        int (*function)(SSL*, int*, void*) = callback;
        SSL_CTX_set_tlsext_servername_callback(server_context->native(), function);
        SSL_CTX_set_tlsext_servername_arg(server_context->native(), &names);
        {
            Connection c(*client_context, *server_context, "mx.test", true);
            CHECK(c.outcome.server == Status::done);
        }
        {
            Connection c(*client_context, *server_context, "192.0.2.1", true);
            CHECK(c.outcome.server == Status::done);
        }
        CHECK(names == std::vector<std::string>{"mx.test", "(none)"});
    }

    TEST_CASE("a host name mismatch fails a required verification and is reported otherwise") {
        const Pki pki;
        const auto server_context = pki.server();
        const auto client_context = pki.client();
        {
            Connection c(*client_context, *server_context, "other.test", true);
            CHECK(c.outcome.client == Status::failed);
            CHECK(c.client.error().find("hostname mismatch") != std::string::npos);
            CHECK(!c.client.verified());
            CHECK(c.client.verify_error() == "hostname mismatch");
            // The client's alert ends the server's handshake as well.
            CHECK(c.outcome.server == Status::failed);
            CHECK(!c.server.error().empty());
        }
        {
            Connection c(*client_context, *server_context, "other.test", false);
            CHECK(c.outcome.client == Status::done);
            CHECK(c.outcome.server == Status::done);
            CHECK(!c.client.verified());
            CHECK(c.client.verify_error() == "hostname mismatch");
            CHECK(c.client.error().empty());
        }
    }

    TEST_CASE("a self-signed server certificate does not verify against the CA") {
        const Pki pki;
        const auto server_context = pki.server(true);
        const auto client_context = pki.client();
        {
            Connection c(*client_context, *server_context, "mx.test", true);
            CHECK(c.outcome.client == Status::failed);
            CHECK(c.client.error().find("self-signed") != std::string::npos);
            CHECK(!c.client.verified());
        }
        {
            Connection c(*client_context, *server_context, "mx.test", false);
            CHECK(c.outcome.client == Status::done);
            CHECK(c.outcome.server == Status::done);
            CHECK(!c.client.verified());
            CHECK(c.client.verify_error().find("self-signed") != std::string::npos);
        }
    }

    TEST_CASE("plaintext instead of a ClientHello fails the server handshake") {
        const Pki pki;
        const auto server_context = pki.server();
        SocketPair sockets;
        const std::string_view garbage = "EHLO x\r\n";
        REQUIRE(::send(sockets.client.get(), garbage.data(), garbage.size(), MSG_NOSIGNAL) ==
                static_cast<ssize_t>(garbage.size()));
        Stream server = Stream::accept(*server_context, sockets.server.get());
        const auto r = server.handshake();
        check_queue_empty();
        CHECK(r.status == Status::failed);
        CHECK(!server.error().empty());
        CHECK(server.protocol().empty());
        // Failure is final, and nothing is sent for it afterwards.
        std::array<char, 16> buffer{};
        CHECK(server.read(buffer).status == Status::failed);
        check_queue_empty();
        server.shutdown();
        check_queue_empty();
    }

    TEST_CASE("a peer that closes during the handshake fails it") {
        const Pki pki;
        const auto server_context = pki.server();
        SocketPair sockets;
        sockets.client.close();
        Stream server = Stream::accept(*server_context, sockets.server.get());
        CHECK(server.handshake().status == Status::failed);
        check_queue_empty();
        CHECK(!server.error().empty());
    }

    TEST_CASE("a peer that closes its socket after the handshake gives closed") {
        const Pki pki;
        const auto server_context = pki.server();
        const auto client_context = pki.client();
        Connection c(*client_context, *server_context, "mx.test", false);
        REQUIRE(c.outcome.client == Status::done);
        REQUIRE(c.outcome.server == Status::done);
        REQUIRE(!c.sockets.server.close());
        std::array<char, 100> buffer{};
        const auto r = read_waiting(c.client, c.sockets.client.get(), buffer);
        CHECK(r.status == Status::closed);
        CHECK(c.client.error().empty());
    }

    TEST_CASE("a write to a closed peer fails with EPIPE instead of raising SIGPIPE") {
        const Pki pki;
        const auto server_context = pki.server();
        const auto client_context = pki.client();
        Connection c(*client_context, *server_context, "mx.test", false);
        REQUIRE(c.outcome.client == Status::done);
        REQUIRE(c.outcome.server == Status::done);
        REQUIRE(!c.sockets.server.close());
        // SIGPIPE's default action would end the test program here.
        const auto r = c.client.write("QUIT\r\n");
        check_queue_empty();
        CHECK(r.status == Status::failed);
        CHECK(c.client.error() == std::system_category().message(EPIPE));
        c.client.shutdown();  // sends nothing after a failure (it would raise SIGPIPE too)
        check_queue_empty();
    }

    TEST_CASE("shutdown() sends close_notify and the peer reads closed") {
        const Pki pki;
        const auto server_context = pki.server();
        const auto client_context = pki.client();
        Connection c(*client_context, *server_context, "mx.test", false);
        REQUIRE(c.outcome.client == Status::done);
        REQUIRE(c.outcome.server == Status::done);
        c.client.shutdown();
        check_queue_empty();
        std::array<char, 100> buffer{};
        const auto r = read_waiting(c.server, c.sockets.server.get(), buffer);
        CHECK(r.status == Status::closed);
        CHECK(c.server.error().empty());
        // The socket stays open, and a second shutdown() is harmless.
        c.server.shutdown();
        check_queue_empty();
        const auto back = read_waiting(c.client, c.sockets.client.get(), buffer);
        CHECK(back.status == Status::closed);
    }

    TEST_CASE("a moved Stream keeps its connection and the source is empty") {
        const Pki pki;
        const auto server_context = pki.server();
        const auto client_context = pki.client();
        Connection c(*client_context, *server_context, "mx.test", true);
        REQUIRE(c.outcome.client == Status::done);
        Stream moved = std::move(c.client);
        CHECK(moved.verified());
        CHECK(!moved.protocol().empty());
        CHECK(c.client.protocol().empty());  // a moved-from Stream is empty, not undefined
        CHECK(!c.client.has_buffered_input());
        c.client = std::move(moved);
        CHECK(c.client.verified());
    }

    TEST_CASE("Context::server reports a missing file with its setting and path") {
        const Pki pki;
        std::string error;
        const std::string missing = pki.dir / "missing.pem";
        CHECK(Context::server(missing, pki.server_key, error) == nullptr);
        check_queue_empty();
        CHECK(error == "tls_cert " + missing + ": No such file or directory");
        error.clear();
        CHECK(Context::server(pki.server_cert, missing, error) == nullptr);
        check_queue_empty();
        CHECK(error == "tls_key " + missing + ": No such file or directory");
    }

    TEST_CASE("Context::server refuses a key that does not match the certificate") {
        const Pki pki;
        std::string error;
        CHECK(Context::server(pki.server_cert, pki.other_key, error) == nullptr);
        check_queue_empty();
        CHECK(error == "tls_key " + pki.other_key + ": key does not match the certificate");
    }

    TEST_CASE("Context::server fails on an encrypted key instead of asking for its passphrase") {
        const Pki pki;
        std::string error;
        CHECK(Context::server(pki.server_cert, pki.encrypted_key, error) == nullptr);
        check_queue_empty();
        CHECK(error.rfind("tls_key " + pki.encrypted_key + ": ", 0) == 0);
    }

    TEST_CASE("Context::server refuses a file that holds no certificate") {
        const Pki pki;
        std::string error;
        CHECK(Context::server(pki.server_key, pki.server_key, error) == nullptr);
        check_queue_empty();
        CHECK(error.rfind("tls_cert " + pki.server_key + ": ", 0) == 0);
    }

    TEST_CASE("Context::client reports a missing CA file and takes the system store") {
        const Pki pki;
        std::string error;
        const std::string missing = pki.dir / "missing-ca.pem";
        CHECK(Context::client(missing, error) == nullptr);
        check_queue_empty();
        CHECK(error.rfind("tls_ca_file " + missing + ": ", 0) == 0);
        error.clear();
        CHECK(Context::client("", error) != nullptr);
        check_queue_empty();
        CHECK(error.empty());
    }

    TEST_CASE("connect() without a host name fails instead of skipping the name check") {
        const Pki pki;
        const auto client_context = pki.client();
        SocketPair sockets;
        Stream client = Stream::connect(*client_context, sockets.client.get(), "", false);
        check_queue_empty();
        CHECK(client.handshake().status == Status::failed);
        CHECK(!client.error().empty());
    }
}
