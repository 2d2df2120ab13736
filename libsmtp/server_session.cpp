// ServerSession: one SMTP server connection, bytes in and bytes out, no I/O.
//
// The parts: an input buffer allocated once (feed() appends, next_event() reads),
// the CommandLineReader and parse_command() for commands, a DataDecoder per
// message, the state table (server_states.cpp) for what each command may do, and
// an output string reserved once. Every state change goes through the table.
//
// Memory invariants, which the fuzz target checks:
// - Input: never more than `in_capacity_` octets. Bytes an event points into stay
//   in place until that event's view expires: compact() runs only in next_event()
//   and in verdicts, and never while a verdict is pending.
// - Output: a step (one command, one verdict, one closing 421) writes at most
//   `step_lines_` lines of at most `line_max_` octets each, and a step runs only
//   while that much room is left, so pending output never exceeds out_capacity_.
// - STARTTLS (RFC 3207): in state `tls` nothing is read: the bytes buffered after
//   the STARTTLS line were dropped when it was answered, and feed() drops what
//   comes until tls_started(). No byte sent in plaintext after STARTTLS is ever
//   parsed, whatever the chunking (CVE-2011-0411, the command injection).
// - No allocation after construction: events are values in a fixed queue, text is
//   built in a reserved scratch string.
#include <smtp/server_session.hpp>

#include "server_states.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <utility>

namespace smtp {
namespace {

using detail::ServerInput;
using detail::ServerState;
using Kind = ServerEvent::Kind;

// The most reply lines one step writes: the EHLO reply (7 lines, 8 with STARTTLS)
// plus a 421 that a timeout() or shutdown() may add before the program drains the
// output. Without STARTTLS the bound stays 8, so output_buffer means what it did.
constexpr std::size_t max_step_lines = 9;
constexpr std::size_t step_lines_for(const ServerExtensions& x) noexcept { return x.starttls ? 9 : 8; }

// Reply lines are cut to Limits::reply_line (RFC 5321 §4.5.3.1.5: 512 with CRLF),
// but never below this, so a code, a status and some text always fit.
constexpr std::size_t min_reply_line = 64;

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
        if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
}

// Octets "k.s.d " takes in a reply line, or 0 when there is no status.
std::size_t status_width(EnhancedStatus s) noexcept {
    if (!s.present()) return 0;
    const auto digits = [](unsigned v) -> std::size_t { return v >= 100 ? 3 : v >= 10 ? 2 : 1; };
    return 1 + 1 + digits(s.subject) + 1 + digits(s.detail) + 1;
}

// `text` cut to at most `room` octets, not in the middle of a UTF-8 sequence.
std::string_view clip(std::string_view text, std::size_t room) noexcept {
    if (text.size() <= room) return text;
    std::size_t cut = room;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    return text.substr(0, cut);
}

// The first MAIL/RCPT parameter whose extension was not offered, or empty. The
// parser knows the keywords; whether this server offered them is the session's
// business (RFC 5321 §4.1.1.11: 555 for a parameter not recognized or not
// implemented). AUTH= (RFC 4954 §5) is never offered: this server has no AUTH.
std::string_view unoffered_parameter(const Command& c, const ServerExtensions& offered) noexcept {
    for (std::size_t i = 0; i < c.parameter_count; ++i) {
        const std::string_view k = c.parameters[i].keyword;
        bool ok = false;
        if (iequals(k, "SIZE"))
            ok = offered.size;  // RFC 1870
        else if (iequals(k, "BODY"))
            ok = offered.eight_bit_mime;  // RFC 6152 §2: BODY comes with 8BITMIME
        else if (iequals(k, "SMTPUTF8"))
            ok = offered.smtputf8;  // RFC 6531 §3.4
        else if (iequals(k, "RET") || iequals(k, "ENVID") || iequals(k, "NOTIFY") || iequals(k, "ORCPT"))
            ok = offered.dsn;  // RFC 3461 §4
        if (!ok) return k;
    }
    return {};
}

}  // namespace

