// poll_server: many SMTP connections at once, in one thread, with poll() and
// non-blocking sockets, and verdicts that come later than the events asking for them.
//
// Each RCPT is "looked up" in a pretend directory that answers after LOOKUP_MS: the
// verdict waits in the connection (a timer the loop serves, never a sleep) while the
// client's pipelined commands wait in the session's input. Recipients whose local
// part starts with "unknown" get 550 5.1.1; all others are accepted. Every accepted
// message is printed as sink_blocking prints it:
//   message from=<a@example.org> to=<b@example.net> size=1234
//   <content, byte for byte>
//
//   poll_server PORT [CONNECTIONS [LOOKUP_MS]]
//     PORT         TCP port on 127.0.0.1; 0 picks a free one. Prints
//                  "listening on PORT" (flushed) once it accepts connections.
//     CONNECTIONS  stop accepting after this many, exit when they have all ended;
//                  0 or absent: run forever.
//     LOOKUP_MS    the pretend lookup's delay, default 20.
//
// The session's timeout_ms() bounds how long a silent client is kept; a client that
// stops reading our replies gets the same time to take its 421 and is then dropped.
#include <smtp/server_session.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Owns one descriptor: every path that drops it closes it.
class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const { return fd_; }

private:
    int fd_;
};

struct Lookup {
    Clock::time_point due;
    bool known;
};

struct Connection {
    explicit Connection(int fd) : fd(fd), session(smtp::ServerConfig{}) {}

    Fd fd;
    smtp::ServerSession session;
    std::string input;  // received but not yet taken by the session
    std::string from;
    std::vector<std::string> to;
    std::string content;
    std::optional<Lookup> lookup;  // the RCPT verdict being "looked up"
    std::string looked_up;         // its mailbox (the event's view dies with the verdict)
    std::optional<Clock::time_point> deadline;
    bool peer_gone = false;  // EOF: serve what was received, then drop
    bool dead = false;
};

milliseconds lookup_delay{20};
std::uint64_t queued = 0;  // queue ids for the "queued as" reply

void on_event(Connection& c, const smtp::ServerEvent& ev, Clock::time_point now) {
    using Kind = smtp::ServerEvent::Kind;
    switch (ev.kind) {
        case Kind::mail_from:
            c.from = ev.command->path.mailbox;
            c.to.clear();
            c.content.clear();
            break;
        case Kind::rcpt_to:
            c.looked_up = ev.command->path.mailbox;
            c.lookup = Lookup{now + lookup_delay, !c.looked_up.starts_with("unknown")};
            return;  // the verdict comes from the timer
        case Kind::data_chunk:
            c.content.append(ev.data);
            break;
        case Kind::message_end:
            if (ev.error != smtp::Errc::ok) break;  // the session already answered
            {
                std::string out = "message from=<" + c.from + ">";
                for (const std::string& rcpt : c.to) out += " to=<" + rcpt + ">";
                out += " size=" + std::to_string(c.content.size()) + "\n" + c.content;
                std::cout << out << std::flush;
            }
            c.session.accept("Ok: queued as " + std::to_string(++queued));
            return;
        default:
            break;
    }
    if (ev.needs_verdict) c.session.accept();
}

// Sends what the session has for the peer until the socket would block.
void flush(Connection& c) {
    while (c.session.want_write()) {
        const std::string_view out = c.session.pending_output();
        const ssize_t n = ::send(c.fd.get(), out.data(), out.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {
            c.dead = true;  // EPIPE, ECONNRESET: the peer is gone
            return;
        }
        c.session.consume_output(static_cast<std::size_t>(n));
    }
}

// Moves the conversation as far as it goes now: due verdicts, input, events, output.
void service(Connection& c, Clock::time_point now, bool activity) {
    if (c.lookup && now >= c.lookup->due) {
        if (c.lookup->known) {
            c.to.push_back(c.looked_up);
            c.session.accept();
        } else {
            c.session.reject(550, {5, 1, 1}, "No such user here");
        }
        c.lookup.reset();
        activity = true;
    }
    for (bool progress = true; progress && !c.dead;) {
        progress = false;
        if (!c.input.empty()) {
            const std::size_t taken = c.session.feed(c.input);
            c.input.erase(0, taken);
            progress = taken > 0;
        }
        while (!c.lookup) {
            const auto ev = c.session.next_event();
            if (!ev) break;
            on_event(c, *ev, now);
            progress = true;
        }
        flush(c);
        activity = activity || progress;
    }
    // A peer that hung up has nothing more to say; an open transaction is lost.
    if (c.session.should_close() || c.peer_gone) c.dead = true;

    // The peer's clock runs while the session waits for it; a closing session with
    // output still pending keeps its deadline, so a client that never reads is dropped.
    const std::uint32_t ms = c.session.timeout_ms();
    if (ms > 0 && (activity || !c.deadline))
        c.deadline = now + milliseconds(ms);
    else if (ms == 0 && !c.session.want_write())
        c.deadline.reset();
}

void on_readable(Connection& c) {
    char buffer[16384];
    const ssize_t n = ::recv(c.fd.get(), buffer, sizeof buffer, 0);
    if (n > 0) c.input.append(buffer, static_cast<std::size_t>(n));
    if (n == 0) c.peer_gone = true;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) c.dead = true;  // a reset
}

