// apps/smtpc/delivery_thread.cpp: the pselect() loop of one delivery thread (see
// delivery_thread.hpp).
//
// One turn: stop requests, new jobs, waiting jobs onto connections, timers (connect,
// the session's reply timeout, idle), the sweep of connections that are over (their
// jobs answered), then pselect() until the nearest deadline, then every ready
// connection: read and feed first, then pump (events, the next job, the body, writes).
//
// A connection holds its jobs in order; only the first is submitted to the session,
// the next one when the first has its message_result (the session runs one
// transaction at a time anyway, and submit() sends the next MAIL at once). So a job
// not yet submitted can still be handed back (graceful stop, a failed connection),
// and at most one content file per connection is open.
//
// "Started" (finished vs not_connected, delivery_thread.hpp): a job is started once
// a byte of its MAIL command has been written. Outside the message body the session
// writes only whole command lines, and of those only MAIL begins with 'M', so the
// bytes written are scanned for 'M' at the start of a line; the body (from need_body
// until the final dot is written) is not scanned.
//
// STARTTLS (RFC 3207): the session's tls_begin starts a tls::Stream on the socket;
// the handshake runs from this loop like any other wait (the socket watched for what
// the stream last asked, the whole handshake bounded by the session's timeout_ms()),
// then tls_started() or tls_failed(). A failed handshake is a temporary failure of
// that endpoint, never a retry in plaintext, on this connection or another: the
// session fails (451 4.7.5) and jobs whose MAIL was not written go to the next MX as
// not_connected. From the handshake on, every byte goes through the Stream:
//  - a read may need the socket writable and a write readable (renegotiation, TLS
//    1.3 key updates): each direction remembers what its last call asked, and the
//    socket is watched for that instead;
//  - decrypted bytes can wait inside OpenSSL where pselect() cannot see them: a
//    connection with buffered input makes pselect() return at once and is read
//    without waiting for the socket;
//  - a session that is over sends close_notify (one shutdown(), never waiting for the
//    peer's) before its socket is closed.
//
// Invariants: no descriptor >= FD_SETSIZE goes into an fd_set; every job posted gets
// exactly one JobResult; the loop waits on nothing but pselect(); every deadline
// bounds its timeout; a session's output is consumed exactly as it is written, before
// anything is fed back.
//
// Thread safety: Loop::post() and Loop::request_stop() run on any thread (Mailbox and
// one mutex); everything else on the delivery thread.
#include "delivery_thread.hpp"

#include "common/tls.hpp"

#include <smtp/client_session.hpp>

#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <iterator>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace smtp::smtpc {
namespace {

using Clock = std::chrono::steady_clock;

// The body goes to the session in chunks of this size, and only while less than this
// is waiting to be written: memory per connection stays near two chunks.
constexpr std::size_t body_chunk = 64 * 1024;
constexpr std::size_t output_high_water = 64 * 1024;
// One read buffer for all connections: replies are short.
constexpr std::size_t read_buffer_size = 16 * 1024;
// TLS reads per connection and turn: enough to empty OpenSSL's buffer of a normal
// reply; a server that streams without end cannot hold the thread on one connection
// (what is left is read on the next turn, which then does not wait).
constexpr int max_tls_reads_per_turn = 8;
// A reply kept in a JobResult (and so in the envelope's last-error) is cut here.
constexpr std::size_t max_reply_text = 1000;

std::string errno_text(int err) { return std::error_code(err, std::system_category()).message(); }

// "550 5.1.1 No such user": the code, then every line's text, joined by spaces.
std::string one_line(const Reply* reply) {
    if (reply == nullptr) return "451 4.3.0 No reply";
    std::string text = fmt::format("{}", reply->code);
    for (const std::string& line : reply->lines) {
        if (line.empty()) continue;
        text += ' ';
        text.append(line, 0, max_reply_text);  // bounds the append, not yet the total
        if (text.size() >= max_reply_text) break;
    }
    if (text.size() > max_reply_text) text.resize(max_reply_text);
    return text;
}

std::uint32_t to_ms(std::chrono::seconds s) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(s).count();
    return static_cast<std::uint32_t>(
        std::clamp<long long>(ms, 1, std::numeric_limits<std::uint32_t>::max()));
}

timespec to_timespec(Clock::duration d) {
    const auto ns = std::max<long long>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    return ts;
}

void earliest(std::optional<Clock::time_point>& best, Clock::time_point t) {
    if (!best || t < *best) best = t;
}

// Seconds since the epoch, with fractions, for delay=.
double wall_seconds() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string_view status_name(Outcome outcome) noexcept {
    switch (outcome) {
        case Outcome::delivered:
            return "sent";
        case Outcome::temporary:
            return "deferred";
        case Outcome::permanent:
            return "bounced";
    }
    return "deferred";
}

// ---------------------------------------------------------------- transport
//
// The byte stream under a session: the socket, or the TLS Stream on it once STARTTLS
// has run. These two functions, begin_connect() and the handshake are the only places
// that touch the socket's data.

struct IoResult {
    enum class Status : std::uint8_t { done, would_block, closed, error };
    Status status = Status::done;
    std::size_t bytes = 0;  // done: how many
    int error = 0;          // error: errno (0 for a TLS error: the Stream's error() says it)
    // would_block: TLS needs the other direction first (a read the socket writable, a
    // write readable).
    bool needs_other = false;
};

IoResult from_tls(tls::Stream::Result r) noexcept {
    switch (r.status) {
        case tls::Stream::Status::done:
            return {IoResult::Status::done, r.bytes, 0, false};
        case tls::Stream::Status::want_read:
            return {IoResult::Status::would_block, 0, 0, false};
        case tls::Stream::Status::want_write:
            return {IoResult::Status::would_block, 0, 0, true};
        case tls::Stream::Status::closed:
            return {IoResult::Status::closed, 0, 0, false};
        case tls::Stream::Status::failed:
            break;
    }
    return {IoResult::Status::error, 0, 0, false};
}