struct ServerSession::Impl {
    enum class Pending : std::uint8_t { none, connect, hello, mail, rcpt, message };

    explicit Impl(ServerConfig c);

    // --- the calls of ServerSession -----------------------------------------------
    std::size_t feed(std::string_view bytes) noexcept;
    std::optional<ServerEvent> next_event();
    Usage accept(std::string_view text);
    Usage reject(int code, EnhancedStatus status, std::string_view text);
    void close_with(Errc e);
    void consume_output(std::size_t n) noexcept;
    std::string_view pending_output() const noexcept { return std::string_view(out_).substr(out_head_); }
    // What feed() would take now: once closed, anything (it is discarded).
    std::size_t input_room() const noexcept {
        return discarding() ? std::numeric_limits<std::size_t>::max() : in_capacity_ - in_end_;
    }
    std::uint32_t timeout_ms() const noexcept;
    std::string_view protocol() const noexcept;
    Usage tls_started();

    // --- steps ---------------------------------------------------------------------
    void run();
    bool command_step();
    void command(std::string_view line);
    void mail_command();
    void rcpt_command();
    void starttls_command(const detail::Transition& t);
    bool data_step();
    void message_ended();
    void pregreeted();
    void hello_accepted(std::string_view text);
    void greet(std::string_view text);

    // --- helpers -------------------------------------------------------------------
    std::string_view input() const noexcept { return {in_.get() + in_begin_, in_end_ - in_begin_}; }
    bool greeted() const noexcept { return greeting_written_ && out_sent_ >= greeting_end_; }
    bool output_room() const noexcept {
        return pending_output().size() + step_lines_ * line_max_ <= out_capacity_;
    }
    ServerExtensions offered() const noexcept {
        return esmtp_ ? config_.extensions
                      : ServerExtensions{false, false, false, false, false, false, false};
    }
    // Input is thrown away: closed, or between STARTTLS's 220 and tls_started().
    bool discarding() const noexcept { return state_ == ServerState::closed || state_ == ServerState::tls; }
    void compact() noexcept;
    void push(const ServerEvent& e) noexcept;
    std::optional<ServerEvent> pop() noexcept;
    void ask(ServerEvent e, Pending p) noexcept;
    void reply(int code, EnhancedStatus status, std::string_view text, std::string_view detail = {});
    void reply_lines(int code, std::span<const std::string_view> lines);
    void refuse(Errc e, std::string_view detail = {});
    void count_error();
    void close(int code) noexcept;
    void end_transaction() noexcept {
        transaction_utf8_ = false;
        recipients_ = 0;
    }

    ServerConfig config_;
    std::size_t step_lines_;    // the most reply lines one step writes
    std::size_t line_max_;      // longest reply line, CRLF included
    std::size_t out_capacity_;  // output_buffer, at least step_lines_ * line_max_

    // Input: [in_begin_, in_end_) is not yet read; [0, in_begin_) was read and may
    // still be pointed at by the current event.
    std::size_t in_capacity_;
    std::unique_ptr<char[]> in_;
    std::size_t in_begin_ = 0;
    std::size_t in_end_ = 0;
    CommandLineReader reader_;
    DataDecoder decoder_;
    Command command_;  // the last command; hello, mail_from and rcpt_to point here

    // Output: [out_head_, size) is pending. Totals tell when the greeting was sent.
    std::string out_;
    std::size_t out_head_ = 0;
    std::uint64_t out_total_ = 0;
    std::uint64_t out_sent_ = 0;
    std::uint64_t greeting_end_ = 0;
    bool greeting_written_ = false;
    bool pregreet_ = false;

    ServerState state_ = ServerState::connected;
    Pending pending_ = Pending::none;
    bool connect_asked_ = false;
    bool esmtp_ = false;  // the accepted hello was EHLO
    bool said_hello_ = false;
    bool in_tls_ = false;  // tls_started() was called
    std::string helo_;
    bool transaction_utf8_ = false;  // the accepted MAIL of this transaction had SMTPUTF8
    bool last_utf8_ = false;         // ... of this or the last transaction (for protocol())
    std::size_t recipients_ = 0;     // accepted RCPTs in this transaction
    std::size_t errors_ = 0;         // 4xx/5xx replies so far

