// ClientSession: the client side of one SMTP connection, without I/O.
//
// How it works:
// - Every command sent is recorded in `outstanding_`, in order, with the output
//   offset where it ends. Each complete reply answers the oldest one (RFC 2920 §3.1:
//   replies come in the order of the commands, pipelined or not). A reply to a
//   command the program has not yet written (consume_output) cannot be one, so it is
//   a protocol error, as is a reply with nothing outstanding (but a 421 is always
//   the server closing, RFC 5321 §3.8).
// - One transaction at a time (`txn_`); the next starts only once every reply of
//   the last one is in. With PIPELINING, RSET, MAIL, the RCPTs and DATA go out as
//   one group, DATA last (RFC 2920 §3.1); without it, one command, one reply.
// - A transaction that is over early (MAIL refused, no RCPT accepted) is finished
//   at once and `txn_` dropped; the replies still due for its group are matched and
//   ignored, except a 354, which gets an empty message (RFC 2920 §3.1).
// - STARTTLS (RFC 3207): the positive EHLO reply is held back while STARTTLS is
//   due (phase `hello` until its reply), then `handshake` until the program calls
//   tls_started() (back to `hello`: EHLO again, over TLS) or tls_failed(). In
//   `handshake` no input is expected at all, so any is an error. `ready` is
//   emitted only when no STARTTLS is left to do, so it comes once.
// - Results are queued as events with shared, immutable replies, so many
//   recipient_result events can carry one reply without copies. `finish_recipient`
//   is the only place a recipient_result is made and it refuses a second one, which
//   is how "exactly one result per recipient" holds on every path.
// - The phase changes only in enter(cause), by the row of the phase table
//   (client_states.cpp) for the current phase and that cause; a change the table
//   lacks is a bug, caught there (see client_states.hpp).
#include <smtp/client_session.hpp>
#include <smtp/data.hpp>

#include "client_states.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <deque>
#include <iterator>
#include <utility>

namespace smtp {
namespace {

using ReplyPtr = std::shared_ptr<const Reply>;

// A reply made by the session: `text` starts with the enhanced status.
ReplyPtr local_reply(int code, std::string_view text) {
    auto reply = std::make_shared<Reply>();
    reply->code = code;
    reply->lines.emplace_back(text);
    return reply;
}

// What a reply that is not positive means for a recipient.
Outcome outcome_of(const Reply& reply) noexcept {
    return reply.is_permanent() ? Outcome::permanent : Outcome::temporary;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
        const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
        return lower(x) == lower(y);
    });
}

// SIZE's argument (RFC 1870 §4): digits, or nothing. Anything else, or a number
// too big for 64 bits, is read as 0, "no fixed limit": refusing a message
// locally on a value we could not read would be worse than letting the server judge.
std::uint64_t parse_size(std::string_view text) noexcept {
    std::uint64_t n = 0;
    for (const char c : text) {
        if (c < '0' || c > '9' || n > (UINT64_MAX - 9) / 10) return 0;
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return n;
}

// RFC 5321 §4.1.1.1: the EHLO reply's first line is the server's name, each later
// line an ehlo-keyword with optional parameters. Keywords are case-insensitive.
ServerCapabilities parse_ehlo(const Reply& reply) {
    ServerCapabilities caps;
    caps.esmtp = true;
    for (std::size_t i = 1; i < reply.lines.size(); ++i) {
        const std::string_view line = reply.lines[i];
        const std::size_t space = line.find(' ');
        const std::string_view keyword = line.substr(0, space);
        const std::string_view params = space == std::string_view::npos ? "" : line.substr(space + 1);
        if (iequals(keyword, "PIPELINING")) caps.pipelining = true;
        if (iequals(keyword, "8BITMIME")) caps.eight_bit_mime = true;
        if (iequals(keyword, "SMTPUTF8")) caps.smtputf8 = true;
        if (iequals(keyword, "ENHANCEDSTATUSCODES")) caps.enhanced_status_codes = true;
        if (iequals(keyword, "DSN")) caps.dsn = true;
        if (iequals(keyword, "STARTTLS")) caps.starttls = true;
        if (iequals(keyword, "CHUNKING")) caps.chunking = true;
        if (iequals(keyword, "SIZE")) caps.size = parse_size(params.substr(0, params.find(' ')));
    }
    return caps;
}

// Our name for EHLO/HELO must be a domain or an address literal (RFC 5321
// §4.1.1.1); anything else, CRLF in particular, must never reach the wire.
std::string checked_helo_name(std::string name, const Limits& limits) {
    const bool fits = name.size() + 7 <= limits.command_line;  // "EHLO " name CRLF
    if (fits && (is_valid_domain(name, limits) || is_valid_address_literal(name))) return name;
    return "localhost";
}

// What tls_failed() puts into its local reply: one line, of bounded length.
std::string one_line(std::string_view text) {
    std::string line(text.substr(0, 200));
    for (char& c : line)
        if (c == '\r' || c == '\n' || c == '\0') c = ' ';
    return line;
}

// The most send_mail() adds after the path; " SMTPUTF8" is already in the checked line.
constexpr std::string_view max_mail_parameters = " SIZE=18446744073709551615 BODY=8BITMIME";

}  // namespace