IoResult transport_read(int fd, tls::Stream* tls, char* buffer, std::size_t size) {
    if (tls != nullptr) return from_tls(tls->read(std::span<char>(buffer, size)));
    for (;;) {
        const ssize_t n = ::recv(fd, buffer, size, 0);
        if (n > 0) return {IoResult::Status::done, static_cast<std::size_t>(n), 0};
        if (n == 0) return {IoResult::Status::closed, 0, 0};
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return {IoResult::Status::would_block, 0, 0};
        return {IoResult::Status::error, 0, errno};
    }
}

IoResult transport_write(int fd, tls::Stream* tls, std::string_view data) {
    if (tls != nullptr) {
        // For a write, wanting the socket readable is the other direction.
        IoResult r = from_tls(tls->write(data));
        if (r.status == IoResult::Status::would_block) r.needs_other = !r.needs_other;
        return r;
    }
    for (;;) {
        // MSG_NOSIGNAL: a peer that is gone gives EPIPE, not SIGPIPE.
        const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n >= 0) return {IoResult::Status::done, static_cast<std::size_t>(n), 0};
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return {IoResult::Status::would_block, 0, 0};
        return {IoResult::Status::error, 0, errno};
    }
}

// A non-blocking socket connecting to `address`:`port` (EINPROGRESS is not an
// error: `in_progress` is set). On error returns an empty Fd and sets `err`.
Fd begin_connect(const IpAddress& address, std::uint16_t port, bool& in_progress, int& err) {
    sockaddr_storage storage{};
    socklen_t length = 0;
    const auto bytes = address.bytes();
    if (address.is_v4()) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&storage);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        std::memcpy(&sin->sin_addr, bytes.data(), bytes.size());
        length = sizeof(sockaddr_in);
    } else {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&storage);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        std::memcpy(&sin6->sin6_addr, bytes.data(), bytes.size());
        length = sizeof(sockaddr_in6);
    }
    Fd socket{::socket(storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
    if (!socket) {
        err = errno;
        return {};
    }
    // FD_SET on a descriptor >= FD_SETSIZE writes past the set.
    if (socket.get() >= FD_SETSIZE) {
        err = EMFILE;
        return {};
    }
    in_progress = false;
    if (::connect(socket.get(), reinterpret_cast<const sockaddr*>(&storage), length) != 0) {
        // EINTR: the connection goes on asynchronously (POSIX), as for EINPROGRESS.
        if (errno != EINPROGRESS && errno != EINTR) {
            err = errno;
            return {};
        }
        in_progress = true;
    }
    return socket;
}

// ---------------------------------------------------------------- connections

// A job on a connection.
struct Active {
    Job job;
    std::uint64_t message = 0;  // its id in the session; 0: not submitted yet
    bool started = false;       // a byte of its MAIL has been written
    // Collected as the session reports them; `index` is into job.message.recipients
    // until the result is posted, then into the envelope's.
    std::vector<RecipientResult> results;
};

struct Connection {
    Connection(SessionKey k, const ClientConfig& config)
        : key(std::move(k)), relay(key.endpoint.to_string()), session(config) {}

    SessionKey key;     // the jobs it takes (job.hpp): the endpoint and the TLS level
    std::string relay;  // key.endpoint.to_string(), for logs and errors
    Fd socket;
    bool connecting = true;  // waiting for connect() to complete
    ClientSession session;
    // STARTTLS: the Stream from tls_begin on (destroyed before the socket is closed).
    std::optional<tls::Stream> tls;
    bool handshaking = false;            // between tls_begin and tls_started/tls_failed
    bool tls_up = false;                 // the handshake finished: close_notify at the end
    bool tls_broken = false;             // a TLS read or write failed or saw the end: no close_notify
    bool handshake_wants_write = false;  // the handshake's last ask: writable, else readable
    bool read_needs_write = false;       // the last TLS read asked for the socket writable
    bool write_needs_read = false;       // the last TLS write asked for the socket readable
    std::deque<Active> jobs;             // in order; only the front may be submitted
    Fd content;                          // the front job's content, while its body is written

    bool ready = false;           // the session's ready event came
    bool quitting = false;        // quit() was called: new jobs wait for the next connection
    bool writing_body = false;    // between need_body and end_body
    bool body_in_output = false;  // body bytes may be in the output: do not scan for MAIL
    bool at_line_start = true;    // the next byte written begins a line
    bool failed = false;          // the session reported `failed`
    bool aborted = false;         // we ended it (content unreadable): requeue the rest
    bool closing = false;         // to be closed by the sweep, for close_reason
    std::string failure;          // failed: "relay: reply", the jobs' not_connected error
    std::string abort_reply;      // aborted: the started job's recipients' reply
    std::string close_reason;     // closing: the not_connected error of the jobs left
    Clock::time_point connect_deadline{};
    Clock::time_point last_progress{};  // the last write or read, or a new wait
    Clock::time_point idle_since{};     // jobs became empty (or ready came) then

    // New jobs may join this connection.
    bool accepting() const noexcept {
        return !quitting && !failed && !closing && (connecting || handshaking || session.want_read());
    }
    // Decrypted input waits inside OpenSSL, unseen by pselect(). Decrypted only (not
    // part of a record, tls.hpp): read() returns it at once, so the loop cannot spin.
    bool buffered_input() const noexcept {
        return tls_up && session.want_read() && tls->has_buffered_input();
    }
    // Nothing to do but wait for more mail.
    bool idle() const noexcept { return ready && jobs.empty() && !quitting && !failed && !closing; }
    // To be closed by the sweep.
    bool over() const noexcept { return closing || (!connecting && session.should_close()); }
};

}  // namespace

