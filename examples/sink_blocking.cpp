// sink_blocking: a mail sink that serves one connection at a time with blocking
// POSIX sockets and ServerSession, accepting everything and printing each message.
// The smallest complete server loop: read, feed, handle events, write.
//
//   sink_blocking PORT [CONNECTIONS]
//     PORT         TCP port on 127.0.0.1; 0 picks a free one. Prints
//                  "listening on PORT" (flushed) once it accepts connections.
//     CONNECTIONS  exit after serving this many connections; 0 or absent: never.
//
// Each accepted message goes to stdout as one line, then its content as received
// (dot-unstuffed, CRLF line endings), byte for byte:
//   message from=<a@example.org> to=<b@example.net> to=<c@example.net> size=1234
#include <smtp/server_session.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Transaction {
    std::string from;
    std::vector<std::string> to;
    std::string content;
};

void print(const Transaction& t) {
    std::string out = "message from=<" + t.from + ">";
    for (const std::string& rcpt : t.to) out += " to=<" + rcpt + ">";
    out += " size=" + std::to_string(t.content.size()) + "\n" + t.content;
    std::cout << out << std::flush;
}

// Sends all of `bytes`. False when the peer is gone. MSG_NOSIGNAL: no SIGPIPE.
bool send_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

// One conversation, to its end: QUIT, a 421, the peer's EOF or an error.
void serve(int fd) {
    smtp::ServerSession session{smtp::ServerConfig{}};
    Transaction t;
    std::string input;  // received but not yet taken by the session (its buffer is bounded)
    for (;;) {
        while (auto ev = session.next_event()) {
            using Kind = smtp::ServerEvent::Kind;
            // Copy now: the views live only until the verdict or the next event.
            if (ev->kind == Kind::mail_from) t = {std::string(ev->command->path.mailbox), {}, {}};
            if (ev->kind == Kind::rcpt_to) t.to.emplace_back(ev->command->path.mailbox);
            if (ev->kind == Kind::data_chunk) t.content.append(ev->data);
            if (ev->kind == Kind::message_end && ev->error == smtp::Errc::ok) print(t);
            if (ev->needs_verdict) session.accept();
        }
        if (!send_all(fd, session.pending_output())) return;
        session.consume_output(session.pending_output().size());
        if (session.should_close()) return;

        if (!input.empty()) {
            const std::size_t taken = session.feed(input);
            if (taken == 0) return;  // cannot happen with every verdict given: a stuck session
            input.erase(0, taken);
            continue;
        }
        // Wait for the client no longer than the session allows (RFC 5321 §4.5.3.2.7).
        pollfd p{fd, POLLIN, 0};
        const std::uint32_t ms = session.timeout_ms();
        const int ready = ::poll(&p, 1, ms == 0 ? -1 : static_cast<int>(ms));
        if (ready < 0 && errno == EINTR) continue;
        if (ready < 0) return;
        if (ready == 0) {
            session.timeout();  // 421 4.4.2, then should_close()
            continue;
        }
        char buffer[16384];
        const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;  // EOF or error: drop the conversation
        input.assign(buffer, static_cast<std::size_t>(n));
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || argc > 3) {
        std::cerr << "usage: sink_blocking PORT [CONNECTIONS]\n";
        return 64;
    }
    const long port = std::strtol(argv[1], nullptr, 10);
    const long connections = argc > 2 ? std::strtol(argv[2], nullptr, 10) : 0;

    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0) {
        std::perror("socket");
        return 1;
    }
    const int on = 1;
    ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) < 0 ||
        ::listen(listener, 16) < 0 ||
        ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) < 0) {
        std::perror("bind/listen");
        ::close(listener);
        return 1;
    }
    std::cout << "listening on " << ntohs(address.sin_port) << std::endl;

    for (long served = 0; connections == 0 || served < connections;) {
        const int fd = ::accept(listener, nullptr, nullptr);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            std::perror("accept");
            break;
        }
        serve(fd);
        ::close(fd);
        ++served;
    }
    ::close(listener);
    return 0;
}
