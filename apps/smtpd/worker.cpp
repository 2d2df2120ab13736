// apps/smtpd/worker.cpp: the select() loop of one smtpd worker (see worker.hpp).
//
// One turn: build the fd_sets (self-pipe, listeners while accepting, every connection
// by what its session wants, the resolver's sockets), select() until the nearest
// deadline, then in this order: signals, resolver callbacks, ready connections and
// their timers, new connections, the shutdown deadline, and last the sweep of closed
// connections (their lookups cancelled). Connections are closed only by themselves and
// dropped only by the sweep, so no callback ever sees a dangling one: lookups find
// their connection by id.
//
// Invariants: no descriptor >= FD_SETSIZE goes into an fd_set; the loop never waits on
// anything but select(); every deadline (session, write, linger, accept pause,
// shutdown grace, resolver) bounds the select() timeout, and a connection whose TLS
// stream holds decrypted input (Connection::has_ready_input) makes it zero.
//
// Thread safety: single-threaded; the signal handlers touch only sig_atomic_t flags
// and write(2) to the self-pipe.
#include "worker.hpp"

#include "common/maildir.hpp"
#include "common/queue.hpp"
#include "common/resolver.hpp"
#include "connection.hpp"
#include "policy.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace smtp::smtpd {
namespace {

using std::chrono::milliseconds;

// Descriptors kept free above the worker's own for the resolver's sockets and the
// files a commit opens, so connection sockets stay below FD_SETSIZE.
constexpr int fd_reserve = 16;
// How long to stop accepting after EMFILE and the like, unless a connection closes.
constexpr milliseconds accept_pause{1000};
// Connections taken from one listener per turn: the others, and the connections
// already open, get their turn too.
constexpr int accepts_per_turn = 64;
// One read buffer for all connections; a read never exceeds the session's room.
constexpr std::size_t read_buffer_size = 64 * 1024;

// ---------------------------------------------------------------- signals

// Written by the handlers, read by the loop. The pipe only wakes select(); the flags
// say what was asked, so a full pipe loses nothing.
volatile std::sig_atomic_t stop_requested = 0;
volatile std::sig_atomic_t drain_requested = 0;
volatile std::sig_atomic_t signal_pipe_fd = -1;

extern "C" void on_signal(int sig) {
    const int saved_errno = errno;
    if (sig == SIGHUP)
        drain_requested = 1;
    else
        stop_requested = 1;
    const int fd = signal_pipe_fd;
    if (fd >= 0) {
        const char byte = 0;
        // EAGAIN: the pipe is full, select() wakes anyway. Nothing else can be done here.
        if (::write(fd, &byte, 1) < 0) {
        }
    }
    errno = saved_errno;
}

// The self-pipe and the handlers that write to it. The handlers stay installed after
// the pipe is gone (a late signal only sets a flag): the process is about to exit 0,
// and the default action would turn that into death by signal.
class SignalPipe {
public:
    SignalPipe() = default;
    SignalPipe(const SignalPipe&) = delete;
    SignalPipe& operator=(const SignalPipe&) = delete;
    ~SignalPipe() { signal_pipe_fd = -1; }

    // Errors: those of pipe2, sigaction, sigprocmask.
    std::error_code open() {
        int fds[2];
        if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return {errno, std::system_category()};
        read_ = Fd(fds[0]);
        write_ = Fd(fds[1]);
        signal_pipe_fd = write_.get();

        struct sigaction action {};
        action.sa_handler = on_signal;
        sigemptyset(&action.sa_mask);
        action.sa_flags = SA_RESTART;  // file writes and fsync go on; select() still wakes
        struct sigaction ignore {};
        ignore.sa_handler = SIG_IGN;
        sigemptyset(&ignore.sa_mask);
        sigset_t handled;
        sigemptyset(&handled);
        for (const int sig : {SIGTERM, SIGINT, SIGHUP}) {
            if (::sigaction(sig, &action, nullptr) != 0) return {errno, std::system_category()};
            sigaddset(&handled, sig);
        }
        // A peer that resets while we write must not kill the worker: send() says EPIPE.
        if (::sigaction(SIGPIPE, &ignore, nullptr) != 0) return {errno, std::system_category()};
        // Whatever the parent blocked, these must reach the handlers.
        if (::sigprocmask(SIG_UNBLOCK, &handled, nullptr) != 0) return {errno, std::system_category()};
        return {};
    }

    int read_fd() const noexcept { return read_.get(); }
    int write_fd() const noexcept { return write_.get(); }