// ---------------------------------------------------------------- the loop

struct DeliveryThread::Loop {
    Loop(const Settings& s, const Resolved& r, const queue::Queue& q, Logger& l, Mailbox<JobResult>& res,
         unsigned i)
        : settings_(s), resolved_(r), queue_(q), log_(l), results_(res), index_(i) {
        config_.helo_name = resolved_.hostname;
        const std::uint32_t ms = to_ms(settings_.command_timeout);
        config_.greeting_timeout_ms = ms;
        config_.command_timeout_ms = ms;
        config_.data_timeout_ms = ms;
        config_.data_block_timeout_ms = ms;
        config_.data_end_timeout_ms = ms;
    }

    enum class Mode : std::uint8_t { running, graceful, now };

    // --- any thread
    void post(Job job);
    void request_stop(bool now) { control_.post(now); }

    // --- the delivery thread
    void run();

    void take_control(Clock::time_point now);
    void take_jobs(Clock::time_point now);
    void dispatch(Job job, Clock::time_point now);
    void start_waiting(Clock::time_point now);
    Connection& open_connection(SessionKey key, Clock::time_point now);
    Connection* find(const SessionKey& key) noexcept;
    // The session's configuration for jobs of `level`.
    ClientConfig config_for(TlsLevel level) const;
    // At least one, whatever the settings say: 0 would leave every job waiting.
    std::size_t max_connections() const noexcept { return std::max(1u, settings_.max_connections); }
    // Jobs wait for a slot that an idle connection holds: it should QUIT now.
    bool slots_wanted() const noexcept {
        return !waiting_.empty() && connections_.size() >= max_connections();
    }
    void attach(Connection& c, Job job, Clock::time_point now);

    void service_timers(Clock::time_point now);
    void settle(Clock::time_point now);
    void sweep();
    void close_connection(Connection& c);
    std::optional<Clock::time_point> deadline(const Connection& c) const;
    int fill_sets(fd_set& read_set, fd_set& write_set, std::optional<Clock::time_point>& wake) const;
    void serve(const fd_set& read_set, const fd_set& write_set, Clock::time_point now);

    void finish_connect(Connection& c, Clock::time_point now);
    void connect_failed(Connection& c, std::string_view why);
    void read_from(Connection& c, Clock::time_point now);
    void pump(Connection& c, Clock::time_point now);
    bool submit_next(Connection& c, Clock::time_point now);
    bool maybe_quit(Connection& c, Clock::time_point now);
    bool fill_body(Connection& c);
    bool flush(Connection& c, Clock::time_point now);
    void note_written(Connection& c, std::string_view bytes);
    void abort(Connection& c, std::string reply);
    void on_event(Connection& c, const ClientEvent& event, Clock::time_point now);
    void start_tls(Connection& c, Clock::time_point now);
    void continue_handshake(Connection& c, Clock::time_point now);
    void handshake_failed(Connection& c, std::string_view why);
    std::string io_error(const Connection& c, const IoResult& r) const;

    void post_finished(Active& a, const Connection& c);
    void finish_locally(const Job& job, std::string_view reply);
    void post_not_connected(Job& job, std::string_view error);
    void log_recipients(const Job& job, const std::vector<RecipientResult>& list, std::string_view relay);

    const Settings& settings_;
    const Resolved& resolved_;
    const queue::Queue& queue_;
    Logger& log_;
    Mailbox<JobResult>& results_;
    const unsigned index_;
    ClientConfig config_;

    Mailbox<Job> inbox_;
    Mailbox<bool> control_;  // stop requests: true = now
    std::mutex post_mutex_;  // guards `closed_` against post() while the thread ends
    bool closed_ = false;    // the loop is over: post() answers at once

    Mode mode_ = Mode::running;
    std::deque<Job> waiting_;  // for a connection: a free slot, or their endpoint's next one
    std::vector<std::unique_ptr<Connection>> connections_;
    std::vector<char> read_buffer_ = std::vector<char>(read_buffer_size);
    std::vector<char> content_buffer_ = std::vector<char>(body_chunk);
};

void DeliveryThread::Loop::post(Job job) {
    std::lock_guard lock{post_mutex_};
    if (!closed_) {
        inbox_.post(std::move(job));
        return;
    }
    post_not_connected(job, "shutting down");
}

void DeliveryThread::Loop::run() {
    // Already blocked by start(); again, in case the thread was made another way.
    sigset_t all;
    sigfillset(&all);
    if (const int err = ::pthread_sigmask(SIG_SETMASK, &all, nullptr); err != 0)
        log_.error("delivery thread {}: pthread_sigmask: {}", index_, errno_text(err));

    for (;;) {
        Clock::time_point now = Clock::now();
        take_control(now);
        take_jobs(now);
        service_timers(now);
        settle(now);
        if (mode_ != Mode::running && connections_.empty()) break;

        fd_set read_set;
        fd_set write_set;
        std::optional<Clock::time_point> wake;
        const int max_fd = fill_sets(read_set, write_set, wake);
        timespec timeout{};
        if (wake) timeout = to_timespec(*wake - now);
        // The mask lets no signal through: none is meant for this thread.
        const int ready =
            ::pselect(max_fd + 1, &read_set, &write_set, nullptr, wake ? &timeout : nullptr, &all);
        if (ready < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == ENOMEM) continue;
            // EBADF or EINVAL: a bug. Give every job back rather than spin.
            log_.error("delivery thread {}: pselect: {}; closing every connection", index_,
                       errno_text(errno));
            mode_ = Mode::now;
            for (auto& c : connections_) {
                c->closing = true;
                c->close_reason = "delivery thread failed";
            }
            continue;
        }
        now = Clock::now();
        serve(read_set, write_set, now);
    }

    // Every job posted from now on is answered by post() itself.
    std::lock_guard lock{post_mutex_};
    closed_ = true;
    for (Job& job : inbox_.take_all()) post_not_connected(job, "shutting down");
    for (Job& job : waiting_) post_not_connected(job, "shutting down");
    waiting_.clear();
}

