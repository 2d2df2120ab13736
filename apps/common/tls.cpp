// apps/common/tls.cpp: TLS contexts and streams on OpenSSL 3 (see tls.hpp).
//
// The only file that includes OpenSSL's headers.
//
// Invariants:
//  - Every public function starts with ERR_clear_error() and ends with the thread's
//    OpenSSL error queue empty: a failure is drained into error text at once, so one
//    connection's error can never be reported by another that shares the thread.
//  - A Stream has failed exactly when error_ is not empty. Failure is final: later
//    calls return failed again without touching OpenSSL, and shutdown() sends nothing
//    (after SSL_ERROR_SSL or SSL_ERROR_SYSCALL OpenSSL forbids SSL_shutdown).
//  - No write ever raises SIGPIPE: the SSL objects do their socket I/O through our own
//    BIO (socket_bio_method), which sends with MSG_NOSIGNAL. OpenSSL's socket BIO uses
//    write(2), and the alternatives are process-wide (ignoring SIGPIPE, which the
//    daemons' children and exec'd programs would inherit) or per-thread (blocking it
//    around each call), both state shared with code that is not ours.
//
// Thread safety: as tls.hpp says. The BIO_METHOD is made once (a function-local
// static, so C++ makes it thread-safe) and only read afterwards.
#include "common/tls.hpp"

#include <cerrno>
#include <cstdint>
#include <system_error>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