    // Empties the pipe (non-blocking).
    void drain() const noexcept {
        char bytes[64];
        while (::read(read_.get(), bytes, sizeof bytes) > 0) {
        }
    }

private:
    Fd read_;
    Fd write_;
};

timeval to_timeval(Clock::duration d) {
    const auto us = std::max<long long>(0, std::chrono::ceil<std::chrono::microseconds>(d).count());
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(us / 1'000'000);
    tv.tv_usec = static_cast<suseconds_t>(us % 1'000'000);
    return tv;
}

void earliest(std::optional<Clock::time_point>& best, std::optional<Clock::time_point> t) {
    if (t && (!best || *t < *best)) best = t;
}

// ---------------------------------------------------------------- the loop

class Worker {
public:
    Worker(const WorkerSetup& setup, const ConnectionContext& context, Resolver* resolver,
           const SignalPipe& signals, std::size_t capacity)
        : setup_(setup),
          settings_(*setup.settings),
          context_(context),
          resolver_(resolver),
          signals_(signals),
          listeners_(setup.listeners),
          capacity_(capacity),
          buffer_(read_buffer_size) {}
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;
    ~Worker() { close_listeners(); }

    int run();

private:
    enum class Mode { running, draining, stopping };

    int fill_sets(fd_set& read_set, fd_set& write_set, Clock::time_point now);
    std::optional<Clock::time_point> next_deadline() const;
    bool accepting(Clock::time_point now) const noexcept;

    void on_signals(const fd_set& read_set, Clock::time_point now);
    void close_listeners();

    void serve(const fd_set& read_set, const fd_set& write_set, Clock::time_point now);
    void accept_from(int listener, Clock::time_point now);
    void admit(Fd socket, const sockaddr_storage& address, socklen_t length, Clock::time_point now);
    void refuse_busy(const Fd& socket, const IpAddress& peer);
    void on_reverse(std::uint64_t id, const ReverseResult& result);
    void shutdown_all(Clock::time_point now);
    void sweep();

