// Tests of apps/smtpd/connection.hpp with STARTTLS: one Connection on one end of a
// socketpair, driven by hand the way the worker's select() loop drives it, and a TLS
// client (tls::Stream::connect) on the other end. Driving by hand makes the cases
// exact: the read buffer handed to on_readable() can be smaller than a TLS record,
// and poll() shows what select() would (not) report.
//
// The server's certificate is made with `openssl req` in a mkdtemp directory (under
// $TMPDIR, else /tmp), removed at the end with the Maildirs and the queue. Log lines
// go to a Logger without a queue (dropped): what is tested is what the peer sees.
#include "../common/temp_dir.hpp"
#include "connection.hpp"

#include "common/fd.hpp"
#include "common/log.hpp"
#include "common/maildir.hpp"
#include "common/queue.hpp"
#include "common/tls.hpp"
#include "policy.hpp"
#include "settings.hpp"

#include <doctest/doctest.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

using smtp::smtpd::Clock;
using smtp::smtpd::Connection;
using smtp::smtpd::ConnectionContext;
namespace tls = smtp::tls;

namespace {

using Status = tls::Stream::Status;

bool ends_with(std::string_view text, std::string_view end) {
    return text.size() >= end.size() && text.substr(text.size() - end.size()) == end;
}

class TempDir : public smtp::test::TempDir {
public:
    TempDir() : smtp::test::TempDir("smtpd-connection") {}
};

// What a worker gives its connections, with a certificate for localhost, and a
// Connection whose client end of the socketpair is client_fd.
struct Fixture {
    TempDir dir;
    smtp::smtpd::Settings settings;
    smtp::smtpd::Resolved resolved;
    std::unique_ptr<smtp::smtpd::Policy> policy;
    smtp::MailRoot root;
    std::unique_ptr<smtp::queue::Queue> queue;
    smtp::Logger log;  // no queue: lines are dropped
    ConnectionContext context;
    smtp::Fd client_fd;
    std::unique_ptr<Connection> connection;
    Clock::time_point now = Clock::now();

    Fixture() {
        const std::string cert = dir / "cert.pem", key = dir / "key.pem";
        const std::string command =
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
            "-subj /CN=localhost -keyout " +
            key + " -out " + cert + " >/dev/null 2>&1";
        REQUIRE(std::system(command.c_str()) == 0);
        std::string error;
        resolved.tls = tls::Context::server(cert, key, error);
        INFO(error);
        REQUIRE(resolved.tls != nullptr);
        resolved.hostname = "test.local";
        resolved.local_domain = {"test.local"};
        auto nets = smtp::parse_network_list("127.0.0.0/8");
        REQUIRE(nets.ok());
        resolved.relay_net = *nets.value;
        policy = std::make_unique<smtp::smtpd::Policy>(resolved);

        REQUIRE(::mkdir((dir / "mail").c_str(), 0700) == 0);
        std::error_code ec;
        root = smtp::MailRoot::open(dir / "mail", ec, resolved.hostname);
        REQUIRE_FALSE(ec);
        queue = std::make_unique<smtp::queue::Queue>(dir / "queue");
        REQUIRE_FALSE(queue->prepare());
        context = ConnectionContext{.settings = &settings,
                                    .resolved = &resolved,
                                    .policy = policy.get(),
                                    .mail_root = &root,
                                    .queue = queue.get(),
                                    .log = &log};

        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
        client_fd = smtp::Fd(fds[1]);
        const auto peer = smtp::parse_ip_address("127.0.0.1");
        REQUIRE(peer.ok());
        connection = std::make_unique<Connection>(1, smtp::Fd(fds[0]), *peer.value, context);
        connection->start(false, now);
    }