namespace smtp::tls {

namespace {

struct CtxFree {
    void operator()(SSL_CTX* ctx) const noexcept { SSL_CTX_free(ctx); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, CtxFree>;

std::string errno_text(int error) { return std::system_category().message(error); }

// The reason of one queued error, without OpenSSL's "error:0A000086:lib::" prefix:
// what the config error messages show an admin.
std::string reason_text(unsigned long code) {
    // System errors carry errno as their reason; OpenSSL 3 has no string for them.
    if (ERR_SYSTEM_ERROR(code)) return errno_text(static_cast<int>(ERR_GET_REASON(code)));
    // PEM's name for "this file holds nothing of the kind asked for" (empty, DER, a
    // key given as the certificate): say that first.
    if (ERR_GET_LIB(code) == ERR_LIB_PEM && ERR_GET_REASON(code) == PEM_R_NO_START_LINE)
        return "nothing of the expected kind in PEM format (no start line)";
    const char* reason = ERR_reason_error_string(code);
    if (reason != nullptr) return reason;
    return fmt::format("OpenSSL error {:#x}", code);
}

// Empties the queue; returns its error codes, oldest first.
std::vector<unsigned long> drain_codes() {
    std::vector<unsigned long> codes;
    while (const unsigned long code = ERR_get_error()) codes.push_back(code);
    return codes;
}

// Empties the queue; returns the reason of its oldest entry (the root cause: later
// entries are the callers giving up, "system lib", "PEM lib"), or "" when it was empty.
std::string drain_first_reason() {
    const auto codes = drain_codes();
    return codes.empty() ? std::string() : reason_text(codes.front());
}

// Empties the queue; returns every entry in OpenSSL's full form (library, function
// and reason, plus the detail text some entries carry), oldest first, for the logs.
std::string drain_queue() {
    std::string text;
    const char* data = nullptr;
    int flags = 0;
    while (const unsigned long code = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) {
        char buffer[256];
        ERR_error_string_n(code, buffer, sizeof buffer);
        if (!text.empty()) text += "; ";
        text += buffer;
        if ((flags & ERR_TXT_STRING) != 0 && data != nullptr && *data != '\0')
            fmt::format_to(std::back_inserter(text), " ({})", data);
    }
    return text;
}

// The error text for a Context setting that failed ("tls_cert /x.pem: No such file or
// directory"); empties the queue. A key that is not the certificate's gets one message
// whichever way OpenSSL noticed: "key values mismatch" (X509, a key of the same type)
// or a failed SSL_CTX_check_private_key (another type).
std::string setting_error(std::string_view setting, const std::string& path) {
    const auto codes = drain_codes();
    for (const unsigned long code : codes) {
        if (ERR_GET_LIB(code) == ERR_LIB_X509 && (ERR_GET_REASON(code) == X509_R_KEY_VALUES_MISMATCH ||
                                                  ERR_GET_REASON(code) == X509_R_KEY_TYPE_MISMATCH))
            return fmt::format("{} {}: key does not match the certificate", setting, path);
    }
    return fmt::format("{} {}: {}", setting, path, codes.empty() ? "failed" : reason_text(codes.front()));
}

// A passphrase callback that has none: an encrypted key fails to load instead of
// OpenSSL's default callback prompting on the daemon's terminal (and blocking it).
int no_passphrase(char*, int, int, void*) { return 0; }

// Modes common to both sides: write() behaves like send() with a buffer that may
// move between retries (tls.hpp promises that), and idle connections (many, in
// smtpd) give their 34 KiB of record buffers back.
constexpr long stream_modes =
    SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS;

// Renegotiation is a TLS 1.2 feature SMTP never needs (no client certificates are
// asked for mid-connection), and a client that renegotiates over and over makes the
// server do the expensive half of a handshake each time (CVE-2011-1473). TLS 1.3
// has none. PostgreSQL's server turns it off the same way.
constexpr uint64_t context_options = SSL_OP_NO_RENEGOTIATION;

// --- The socket BIO ------------------------------------------------------------------
//
// A source/sink BIO on a non-blocking socket descriptor, which it does not own. The
// descriptor is kept in the BIO's data pointer (no allocation, nothing to free).
// Retry flags follow OpenSSL's socket BIO: EAGAIN sets "retry", which SSL_get_error
// turns into WANT_READ/WANT_WRITE; end of file is remembered in BIO_FLAGS_IN_EOF and
// reported through BIO_CTRL_EOF, so OpenSSL 3 tells an EOF without close_notify
// (SSL_R_UNEXPECTED_EOF_WHILE_READING) apart from a socket error (SSL_ERROR_SYSCALL
// with errno).

void* fd_to_data(int fd) noexcept { return reinterpret_cast<void*>(static_cast<std::intptr_t>(fd)); }
int data_to_fd(void* data) noexcept { return static_cast<int>(reinterpret_cast<std::intptr_t>(data)); }

bool would_block(int error) noexcept { return error == EAGAIN || error == EWOULDBLOCK; }

int bio_write(BIO* bio, const char* data, int size) {
    BIO_clear_retry_flags(bio);
    if (size <= 0) return 0;
    ssize_t n;
    // MSG_NOSIGNAL: a peer that has gone away gives EPIPE, not a process-killing signal.
    do n = ::send(data_to_fd(BIO_get_data(bio)), data, static_cast<std::size_t>(size), MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && would_block(errno)) BIO_set_retry_write(bio);
    return static_cast<int>(n);
}

int bio_read(BIO* bio, char* data, int size) {
    BIO_clear_retry_flags(bio);
    if (size <= 0) return 0;
    ssize_t n;
    do n = ::recv(data_to_fd(BIO_get_data(bio)), data, static_cast<std::size_t>(size), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && would_block(errno)) BIO_set_retry_read(bio);
    if (n == 0) BIO_set_flags(bio, BIO_FLAGS_IN_EOF);
    return static_cast<int>(n);
}

long bio_ctrl(BIO* bio, int command, long, void* pointer) {
    switch (command) {
        case BIO_CTRL_FLUSH:  // nothing is buffered here: every write went to send()
            return 1;
        case BIO_CTRL_EOF:
            return BIO_test_flags(bio, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
        case BIO_C_GET_FD: {  // SSL_get_fd, for whoever wants it
            const int fd = data_to_fd(BIO_get_data(bio));
            if (pointer != nullptr) *static_cast<int*>(pointer) = fd;
            return fd;
        }
        default:  // everything else, kTLS included, is not supported: OpenSSL falls back
            return 0;
    }
}

// Made on first use and never freed: one small object for the life of the process.
// A static pointer keeps it reachable, so leak checkers do not count it as lost.
// Null if OpenSSL could not allocate it (every Stream then fails with that text).
const BIO_METHOD* socket_bio_method() {
    static const BIO_METHOD* const method = [] {
        const int index = BIO_get_new_index();
        if (index == -1) return static_cast<BIO_METHOD*>(nullptr);
        BIO_METHOD* m = BIO_meth_new(index | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "smtp socket");
        if (m == nullptr) return m;
        if (BIO_meth_set_write(m, bio_write) != 1 || BIO_meth_set_read(m, bio_read) != 1 ||
            BIO_meth_set_ctrl(m, bio_ctrl) != 1) {
            BIO_meth_free(m);
            return static_cast<BIO_METHOD*>(nullptr);
        }
        return m;
    }();
    return method;
}

// A host given as an address literal: no SNI (RFC 6066 §3 allows only names) and an
// iPAddress rather than a dNSName match (RFC 5280 §4.2.1.6).
bool is_ip_literal(const std::string& host) noexcept {
    in6_addr address;
    return ::inet_pton(AF_INET, host.c_str(), &address) == 1 ||
           ::inet_pton(AF_INET6, host.c_str(), &address) == 1;
}

// Wraps the new SSL_CTX in a Context. Written out so that an exception (bad_alloc)
// at any step frees the SSL_CTX exactly once.
template <class Make>
std::shared_ptr<const Context> wrap(CtxPtr ctx, Make make) {
    auto owner = make(ctx.get());
    ctx.release();
    return std::shared_ptr<const Context>(std::move(owner));
}

}  // namespace

// --- Context -------------------------------------------------------------------------

Context::~Context() { SSL_CTX_free(context_); }

std::shared_ptr<const Context> Context::server(const std::string& cert_file, const std::string& key_file,
                                               std::string& error) {
    ERR_clear_error();
    CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    if (!ctx) {
        error = fmt::format("tls: cannot make a server context: {}", drain_first_reason());
        return nullptr;
    }
    // The protocol floor and security level stay what the system's openssl.cnf says
    // (Debian: TLS 1.2, level 2), so an admin tunes them in one place for every program.
    SSL_CTX_set_mode(ctx.get(), stream_modes);
    SSL_CTX_set_options(ctx.get(), context_options);
    // smtpc never resumes a session, and other clients rarely do: TLS 1.3 tickets
    // after every handshake would be writes for nothing.
    if (SSL_CTX_set_num_tickets(ctx.get(), 0) != 1) {
        error = fmt::format("tls: cannot turn session tickets off: {}", drain_first_reason());
        return nullptr;
    }
    SSL_CTX_set_default_passwd_cb(ctx.get(), no_passphrase);
    // No SSL_CTX_set_verify: the default (SSL_VERIFY_NONE) asks for no client certificate.
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert_file.c_str()) != 1) {
        error = setting_error("tls_cert", cert_file);
        return nullptr;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx.get(), key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
        error = setting_error("tls_key", key_file);
        return nullptr;
    }
    if (SSL_CTX_check_private_key(ctx.get()) != 1) {
        ERR_clear_error();
        error = fmt::format("tls_key {}: key does not match the certificate", key_file);
        return nullptr;
    }
    ERR_clear_error();
    return wrap(std::move(ctx), [](SSL_CTX* c) { return std::unique_ptr<Context>(new Context(c)); });
}

std::shared_ptr<const Context> Context::client(const std::string& ca_file, std::string& error) {
    ERR_clear_error();
    CtxPtr ctx(SSL_CTX_new(TLS_client_method()));
    if (!ctx) {
        error = fmt::format("tls: cannot make a client context: {}", drain_first_reason());
        return nullptr;
    }
    SSL_CTX_set_mode(ctx.get(), stream_modes);
    SSL_CTX_set_options(ctx.get(), context_options);
    // Each connection is its own session: smtpc does not resume, so caching sessions
    // would only hold memory.
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    if (!ca_file.empty()) {
        if (SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr) != 1) {
            error = setting_error("tls_ca_file", ca_file);
            return nullptr;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
        error = fmt::format("tls: cannot use the system's CA store: {}", drain_first_reason());
        return nullptr;
    }
    ERR_clear_error();
    return wrap(std::move(ctx), [](SSL_CTX* c) { return std::unique_ptr<Context>(new Context(c)); });
}

// --- Stream --------------------------------------------------------------------------

namespace {

// The SSL object for one side, with our BIO on `fd`; nullptr and `error` on failure.
SSL* new_ssl(const Context& context, int fd, std::string& error) {
    const BIO_METHOD* method = socket_bio_method();
    if (method == nullptr) {
        error = fmt::format("tls: cannot make the socket BIO: {}", drain_queue());
        return nullptr;
    }
    SSL* ssl = SSL_new(context.native());
    if (ssl == nullptr) {
        error = fmt::format("tls: cannot make a connection: {}", drain_queue());
        return nullptr;
    }
    BIO* bio = BIO_new(method);
    if (bio == nullptr) {
        error = fmt::format("tls: cannot make the socket BIO: {}", drain_queue());
        SSL_free(ssl);
        return nullptr;
    }
    BIO_set_data(bio, fd_to_data(fd));
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl, bio, bio);  // the SSL owns the one reference, for reading and writing
    return ssl;
}

}  // namespace

Stream Stream::accept(const Context& context, int fd) {
    ERR_clear_error();
    std::string error;
    Stream stream(new_ssl(context, fd, error));
    stream.error_ = std::move(error);
    if (stream.ssl_ != nullptr) SSL_set_accept_state(stream.ssl_);
    ERR_clear_error();
    return stream;
}

Stream Stream::connect(const Context& context, int fd, std::string_view host_view, bool require_verified) {
    ERR_clear_error();
    std::string error;
    Stream stream(new_ssl(context, fd, error));
    stream.error_ = std::move(error);
    if (stream.ssl_ == nullptr) return stream;
    SSL* ssl = stream.ssl_;
    SSL_set_connect_state(ssl);

    const std::string host(host_view);
    // Without a name there is nothing to check the certificate against, and any
    // certificate with a trusted chain would verify: refuse rather than pretend.
    if (host.empty() || host.find('\0') != std::string::npos) {
        stream.error_ = "tls: no valid peer host name to verify the certificate against";
        return stream;
    }
    bool ok = true;
    if (is_ip_literal(host)) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) == 1;
    } else {
        // RFC 6066 §3: SNI carries the DNS name. RFC 6125 §7.2 (and Postfix, curl):
        // a wildcard matches a whole left-most label only, never "w*.example".
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set_tlsext_host_name(ssl, host.c_str()) == 1 && SSL_set1_host(ssl, host.c_str()) == 1;
    }
    if (!ok) {
        const std::string why = drain_queue();
        stream.error_ =
            fmt::format("tls: cannot use host name '{}': {}", host, why.empty() ? "rejected" : why);
        return stream;
    }
    // The chain and the name are checked either way (SSL_get_verify_result tells);
    // SSL_VERIFY_PEER only decides whether a failure ends the handshake.
    SSL_set_verify(ssl, require_verified ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
    ERR_clear_error();
    return stream;
}