    std::array<ServerEvent, 8> queue_{};
    std::size_t queue_head_ = 0;
    std::size_t queue_size_ = 0;

    std::string scratch_;  // reply text being put together
};

ServerSession::Impl::Impl(ServerConfig c)
    : config_(std::move(c)),
      step_lines_(step_lines_for(config_.extensions)),
      line_max_(std::max(config_.limits.reply_line, min_reply_line)),
      out_capacity_(std::max(config_.output_buffer, step_lines_ * line_max_)),
      // Twice a command line: a partial line left at the end of a full buffer then
      // always starts in its second half, where compact() moves it to the front.
      in_capacity_(std::max(config_.input_buffer, 2 * config_.limits.command_line)),
      in_(new char[in_capacity_]),
      reader_(config_.limits),
      decoder_(config_.limits, config_.data) {
    out_.reserve(out_capacity_);
    helo_.reserve(config_.limits.command_line);
    scratch_.reserve(2 * line_max_);
}

// ------------------------------------------------------------------ input

std::size_t ServerSession::Impl::feed(std::string_view bytes) noexcept {
    // Closed: nobody reads it any more. Awaiting the TLS handshake: whatever comes
    // in plaintext now must never be read as commands (RFC 3207 §4.2 resets the
    // session; CVE-2011-0411 is a server that did read it).
    if (discarding()) return bytes.size();
    const std::size_t n = std::min(bytes.size(), in_capacity_ - in_end_);
    if (n == 0) return 0;
    std::memcpy(in_.get() + in_end_, bytes.data(), n);
    in_end_ += n;
    // A client that speaks before it could have read the greeting is not waiting
    // for replies: a spam bot's habit (Postfix postscreen "pregreet").
    if (!greeted()) pregreet_ = true;
    return n;
}

void ServerSession::Impl::compact() noexcept {
    if (state_ == ServerState::closed || pending_ != Pending::none) return;
    if (in_begin_ == in_end_) {
        in_begin_ = in_end_ = 0;
    } else if (in_begin_ >= in_capacity_ / 2) {  // amortized: moves at most what was read
        std::memmove(in_.get(), in_.get() + in_begin_, in_end_ - in_begin_);
        in_end_ -= in_begin_;
        in_begin_ = 0;
    }
}

// ------------------------------------------------------------------ events

void ServerSession::Impl::push(const ServerEvent& e) noexcept {
    // One step queues at most three events; the queue is drained before the next.
    if (queue_size_ == queue_.size()) return;
    queue_[(queue_head_ + queue_size_) % queue_.size()] = e;
    ++queue_size_;
}

std::optional<ServerEvent> ServerSession::Impl::pop() noexcept {
    if (queue_size_ == 0) return std::nullopt;
    const ServerEvent e = queue_[queue_head_];
    queue_head_ = (queue_head_ + 1) % queue_.size();
    --queue_size_;
    return e;
}

void ServerSession::Impl::ask(ServerEvent e, Pending p) noexcept {
    e.needs_verdict = true;
    pending_ = p;
    push(e);
}

std::optional<ServerEvent> ServerSession::Impl::next_event() {
    if (queue_size_ == 0 && pending_ == Pending::none) {
        compact();  // the last event's views have expired
        run();
    }
    // Nothing to hand out: no view can point into the input, so make room for
    // feed() now; a program that reads only while input_room() > 0 would stall if
    // the input read meanwhile stayed in the buffer.
    if (queue_size_ == 0) compact();
    return pop();
}