    // What the client end can read now, in plaintext, up to the end of the stream.
    std::string read_plain() {
        std::string out;
        char buf[4096];
        for (;;) {
            const ssize_t n = ::recv(client_fd.get(), buf, sizeof buf, 0);
            if (n > 0) {
                out.append(buf, static_cast<std::size_t>(n));
                continue;
            }
            // The end: EOF, or a reset when the server closed with our bytes unread.
            if (n == 0 || errno == ECONNRESET) return out;
            REQUIRE((errno == EAGAIN || errno == EWOULDBLOCK));
            return out;
        }
    }
    // The server closed: EOF, or a reset when it closed with our bytes unread.
    bool client_sees_eof() {
        char byte;
        const ssize_t n = ::recv(client_fd.get(), &byte, 1, 0);
        return n == 0 || (n < 0 && errno == ECONNRESET);
    }
    void send_plain(std::string_view text) {
        REQUIRE(::send(client_fd.get(), text.data(), text.size(), MSG_NOSIGNAL) ==
                static_cast<ssize_t>(text.size()));
    }

    // One turn of the worker's loop for this connection, as select() would report it.
    void turn(std::span<char> buffer) {
        pollfd p{connection->fd(), 0, 0};
        if (connection->wants_read()) p.events |= POLLIN;
        if (connection->wants_write()) p.events |= POLLOUT;
        REQUIRE(::poll(&p, 1, 0) >= 0);
        if ((p.revents & POLLIN) != 0 || connection->has_ready_input()) connection->on_readable(buffer, now);
        if (!connection->closed() && (p.revents & POLLOUT) != 0) connection->on_writable(buffer, now);
    }

    // EHLO, STARTTLS, the plaintext replies up to the 220.
    void start_tls_plaintext() {
        REQUIRE(read_plain().rfind("220 test.local", 0) == 0);
        send_plain("EHLO client.example\r\nSTARTTLS\r\n");
        std::array<char, 4096> buffer{};
        turn(buffer);
        const std::string replies = read_plain();
        INFO(replies);
        CHECK(replies.find("\r\n250 STARTTLS\r\n") != std::string::npos);
        CHECK(ends_with(replies, "\r\n220 2.0.0 Ready to start TLS\r\n"));
    }

    // The handshake, both ends driven in turn until the server is in TLS.
    tls::Stream handshake(const tls::Context& client_context) {
        tls::Stream client = tls::Stream::connect(client_context, client_fd.get(), "localhost", false);
        std::array<char, 4096> buffer{};
        bool client_done = false;
        for (int i = 0; i < 50 && !client_done; ++i) {
            const tls::Stream::Result r = client.handshake();
            INFO(client.error());
            REQUIRE((r.status == Status::done || r.status == Status::want_read ||
                     r.status == Status::want_write));
            client_done = r.status == Status::done;
            turn(buffer);
            REQUIRE_FALSE(connection->closed());
        }
        REQUIRE(client_done);
        turn(buffer);  // the client's Finished
        return client;
    }

    // Every decrypted byte the client end can read now; sets `closed` at the end.
    static std::string read_tls(tls::Stream& client, bool& closed) {
        std::string out;
        std::array<char, 4096> buffer{};
        for (;;) {
            const tls::Stream::Result r = client.read(buffer);
            if (r.status == Status::done) {
                out.append(buffer.data(), r.bytes);
                continue;
            }
            closed = r.status == Status::closed;
            return out;
        }
    }
};

std::shared_ptr<const tls::Context> client_context() {
    std::string error;
    auto context = tls::Context::client("", error);
    INFO(error);
    REQUIRE(context != nullptr);
    return context;
}

}  // namespace