Stream::Stream(Stream&& other) noexcept
    : ssl_(std::exchange(other.ssl_, nullptr)), error_(std::move(other.error_)) {
    other.error_.clear();
}

Stream& Stream::operator=(Stream&& other) noexcept {
    if (this != &other) {
        SSL_free(ssl_);
        ssl_ = std::exchange(other.ssl_, nullptr);
        error_ = std::move(other.error_);
        other.error_.clear();
    }
    return *this;
}

Stream::~Stream() { SSL_free(ssl_); }

Stream::Status Stream::classify(int ret) {
    // errno first: SSL_get_error and the error queue may overwrite it.
    const int saved_errno = errno;
    const int code = SSL_get_error(ssl_, ret);
    switch (code) {
        case SSL_ERROR_NONE:
            ERR_clear_error();
            return Status::done;
        case SSL_ERROR_WANT_READ:
            ERR_clear_error();
            return Status::want_read;
        case SSL_ERROR_WANT_WRITE:
            ERR_clear_error();
            return Status::want_write;
        case SSL_ERROR_ZERO_RETURN:  // close_notify
            ERR_clear_error();
            return Status::closed;
        case SSL_ERROR_SYSCALL: {
            std::string queued = drain_queue();
            if (!queued.empty()) {
                error_ = std::move(queued);
            } else if (saved_errno == 0) {
                return Status::closed;  // EOF without close_notify (older OpenSSL's report)
            } else {
                error_ = errno_text(saved_errno);
            }
            return Status::failed;
        }
        case SSL_ERROR_SSL: {
            const unsigned long first = ERR_peek_error();
            // OpenSSL 3's report of EOF without close_notify. SMTP needs no
            // protection from truncation here: its data ends with "." (RFC 5321
            // §4.1.1.4), so read() says closed and the session sees an early end.
            if (ERR_GET_LIB(first) == ERR_LIB_SSL &&
                ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING &&
                ERR_peek_last_error() == first) {
                ERR_clear_error();
                return Status::closed;
            }
            error_ = drain_queue();
            if (error_.empty()) error_ = "TLS protocol error";
            if (!SSL_is_server(ssl_)) {
                const long verify = SSL_get_verify_result(ssl_);
                if (verify != X509_V_OK)
                    fmt::format_to(std::back_inserter(error_), " ({})",
                                   X509_verify_cert_error_string(verify));
            }
            return Status::failed;
        }
        default:  // WANT_X509_LOOKUP, WANT_ASYNC...: callbacks and engines not used here
            ERR_clear_error();
            error_ = fmt::format("unexpected SSL_get_error result {}", code);
            return Status::failed;
    }
}