// Runs steps until one produces an event or none can proceed. Bounded: every step
// queues an event, closes, or consumes input.
void ServerSession::Impl::run() {
    while (queue_size_ == 0 && pending_ == Pending::none && !discarding()) {
        if (state_ == ServerState::connected) {
            if (!connect_asked_) {
                connect_asked_ = true;
                ask({.kind = Kind::connect}, Pending::connect);
            }
            return;
        }
        if (!output_room()) return;  // backpressure: the program must send first
        if (pregreet_) {
            pregreeted();
        } else if (state_ == ServerState::data) {
            if (!data_step()) return;
        } else if (!command_step()) {
            return;
        }
    }
}

// ------------------------------------------------------------------ commands

bool ServerSession::Impl::command_step() {
    const CommandLineReader::Line line = reader_.next(input());
    in_begin_ += line.consumed;
    switch (line.status) {
        case CommandLineReader::Status::need_more:
            return line.consumed > 0;
        case CommandLineReader::Status::error:
            // The reader has skipped the bad line: answer it and read on (DESIGN.md:
            // an over-long line is answered with 500, keeping the stream in sync).
            refuse(line.error);
            return true;
        case CommandLineReader::Status::ok:
            command(line.text);
            return true;
    }
    return true;
}

void ServerSession::Impl::command(std::string_view line) {
    ParseOptions options = config_.leniency;
    // RFC 6531 §3.4: UTF-8 in MAIL only when SMTPUTF8 was offered, and in RCPT
    // only when this transaction's MAIL asked for it.
    const bool in_transaction = state_ == ServerState::mail || state_ == ServerState::rcpt;
    options.smtputf8 = in_transaction ? transaction_utf8_ : offered().smtputf8;
    const ParseResult parsed = parse_command(line, command_, options, config_.limits);

    // What the configuration decides comes before the table (server_states.hpp).
    // A refused connection answers 503 to all but QUIT, so it is left to the table.
    if (state_ != ServerState::refused) {
        const Verb v = command_.verb;
        // RFC 3207 §4: "530 Must issue a STARTTLS command first". MAIL is what
        // matters; RCPT and DATA get the same answer rather than a 503 that would
        // suggest MAIL could come first.
        if (config_.require_tls && !in_tls_ && (v == Verb::mail || v == Verb::rcpt || v == Verb::data))
            return refuse(Errc::tls_required);
        if (v == Verb::starttls && !config_.extensions.starttls) return refuse(Errc::not_implemented);
        // §4.2: no STARTTLS in the EHLO reply after the handshake, and "a client
        // MUST NOT attempt to start a TLS session if a TLS session is already active".
        if (v == Verb::starttls && in_tls_) return refuse(Errc::tls_active);
    }

    // The order first, then the arguments: a command out of order is refused
    // whatever it says (as Postfix and OpenSMTPD do).
    const detail::Transition& t = detail::server_transition(state_, detail::input_of(command_.verb));
    if (t.refusal != Errc::ok) return refuse(t.refusal);
    if (!parsed.ok()) return refuse(parsed.error, parsed.detail);

    switch (command_.verb) {
        case Verb::helo:
        case Verb::ehlo:
            return ask({.kind = Kind::hello,
                        .name = command_.domain,
                        .esmtp = command_.verb == Verb::ehlo,
                        .command = &command_},
                       Pending::hello);
        case Verb::mail:
            return mail_command();
        case Verb::rcpt:
            return rcpt_command();
        case Verb::data:
            // RFC 5321 §4.1.1.4: 354, then the data up to CRLF.CRLF.
            reply(354, {}, "End data with <CR><LF>.<CR><LF>");
            state_ = t.to;
            decoder_ = DataDecoder(config_.limits, config_.data);
            return push({.kind = Kind::data_begin});
        case Verb::rset:
            // RFC 5321 §4.1.1.5: valid in any state, even before HELO; HELO stays.
            reply(250, {2, 0, 0}, "Ok");
            end_transaction();
            state_ = t.to;
            return push({.kind = Kind::reset});
        case Verb::noop:
            return reply(250, {2, 0, 0}, "Ok");
        case Verb::quit:
            reply(221, {2, 0, 0}, "Bye");
            state_ = t.to;
            return push({.kind = Kind::quit});
        case Verb::starttls:
            return starttls_command(t);
        case Verb::vrfy:
        case Verb::expn:
            // RFC 5321 §7.3: a server that does not verify "MUST return a 252
            // response, rather than a code that could be confused with successful
            // or unsuccessful verification" (§3.5.3: 502 is not full compliance).
            return reply(252, {2, 0, 0},
                         command_.verb == Verb::vrfy
                             ? "Cannot VRFY user, but will accept message and attempt delivery"
                             : "Cannot EXPN list, but will accept message and attempt delivery");
        default:
            // The table refuses every other verb before this point.
            return refuse(Errc::not_implemented);
    }
}