void DeliveryThread::Loop::take_control(Clock::time_point now) {
    const std::deque<bool> requests = control_.take_all();
    if (requests.empty()) return;
    const bool now_asked = std::find(requests.begin(), requests.end(), true) != requests.end();
    const Mode asked = now_asked ? Mode::now : Mode::graceful;
    if (asked <= mode_) return;
    mode_ = asked;
    log_.debug("delivery thread {}: stopping ({})", index_, now_asked ? "now" : "graceful");
    for (Job& job : waiting_) post_not_connected(job, "shutting down");
    waiting_.clear();
    for (auto& cp : connections_) {
        Connection& c = *cp;
        if (c.closing) continue;
        if (mode_ == Mode::now || !c.ready) {
            // Not ready yet: nothing is in progress on it.
            c.closing = true;
            c.close_reason = "shutting down";
            continue;
        }
        // Graceful: the submitted job finishes; the rest go back; then QUIT.
        const auto first_left = c.jobs.begin() + (c.jobs.empty() || c.jobs.front().message == 0 ? 0 : 1);
        for (auto it = first_left; it != c.jobs.end(); ++it) post_not_connected(it->job, "shutting down");
        c.jobs.erase(first_left, c.jobs.end());
        pump(c, now);
    }
}

void DeliveryThread::Loop::take_jobs(Clock::time_point now) {
    for (Job& job : inbox_.take_all()) dispatch(std::move(job), now);
}

void DeliveryThread::Loop::dispatch(Job job, Clock::time_point now) {
    if (mode_ != Mode::running) {
        post_not_connected(job, "shutting down");
        return;
    }
    if (Connection* c = find(job.session_key()); c != nullptr && c->accepting()) {
        attach(*c, std::move(job), now);
        return;
    }
    waiting_.push_back(std::move(job));
}

Connection* DeliveryThread::Loop::find(const SessionKey& key) noexcept {
    for (auto& c : connections_)
        if (c->key == key) return c.get();
    return nullptr;
}

ClientConfig DeliveryThread::Loop::config_for(TlsLevel level) const {
    ClientConfig config = config_;
    // Without a context (a Resolved made by hand) no handshake can run: `may` stays in
    // plaintext, encrypt and verify still ask for STARTTLS and fail at tls_begin.
    config.tls = resolved_.tls_context || level != TlsLevel::may ? session_policy(level) : TlsPolicy::none;
    return config;
}

void DeliveryThread::Loop::attach(Connection& c, Job job, Clock::time_point now) {
    c.jobs.push_back(Active{std::move(job), 0, false, {}});
    if (c.jobs.size() == 1 && !c.connecting) pump(c, now);
}

// Waiting jobs, oldest first, join their key's connection (endpoint and TLS level), or
// get a new one while slots are free. A key whose connection is quitting (or failed)
// waits until it is gone.
void DeliveryThread::Loop::start_waiting(Clock::time_point now) {
    if (mode_ != Mode::running) return;
    for (auto it = waiting_.begin(); it != waiting_.end();) {
        Connection* c = find(it->session_key());
        if (c == nullptr && connections_.size() < max_connections()) {
            c = &open_connection(it->session_key(), now);
            // open_connection took every waiting job of the key; start over.
            it = waiting_.begin();
            continue;
        }
        if (c != nullptr && c->accepting()) {
            Job job = std::move(*it);
            it = waiting_.erase(it);
            attach(*c, std::move(job), now);
            continue;
        }
        ++it;
    }
}

// A new connection for `key` with every waiting job of that key, in order, so a
// connection that fails at once answers them all. `key` is a copy: the caller's is
// made from a waiting job, which this moves away.
Connection& DeliveryThread::Loop::open_connection(SessionKey key, Clock::time_point now) {
    auto owned = std::make_unique<Connection>(key, config_for(key.tls));
    Connection& c = *owned;
    connections_.push_back(std::move(owned));
    for (auto it = waiting_.begin(); it != waiting_.end();) {
        if (it->session_key() == key) {
            c.jobs.push_back(Active{std::move(*it), 0, false, {}});
            it = waiting_.erase(it);
        } else {
            ++it;
        }
    }
    c.connect_deadline = now + settings_.connect_timeout;
    bool in_progress = false;
    int err = 0;
    c.socket = begin_connect(key.endpoint.address, key.endpoint.port, in_progress, err);
    if (!c.socket) {
        connect_failed(c, err == EMFILE || err == ENFILE ? "too many open files" : errno_text(err));
        return c;
    }
    log_.debug("delivery thread {}: connecting to {} for {} job(s), tls={}", index_, c.relay, c.jobs.size(),
               tls_level_name(key.tls));
    if (!in_progress) finish_connect(c, now);
    return c;
}

void DeliveryThread::Loop::connect_failed(Connection& c, std::string_view why) {
    log_.info("connect to {}: {}", c.relay, why);
    c.socket.close();
    c.closing = true;
    c.close_reason = fmt::format("connect to {}: {}", c.relay, why);
}