struct ClientSession::Impl {
    using Phase = detail::ClientPhase;  // greeting, hello, handshake, ready, body, quitting, closed
    using Cause = detail::ClientCause;
    enum class Sent : std::uint8_t { ehlo, helo, starttls, mail, rcpt, data, dot, rset, quit };
    // A command awaiting its reply; `end` is its end in the output stream, counted
    // from the session's start, so we know whether the server can have seen it.
    struct Outstanding {
        Sent command;
        std::size_t recipient;
        std::uint64_t end;
    };
    enum class Rcpt : std::uint8_t { queued, sent, accepted, done };
    struct Message {
        std::uint64_t id = 0;
        OutgoingMessage out;
        std::vector<Rcpt> rcpt;
        std::size_t done = 0, delivered = 0, temporary = 0;
        ReplyPtr last;  // the reply that decided the last recipient
        bool last_local = false;
        std::size_t next_rcpt = 0;  // without pipelining: the next RCPT to send
        std::size_t rcpt_due = 0;   // RCPT replies still to come
        std::size_t accepted = 0;   // RCPT 2xx, not yet finished
    };
    struct Queued {
        ClientEvent event;
        ReplyPtr reply;
    };

    explicit Impl(ClientConfig c) : config(std::move(c)), parser(config.limits) {
        config.helo_name = checked_helo_name(std::move(config.helo_name), config.limits);
    }

    ClientConfig config;
    ReplyParser parser;
    DataEncoder encoder;
    Phase phase = Phase::greeting;
    ServerCapabilities caps;
    bool quit_requested = false;
    bool in_tls = false;     // tls_started() was called
    bool need_rset = false;  // a transaction failed: RSET before the next MAIL
    std::uint64_t next_id = 1;

    std::deque<Message> queue;  // submitted, not started
    std::optional<Message> txn;
    std::deque<Outstanding> outstanding;

    std::string in;  // a partial reply line, shorter than Limits::reply_line
    std::string out;
    std::size_t out_pos = 0;     // out[0, out_pos) is consumed
    std::uint64_t consumed = 0;  // octets consumed since the start

    std::deque<Queued> events;
    ReplyPtr current_reply;  // of the event last returned by next_event()

    bool pipelining() const noexcept { return caps.pipelining && config.use_pipelining; }

    // The one place the phase changes: to where the table's row for (phase, why)
    // leads. No row is a bug of this file: asserted (unit tests and fuzz targets
    // build with assertions), counted in any build, and the phase stays.
    void enter(Cause why) noexcept {
        const detail::ClientTransition* row = detail::take_client_transition(phase, why);
        assert(row != nullptr && "a phase change missing from libsmtp/client_states.cpp");
        if (row != nullptr) phase = row->to;
    }

    // ------------------------------------------------------------- events

    void emit(ClientEvent::Kind kind, std::uint64_t message = 0, ReplyPtr reply = {}, bool local = false) {
        ClientEvent event{.kind = kind};
        event.message = message;
        event.local = local;
        events.push_back({event, std::move(reply)});
    }