void ServerSession::Impl::mail_command() {
    if (const std::string_view k = unoffered_parameter(command_, offered()); !k.empty())
        return refuse(Errc::parameter_unsupported, k);
    // RFC 1870 §6.1: a declared size over the limit is refused before any data.
    if (command_.size && *command_.size > config_.limits.message_size) return refuse(Errc::message_too_big);
    ask({.kind = Kind::mail_from, .command = &command_}, Pending::mail);
}

void ServerSession::Impl::rcpt_command() {
    if (const std::string_view k = unoffered_parameter(command_, offered()); !k.empty())
        return refuse(Errc::parameter_unsupported, k);
    // RFC 5321 §4.5.3.1.10: 452 for recipients over the limit; the client sends
    // them again in another transaction.
    if (recipients_ >= config_.max_recipients) return refuse(Errc::too_many_recipients);
    ask({.kind = Kind::rcpt_to, .command = &command_}, Pending::rcpt);
}

void ServerSession::Impl::starttls_command(const detail::Transition& t) {
    // RFC 3207 §4: "220 Ready to start TLS"; the handshake follows at once.
    reply(220, {2, 0, 0}, "Ready to start TLS");
    state_ = t.to;
    // The bytes after the STARTTLS line were sent before the client could have seen
    // the 220, in plaintext: an injection (CVE-2011-0411), or a broken client.
    // Either way they are not the TLS stream's. in_begin_ is already past the line.
    in_end_ = in_begin_;
    push({.kind = Kind::tls_begin});
}

Usage ServerSession::Impl::tls_started() {
    if (state_ == ServerState::closed) return Usage::closed;
    if (state_ != ServerState::tls) return Usage::no_verdict_pending;
    // The 220 must reach the client in plaintext, before the handshake.
    if (!pending_output().empty()) return Usage::output_pending;
    // RFC 3207 §4.2: back to the state after the greeting; everything the client
    // said before is forgotten: its HELO name, the ESMTP mode, any transaction.
    state_ = detail::server_transition(state_, ServerInput::tls_started).to;
    in_tls_ = true;
    esmtp_ = false;
    said_hello_ = false;
    helo_.clear();
    end_transaction();
    last_utf8_ = false;
    in_begin_ = in_end_ = 0;
    reader_ = CommandLineReader(config_.limits);
    return Usage::ok;
}

// ------------------------------------------------------------------ message data

bool ServerSession::Impl::data_step() {
    const DataDecoder::Result r = decoder_.decode(input());
    in_begin_ += r.consumed;
    if (!r.content.empty()) push({.kind = Kind::data_chunk, .data = r.content});
    if (r.finished) message_ended();
    return r.consumed > 0 || !r.content.empty() || r.finished;
}

void ServerSession::Impl::message_ended() {
    const Errc e = decoder_.error();
    if (e == Errc::ok) return ask({.kind = Kind::message_end}, Pending::message);
    // The data broke a rule (size, bare line ending, long line): the decoder read on
    // to the final dot, so the stream is in sync, and the answer is the session's.
    state_ = detail::server_transition(state_, ServerInput::final_dot).to;
    end_transaction();
    reply(error_info(e).reply_code, error_info(e).status, error_info(e).reason);
    push({.kind = Kind::message_end, .error = e});
    count_error();
}