TEST_SUITE("connection") {
    TEST_CASE("decrypted input that select() cannot see is served through has_ready_input()") {
        Fixture f;
        f.start_tls_plaintext();
        const auto context = client_context();
        tls::Stream client = f.handshake(*context);

        // One TLS record: a new EHLO, twenty NOOPs, QUIT.
        std::string commands = "EHLO client.example\r\n";
        for (int i = 0; i < 20; ++i) commands += "NOOP\r\n";
        commands += "QUIT\r\n";
        const tls::Stream::Result w = client.write(commands);
        REQUIRE(w.status == Status::done);
        REQUIRE(w.bytes == commands.size());

        // A read buffer smaller than the record: OpenSSL keeps the rest, decrypted,
        // and the socket has nothing more for select() to report.
        std::array<char, 16> small{};
        f.connection->on_readable(small, f.now);
        REQUIRE(f.connection->has_ready_input());
        pollfd p{f.connection->fd(), POLLIN, 0};
        REQUIRE(::poll(&p, 1, 0) == 0);

        // The worker serves it without waiting, until the session has all of it.
        int turns = 0;
        while (f.connection->has_ready_input() && turns < 1000) {
            f.connection->on_readable(small, f.now);
            ++turns;
        }
        CHECK(static_cast<std::size_t>(turns) + 1 >= commands.size() / small.size());
        CHECK(f.connection->closed());  // QUIT was read and answered

        bool closed = false;
        const std::string replies = Fixture::read_tls(client, closed);
        INFO(replies);
        CHECK(replies.rfind("250-test.local ", 0) == 0);
        CHECK(replies.find("STARTTLS") == std::string::npos);  // RFC 3207 §4.2
        std::size_t noops = 0;
        for (std::size_t at = 0; (at = replies.find("250 2.0.0 Ok\r\n", at)) != std::string::npos; ++at)
            ++noops;
        CHECK(noops == 20);
        CHECK(replies.find("221 2.0.0") != std::string::npos);
        CHECK(closed);  // close_notify, then the close
    }

    TEST_CASE("plaintext pipelined behind STARTTLS is never read as a command") {
        Fixture f;
        REQUIRE(f.read_plain().rfind("220 ", 0) == 0);
        f.send_plain("EHLO client.example\r\nSTARTTLS\r\nRSET\r\nMAIL FROM:<a@b.example>\r\n");
        std::array<char, 4096> buffer{};
        f.turn(buffer);
        const std::string replies = f.read_plain();
        INFO(replies);
        CHECK(ends_with(replies, "\r\n220 2.0.0 Ready to start TLS\r\n"));  // nothing after it
        // Only the handshake's bytes come now: the stream waits for the ClientHello.
        CHECK(f.connection->wants_read());
        CHECK_FALSE(f.connection->wants_write());

        const auto context = client_context();
        tls::Stream client = f.handshake(*context);
        REQUIRE(client.write("RCPT TO:<alice@test.local>\r\n").status == Status::done);
        f.turn(buffer);
        bool closed = false;
        const std::string in_tls = Fixture::read_tls(client, closed);
        // No HELO any more (§4.2), no transaction: the MAIL sent in plaintext never counted.
        CHECK(in_tls.rfind("503 5.5.1 ", 0) == 0);
        CHECK(in_tls.find("\r\n") == in_tls.size() - 2);  // one reply line, nothing stray before it
    }

    TEST_CASE("garbage in place of a ClientHello closes the connection without a byte") {
        Fixture f;
        f.start_tls_plaintext();
        f.send_plain("EHLO this is no ClientHello\r\n");
        std::array<char, 4096> buffer{};
        f.turn(buffer);
        CHECK(f.connection->closed());
        CHECK(f.read_plain().empty());
        CHECK(f.client_sees_eof());
    }

    TEST_CASE("a handshake that does not come ends at the command timeout without a byte") {
        Fixture f;
        f.start_tls_plaintext();
        const auto deadline = f.connection->deadline();
        REQUIRE(deadline.has_value());
        CHECK(*deadline - f.now == std::chrono::duration_cast<Clock::duration>(f.settings.timeout));
        f.connection->on_timer(*deadline - std::chrono::milliseconds(1));
        CHECK_FALSE(f.connection->closed());
        f.connection->on_timer(*deadline);
        CHECK(f.connection->closed());
        CHECK(f.read_plain().empty());  // no 421: it would be read as TLS
        CHECK(f.client_sees_eof());
    }
}