// Binds 127.0.0.1:port and listens; -1 on failure (reported).
int open_listener(long port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        std::perror("socket");
        return -1;
    }
    const int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) < 0 || ::listen(fd, 64) < 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) < 0) {
        std::perror("bind/listen");
        ::close(fd);
        return -1;
    }
    std::cout << "listening on " << ntohs(address.sin_port) << std::endl;
    return fd;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || argc > 4) {
        std::cerr << "usage: poll_server PORT [CONNECTIONS [LOOKUP_MS]]\n";
        return 64;
    }
    const long max_connections = argc > 2 ? std::strtol(argv[2], nullptr, 10) : 0;
    if (argc > 3) lookup_delay = milliseconds(std::strtol(argv[3], nullptr, 10));
    std::optional<Fd> listener;
    if (const int fd = open_listener(std::strtol(argv[1], nullptr, 10)); fd >= 0)
        listener.emplace(fd);
    else
        return 1;

    std::list<Connection> connections;
    long accepted = 0;
    std::vector<pollfd> fds;
    while (listener || !connections.empty()) {
        // What each descriptor waits for, and the nearest timer.
        fds.clear();
        if (listener) fds.push_back({listener->get(), POLLIN, 0});
        std::optional<Clock::time_point> wake;
        for (Connection& c : connections) {
            short events = c.session.want_write() ? POLLOUT : 0;
            if (c.input.empty() && c.session.want_read()) events |= POLLIN;
            fds.push_back({c.fd.get(), events, 0});
            for (const auto& t : {c.deadline, c.lookup ? std::optional(c.lookup->due) : std::nullopt})
                if (t && (!wake || *t < *wake)) wake = t;
        }
        int wait_ms = -1;
        if (wake) {
            const auto left = std::chrono::ceil<milliseconds>(*wake - Clock::now()).count();
            wait_ms = static_cast<int>(std::clamp<long long>(left, 0, 60'000));
        }
        if (::poll(fds.data(), fds.size(), wait_ms) < 0 && errno != EINTR) {
            std::perror("poll");
            return 1;
        }
        const Clock::time_point now = Clock::now();

        std::size_t i = 0;
        if (listener && (fds[i++].revents & POLLIN)) {
            for (;;) {  // take every pending connection; the listener is non-blocking
                const int fd = ::accept4(listener->get(), nullptr, nullptr, SOCK_NONBLOCK);
                if (fd < 0) break;  // EAGAIN; or EMFILE, ECONNABORTED...: try on the next round
                connections.emplace_back(fd);
                service(connections.back(), now, true);  // the 220 greeting
                if (max_connections > 0 && ++accepted >= max_connections) {
                    listener.reset();
                    break;
                }
            }
        }
        // The connections polled, in the order of `fds`; those just accepted follow.
        for (auto it = connections.begin(); it != connections.end(); ++i) {
            Connection& c = *it;
            const short revents = i < fds.size() ? fds[i].revents : 0;
            bool activity = false;
            if (revents & (POLLIN | POLLHUP | POLLERR)) {
                on_readable(c);
                activity = true;
            }
            if (!c.dead && c.deadline && now >= *c.deadline) {
                if (const std::uint32_t ms = c.session.timeout_ms(); ms > 0) {
                    c.session.timeout();  // 421 4.4.2; it gets one more period to go out
                    c.deadline = now + milliseconds(ms);
                } else {
                    c.dead = true;  // it would not even take its 421
                }
            }
            if (!c.dead) service(c, now, activity);
            it = c.dead ? connections.erase(it) : std::next(it);  // closes the socket
        }
    }
    return 0;
}