void ServerSession::Impl::pregreeted() {
    // The early input is not read as commands: it was not sent in reply to us.
    in_begin_ = in_end_;
    pregreet_ = false;
    const ErrorInfo& info = error_info(Errc::pregreet);
    reply(info.reply_code, info.status, info.reason);
    push({.kind = Kind::protocol_error, .error = Errc::pregreet, .reply_code = info.reply_code});
    close(info.reply_code);
}

// ------------------------------------------------------------------ verdicts

Usage ServerSession::Impl::accept(std::string_view text) {
    if (state_ == ServerState::closed) return Usage::closed;
    if (pending_ == Pending::none) return Usage::no_verdict_pending;
    const Pending p = std::exchange(pending_, Pending::none);
    const auto or_ok = [&](std::string_view def) { return text.empty() ? def : text; };
    switch (p) {
        case Pending::connect:
            greet(text);
            state_ = detail::server_transition(state_, ServerInput::connect).to;
            break;
        case Pending::hello:
            hello_accepted(text);
            break;
        case Pending::mail:
            reply(250, {2, 1, 0}, or_ok("Ok"));
            state_ = detail::server_transition(state_, ServerInput::mail).to;
            transaction_utf8_ = last_utf8_ = command_.smtputf8;
            recipients_ = 0;
            break;
        case Pending::rcpt:
            reply(250, {2, 1, 5}, or_ok("Ok"));
            state_ = detail::server_transition(state_, ServerInput::rcpt).to;
            ++recipients_;
            break;
        case Pending::message:
            reply(250, {2, 0, 0}, or_ok("Ok"));
            state_ = detail::server_transition(state_, ServerInput::final_dot).to;
            end_transaction();
            errors_ = 0;  // the limit is on errors made without delivering mail
            break;
        case Pending::none:
            break;
    }
    compact();
    return Usage::ok;
}

Usage ServerSession::Impl::reject(int code, EnhancedStatus status, std::string_view text) {
    if (state_ == ServerState::closed) return Usage::closed;
    if (pending_ == Pending::none) return Usage::no_verdict_pending;
    // 4xx or 5xx, and a code the reply grammar allows (RFC 5321 §4.2: x0z-x5z).
    if (code < 400 || code > 559 || code / 10 % 10 > 5) return Usage::bad_reply_code;
    const Pending p = std::exchange(pending_, Pending::none);
    reply(code, status, text);
    if (p == Pending::connect) {
        greeting_written_ = true;
        greeting_end_ = out_total_;
        // RFC 5321 §3.1: after a 554 greeting the server waits for QUIT and answers
        // 503 to the rest; 421 (§3.8) and other 4xx close at once.
        if (code / 100 == 4)
            close(code);
        else
            state_ = ServerState::refused;
        return Usage::ok;
    }
    if (p == Pending::message) {
        state_ = detail::server_transition(state_, ServerInput::final_dot).to;
        end_transaction();
    }
    // Other rejections leave the state as it was (RFC 5321 §4.1.4 for EHLO; a
    // refused MAIL or RCPT changes nothing). 421 means "closing" (§3.8).
    if (code == 421)
        close(code);
    else
        count_error();
    compact();
    return Usage::ok;
}

void ServerSession::Impl::greet(std::string_view text) {
    // RFC 5321 §4.2: Greeting = "220 " Domain [ SP textstring ]. RFC 2034 §3: no
    // enhanced status code in the greeting.
    scratch_.assign(config_.hostname);
    scratch_ += ' ';
    scratch_ += text.empty() ? std::string_view("ESMTP ready") : text;
    reply(220, {}, scratch_);
    greeting_written_ = true;
    greeting_end_ = out_total_;
}