    void finish_recipient(Message& m, std::size_t i, Outcome outcome, const ReplyPtr& reply, bool local) {
        if (m.rcpt[i] == Rcpt::done) return;
        if (m.rcpt[i] == Rcpt::accepted) --m.accepted;
        m.rcpt[i] = Rcpt::done;
        ++m.done;
        if (outcome == Outcome::delivered) ++m.delivered;
        if (outcome == Outcome::temporary) ++m.temporary;
        m.last = reply;
        m.last_local = local;
        ClientEvent event{.kind = ClientEvent::Kind::recipient_result};
        event.message = m.id;
        event.recipient = i;
        event.outcome = outcome;
        event.local = local;
        events.push_back({event, reply});
    }

    // Every recipient is done: the message's result. Its outcome: delivered if all
    // were (and there was one), else temporary if any was, else permanent.
    void finish_message(Message& m) {
        ClientEvent event{.kind = ClientEvent::Kind::message_result};
        event.message = m.id;
        event.delivered = m.delivered;
        event.outcome = m.delivered == m.rcpt.size() && m.delivered != 0 ? Outcome::delivered
                        : m.temporary != 0                               ? Outcome::temporary
                                                                         : Outcome::permanent;
        event.local = m.last_local;
        events.push_back({event, m.last});
    }

    // Every recipient not yet done gets `outcome`; then the message's result.
    // Only the final dot's 2xx delivers; any other reply, even a 2xx greeting
    // that is not 220, is a failure.
    void finish_all(Message& m, const ReplyPtr& reply, bool local) {
        finish_all(m, reply, local, outcome_of(*reply));
    }
    void finish_all(Message& m, const ReplyPtr& reply, bool local, Outcome outcome) {
        if (m.rcpt.empty()) {
            m.last = reply;
            m.last_local = local;
        }
        for (std::size_t i = 0; i < m.rcpt.size(); ++i) finish_recipient(m, i, outcome, reply, local);
        finish_message(m);
    }

    // ------------------------------------------------------------- output

    void push_line(Sent command, std::size_t recipient = 0) {
        out += "\r\n";
        outstanding.push_back({command, recipient, consumed + (out.size() - out_pos)});
    }

    void send(Sent command, std::string_view line) {
        out += line;
        push_line(command);
    }

    // RFC 5321 §4.1.1.2; parameters only where the server offered the extension:
    // SIZE (RFC 1870 §6), BODY=8BITMIME (RFC 6152 §3), SMTPUTF8 (RFC 6531 §3.4).
    void send_mail(const Message& m) {
        auto it = std::back_inserter(out);
        fmt::format_to(it, "MAIL FROM:<{}>", m.out.sender);
        if (caps.size && m.out.size) fmt::format_to(it, " SIZE={}", *m.out.size);
        if (m.out.eight_bit && caps.eight_bit_mime) out += " BODY=8BITMIME";
        if (m.out.smtputf8 && caps.smtputf8) out += " SMTPUTF8";
        push_line(Sent::mail);
    }

    void send_rcpt(Message& m, std::size_t i) {
        fmt::format_to(std::back_inserter(out), "RCPT TO:<{}>", m.out.recipients[i]);
        push_line(Sent::rcpt, i);
        m.rcpt[i] = Rcpt::sent;
        ++m.rcpt_due;
    }

    // ------------------------------------------------------------- transactions

    // What the server cannot take, known before sending anything.
    ReplyPtr refusal(const OutgoingMessage& m) const {
        // RFC 6152 §3: without 8BITMIME an 8-bit body cannot be sent as it is.
        if (m.eight_bit && !caps.eight_bit_mime)
            return local_reply(554, "5.6.3 Server does not offer 8BITMIME");
        // RFC 6531 §3.2: without SMTPUTF8 the message must not be sent.
        if (m.smtputf8 && !caps.smtputf8) return local_reply(553, "5.6.7 Server does not offer SMTPUTF8");
        // RFC 1870 §6.1: a client should not send a message larger than SIZE.
        if (m.size && caps.size && *caps.size != 0 && *m.size > *caps.size)
            return local_reply(552, "5.3.4 Message size exceeds server limit");
        return nullptr;
    }