void DeliveryThread::Loop::finish_connect(Connection& c, Clock::time_point now) {
    int err = 0;
    socklen_t length = sizeof err;
    if (::getsockopt(c.socket.get(), SOL_SOCKET, SO_ERROR, &err, &length) != 0) err = errno;
    if (err != 0) {
        connect_failed(c, errno_text(err));
        return;
    }
    c.connecting = false;
    c.last_progress = now;  // the greeting's wait starts now
    pump(c, now);
}

// ---------------------------------------------------------------- timers and sweep

std::optional<Clock::time_point> DeliveryThread::Loop::deadline(const Connection& c) const {
    if (c.closing) return std::nullopt;
    if (c.connecting) return c.connect_deadline;
    // The whole handshake is one wait (timeout_ms() is command_timeout_ms then).
    if (c.handshaking) return c.last_progress + std::chrono::milliseconds(c.session.timeout_ms());
    // Closed, with a last QUIT (after a 554 greeting) that the peer does not take.
    if (!c.session.want_read()) return c.last_progress + settings_.command_timeout;
    std::optional<Clock::time_point> best;
    if (const std::uint32_t ms = c.session.timeout_ms(); ms != 0)
        earliest(best, c.last_progress + std::chrono::milliseconds(ms));
    if (c.idle()) earliest(best, slots_wanted() ? c.idle_since : c.idle_since + settings_.idle_timeout);
    return best;
}

void DeliveryThread::Loop::service_timers(Clock::time_point now) {
    for (auto& cp : connections_) {
        Connection& c = *cp;
        const std::optional<Clock::time_point> due = deadline(c);
        if (!due || now < *due) continue;
        if (c.connecting) {
            connect_failed(c, fmt::format("timed out after {}s", settings_.connect_timeout.count()));
            continue;
        }
        if (c.handshaking) {
            handshake_failed(c, fmt::format("timed out after {}s", settings_.command_timeout.count()));
            pump(c, now);
            continue;
        }
        if (!c.session.want_read()) {
            c.closing = true;
            continue;
        }
        const std::uint32_t ms = c.session.timeout_ms();
        // RFC 5321 §4.5.3.2: the server took too long for the reply awaited.
        if (ms != 0 && now >= c.last_progress + std::chrono::milliseconds(ms)) c.session.timeout();
        pump(c, now);  // the timeout's events, or QUIT for an idle session
    }
}

// Until no connection is over: the sweep, then waiting jobs onto the slots it freed.
// Ends: a connection that fails at once took every waiting job of its endpoint.
void DeliveryThread::Loop::settle(Clock::time_point now) {
    for (;;) {
        sweep();
        start_waiting(now);
        if (std::none_of(connections_.begin(), connections_.end(), [](const auto& c) { return c->over(); }))
            return;
    }
}

// Closes connections that are over and answers the jobs left on them.
void DeliveryThread::Loop::sweep() {
    bool any = false;
    for (auto& cp : connections_) {
        Connection& c = *cp;
        if (!c.over()) continue;
        close_connection(c);
        cp.reset();
        any = true;
    }
    if (any) std::erase(connections_, nullptr);
}

void DeliveryThread::Loop::close_connection(Connection& c) {
    std::string reason = !c.close_reason.empty() ? c.close_reason
                         : !c.failure.empty()    ? c.failure
                                                 : fmt::format("{}: connection closed", c.relay);
    std::vector<Job> requeue;
    for (Active& a : c.jobs) {
        // Our own failure (content unreadable) says nothing about the endpoint: the
        // jobs behind it take its next connection.
        if (c.aborted && a.message == 0 && mode_ == Mode::running)
            requeue.push_back(std::move(a.job));
        else
            post_not_connected(a.job, reason);
    }
    c.jobs.clear();
    waiting_.insert(waiting_.begin(), std::make_move_iterator(requeue.begin()),
                    std::make_move_iterator(requeue.end()));
    if (c.tls) {
        // RFC 8446 §6.1 / RFC 3207: end TLS with close_notify, so the server can tell
        // the end from a truncation; one attempt, never waiting for its answer.
        if (c.tls_up && !c.tls_broken) c.tls->shutdown();
        c.tls.reset();  // the SSL object goes before the descriptor it uses
    }
    if (!c.socket) return;  // never connected: connect_failed() logged it
    if (const std::error_code ec = c.socket.close())
        log_.debug("delivery thread {}: close {}: {}", index_, c.relay, ec.message());
    log_.debug("delivery thread {}: disconnected from {}", index_, c.relay);
}

// ---------------------------------------------------------------- pselect

int DeliveryThread::Loop::fill_sets(fd_set& read_set, fd_set& write_set,
                                    std::optional<Clock::time_point>& wake) const {
    FD_ZERO(&read_set);
    FD_ZERO(&write_set);
    int max_fd = -1;
    const auto add = [&max_fd](int fd, fd_set& set) {
        if (fd < 0 || fd >= FD_SETSIZE) return;  // checked when opened; never past the set
        FD_SET(fd, &set);
        max_fd = std::max(max_fd, fd);
    };
    add(inbox_.wake_fd(), read_set);
    add(control_.wake_fd(), read_set);
    for (const auto& cp : connections_) {
        const Connection& c = *cp;
        if (c.closing) continue;
        if (const auto due = deadline(c)) earliest(wake, *due);
        if (c.connecting) {
            add(c.socket.get(), write_set);
            continue;
        }
        if (c.handshaking) {
            add(c.socket.get(), c.handshake_wants_write ? write_set : read_set);
            continue;
        }
        // Each direction waits for what its last TLS call asked (plaintext: its own).
        if (c.session.want_read()) add(c.socket.get(), c.read_needs_write ? write_set : read_set);
        if (c.session.want_write()) add(c.socket.get(), c.write_needs_read ? read_set : write_set);
        // Input already inside OpenSSL: pselect() must not wait for the socket.
        if (c.buffered_input()) earliest(wake, Clock::time_point{});
    }
    return max_fd;
}