Stream::Result Stream::handshake() {
    if (!error_.empty()) return {};
    ERR_clear_error();
    errno = 0;
    const int ret = SSL_do_handshake(ssl_);
    Status status = classify(ret);
    if (status == Status::closed) {
        error_ = "connection closed by the peer during the TLS handshake";
        status = Status::failed;
    }
    return {status, 0};
}

Stream::Result Stream::read(std::span<char> buffer) {
    if (!error_.empty()) return {};
    if (buffer.empty()) {
        error_ = "tls: read() into an empty buffer";
        return {};
    }
    ERR_clear_error();
    errno = 0;
    std::size_t n = 0;
    const int ret = SSL_read_ex(ssl_, buffer.data(), buffer.size(), &n);
    if (ret == 1) {
        ERR_clear_error();
        return {Status::done, n};
    }
    return {classify(ret), 0};
}

Stream::Result Stream::write(std::string_view data) {
    if (!error_.empty()) return {};
    if (data.empty()) {
        error_ = "tls: write() of nothing";
        return {};
    }
    ERR_clear_error();
    errno = 0;
    std::size_t n = 0;
    const int ret = SSL_write_ex(ssl_, data.data(), data.size(), &n);
    if (ret == 1) {
        ERR_clear_error();
        return {Status::done, n};
    }
    Status status = classify(ret);
    if (status == Status::closed) {
        error_ = "connection closed by the peer";
        status = Status::failed;
    }
    return {status, 0};
}