    // Between transactions (nothing outstanding): starts the next message, or
    // sends QUIT when asked and nothing is left.
    void advance() {
        while (!queue.empty()) {
            if (const ReplyPtr refused = refusal(queue.front().out)) {
                finish_all(queue.front(), refused, true);
                queue.pop_front();
                continue;
            }
            if (need_rset) {
                // RFC 5321 §4.1.1.5 after a failed transaction; RFC 2920 §3.1 lets
                // RSET go anywhere in a group.
                need_rset = false;
                send(Sent::rset, "RSET");
                if (!pipelining()) return;  // the MAIL goes after its reply
            }
            txn = std::move(queue.front());
            queue.pop_front();
            send_mail(*txn);
            if (pipelining()) {
                for (std::size_t i = 0; i < txn->rcpt.size(); ++i)
                    if (txn->rcpt[i] == Rcpt::queued) send_rcpt(*txn, i);
                send(Sent::data, "DATA");
            }
            return;
        }
        if (quit_requested) {
            send(Sent::quit, "QUIT");
            enter(Cause::quit_sent);
        }
    }

    void end_transaction(bool failed) {
        txn.reset();
        if (failed) need_rset = true;
    }

    // Without pipelining: the next RCPT, or DATA, or the end when nobody was taken.
    void send_next() {
        Message& m = *txn;
        while (m.next_rcpt < m.rcpt.size() && m.rcpt[m.next_rcpt] != Rcpt::queued) ++m.next_rcpt;
        if (m.next_rcpt < m.rcpt.size()) {
            send_rcpt(m, m.next_rcpt++);
        } else if (m.accepted != 0) {
            send(Sent::data, "DATA");
        } else {
            finish_message(m);
            end_transaction(true);
        }
    }

    void on_mail(const ReplyPtr& reply) {
        if (!txn) return;
        if (!reply->is_positive()) {
            finish_all(*txn, reply, false);
            end_transaction(true);
        } else if (!pipelining()) {
            send_next();
        }
    }

    void on_rcpt(const ReplyPtr& reply, std::size_t i) {
        if (!txn) return;  // the group's MAIL failed
        Message& m = *txn;
        --m.rcpt_due;
        if (reply->is_positive()) {
            m.rcpt[i] = Rcpt::accepted;
            ++m.accepted;
        } else {
            finish_recipient(m, i, outcome_of(*reply), reply, false);
        }
        if (!pipelining()) {
            send_next();
        } else if (m.rcpt_due == 0 && m.accepted == 0) {
            // RFC 2920 §3.1: nobody taken; DATA's reply is still due and decides
            // whether an empty message must follow.
            finish_message(m);
            end_transaction(true);
        }
    }

    void on_data(const ReplyPtr& reply) {
        if (!txn) {
            // RFC 2920 §3.1: "if the DATA command was accepted the client SMTP
            // should send a single dot"; rejected, RSET follows anyway.
            if (reply->code == 354) {
                out += ".";
                push_line(Sent::dot);
            }
            return;
        }
        if (reply->code == 354) {
            enter(Cause::data_354);
            emit(ClientEvent::Kind::need_body, txn->id);
        } else {
            finish_all(*txn, reply, false);
            end_transaction(true);
        }
    }

    void on_dot(const ReplyPtr& reply) {
        if (!txn) return;  // the empty message after a 354 nobody wanted
        finish_all(*txn, reply, false, reply->is_positive() ? Outcome::delivered : outcome_of(*reply));
        end_transaction(!reply->is_positive());
    }

    // ------------------------------------------------------------- replies

    void on_greeting(const ReplyPtr& reply) {
        if (reply->code != 220) {
            // RFC 5321 §3.1: after a 554 greeting the server waits for QUIT; a 421
            // server is closing anyway.
            fail(ConnectionFailure::greeting_refused, reply, false, reply->code != 421);
            return;
        }
        enter(Cause::greeting_220);
        fmt::format_to(std::back_inserter(out), "EHLO {}", config.helo_name);
        push_line(Sent::ehlo);
    }