void DeliveryThread::Loop::serve(const fd_set& read_set, const fd_set& write_set, Clock::time_point now) {
    for (auto& cp : connections_) {
        Connection& c = *cp;
        if (c.closing || !c.socket) continue;
        const int fd = c.socket.get();
        if (c.connecting) {
            if (FD_ISSET(fd, &write_set)) finish_connect(c, now);
            continue;
        }
        const bool readable = FD_ISSET(fd, &read_set);
        const bool writable = FD_ISSET(fd, &write_set);
        if (c.handshaking) {
            if (readable || writable) {
                continue_handshake(c, now);
                pump(c, now);  // EHLO over TLS, or the failure's events
            }
            continue;
        }
        // A TLS read that asked for writability is retried when the socket is writable;
        // input inside OpenSSL is read whatever the socket says.
        const bool buffered = c.buffered_input();
        const bool read_now = readable || buffered || (writable && c.tls && c.read_needs_write);
        // Replies first: a 421 is worth more than the EPIPE a write would get.
        if (read_now) read_from(c, now);
        if (read_now || writable) pump(c, now);
    }
}

// Plaintext: one recv(). TLS: until the Stream wants the socket (within a bound per
// turn; buffered_input() brings the loop back for the rest).
void DeliveryThread::Loop::read_from(Connection& c, Clock::time_point now) {
    tls::Stream* tls = c.tls_up ? &*c.tls : nullptr;
    const int reads = tls != nullptr ? max_tls_reads_per_turn : 1;
    for (int i = 0; i < reads && c.session.want_read(); ++i) {
        const IoResult r = transport_read(c.socket.get(), tls, read_buffer_.data(), read_buffer_.size());
        c.read_needs_write = r.status == IoResult::Status::would_block && r.needs_other;
        switch (r.status) {
            case IoResult::Status::done:
                c.last_progress = now;
                c.session.feed(std::string_view(read_buffer_.data(), r.bytes));
                continue;
            case IoResult::Status::would_block:
                return;
            case IoResult::Status::closed:
                c.tls_broken = tls != nullptr;
                c.session.peer_closed();
                return;
            case IoResult::Status::error:
                c.tls_broken = tls != nullptr;
                log_.debug("delivery thread {}: read from {}: {}", index_, c.relay, io_error(c, r));
                c.session.peer_closed();
                return;
        }
    }
}

std::string DeliveryThread::Loop::io_error(const Connection& c, const IoResult& r) const {
    if (r.error != 0 || !c.tls) return errno_text(r.error);
    return c.tls->error().empty() ? std::string("TLS error") : c.tls->error();
}

// ---------------------------------------------------------------- one connection

// Until nothing moves: events, the next job, QUIT when idle, the body, writes.
void DeliveryThread::Loop::pump(Connection& c, Clock::time_point now) {
    if (c.closing || c.connecting) return;
    for (;;) {
        bool progress = false;
        while (const auto event = c.session.next_event()) {
            on_event(c, *event, now);
            progress = true;
        }
        if (submit_next(c, now)) progress = true;
        if (maybe_quit(c, now)) progress = true;
        if (fill_body(c)) progress = true;
        if (flush(c, now)) progress = true;
        if (!progress) return;
    }
}

// Submits the front job if it is not yet; one whose content is gone is finished at
// once, without a word to the server.
bool DeliveryThread::Loop::submit_next(Connection& c, Clock::time_point now) {
    if (c.jobs.empty() || c.jobs.front().message != 0 || c.failed || c.quitting || !c.session.want_read())
        return false;
    Active& a = c.jobs.front();
    Fd content;
    if (const std::error_code ec = queue_.open_content(a.job.message_id, content)) {
        log_.warning("{}: cannot open the content: {}", queue::short_id(a.job.message_id), ec.message());
        finish_locally(a.job, fmt::format("451 4.3.0 Message content unavailable: {}", ec.message()));
        c.jobs.pop_front();
        if (c.jobs.empty()) c.idle_since = now;
        return true;
    }
    // Opened again when the body is asked for: an idle wait holds no descriptor.
    static_cast<void>(content.close());
    a.message = c.session.submit(a.job.message);
    c.last_progress = now;  // a new wait begins
    return true;
}

bool DeliveryThread::Loop::maybe_quit(Connection& c, Clock::time_point now) {
    if (!c.idle()) return false;
    if (mode_ == Mode::running && !slots_wanted() && now < c.idle_since + settings_.idle_timeout)
        return false;
    c.quitting = true;
    c.session.quit();
    c.last_progress = now;
    return true;
}

// After need_body: the next chunk of the content, while the output is small.
bool DeliveryThread::Loop::fill_body(Connection& c) {
    if (!c.writing_body || c.session.pending_output().size() >= output_high_water) return false;
    const std::string& id = c.jobs.front().job.message_id;
    if (!c.content) {
        if (const std::error_code ec = queue_.open_content(id, c.content)) {
            abort(c, fmt::format("451 4.3.0 Message content unavailable: {}", ec.message()));
            return true;
        }
    }
    ssize_t n;
    do {
        n = ::read(c.content.get(), content_buffer_.data(), content_buffer_.size());
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        abort(c, fmt::format("451 4.3.0 Message content unreadable: {}", errno_text(errno)));
        return true;
    }
    if (n > 0) {
        c.session.write_body(std::string_view(content_buffer_.data(), static_cast<std::size_t>(n)));
        return true;
    }
    c.session.end_body();
    c.writing_body = false;
    static_cast<void>(c.content.close());
    return true;
}