void Stream::shutdown() noexcept {
    if (ssl_ == nullptr || !error_.empty()) return;
    ERR_clear_error();
    // One attempt: 0 (close_notify sent, the peer's not read), 1, or -1 (the socket
    // would block, or the handshake never finished: nothing is sent then) all end
    // the same way, with the caller closing the socket.
    static_cast<void>(SSL_shutdown(ssl_));
    ERR_clear_error();
}

bool Stream::has_buffered_input() const noexcept {
    // SSL_pending, not SSL_has_pending: the latter is also true for part of a record
    // (a header without its body), which read() cannot return yet; a loop reading
    // again on it would spin. Without read-ahead OpenSSL never takes more from the
    // socket than the record it is working on, so whole records wait in the kernel,
    // where select() sees them.
    return ssl_ != nullptr && SSL_pending(ssl_) > 0;
}

std::string_view Stream::protocol() const noexcept {
    if (ssl_ == nullptr || SSL_is_init_finished(ssl_) != 1) return {};
    return SSL_get_version(ssl_);
}

std::string_view Stream::cipher() const noexcept {
    if (ssl_ == nullptr || SSL_is_init_finished(ssl_) != 1) return {};
    const SSL_CIPHER* c = SSL_get_current_cipher(ssl_);
    if (c == nullptr) return {};
    return SSL_CIPHER_get_name(c);
}

int Stream::cipher_bits() const noexcept {
    if (ssl_ == nullptr || SSL_is_init_finished(ssl_) != 1) return 0;
    const SSL_CIPHER* c = SSL_get_current_cipher(ssl_);
    return c == nullptr ? 0 : SSL_CIPHER_get_bits(c, nullptr);
}

bool Stream::verified() const noexcept {
    if (ssl_ == nullptr || SSL_is_server(ssl_) || SSL_is_init_finished(ssl_) != 1) return false;
    return SSL_get0_peer_certificate(ssl_) != nullptr && SSL_get_verify_result(ssl_) == X509_V_OK;
}

std::string Stream::verify_error() const {
    if (ssl_ == nullptr || SSL_is_server(ssl_)) return {};
    const long result = SSL_get_verify_result(ssl_);
    // Set by a failed check even when the handshake failed because of it.
    if (result != X509_V_OK) return X509_verify_cert_error_string(result);
    if (SSL_is_init_finished(ssl_) == 1 && SSL_get0_peer_certificate(ssl_) == nullptr)
        return "no peer certificate";
    return {};
}

}  // namespace smtp::tls
