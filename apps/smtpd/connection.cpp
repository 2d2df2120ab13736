// apps/smtpd/connection.cpp: one client connection of an smtpd worker (see
// connection.hpp): reading, writing, deadlines, and the verdict for each event of the
// ServerSession.
//
// Every event is drained as soon as it can be: after each feed(), each verdict and each
// write that made room in the session's output. Event views are used before the verdict
// that ends them; what outlives it (sender, recipients) is copied.
//
// TLS (RFC 3207): tls_phase_ says who touches the socket. Plaintext recv()/send() in
// `off` (and send() of the 220 in `pending`); nothing is read in `pending`; only the
// Stream from `handshaking` on. Thread safety: one worker thread, like the Connection.
#include "connection.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <limits>
#include <utility>

#include <fmt/format.h>

namespace smtp::smtpd {
namespace {

using std::chrono::milliseconds;
using Kind = ServerEvent::Kind;

// A client we gave up on (timeout) gets this long, at most, to take our 421.
constexpr milliseconds closing_linger{5000};

// The keys of the disconnect line, indexed like Connection::Counted.
constexpr std::array<std::string_view, 9> counted_names = {"helo", "ehlo", "starttls", "mail",  "rcpt",
                                                           "data", "rset", "quit",     "errors"};

using TlsStatus = tls::Stream::Status;

std::uint32_t to_ms(std::chrono::seconds s) {
    // 0 would mean "no timeout" to the session; a configured timeout always applies.
    const auto ms = std::chrono::duration_cast<milliseconds>(s).count();
    return static_cast<std::uint32_t>(
        std::clamp<long long>(ms, 1, std::numeric_limits<std::uint32_t>::max()));
}

// "5.7.1", or "" when there is none, as the reply shows it.
std::string status_text(EnhancedStatus s) {
    if (!s.present()) return {};
    return fmt::format("{}.{}.{}", s.klass, s.subject, s.detail);
}

std::string errno_text(int error_number) {
    return std::error_code(error_number, std::system_category()).message();
}

}  // namespace

ServerConfig make_server_config(const Settings& settings, const Resolved& resolved, bool may_relay) {
    ServerConfig config;
    config.hostname = resolved.hostname;
    config.limits.message_size = settings.max_message_size;
    config.max_recipients = settings.max_recipients;
    config.max_errors = settings.max_errors;
    config.command_timeout_ms = to_ms(settings.timeout);
    config.data_timeout_ms = to_ms(settings.data_timeout);
    // Other extensions: the defaults (DSN off: smtpd keeps no DSN promises).
    config.extensions.starttls = resolved.tls != nullptr;
    // RFC 3207 §4: a publicly-referenced server "MUST NOT require use of the STARTTLS
    // extension in order to deliver mail locally": only clients that may relay.
    config.require_tls = config.extensions.starttls && settings.require_tls && may_relay;
    return config;
}

Connection::Connection(std::uint64_t id, Fd socket, const IpAddress& peer, const ConnectionContext& context)
    : id_(id),
      socket_(std::move(socket)),
      peer_(peer.unmapped()),
      context_(&context),
      may_relay_(context.policy->may_relay(peer_)),
      session_(make_server_config(*context.settings, *context.resolved, may_relay_)),
      transaction_(*context.mail_root, *context.queue, context.resolved->hostname),
      address_(peer_.to_string()) {}

Connection::~Connection() { close_now(); }

// ------------------------------------------------------------------ lifecycle

void Connection::start(bool wait_for_rdns, Clock::time_point now) {
    rdns_pending_ = wait_for_rdns;
    if (!wait_for_rdns) log_connect();
    last_progress_ = now;
    advance(now);
}

void Connection::on_reverse(const ReverseResult& result, Clock::time_point now) {
    lookup_ = 0;
    if (closed_) return;
    rdns_pending_ = false;
    rdns_ = result.status;
    if (result.status == ReverseResult::Status::confirmed) name_ = result.name;
    log_connect();
    last_progress_ = now;
    if (connect_pending_) give_connect_verdict();
    advance(now);
}

void Connection::log_connect() {
    context_->log->info("connect from {}[{}] rdns={}", client_name(), address_,
                        rdns_ ? reverse_status_name(*rdns_) : std::string_view("off"));
}

void Connection::shutdown(Clock::time_point now) {
    if (closed_) return;
    ending_ = true;
    session_.shutdown();  // 421 4.3.2 (RFC 5321 §3.8)
    advance(now);         // the closing event aborts the transaction; the 421 goes out if it can
    close_now();
}

// ------------------------------------------------------------------ the socket

void Connection::on_readable(std::span<char> buffer, Clock::time_point now) {
    if (closed_) return;
    switch (tls_phase_) {
        case TlsPhase::off:
            break;
        case TlsPhase::pending:
            // Never: the session wants no input until the handshake (CVE-2011-0411:
            // a byte read now would be plaintext, and the handshake's bytes are not ours).
            return;
        case TlsPhase::handshaking:
            continue_handshake(now);
            if (!closed_) advance(now);
            return;
        case TlsPhase::on:
            // Readable may also be what a TLS write waited for: advance() retries it.
            read_tls(buffer, now);
            if (!closed_) advance(now);
            return;
    }
    // Never more than the session takes: nothing waits outside it, and a client
    // that floods us is held back by TCP, not by our memory.
    const std::size_t room = std::min(session_.input_room(), buffer.size());
    if (room == 0) return;
    const ssize_t n = ::recv(socket_.get(), buffer.data(), room, MSG_DONTWAIT);
    if (n > 0) {
        static_cast<void>(session_.feed(std::string_view(buffer.data(), static_cast<std::size_t>(n))));
        last_progress_ = now;
        advance(now);
        return;
    }
    if (n == 0) return lose(0);  // EOF without QUIT (after QUIT we no longer read)
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    lose(errno);  // ECONNRESET, ETIMEDOUT...
}

void Connection::on_writable(std::span<char> buffer, Clock::time_point now) {
    if (closed_) return;
    if (tls_phase_ == TlsPhase::handshaking) continue_handshake(now);
    // A TLS read that asked for a writable socket (a key update, renegotiation).
    if (!closed_ && tls_phase_ == TlsPhase::on && read_wants_ == TlsStatus::want_write) read_tls(buffer, now);
    if (!closed_) advance(now);  // flushes, then lets the session go on with the room made
}

bool Connection::wants_read() const noexcept {
    if (closed_) return false;
    switch (tls_phase_) {
        case TlsPhase::off:
            return session_.want_read();
        case TlsPhase::pending:
            return false;  // nothing is read between STARTTLS and the handshake
        case TlsPhase::handshaking:
            return handshake_wants_ == TlsStatus::want_read;
        case TlsPhase::on:
            return (session_.want_read() && read_wants_ != TlsStatus::want_write) ||
                   (session_.want_write() && write_wants_ == TlsStatus::want_read);
    }
    return false;
}

bool Connection::wants_write() const noexcept {
    if (closed_) return false;
    switch (tls_phase_) {
        case TlsPhase::off:
        case TlsPhase::pending:
            return session_.want_write();
        case TlsPhase::handshaking:
            return handshake_wants_ == TlsStatus::want_write;
        case TlsPhase::on:
            return (session_.want_write() && write_wants_ != TlsStatus::want_read) ||
                   (session_.want_read() && read_wants_ == TlsStatus::want_write);
    }
    return false;
}

bool Connection::has_ready_input() const noexcept {
    // Only after a read that got data: a read that asked to wait means what OpenSSL
    // holds is no complete record yet, and select() must wait for the rest (else the
    // worker would spin).
    return !closed_ && tls_phase_ == TlsPhase::on && read_wants_ == TlsStatus::done && session_.want_read() &&
           session_.input_room() > 0 && tls_->has_buffered_input();
}

// ------------------------------------------------------------------ TLS

// RFC 3207 §4: the 220 went out in plaintext; from here on the Stream owns the socket.
void Connection::start_handshake(Clock::time_point now) {
    tls_.emplace(tls::Stream::accept(*context_->resolved->tls, socket_.get()));
    tls_phase_ = TlsPhase::handshaking;
    handshake_wants_ = TlsStatus::want_read;
    // The client may have sent its ClientHello already: no need to wait for select().
    continue_handshake(now);
}

void Connection::continue_handshake(Clock::time_point now) {
    const tls::Stream::Result r = tls_->handshake();
    switch (r.status) {
        case TlsStatus::want_read:
        case TlsStatus::want_write:
            handshake_wants_ = r.status;
            return;
        case TlsStatus::closed:
        case TlsStatus::failed: {
            // Nothing can be said any more: a plaintext reply would be read as TLS.
            tls_broken_ = true;
            const std::string& why = tls_->error();
            context_->log->info("TLS handshake failed from {}[{}]: {}", client_name(), address_,
                                why.empty() ? std::string_view("connection closed") : std::string_view(why));
            return close_now();
        }
        case TlsStatus::done:
            break;
    }
    tls_phase_ = TlsPhase::on;
    read_wants_ = write_wants_ = TlsStatus::done;
    // Postfix's wording (without "Anonymous": smtpd asks for no client certificate).
    const int bits = tls_->cipher_bits();
    tls_summary_ =
        fmt::format("{} with cipher {} ({}/{} bits)", tls_->protocol(), tls_->cipher(), bits, bits);
    context_->log->info("TLS connection established from {}[{}]: {}", client_name(), address_, tls_summary_);
    check(session_.tls_started(), "TLS");
    last_progress_ = now;  // the wait for the new EHLO starts now
}

// One decrypted read into the session, when it has room.
void Connection::read_tls(std::span<char> buffer, Clock::time_point now) {
    const std::size_t room = std::min(session_.input_room(), buffer.size());
    if (room == 0 || !session_.want_read()) return;
    const tls::Stream::Result r = tls_->read(buffer.first(room));
    switch (r.status) {
        case TlsStatus::done:
            read_wants_ = TlsStatus::done;
            static_cast<void>(session_.feed(std::string_view(buffer.data(), r.bytes)));
            last_progress_ = now;
            return;
        case TlsStatus::want_read:
        case TlsStatus::want_write:
            read_wants_ = r.status;
            return;
        case TlsStatus::closed:
            return lose(0);  // EOF or close_notify without QUIT
        case TlsStatus::failed:
            tls_broken_ = true;
            return lose(std::string_view(tls_->error()));
    }
}

// Sends pending output until the socket would block. Returns true if anything went.
bool Connection::flush(Clock::time_point now) {
    // The session has nothing to say during the handshake (it closes silently then).
    if (tls_phase_ == TlsPhase::handshaking) return false;
    bool sent = false;
    while (!closed_ && session_.want_write()) {
        const std::size_t n = send_some(session_.pending_output());
        if (n == 0) break;  // would block, or lost
        session_.consume_output(n);
        sent = true;
    }
    if (closed_) return sent;
    // The write timeout runs from the last moment output moved.
    if (!session_.want_write())
        stalled_since_.reset();
    else if (sent || !stalled_since_)
        stalled_since_ = now;
    if (sent) last_progress_ = now;
    return sent;
}

// Sends a prefix of `out` (not empty): its length, or 0 when the socket would block or
// the connection was lost (closed_ then).
std::size_t Connection::send_some(std::string_view out) {
    if (tls_phase_ == TlsPhase::on) {
        const tls::Stream::Result r = tls_->write(out);
        switch (r.status) {
            case TlsStatus::done:
                write_wants_ = TlsStatus::done;
                return r.bytes;
            case TlsStatus::want_read:
            case TlsStatus::want_write:
                write_wants_ = r.status;  // the same bytes are offered again then
                return 0;
            case TlsStatus::closed:
            case TlsStatus::failed:
                tls_broken_ = true;
                lose(std::string_view(tls_->error()));
                return 0;
        }
        return 0;
    }
    for (;;) {
        const ssize_t n = ::send(socket_.get(), out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) return static_cast<std::size_t>(n);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        lose(n < 0 ? errno : EPIPE);  // EPIPE, ECONNRESET: the peer is gone
        return 0;
    }
}

// The peer is gone (error_number 0: it closed): whatever was in progress is lost.
void Connection::lose(int error_number) {
    if (error_number == 0) return lose(std::string_view());
    const std::string why = errno_text(error_number);
    lose(std::string_view(why));
}

void Connection::lose(std::string_view why) {
    if (why.empty())
        context_->log->info("lost connection after {} from {}[{}]", stage_, client_name(), address_);
    else
        context_->log->info("lost connection after {} from {}[{}]: {}", stage_, client_name(), address_, why);
    close_now();
}

void Connection::close_now() {
    if (closed_) return;
    closed_ = true;
    end_transaction();
    if (tls_) {
        // RFC 8446 §6.1: close_notify, one attempt, never waiting for the peer's.
        if (tls_phase_ == TlsPhase::on && !tls_broken_) tls_->shutdown();
        tls_.reset();
    }
    // close(2) of a socket: an error leaves nothing to undo, and the fd is gone anyway.
    static_cast<void>(socket_.close());
    context_->log->info("disconnect from {}[{}]{}", client_name(), address_, counts_text());
}

// ------------------------------------------------------------------ deadlines

std::optional<Clock::time_point> Connection::read_deadline() const noexcept {
    const std::uint32_t ms = session_.timeout_ms();
    if (closed_ || ms == 0) return std::nullopt;
    return last_progress_ + milliseconds(ms);
}

std::optional<Clock::time_point> Connection::write_deadline() const noexcept {
    if (closed_ || !stalled_since_) return std::nullopt;
    return *stalled_since_ + context_->settings->timeout;
}

std::optional<Clock::time_point> Connection::deadline() const noexcept {
    if (closed_) return std::nullopt;
    std::optional<Clock::time_point> earliest;
    for (const auto& t : {read_deadline(), write_deadline(), linger_until_})
        if (t && (!earliest || *t < *earliest)) earliest = t;
    return earliest;
}

void Connection::on_timer(Clock::time_point now) {
    if (closed_) return;
    if (linger_until_ && now >= *linger_until_) return close_now();  // it never took its 421
    if (const auto w = write_deadline(); w && now >= *w) {
        // It does not read our replies: the 421 goes out only if the socket takes it now.
        context_->log->info("timeout after {} from {}[{}]", stage_, client_name(), address_);
        ending_ = true;
        session_.timeout();
        static_cast<void>(run_events());
        static_cast<void>(flush(now));
        return close_now();
    }
    if (const auto r = read_deadline(); r && now >= *r) time_out(now);
}

// RFC 5321 §4.5.3.2: the client was silent too long. 421 4.4.2, then close.
void Connection::time_out(Clock::time_point now) {
    context_->log->info("timeout after {} from {}[{}]", stage_, client_name(), address_);
    ending_ = true;
    session_.timeout();
    advance(now);
    if (!closed_) linger_until_ = now + std::min<milliseconds>(closing_linger, context_->settings->timeout);
}

// ------------------------------------------------------------------ events

// Moves the conversation as far as it goes now: events and their verdicts, output,
// and again while writing made room for the session to go on.
void Connection::advance(Clock::time_point now) {
    for (bool progress = true; progress && !closed_;) {
        progress = run_events();
        if (progress) last_progress_ = now;
        if (!closed_ && flush(now)) progress = true;
        // RFC 3207 §4: the 220 has gone out in plaintext; the handshake follows,
        // unless the session ended meanwhile (a shutdown closes it without a reply).
        if (!closed_ && tls_phase_ == TlsPhase::pending && !session_.want_write() &&
            !session_.should_close()) {
            start_handshake(now);
            progress = tls_phase_ == TlsPhase::on;
        }
    }
    if (!closed_ && session_.should_close()) close_now();
}

bool Connection::run_events() {
    bool any = false;
    while (!closed_) {
        const std::optional<ServerEvent> event = session_.next_event();
        if (!event) break;
        any = true;
        on_event(*event);
    }
    return any;
}

void Connection::on_event(const ServerEvent& event) {
    switch (event.kind) {
        case Kind::connect:
            connect_pending_ = true;
            if (!rdns_pending_) give_connect_verdict();
            break;
        case Kind::hello:
            on_hello(event);
            break;
        case Kind::mail_from:
            on_mail_from(event);
            break;
        case Kind::rcpt_to:
            on_rcpt_to(event);
            break;
        case Kind::data_begin:
            on_data_begin();
            break;
        case Kind::data_chunk:
            // After a failed open() the data is read and dropped; the error is
            // answered after the final dot (RFC 5321 §4.1.1.4: one reply per DATA).
            if (in_data_ && !open_error_) transaction_.write(event.data);
            break;
        case Kind::message_end:
            on_message_end(event);
            break;
        case Kind::reset:
            // An accepted new HELO/EHLO ends the transaction too; it was counted as such.
            if (!last_was_hello_) {
                ++counts_[rset];
                stage_ = "RSET";
            }
            end_transaction();
            break;
        case Kind::quit:
            ++counts_[quit];
            stage_ = "QUIT";
            end_transaction();
            break;
        case Kind::protocol_error:
            // A refused command leaves the transaction as it was (RFC 5321 §4.1.4);
            // when the session ends it, a message_end, reset or closing event follows.
            ++counts_[error];
            if (event.error == Errc::pregreet)
                context_->log->info("reject: pregreet from {}[{}]", client_name(), address_);
            break;
        case Kind::tls_begin:
            ++counts_[starttls];
            stage_ = "STARTTLS";
            end_transaction();  // none can be open (503 then), and the session forgets it anyway
            // STARTTLS is offered only with a context; without one no handshake can follow.
            if (!context_->resolved->tls) {
                close_now();
                break;
            }
            tls_phase_ = TlsPhase::pending;  // advance() sends the 220, then starts the handshake
            break;
        case Kind::closing:
            end_transaction();
            if (event.reply_code == 421 && !ending_)
                context_->log->info("too many errors after {} from {}[{}]", stage_, client_name(), address_);
            break;
    }
    last_was_hello_ = event.kind == Kind::hello;
}

void Connection::give_connect_verdict() {
    connect_pending_ = false;
    const bool confirmed = rdns_ == ReverseResult::Status::confirmed;
    // Without a lookup (rdns off) there is nothing to judge the client by.
    if (context_->settings->reject_unknown_client && rdns_ && !confirmed) {
        // RFC 7372 §3.3: 4.7.25 "Reverse DNS validation failed". 450, not 550: a
        // DNS answer can be temporary, and a real MTA retries.
        const std::string text =
            fmt::format("Client host rejected: cannot find your hostname, [{}]", address_);
        context_->log->info("NOQUEUE: reject: CONNECT from {}[{}]: 450 4.7.25 {}", client_name(), address_,
                            text);
        check(session_.reject(450, {4, 7, 25}, text), "connect");
        return;
    }
    check(session_.accept(), "connect");
}

void Connection::on_hello(const ServerEvent& event) {
    ++counts_[event.esmtp ? ehlo : helo];
    stage_ = event.esmtp ? "EHLO" : "HELO";
    check(session_.accept(), "hello");
}

void Connection::on_mail_from(const ServerEvent& event) {
    ++counts_[mail];
    stage_ = "MAIL";
    const Command& command = *event.command;
    end_transaction();
    sender_.assign(command.path.mailbox);
    // protocol() reflects SMTPUTF8 only once MAIL is accepted; Received: needs it now.
    // In TLS it says ESMTPS even after HELO (RFC 3848: STARTTLS is an ESMTP extension).
    const bool tls = session_.in_tls();
    const std::string_view protocol = session_.protocol() == "SMTP" ? "SMTP"
                                      : command.smtputf8            ? (tls ? "UTF8SMTPS" : "UTF8SMTP")
                                                                    : (tls ? "ESMTPS" : "ESMTP");
    transaction_.begin(command, ClientInfo{.helo = session_.helo_name(),
                                           .reverse_name = name_,
                                           .address = address_,
                                           .protocol = protocol,
                                           .tls = tls_summary_});
    check(session_.accept(), "MAIL");
}

void Connection::on_rcpt_to(const ServerEvent& event) {
    ++counts_[rcpt];
    stage_ = "RCPT";
    const Command& command = *event.command;
    RecipientVerdict verdict = context_->policy->classify(command.path, may_relay_);
    if (verdict.accepted) {
        if (verdict.route == Route::local)
            transaction_.add_local(verdict.mailbox, command.path.mailbox);
        else
            transaction_.add_remote(command);
        recipients_.push_back({std::string(command.path.mailbox), verdict.route, std::move(verdict.mailbox)});
        check(session_.accept(), "RCPT");
        return;
    }
    // Postfix's form: the recipient first, so the client's log says which one.
    const std::string text = fmt::format("<{}>: {}", command.path.mailbox, verdict.reply.text);
    context_->log->info("NOQUEUE: reject: RCPT from {}[{}]: {} {} {}; from=<{}> to=<{}> helo=<{}>",
                        client_name(), address_, verdict.reply.code, status_text(verdict.reply.status), text,
                        sender_, command.path.mailbox, session_.helo_name());
    check(session_.reject(verdict.reply.code, verdict.reply.status, text), "RCPT");
}

void Connection::on_data_begin() {
    ++counts_[data];
    stage_ = "DATA";
    in_data_ = true;
    open_error_ = transaction_.open(std::time(nullptr));
    if (!open_error_)
        context_->log->info("{}: client={}[{}], helo=<{}>, id={}", transaction_.short_id(), client_name(),
                            address_, session_.helo_name(), transaction_.id());
}

void Connection::on_message_end(const ServerEvent& event) {
    stage_ = "END-OF-MESSAGE";
    if (event.error != Errc::ok) {
        // The session answered already (552 5.3.4 too big, 550 bad line endings).
        const ErrorInfo& info = error_info(event.error);
        context_->log->info("{}: reject: END-OF-MESSAGE from {}[{}]: {} {} {}; from=<{}>",
                            transaction_.id().empty() ? std::string("NOQUEUE") : transaction_.short_id(),
                            client_name(), address_, info.reply_code, status_text(info.status), info.reason,
                            sender_);
        end_transaction();
        return;
    }
    commit_message();
}

// The final dot: 250 only once every copy is on stable storage.
void Connection::commit_message() {
    const std::string sid = transaction_.id().empty() ? std::string("NOQUEUE") : transaction_.short_id();
    if (!in_data_ || open_error_) {
        defer_message(open_error_ ? open_error_ : std::make_error_code(std::errc::invalid_argument), sid);
        return end_transaction();
    }
    const std::uint64_t size = transaction_.size();
    const std::size_t nrcpt = transaction_.recipient_count();
    if (const std::error_code ec = transaction_.commit()) {
        defer_message(ec, sid);
        return end_transaction();
    }
    check(session_.accept(fmt::format("Ok: queued as {}", sid)), "message");
    Logger& log = *context_->log;
    log.info("{}: from=<{}>, size={}, nrcpt={}", sid, sender_, size, nrcpt);
    for (const Recipient& r : recipients_) {
        if (r.route == Route::local)
            log.info("{}: to=<{}>, status=sent, delivered={}/{}/new/{}", sid, r.address,
                     context_->mail_root->path(), r.mailbox, transaction_.delivered_file(r.mailbox));
        else
            log.info("{}: to=<{}>, status=queued", sid, r.address);
    }
    forget_envelope();  // commit() ended the transaction: nothing to abort
}

void Connection::defer_message(std::error_code ec, std::string_view sid) {
    const DeliveryReply reply = delivery_error_reply(ec);
    context_->log->warning("{}: status=deferred ({} {} {}: {}); from=<{}>", sid, reply.code,
                           status_text(reply.status), reply.text, ec.message(), sender_);
    check(session_.reject(reply.code, reply.status, reply.text), "message");
}

void Connection::end_transaction() noexcept {
    transaction_.abort();
    forget_envelope();
}

void Connection::forget_envelope() noexcept {
    sender_.clear();
    recipients_.clear();
    in_data_ = false;
    open_error_.clear();
}

// A verdict the session refused is a bug here, never the client's doing.
void Connection::check(Usage usage, std::string_view verdict) {
    if (usage == Usage::ok) return;
    context_->log->error("bug: {} verdict refused by the session (usage {}) for {}[{}]", verdict,
                         static_cast<int>(usage), client_name(), address_);
}

// ------------------------------------------------------------------ log helpers

std::string_view Connection::client_name() const noexcept {
    return name_.empty() ? std::string_view("unknown") : std::string_view(name_);
}

// " ehlo=1 mail=1 rcpt=2 data=1 quit=1 commands=6": the kinds seen, then the total.
std::string Connection::counts_text() const {
    std::string out;
    unsigned total = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
        if (counts_[i] == 0) continue;
        fmt::format_to(std::back_inserter(out), " {}={}", counted_names[i], counts_[i]);
        total += counts_[i];
    }
    fmt::format_to(std::back_inserter(out), " commands={}", total);
    return out;
}

}  // namespace smtp::smtpd