// Writes what the session has. Returns true if anything changed.
bool DeliveryThread::Loop::flush(Connection& c, Clock::time_point now) {
    const std::string_view out = c.session.pending_output();
    if (out.empty() || !c.socket) return false;
    // More body is coming: gather it, so the last bytes and the dot do not go out as
    // a small segment of their own that Nagle holds back until the server's delayed
    // ACK (40 ms per message).
    if (c.writing_body && out.size() < output_high_water) return false;
    const IoResult r = transport_write(c.socket.get(), c.tls_up ? &*c.tls : nullptr, out);
    c.write_needs_read = r.status == IoResult::Status::would_block && r.needs_other;
    switch (r.status) {
        case IoResult::Status::done:
            if (r.bytes == 0) return false;
            note_written(c, out.substr(0, r.bytes));
            c.session.consume_output(r.bytes);
            c.last_progress = now;
            if (!c.writing_body && c.session.pending_output().empty()) {
                // The final dot is out: what follows are command lines again.
                c.body_in_output = false;
                c.at_line_start = true;
            }
            return true;
        case IoResult::Status::would_block:
            return false;
        case IoResult::Status::closed:
        case IoResult::Status::error:
            c.tls_broken = c.tls_up;
            log_.debug("delivery thread {}: write to {}: {}", index_, c.relay, io_error(c, r));
            if (c.session.want_read())
                c.session.peer_closed();  // drops the output; its events follow
            else
                c.session.consume_output(out.size());  // closed already (a QUIT after 554): drop it
            return true;
    }
    return false;
}

// Marks the front job started when a MAIL line goes out (see the file comment).
void DeliveryThread::Loop::note_written(Connection& c, std::string_view bytes) {
    if (c.body_in_output) return;
    for (const char ch : bytes) {
        if (c.at_line_start && ch == 'M' && !c.jobs.empty() && c.jobs.front().message != 0)
            c.jobs.front().started = true;
        c.at_line_start = ch == '\n';
    }
}

// The body cannot be completed: the only way out of DATA that delivers nothing is to
// drop the connection. The started job gets `reply`; the others wait for the next one.
void DeliveryThread::Loop::abort(Connection& c, std::string reply) {
    log_.warning("{}: {}; closing the connection to {}", queue::short_id(c.jobs.front().job.message_id),
                 reply, c.relay);
    c.aborted = true;
    c.abort_reply = std::move(reply);
    c.writing_body = false;
    static_cast<void>(c.content.close());
    c.session.peer_closed();
}

// ---------------------------------------------------------------- STARTTLS

// After STARTTLS's 220: the client side of the handshake on the connection's socket,
// for the endpoint's host (SNI and, for verify, the name the certificate must have).
void DeliveryThread::Loop::start_tls(Connection& c, Clock::time_point now) {
    if (!resolved_.tls_context) {
        handshake_failed(c, "TLS is not configured");
        return;
    }
    c.tls.emplace(tls::Stream::connect(*resolved_.tls_context, c.socket.get(), c.key.endpoint.host,
                                       c.key.tls == TlsLevel::verify));
    c.handshaking = true;
    c.handshake_wants_write = false;
    c.last_progress = now;  // the handshake's wait starts now
    continue_handshake(c, now);
}

void DeliveryThread::Loop::continue_handshake(Connection& c, Clock::time_point now) {
    const tls::Stream::Result r = c.tls->handshake();
    switch (r.status) {
        case tls::Stream::Status::want_read:
            c.handshake_wants_write = false;
            return;
        case tls::Stream::Status::want_write:
            c.handshake_wants_write = true;
            return;
        case tls::Stream::Status::done:
            break;
        case tls::Stream::Status::closed:
        case tls::Stream::Status::failed: {
            std::string why =
                c.tls->error().empty() ? std::string("the server closed the connection") : c.tls->error();
            // Why the certificate did not verify ("self-signed certificate", "hostname
            // mismatch"), when OpenSSL's own text does not say it already.
            if (const std::string verify = c.tls->verify_error();
                !verify.empty() && why.find(verify) == std::string::npos)
                why = fmt::format("{}: {}", why, verify);
            handshake_failed(c, why);
            return;
        }
    }
    c.handshaking = false;
    c.tls_up = true;
    c.last_progress = now;
    // Postfix's line, so that admins' greps work: "Verified" only when the chain and
    // the name checked out (always so at level verify).
    log_.info("{} TLS connection established to {}: {} with cipher {} ({}/{} bits)",
              c.tls->verified() ? "Verified" : "Untrusted", c.relay, c.tls->protocol(), c.tls->cipher(),
              c.tls->cipher_bits(), c.tls->cipher_bits());
    if (!c.tls->verified())
        log_.debug("{}: certificate not verified: {}", c.relay,
                   c.tls->verify_error().empty() ? std::string("no reason given") : c.tls->verify_error());
    static_cast<void>(c.session.tls_started());
}

// The handshake did not finish: a temporary failure of this endpoint (451 4.7.5),
// never a retry in plaintext. The session fails; its events follow in pump().
void DeliveryThread::Loop::handshake_failed(Connection& c, std::string_view why) {
    log_.info("TLS handshake with {} failed: {}", c.relay, why);
    c.handshaking = false;
    static_cast<void>(c.session.tls_failed(why));
}