    const WorkerSetup& setup_;
    const Settings& settings_;
    const ConnectionContext& context_;
    Resolver* resolver_;  // null: rdns off
    const SignalPipe& signals_;
    std::vector<int> listeners_;  // ours to close; empty once we stop accepting
    std::size_t capacity_;
    std::vector<char> buffer_;
    std::vector<std::unique_ptr<Connection>> connections_;
    std::uint64_t next_id_ = 1;
    Mode mode_ = Mode::running;
    std::optional<Clock::time_point> grace_end_;     // stopping: shutdown() for the rest then
    std::optional<Clock::time_point> paused_until_;  // accept failed for lack of resources
    bool watched_listeners_ = false;                 // the listeners are in this turn's set
};

int Worker::run() {
    int status = 0;
    while (mode_ == Mode::running || !connections_.empty()) {
        fd_set read_set;
        fd_set write_set;
        const int max_fd = fill_sets(read_set, write_set, Clock::now());
        const std::optional<Clock::time_point> wake = next_deadline();
        timeval tv{};
        if (wake) tv = to_timeval(*wake - Clock::now());
        // Decrypted input inside a TLS stream is invisible to select(): look, don't sleep.
        const bool ready =
            std::any_of(connections_.begin(), connections_.end(),
                        [](const std::unique_ptr<Connection>& c) { return c->has_ready_input(); });
        if (ready) tv = timeval{};
        if (::select(max_fd + 1, &read_set, &write_set, nullptr, wake || ready ? &tv : nullptr) < 0) {
            if (errno != EINTR) {
                // EBADF, EINVAL, ENOMEM: a bug or a broken system; the master restarts us.
                setup_.log->error("worker {}: select: {}", setup_.index, std::strerror(errno));
                status = 1;
                shutdown_all(Clock::now());
                sweep();
                break;
            }
            FD_ZERO(&read_set);  // undefined after an error: nothing is ready
            FD_ZERO(&write_set);
        }
        const Clock::time_point now = Clock::now();
        on_signals(read_set, now);
        if (resolver_) resolver_->process(read_set, write_set);
        serve(read_set, write_set, now);
        if (watched_listeners_)
            for (const int listener : listeners_)
                if (FD_ISSET(listener, &read_set)) accept_from(listener, now);
        if (mode_ == Mode::stopping && grace_end_ && now >= *grace_end_) shutdown_all(now);
        sweep();
    }
    close_listeners();
    setup_.log->info("worker {} stopped", setup_.index);
    return status;
}

bool Worker::accepting(Clock::time_point now) const noexcept {
    return mode_ == Mode::running && connections_.size() < capacity_ &&
           (!paused_until_ || now >= *paused_until_);
}

int Worker::fill_sets(fd_set& read_set, fd_set& write_set, Clock::time_point now) {
    FD_ZERO(&read_set);
    FD_ZERO(&write_set);
    int max_fd = signals_.read_fd();
    FD_SET(signals_.read_fd(), &read_set);
    // While full (or short of descriptors) the siblings take the new connections.
    watched_listeners_ = accepting(now);
    if (watched_listeners_) {
        paused_until_.reset();
        for (const int listener : listeners_) {
            if (listener >= FD_SETSIZE) continue;  // never: the master binds first
            FD_SET(listener, &read_set);
            max_fd = std::max(max_fd, listener);
        }
    }
    for (const auto& c : connections_) {
        if (c->closed()) continue;
        if (c->wants_read()) FD_SET(c->fd(), &read_set);
        if (c->wants_write()) FD_SET(c->fd(), &write_set);
        max_fd = std::max(max_fd, c->fd());
    }
    if (resolver_) max_fd = resolver_->add_fds(read_set, write_set, max_fd);
    return max_fd;
}

std::optional<Clock::time_point> Worker::next_deadline() const {
    std::optional<Clock::time_point> wake;
    for (const auto& c : connections_) earliest(wake, c->deadline());
    if (mode_ == Mode::stopping) earliest(wake, grace_end_);
    if (mode_ == Mode::running) earliest(wake, paused_until_);
    if (resolver_) {
        const milliseconds t = resolver_->timeout();
        if (t != milliseconds::max()) earliest(wake, Clock::now() + t);
    }
    return wake;
}

// ---------------------------------------------------------------- signals

void Worker::on_signals(const fd_set& read_set, Clock::time_point now) {
    if (FD_ISSET(signals_.read_fd(), &read_set)) signals_.drain();
    if (stop_requested && mode_ != Mode::stopping) {
        mode_ = Mode::stopping;
        grace_end_ = now + settings_.shutdown_grace;
        close_listeners();
        setup_.log->info("worker {}: stopping, {} connections get {}s to finish", setup_.index,
                         connections_.size(), settings_.shutdown_grace.count());
    } else if (drain_requested && mode_ == Mode::running) {
        mode_ = Mode::draining;
        close_listeners();
        setup_.log->info("worker {}: draining {} connections", setup_.index, connections_.size());
    }
}

// Our copies only: the master and the siblings keep theirs. Closing them lets a new
// generation of workers (SIGHUP) own the port, and old workers never take new clients.
void Worker::close_listeners() {
    for (const int listener : listeners_)
        if (::close(listener) != 0)
            setup_.log->warning("worker {}: close listener: {}", setup_.index, std::strerror(errno));
    listeners_.clear();
    watched_listeners_ = false;
}

void Worker::shutdown_all(Clock::time_point now) {
    for (const auto& c : connections_) c->shutdown(now);
}

// ---------------------------------------------------------------- connections

void Worker::serve(const fd_set& read_set, const fd_set& write_set, Clock::time_point now) {
    for (const auto& c : connections_) {
        if (c->closed()) continue;
        const int fd = c->fd();
        if (FD_ISSET(fd, &read_set) || c->has_ready_input()) c->on_readable(buffer_, now);
        if (!c->closed() && FD_ISSET(fd, &write_set)) c->on_writable(buffer_, now);
        if (!c->closed()) c->on_timer(now);
    }
}

void Worker::accept_from(int listener, Clock::time_point now) {
    // Until EAGAIN even when full: a burst beyond capacity gets its 421 4.3.2 now
    // (admit) instead of waiting unanswered in the backlog. Bounded per turn.
    for (int n = 0; n < accepts_per_turn && mode_ == Mode::running && !paused_until_; ++n) {
        sockaddr_storage address{};
        socklen_t length = sizeof address;
        const int fd =
            ::accept4(listener, reinterpret_cast<sockaddr*>(&address), &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            admit(Fd(fd), address, length, now);
            continue;
        }
        switch (errno) {
            case EAGAIN:
#if EAGAIN != EWOULDBLOCK
            case EWOULDBLOCK:
#endif
                return;  // taken by a sibling, or none left
            case EINTR:
            case ECONNABORTED:
            // accept(2) on Linux: pending network errors of the new socket; the next
            // connection may be fine.
            case ENETDOWN:
            case EPROTO:
            case ENOPROTOOPT:
            case EHOSTDOWN:
            case ENONET:
            case EHOSTUNREACH:
            case EOPNOTSUPP:
            case ENETUNREACH:
                continue;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                setup_.log->warning("worker {}: cannot accept: {}; {} connections open", setup_.index,
                                    std::strerror(errno), connections_.size());
                paused_until_ = now + accept_pause;
                return;
            default:
                setup_.log->error("worker {}: accept: {}", setup_.index, std::strerror(errno));
                paused_until_ = now + accept_pause;
                return;
        }
    }
}

void Worker::admit(Fd socket, const sockaddr_storage& address, socklen_t length, Clock::time_point now) {
    const std::optional<IpAddress> peer =
        address_from_sockaddr(reinterpret_cast<const sockaddr*>(&address), static_cast<std::size_t>(length));
    if (!peer) {
        setup_.log->warning("worker {}: connection from an unknown address family dropped", setup_.index);
        return;
    }
    // select() cannot watch a descriptor >= FD_SETSIZE: FD_SET would write past the set.
    if (socket.get() >= FD_SETSIZE || connections_.size() >= capacity_) return refuse_busy(socket, *peer);

    const std::uint64_t id = next_id_++;
    connections_.push_back(std::make_unique<Connection>(id, std::move(socket), *peer, context_));
    Connection& c = *connections_.back();
    c.start(resolver_ != nullptr, now);
    if (resolver_ && !c.closed())
        c.set_lookup(resolver_->reverse(peer->unmapped(),
                                        [this, id](const ReverseResult& result) { on_reverse(id, result); }));
}

// Best effort: one non-blocking send of the 421 (RFC 5321 §3.8), then the close.
void Worker::refuse_busy(const Fd& socket, const IpAddress& peer) {
    const std::string reply =
        fmt::format("421 4.3.2 {} Too many connections, try again later\r\n", context_.resolved->hostname);
    if (::send(socket.get(), reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        // The client learns it from the close instead.
    }
    setup_.log->warning("reject: too many connections from [{}] (fd {}, {} open, at most {})",
                        peer.unmapped().to_string(), socket.get(), connections_.size(), capacity_);
}

void Worker::on_reverse(std::uint64_t id, const ReverseResult& result) {
    const auto it = std::find_if(connections_.begin(), connections_.end(),
                                 [id](const std::unique_ptr<Connection>& c) { return c->id() == id; });
    if (it != connections_.end()) (*it)->on_reverse(result, Clock::now());
}

void Worker::sweep() {
    const std::size_t erased = std::erase_if(connections_, [this](const std::unique_ptr<Connection>& c) {
        if (!c->closed()) return false;
        if (resolver_ && c->lookup() != 0) resolver_->cancel(c->lookup());
        return true;
    });
    // A closed connection gave back a descriptor: worth trying accept() again.
    if (erased > 0) paused_until_.reset();
}

// Room for connections: settings.max_connections, cut so every socket stays below
// FD_SETSIZE above the descriptors the worker already holds.
std::size_t connection_capacity(const Settings& settings, int highest_fd) {
    const long room = static_cast<long>(FD_SETSIZE) - 1 - highest_fd - fd_reserve;
    const long wanted = static_cast<long>(std::max(settings.max_connections, 1u));
    return static_cast<std::size_t>(std::max(1L, std::min(wanted, room)));
}

}  // namespace

int run_worker(const WorkerSetup& setup) {
    Logger& log = *setup.log;
    const Settings& settings = *setup.settings;
    const Resolved& resolved = *setup.resolved;

    SignalPipe signals;
    if (const std::error_code ec = signals.open()) {
        log.error("worker {}: cannot set up signals: {}", setup.index, ec.message());
        return 1;
    }
    std::error_code ec;
    const MailRoot mail_root = MailRoot::open(settings.mail_root, ec, resolved.hostname);
    if (ec) {
        log.error("worker {}: cannot open mail root {}: {}", setup.index, settings.mail_root, ec.message());
        return 1;
    }
    const queue::Queue queue{settings.queue_root};
    if (const std::error_code qec = queue.prepare()) {
        log.error("worker {}: cannot use queue {}: {}", setup.index, settings.queue_root, qec.message());
        return 1;
    }
    std::unique_ptr<Resolver> resolver;
    if (settings.rdns) {
        resolver = Resolver::create(
            ResolverOptions{.server = settings.dns_server, .timeout = settings.dns_timeout}, ec);
        if (!resolver) {
            log.error("worker {}: cannot start the DNS resolver: {}", setup.index, ec.message());
            return 1;
        }
    }
    const Policy policy{resolved};
    const ConnectionContext context{.settings = &settings,
                                    .resolved = &resolved,
                                    .policy = &policy,
                                    .mail_root = &mail_root,
                                    .queue = &queue,
                                    .log = &log};

    int highest_fd = std::max({signals.read_fd(), signals.write_fd(), mail_root.fd()});
    for (const int listener : setup.listeners) highest_fd = std::max(highest_fd, listener);
    const std::size_t capacity = connection_capacity(settings, highest_fd);
    if (capacity < settings.max_connections)
        log.warning("worker {}: max_connections {} cut to {} (select() watches descriptors below {})",
                    setup.index, settings.max_connections, capacity, FD_SETSIZE);
    log.info("worker {} ready: pid={} max_connections={} rdns={}", setup.index, ::getpid(), capacity,
             settings.rdns ? "on" : "off");

    Worker worker{setup, context, resolver.get(), signals, capacity};
    return worker.run();
}

}  // namespace smtp::smtpd