void ServerSession::Impl::hello_accepted(std::string_view text) {
    // RFC 5321 §4.1.4: an accepted HELO/EHLO resets the transaction as RSET does;
    // a refused one leaves the state alone, so the reset event comes only now.
    const bool had_transaction = state_ == ServerState::mail || state_ == ServerState::rcpt;
    state_ = detail::server_transition(state_, detail::input_of(command_.verb)).to;
    esmtp_ = command_.verb == Verb::ehlo;
    said_hello_ = true;
    helo_.assign(command_.domain);
    end_transaction();
    last_utf8_ = false;

    // RFC 5321 §4.1.1.1: "250" SP Domain [ SP ehlo-greet ]; RFC 2034 §3: no
    // enhanced status code here.
    scratch_.assign(config_.hostname);
    scratch_ += ' ';
    if (text.empty()) {
        scratch_ += "Hello ";
        scratch_ += helo_;
    } else {
        scratch_ += text;
    }
    std::array<char, 32> size_line{};
    std::array<std::string_view, max_step_lines> lines{};
    std::size_t n = 0;
    lines[n++] = scratch_;
    if (esmtp_) {
        const ServerExtensions& x = config_.extensions;
        if (x.pipelining) lines[n++] = "PIPELINING";
        if (x.size) {
            const auto r =
                fmt::format_to_n(size_line.data(), size_line.size(), "SIZE {}", config_.limits.message_size);
            lines[n++] = std::string_view(size_line.data(), std::min(r.size, size_line.size()));
        }
        if (x.eight_bit_mime) lines[n++] = "8BITMIME";
        if (x.enhanced_status_codes) lines[n++] = "ENHANCEDSTATUSCODES";
        if (x.smtputf8) lines[n++] = "SMTPUTF8";
        if (x.dsn) lines[n++] = "DSN";
        // RFC 3207 §4.2: "A server MUST NOT return the STARTTLS extension in
        // response to an EHLO command received after a TLS handshake has completed."
        if (x.starttls && !in_tls_) lines[n++] = "STARTTLS";
    }
    reply_lines(250, std::span<const std::string_view>(lines.data(), n));
    if (had_transaction) push({.kind = Kind::reset});
}

// ------------------------------------------------------------------ replies

void ServerSession::Impl::reply(int code, EnhancedStatus status, std::string_view text,
                                std::string_view detail) {
    if (!config_.extensions.enhanced_status_codes) status = {};
    if (!detail.empty()) {
        // Same form as append_error_reply(): "reason: detail".
        scratch_.assign(text);
        scratch_ += ": ";
        scratch_ += detail;
        text = scratch_;
    }
    const std::size_t room = line_max_ - 2 - 4 - status_width(status);
    if (out_head_ > 0) {  // keep out_ within its reserved capacity
        out_.erase(0, out_head_);
        out_head_ = 0;
    }
    const std::size_t before = out_.size();
    append_reply(out_, code, status, clip(text, room));
    out_total_ += out_.size() - before;
}

void ServerSession::Impl::reply_lines(int code, std::span<const std::string_view> lines) {
    std::array<std::string_view, max_step_lines> clipped{};
    const std::size_t n = std::min(lines.size(), clipped.size());
    for (std::size_t i = 0; i < n; ++i) clipped[i] = clip(lines[i], line_max_ - 2 - 4);
    if (out_head_ > 0) {
        out_.erase(0, out_head_);
        out_head_ = 0;
    }
    const std::size_t before = out_.size();
    append_reply(out_, code, {}, std::span<const std::string_view>(clipped.data(), n));
    out_total_ += out_.size() - before;
}

// A reply of the session's own for a peer error: the reply, a protocol_error
// event, and one more error counted.
void ServerSession::Impl::refuse(Errc e, std::string_view detail) {
    const ErrorInfo& info = error_info(e);
    reply(info.reply_code, info.status, info.reason, detail);
    push({.kind = Kind::protocol_error, .error = e, .reply_code = info.reply_code});
    count_error();
}

void ServerSession::Impl::count_error() {
    // Postfix smtpd_hard_error_limit: a client that keeps failing without delivering
    // mail is sent away with 421 (RFC 5321 §3.8 allows it after any command).
    if (++errors_ > config_.max_errors) close_with(Errc::too_many_errors);
}