void DeliveryThread::Loop::on_event(Connection& c, const ClientEvent& event, Clock::time_point now) {
    using Kind = ClientEvent::Kind;
    switch (event.kind) {
        case Kind::ready:
            c.ready = true;
            if (c.jobs.empty()) c.idle_since = now;
            break;
        case Kind::need_body:
            c.writing_body = true;
            c.body_in_output = true;
            break;
        case Kind::recipient_result: {
            if (c.jobs.empty() || c.jobs.front().message != event.message) break;
            Active& a = c.jobs.front();
            a.results.push_back(RecipientResult{event.recipient, event.outcome, one_line(event.reply)});
            break;
        }
        case Kind::message_result: {
            if (c.jobs.empty() || c.jobs.front().message != event.message) break;
            Active& a = c.jobs.front();
            if (c.failed && !a.started) {
                // Nothing of it reached the server: try the next endpoint.
                post_not_connected(a.job, c.failure);
            } else {
                if (c.aborted)
                    for (RecipientResult& r : a.results)
                        if (r.outcome == Outcome::temporary) r.reply = c.abort_reply;
                post_finished(a, c);
            }
            c.jobs.pop_front();
            c.writing_body = false;
            static_cast<void>(c.content.close());
            if (c.jobs.empty()) c.idle_since = now;
            break;
        }
        case Kind::failed: {
            c.failed = true;
            const std::string reply = one_line(event.reply);
            c.failure = fmt::format("{}: {}", c.relay, reply);
            // A server dropping an idle session is no news; one failing our mail is.
            if (c.jobs.empty())
                log_.debug("{}: connection failed ({}): {}", c.relay, failure_name(event.failure), reply);
            else if (!c.aborted)
                log_.info("{}: connection failed ({}): {}", c.relay, failure_name(event.failure), reply);
            break;
        }
        case Kind::tls_begin:
            start_tls(c, now);
            break;
        case Kind::closed:
            break;
    }
}

// ---------------------------------------------------------------- results

void DeliveryThread::Loop::log_recipients(const Job& job, const std::vector<RecipientResult>& list,
                                          std::string_view relay) {
    const std::string sid = queue::short_id(job.message_id);
    const double delay = std::max(0.0, wall_seconds() - static_cast<double>(job.arrival));
    for (const RecipientResult& r : list) {
        const std::string_view rcpt =
            r.index < job.message.recipients.size() ? std::string_view(job.message.recipients[r.index]) : "?";
        log_.info("{}: to=<{}>, relay={}, delay={:.1f}, attempts={}, status={} ({})", sid, rcpt, relay, delay,
                  job.attempts, status_name(r.outcome), r.reply);
    }
}

// Logs with job-local indexes, then maps them to the envelope's.
void DeliveryThread::Loop::post_finished(Active& a, const Connection& c) {
    log_recipients(a.job, a.results, c.relay);
    JobResult result;
    result.job_id = a.job.id;
    result.message_id = a.job.message_id;
    result.kind = JobResult::Kind::finished;
    result.recipients = std::move(a.results);
    for (RecipientResult& r : result.recipients)
        if (r.index < a.job.recipient_indexes.size()) r.index = a.job.recipient_indexes[r.index];
    result.endpoint = a.job.endpoint;
    results_.post(std::move(result));
}

// Every recipient of `job` fails temporarily with `reply`; nothing was sent.
void DeliveryThread::Loop::finish_locally(const Job& job, std::string_view reply) {
    JobResult result;
    result.job_id = job.id;
    result.message_id = job.message_id;
    result.kind = JobResult::Kind::finished;
    for (std::size_t i = 0; i < job.message.recipients.size(); ++i)
        result.recipients.push_back(RecipientResult{i, Outcome::temporary, std::string(reply)});
    log_recipients(job, result.recipients, job.endpoint.to_string());
    for (RecipientResult& r : result.recipients)
        if (r.index < job.recipient_indexes.size()) r.index = job.recipient_indexes[r.index];
    result.endpoint = job.endpoint;
    results_.post(std::move(result));
}

void DeliveryThread::Loop::post_not_connected(Job& job, std::string_view error) {
    JobResult result;
    result.job_id = job.id;
    result.message_id = std::move(job.message_id);
    result.kind = JobResult::Kind::not_connected;
    result.error = std::string(error);
    result.endpoint = std::move(job.endpoint);
    results_.post(std::move(result));
}

// ---------------------------------------------------------------- DeliveryThread

DeliveryThread::DeliveryThread(const Settings& settings, const Resolved& resolved, const queue::Queue& queue,
                               Logger& log, Mailbox<JobResult>& results, unsigned index)
    : loop_(std::make_unique<Loop>(settings, resolved, queue, log, results, index)) {}

DeliveryThread::~DeliveryThread() {
    stop(true);
    join();
}

std::error_code DeliveryThread::start() {
    if (thread_.joinable()) return std::make_error_code(std::errc::operation_in_progress);
    if (const std::error_code ec = loop_->inbox_.open()) return ec;
    if (const std::error_code ec = loop_->control_.open()) return ec;
    if (loop_->inbox_.wake_fd() >= FD_SETSIZE || loop_->control_.wake_fd() >= FD_SETSIZE)
        return std::make_error_code(std::errc::too_many_files_open);
    // The thread starts with every signal blocked: no moment where a handler could
    // run on it.
    sigset_t all;
    sigset_t old;
    sigfillset(&all);
    if (const int err = ::pthread_sigmask(SIG_SETMASK, &all, &old); err != 0)
        return {err, std::system_category()};
    std::error_code result;
    try {
        thread_ = std::thread([loop = loop_.get()] { loop->run(); });
    } catch (const std::system_error& e) {
        result = e.code();
    }
    if (const int err = ::pthread_sigmask(SIG_SETMASK, &old, nullptr); err != 0 && !result)
        result = {err, std::system_category()};
    return result;
}

void DeliveryThread::post(Job job) { loop_->post(std::move(job)); }

void DeliveryThread::stop(bool now) { loop_->request_stop(now); }

void DeliveryThread::join() {
    if (thread_.joinable()) thread_.join();
}

}  // namespace smtp::smtpc
