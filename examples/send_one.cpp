// send_one: sends one message, read from standard input, with ClientSession over a
// blocking socket, and prints what became of each recipient.
//
//   send_one HOST PORT FROM TO [TO...] < message
//     FROM and TO without angle brackets; FROM "" is the null sender <>.
//
// Output, one line per recipient (the server's reply, or "(local)" when the session
// refused the message itself, e.g. 8-bit content to a server without 8BITMIME):
//   to=<b@example.net> delivered: 250 2.0.0 Ok
//   to=<c@example.net> permanent: 550 5.1.1 No such user
// Exit status: 0 every recipient delivered; 1 some not (temporary or permanent);
// 2 no connection could be made.
#include <smtp/client_session.hpp>

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <iostream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

namespace {

// A connected TCP socket to host:port (any address family), or -1.
int connect_to(const char* host, const char* port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (const int e = ::getaddrinfo(host, port, &hints, &found); e != 0) {
        std::cerr << "send_one: " << host << ": " << ::gai_strerror(e) << '\n';
        return -1;
    }
    int fd = -1;
    for (const addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
        fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd >= 0 && ::connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
            ::close(fd);
            fd = -1;
        }
    }
    ::freeaddrinfo(found);
    if (fd < 0) std::cerr << "send_one: cannot connect to " << host << " port " << port << '\n';
    return fd;
}

bool send_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 5) {
        std::cerr << "usage: send_one HOST PORT FROM TO [TO...] < message\n";
        return 64;
    }
    const std::string body{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    smtp::OutgoingMessage message;
    message.sender = argv[3];
    message.recipients.assign(argv + 4, argv + argc);
    message.eight_bit = std::any_of(body.begin(), body.end(), [](char c) { return (c & 0x80) != 0; });
    message.size = body.size();  // SIZE is an estimate (RFC 1870): line endings may change

    const int fd = connect_to(argv[1], argv[2]);
    if (fd < 0) return 2;

    smtp::ClientSession session{smtp::ClientConfig{}};
    session.submit(std::move(message));
    session.quit();
    std::size_t delivered = 0;
    std::size_t body_at = 0;
    bool writing = false;   // between need_body and end_body
    bool connected = true;  // the socket still works
    while (!session.should_close()) {
        while (auto ev = session.next_event()) {
            using Kind = smtp::ClientEvent::Kind;
            if (ev->kind == Kind::need_body) writing = true;
            if (ev->kind == Kind::recipient_result) {
                std::cout << "to=<" << argv[4 + ev->recipient] << "> " << smtp::outcome_name(ev->outcome)
                          << ": ";
                if (ev->local) std::cout << "(local) ";
                if (ev->reply)
                    std::cout << ev->reply->code << ' '
                              << (ev->reply->lines.empty() ? "" : ev->reply->lines[0]);
                std::cout << '\n';
                if (ev->outcome == smtp::Outcome::delivered) ++delivered;
            }
            if (ev->kind == Kind::failed) std::cerr << "send_one: the connection failed\n";
        }
        // The body goes in pieces, each sent before the next is encoded: bounded memory.
        if (writing) {
            const std::size_t n = std::min<std::size_t>(64 * 1024, body.size() - body_at);
            session.write_body(std::string_view(body).substr(body_at, n));
            body_at += n;
            if (body_at == body.size()) {
                session.end_body();
                writing = false;
            }
        }
        if (session.want_write()) {
            // Once the socket is gone nothing can be sent: drop what the session has.
            if (!connected || !send_all(fd, session.pending_output())) {
                if (connected) session.peer_closed();  // unfinished recipients: temporary
                connected = false;
            }
            session.consume_output(session.pending_output().size());
            continue;
        }
        if (writing) continue;
        if (!connected) break;  // peer_closed() was told, and its events drained above
        if (!session.want_read()) {
            // Nothing to send or wait for, yet not over: end it rather than spin.
            session.peer_closed();
            connected = false;
            continue;
        }

        pollfd p{fd, POLLIN, 0};
        const std::uint32_t ms = session.timeout_ms();
        const int ready = ::poll(&p, 1, ms == 0 ? -1 : static_cast<int>(ms));
        if (ready < 0 && errno == EINTR) continue;
        if (ready == 0) {
            session.timeout();  // RFC 5321 §4.5.3.2: the server took too long
            continue;
        }
        char buffer[16384];
        const ssize_t n = ready < 0 ? -1 : ::recv(fd, buffer, sizeof buffer, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            session.peer_closed();
            connected = false;
        } else {
            session.feed(std::string_view(buffer, static_cast<std::size_t>(n)));
        }
    }
    ::close(fd);
    return delivered == static_cast<std::size_t>(argc - 4) ? 0 : 1;
}