void ServerSession::Impl::close_with(Errc e) {
    if (state_ == ServerState::closed) return;
    // During the handshake a plaintext reply would be read as TLS data: just close.
    if (state_ == ServerState::tls) return close(0);
    const ErrorInfo& info = error_info(e);
    reply(info.reply_code, info.status, info.reason);
    close(info.reply_code);
}

void ServerSession::Impl::close(int code) noexcept {
    state_ = ServerState::closed;
    // A verdict still awaited is moot now; an event asking for one that the
    // program has not even seen yet is dropped.
    if (std::exchange(pending_, Pending::none) != Pending::none && queue_size_ > 0) {
        const std::size_t last = (queue_head_ + queue_size_ - 1) % queue_.size();
        if (queue_[last].needs_verdict) --queue_size_;
    }
    push({.kind = Kind::closing, .reply_code = code});
}

void ServerSession::Impl::consume_output(std::size_t n) noexcept {
    n = std::min(n, out_.size() - out_head_);
    out_head_ += n;
    out_sent_ += n;
    if (out_head_ == out_.size()) {
        out_.clear();
        out_head_ = 0;
    }
}

std::uint32_t ServerSession::Impl::timeout_ms() const noexcept {
    if (state_ == ServerState::closed || state_ == ServerState::connected || pending_ != Pending::none)
        return 0;
    // In `tls` the wait is for the client's handshake: the command timeout bounds it.
    return state_ == ServerState::data ? config_.data_timeout_ms : config_.command_timeout_ms;
}

std::string_view ServerSession::Impl::protocol() const noexcept {
    // RFC 3848 §2 "SMTP"/"ESMTP", "ESMTPS" for ESMTP with STARTTLS; RFC 6531
    // §3.7.3 "UTF8SMTP", "UTF8SMTPS" for SMTPUTF8 mail (with STARTTLS).
    if (in_tls_) return last_utf8_ ? "UTF8SMTPS" : "ESMTPS";
    if (!esmtp_) return "SMTP";
    return last_utf8_ ? "UTF8SMTP" : "ESMTP";
}

// ------------------------------------------------------------------ the public face

ServerSession::ServerSession(ServerConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
ServerSession::~ServerSession() = default;
ServerSession::ServerSession(ServerSession&&) noexcept = default;
ServerSession& ServerSession::operator=(ServerSession&&) noexcept = default;

std::size_t ServerSession::feed(std::string_view bytes) { return impl_->feed(bytes); }
std::size_t ServerSession::input_room() const noexcept { return impl_->input_room(); }
std::optional<ServerEvent> ServerSession::next_event() { return impl_->next_event(); }
Usage ServerSession::accept(std::string_view text) { return impl_->accept(text); }
Usage ServerSession::reject(int code, EnhancedStatus status, std::string_view text) {
    return impl_->reject(code, status, text);
}
void ServerSession::timeout() { impl_->close_with(Errc::timed_out); }
void ServerSession::shutdown() { impl_->close_with(Errc::shutting_down); }
std::uint32_t ServerSession::timeout_ms() const noexcept { return impl_->timeout_ms(); }
std::string_view ServerSession::pending_output() const noexcept { return impl_->pending_output(); }
void ServerSession::consume_output(std::size_t n) noexcept { impl_->consume_output(n); }
bool ServerSession::want_read() const noexcept { return !impl_->discarding() && impl_->input_room() > 0; }
bool ServerSession::want_write() const noexcept { return !impl_->pending_output().empty(); }
bool ServerSession::should_close() const noexcept {
    return impl_->state_ == ServerState::closed && impl_->pending_output().empty();
}
std::string_view ServerSession::protocol() const noexcept { return impl_->protocol(); }
std::string_view ServerSession::helo_name() const noexcept { return impl_->helo_; }
Usage ServerSession::tls_started() { return impl_->tls_started(); }
bool ServerSession::in_tls() const noexcept { return impl_->in_tls_; }

}  // namespace smtp