    // The server said hello. STARTTLS first if it is offered and wanted; no TLS
    // where `encrypt` demands it is a failure; else the session is ready.
    void on_hello(Sent command, const ReplyPtr& reply) {
        if (reply->is_positive()) {
            caps = command == Sent::ehlo ? parse_ehlo(*reply) : ServerCapabilities{};
            if (!in_tls && config.tls != TlsPolicy::none && caps.starttls) {
                send(Sent::starttls, "STARTTLS");  // RFC 3207 §4: no argument
                return;
            }
            if (!in_tls && config.tls == TlsPolicy::encrypt)
                return tls_unavailable(
                    local_reply(451, "4.7.4 TLS is required, but STARTTLS was not offered"));
            enter(Cause::hello_accepted);
            emit(ClientEvent::Kind::ready);
        } else if (command == Sent::ehlo && reply->is_permanent()) {
            // RFC 5321 §3.2: a server that does not know EHLO gets HELO.
            fmt::format_to(std::back_inserter(out), "HELO {}", config.helo_name);
            push_line(Sent::helo);
        } else {
            fail(ConnectionFailure::greeting_refused, reply, false, true);
        }
    }

    // STARTTLS answered: 220 starts the handshake (RFC 3207 §4). Refused (454 "TLS
    // not available due to temporary reason", 501, ...): `may` goes on in
    // plaintext on this connection, as Postfix does; `encrypt` gives up.
    void on_starttls(const ReplyPtr& reply) {
        if (reply->code == 220) {
            enter(Cause::starttls_220);
            emit(ClientEvent::Kind::tls_begin);
            return;
        }
        if (config.tls == TlsPolicy::encrypt) {
            std::string text = std::to_string(reply->code);
            for (const std::string& line : reply->lines) (text += ' ') += line;
            return tls_unavailable(local_reply(
                451, fmt::format("4.7.4 TLS is required, but STARTTLS was refused: {}", one_line(text))));
        }
        enter(Cause::starttls_refused);
        emit(ClientEvent::Kind::ready);
    }

    void tls_unavailable(const ReplyPtr& reply) {
        // The server is in a sane state: say goodbye (RFC 5321 §4.1.1.10).
        fail(ConnectionFailure::tls_unavailable, reply, true, true);
    }

    // Which reply codes can answer which command (RFC 5321 §4.3.2): 354 only DATA,
    // which has no 2xx; QUIT takes whatever comes; STARTTLS succeeds only with 220
    // (RFC 3207 §4).
    static bool fits(Sent command, int code) noexcept {
        if (command == Sent::quit) return true;
        if (command == Sent::data) return code == 354 || code >= 400;
        if (command == Sent::starttls) return code == 220 || code >= 400;
        return code < 300 || code >= 400;
    }

    static std::string_view name_of(Sent command) noexcept {
        switch (command) {
            case Sent::ehlo:
                return "EHLO";
            case Sent::helo:
                return "HELO";
            case Sent::starttls:
                return "STARTTLS";
            case Sent::mail:
                return "MAIL";
            case Sent::rcpt:
                return "RCPT";
            case Sent::data:
                return "DATA";
            case Sent::dot:
                return "end of data";
            case Sent::rset:
                return "RSET";
            case Sent::quit:
                return "QUIT";
        }
        return "?";
    }

    void on_reply(const ReplyPtr& reply) {
        if (phase == Phase::greeting) return on_greeting(reply);
        const bool quit_pending = !outstanding.empty() && outstanding.front().command == Sent::quit;
        // RFC 5321 §3.8: 421 may come at any time; the server is closing.
        if (reply->code == 421 && !quit_pending)
            return fail(ConnectionFailure::closed_by_server, reply, false, false);
        if (outstanding.empty()) return protocol_error(fmt::format("unexpected reply {}", reply->code));
        const Outstanding o = outstanding.front();
        if (consumed < o.end)
            return protocol_error(
                fmt::format("reply {} to {} before it was sent", reply->code, name_of(o.command)));
        if (!fits(o.command, reply->code))
            return protocol_error(fmt::format("reply {} to {}", reply->code, name_of(o.command)));
        outstanding.pop_front();
        switch (o.command) {
            case Sent::ehlo:
            case Sent::helo:
                on_hello(o.command, reply);
                break;
            case Sent::starttls:
                on_starttls(reply);
                break;
            case Sent::mail:
                on_mail(reply);
                break;
            case Sent::rcpt:
                on_rcpt(reply, o.recipient);
                break;
            case Sent::data:
                on_data(reply);
                break;
            case Sent::dot:
                on_dot(reply);
                break;
            case Sent::rset:
                break;  // RFC 5321 §4.1.1.5: nothing depends on it
            case Sent::quit:
                enter(Cause::quit_answered);
                emit(ClientEvent::Kind::closed, 0, reply);
                return;
        }
        if (phase == Phase::ready && outstanding.empty() && !txn) advance();
    }

    // ------------------------------------------------------------- failures

    void protocol_error(std::string_view why) {
        fail(ConnectionFailure::protocol_error,
             local_reply(451, fmt::format("4.5.0 Protocol error: {}", why)), true, false);
    }

    // The connection is over: `failed`, every unfinished recipient and message,
    // `closed`. Unsent output is dropped (the server is gone or out of step), except
    // a QUIT to a server that refused us but waits for it.
    void fail(ConnectionFailure failure, const ReplyPtr& reply, bool local, bool send_quit) {
        if (phase == Phase::closed) return;
        enter(detail::cause_of(failure));
        out.clear();
        out_pos = 0;
        outstanding.clear();
        in.clear();
        ClientEvent event{.kind = ClientEvent::Kind::failed};
        event.failure = failure;
        event.local = local;
        events.push_back({event, reply});
        if (txn) finish_all(*txn, reply, local);
        txn.reset();
        for (Message& m : queue) finish_all(m, reply, local);
        queue.clear();
        if (send_quit) out += "QUIT\r\n";
        emit(ClientEvent::Kind::closed);
    }

    // ------------------------------------------------------------- submit

    // RFC 5321 §4.1.2 via the parser's own grammar, so what we send is what a
    // strict server accepts. The parsed mailbox must be the whole address: that
    // refuses source routes and anything that would read as parameters.
    ReplyPtr check_address(std::string_view address, bool sender, bool utf8) const {
        const char* status = sender ? "5.1.7" : "5.1.3";
        if (address.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos)
            return local_reply(553, fmt::format("{} Invalid address: contains CR, LF or NUL", status));
        if (sender && address.empty()) return nullptr;  // the null reverse-path
        const std::string line = sender ? fmt::format("MAIL FROM:<{}>{}", address, utf8 ? " SMTPUTF8" : "")
                                        : fmt::format("RCPT TO:<{}>", address);
        Command command;
        const ParseResult r = parse_command(line, command, ParseOptions{.smtputf8 = utf8}, config.limits);
        if (r.error == Errc::non_ascii_address)
            return local_reply(553, "5.6.7 Invalid address: non-ASCII address needs SMTPUTF8");
        if (!r.ok() || command.path.mailbox != address)
            return local_reply(553, fmt::format("{} Invalid address: {}", status,
                                                r.ok() ? "not a plain mailbox" : error_info(r.error).reason));
        // RFC 5321 §4.5.3.1.4: the command line, with every parameter we may add
        // and CRLF, must fit (only in doubt when Limits::path is raised).
        if (line.size() + (sender ? max_mail_parameters.size() : 0) + 2 > config.limits.command_line)
            return local_reply(
                553, fmt::format("{} Invalid address: {}", status, error_info(Errc::path_too_long).reason));
        return nullptr;
    }

    std::uint64_t submit(OutgoingMessage message) {
        Message m;
        const std::uint64_t id = m.id = next_id++;
        m.rcpt.assign(message.recipients.size(), Rcpt::queued);
        m.out = std::move(message);
        if (const ReplyPtr bad = check_address(m.out.sender, true, m.out.smtputf8)) {
            finish_all(m, bad, true);
            return m.id;
        }
        for (std::size_t i = 0; i < m.rcpt.size(); ++i)
            if (const ReplyPtr bad = check_address(m.out.recipients[i], false, m.out.smtputf8))
                finish_recipient(m, i, Outcome::permanent, bad, true);
        if (m.rcpt.empty()) {
            finish_all(m, local_reply(554, "5.5.1 Message has no recipients"), true);
        } else if (m.done == m.rcpt.size()) {
            finish_message(m);
        } else if (quit_requested || phase == Phase::closed) {
            finish_all(m, local_reply(451, "4.3.0 Not sent: the session is closing"), true);
        } else {
            queue.push_back(std::move(m));
            if (phase == Phase::ready && outstanding.empty() && !txn) advance();
        }
        return id;
    }

    // ------------------------------------------------------------- input

    void feed(std::string_view bytes) {
        if (phase == Phase::closed) return;
        if (phase == Phase::handshake) {
            if (!bytes.empty()) injected();
            return;
        }
        in.append(bytes);
        std::size_t used = 0;
        while (phase != Phase::closed && phase != Phase::handshake) {
            const auto r = parser.parse(std::string_view(in).substr(used));
            used += r.consumed;
            if (r.status == ReplyParser::Status::need_more) break;
            if (r.status == ReplyParser::Status::error) {
                protocol_error(error_info(r.error).reason);
                break;
            }
            on_reply(std::make_shared<const Reply>(std::move(parser.reply())));
        }
        // Behind the 220 to STARTTLS: not even part of a reply may follow it.
        if (phase == Phase::handshake && used < in.size()) injected();
        if (phase == Phase::closed)
            in.clear();
        else
            in.erase(0, used);
    }

    // Server bytes between STARTTLS's 220 and the handshake: a legitimate server
    // says nothing until the client's TLS hello, so they are plaintext slipped in
    // (by the server or a man in the middle), to be read later as if they came
    // over TLS. Never read, never trusted: the connection fails.
    void injected() {
        // The tls_begin event is taken back if the program has not seen it yet, so
        // it does not start a handshake on a connection that is already over.
        if (!events.empty() && events.back().event.kind == ClientEvent::Kind::tls_begin) events.pop_back();
        protocol_error("data after the 220 reply to STARTTLS");
    }

    Usage tls_started() {
        if (phase == Phase::closed) return Usage::closed;
        if (phase != Phase::handshake) return Usage::no_verdict_pending;
        // RFC 3207 §4.2: "The client MUST discard any knowledge obtained from the
        // server, such as the list of SMTP service extensions"; "SHOULD send EHLO".
        in_tls = true;
        caps = ServerCapabilities{};
        parser.reset();
        enter(Cause::tls_started);
        fmt::format_to(std::back_inserter(out), "EHLO {}", config.helo_name);
        push_line(Sent::ehlo);
        return Usage::ok;
    }

    Usage tls_failed(std::string_view reason) {
        if (phase == Phase::closed) return Usage::closed;
        if (phase != Phase::handshake) return Usage::no_verdict_pending;
        // No QUIT: the connection is in the middle of a handshake, and a plaintext
        // QUIT would be read as TLS data.
        fail(ConnectionFailure::tls_failed,
             local_reply(451, fmt::format("4.7.5 TLS handshake failed: {}", one_line(reason))), true, false);
        return Usage::ok;
    }
};

ClientSession::ClientSession(ClientConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
ClientSession::~ClientSession() = default;
ClientSession::ClientSession(ClientSession&&) noexcept = default;
ClientSession& ClientSession::operator=(ClientSession&&) noexcept = default;

std::uint64_t ClientSession::submit(OutgoingMessage message) { return impl_->submit(std::move(message)); }

void ClientSession::quit() {
    Impl& s = *impl_;
    if (s.quit_requested || s.phase == Impl::Phase::closed) return;
    s.quit_requested = true;
    if (s.phase == Impl::Phase::ready && s.outstanding.empty() && !s.txn) s.advance();
}

Usage ClientSession::write_body(std::string_view chunk) {
    Impl& s = *impl_;
    if (s.phase == Impl::Phase::closed) return Usage::closed;
    if (s.phase != Impl::Phase::body) return Usage::no_verdict_pending;
    s.encoder.encode(chunk, s.out);
    return Usage::ok;
}

Usage ClientSession::end_body() {
    Impl& s = *impl_;
    if (s.phase == Impl::Phase::closed) return Usage::closed;
    if (s.phase != Impl::Phase::body) return Usage::no_verdict_pending;
    s.encoder.finish(s.out);
    // finish() ended the data with ".CRLF": that line is the command awaiting a reply.
    s.outstanding.push_back({Impl::Sent::dot, 0, s.consumed + (s.out.size() - s.out_pos)});
    s.enter(Impl::Cause::end_body);
    return Usage::ok;
}

void ClientSession::feed(std::string_view bytes) { impl_->feed(bytes); }

Usage ClientSession::tls_started() { return impl_->tls_started(); }
Usage ClientSession::tls_failed(std::string_view reason) { return impl_->tls_failed(reason); }
bool ClientSession::in_tls() const noexcept { return impl_->in_tls; }

void ClientSession::peer_closed() {
    impl_->fail(ConnectionFailure::peer_closed, local_reply(451, "4.4.2 Connection closed by the server"),
                true, false);
}

void ClientSession::timeout() {
    impl_->fail(ConnectionFailure::timeout, local_reply(451, "4.4.2 Timed out waiting for the server"), true,
                false);
}

// RFC 5321 §4.5.3.2: the wait depends on what is awaited.
std::uint32_t ClientSession::timeout_ms() const noexcept {
    const Impl& s = *impl_;
    const ClientConfig& c = s.config;
    switch (s.phase) {
        case Impl::Phase::greeting:
            return c.greeting_timeout_ms;
        case Impl::Phase::body:
            return c.data_block_timeout_ms;
        case Impl::Phase::handshake:
            return c.command_timeout_ms;  // bounds the TLS handshake too
        case Impl::Phase::closed:
            return 0;
        default:
            break;
    }
    if (s.outstanding.empty()) return 0;
    switch (s.outstanding.front().command) {
        case Impl::Sent::data:
            return c.data_timeout_ms;
        case Impl::Sent::dot:
            return c.data_end_timeout_ms;
        default:
            return c.command_timeout_ms;
    }
}

std::optional<ClientEvent> ClientSession::next_event() {
    Impl& s = *impl_;
    s.current_reply.reset();
    if (s.events.empty()) return std::nullopt;
    Impl::Queued q = std::move(s.events.front());
    s.events.pop_front();
    s.current_reply = std::move(q.reply);
    q.event.reply = s.current_reply.get();
    return q.event;
}

std::string_view ClientSession::pending_output() const noexcept {
    return std::string_view(impl_->out).substr(impl_->out_pos);
}

void ClientSession::consume_output(std::size_t n) noexcept {
    Impl& s = *impl_;
    n = std::min(n, s.out.size() - s.out_pos);
    s.out_pos += n;
    s.consumed += n;
    if (s.out_pos == s.out.size()) {
        s.out.clear();
        s.out_pos = 0;
    } else if (s.out_pos >= 4096 && s.out_pos * 2 >= s.out.size()) {
        // Drop the consumed front now and then, not on every call (quadratic).
        s.out.erase(0, s.out_pos);
        s.out_pos = 0;
    }
}

bool ClientSession::want_read() const noexcept {
    return impl_->phase != Impl::Phase::closed && impl_->phase != Impl::Phase::handshake;
}
bool ClientSession::want_write() const noexcept { return !pending_output().empty(); }
bool ClientSession::should_close() const noexcept {
    return impl_->phase == Impl::Phase::closed && pending_output().empty();
}

const ServerCapabilities& ClientSession::capabilities() const noexcept { return impl_->caps; }

std::string_view outcome_name(Outcome outcome) noexcept {
    switch (outcome) {
        case Outcome::delivered:
            return "delivered";
        case Outcome::temporary:
            return "temporary";
        case Outcome::permanent:
            return "permanent";
    }
    return "unknown";
}

std::string_view failure_name(ConnectionFailure failure) noexcept {
    switch (failure) {
        case ConnectionFailure::none:
            return "none";
        case ConnectionFailure::greeting_refused:
            return "greeting_refused";
        case ConnectionFailure::protocol_error:
            return "protocol_error";
        case ConnectionFailure::timeout:
            return "timeout";
        case ConnectionFailure::peer_closed:
            return "peer_closed";
        case ConnectionFailure::closed_by_server:
            return "closed_by_server";
        case ConnectionFailure::tls_unavailable:
            return "tls_unavailable";
        case ConnectionFailure::tls_failed:
            return "tls_failed";
    }
    return "unknown";
}

}  // namespace smtp
