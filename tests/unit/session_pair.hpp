// Test helper: a ClientSession and a ServerSession talking through memory.
//
// DESIGN.md: "SessionPair: a client and a server session wired in memory". Each
// direction is a byte queue (the "wire"); every pump round delivers one chunk of
// random size (seeded std::mt19937, so a failure repeats) from each wire, so the
// sessions see their input split anywhere: inside a command, a reply line, a CRLF
// or the final dot.
//
// The server side plays an application that records every message it accepted
// (envelope, and content as the concatenated data_chunk views) and answers each
// RCPT and each final dot as scripted per mailbox / per sender; every verdict can be
// held back for a random number of rounds, so that pipelined commands wait in the
// server's input behind a pending verdict. The client side writes each body in
// random-size pieces on need_body, keeping at most `wire_window` octets in flight,
// and records every recipient_result and message_result.
//
// STARTTLS: when the client gets its tls_begin (the server's 220 has arrived, so
// the server's tls_begin came first), the pair "runs the handshake": both sides
// call tls_started(), or with PairConfig::handshake_fails the client calls
// tls_failed() and the server, like its program, waits to be dropped.
//
// run() is bounded: it stops with a problem instead of hanging when the round limit
// is reached or a round moves nothing while no verdict is held back. Everything
// unexpected (a Usage error, a duplicate result, a result for an unknown
// recipient) is a line in problems(); the tests check it is empty.
// Thread safety: a SessionPair is a value used by one thread.
#ifndef SMTP_TESTS_SESSION_PAIR_HPP
#define SMTP_TESTS_SESSION_PAIR_HPP

#include <smtp/client_session.hpp>
#include <smtp/server_session.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace smtp::test {

// The server application's answer to one RCPT or one final dot.
struct ScriptedVerdict {
    int code = 250;  // below 400: accept; else the reject reply's code
    EnhancedStatus status{};
    std::string text;

    bool accepted() const noexcept { return code < 400; }
};
inline ScriptedVerdict accept_verdict() { return {}; }
inline ScriptedVerdict no_such_user() { return {550, {5, 1, 1}, "No such user"}; }
inline ScriptedVerdict try_later() { return {451, {4, 3, 0}, "Try again later"}; }

// A message as the server application received it.
struct ReceivedMessage {
    std::string sender;
    std::vector<std::string> recipients;  // the accepted ones, in order
    std::string content;                  // the data_chunk views, concatenated
    std::string protocol;                 // ServerSession::protocol() at the final dot
};

// What the client reported for one recipient.
struct RecipientReport {
    int results = 0;  // recipient_result events: must end up 1
    Outcome outcome = Outcome::delivered;
    int code = 0;  // the reply's code, 0 if the event had no reply
    std::optional<EnhancedStatus> status;
    bool local = false;
};

// What the client reported for one message.
struct MessageReport {
    int results = 0;  // message_result events: must end up 1
    std::size_t delivered = 0;
    std::vector<RecipientReport> recipients;
};

struct PairConfig {
    ServerConfig server;
    ClientConfig client;
    std::uint32_t seed = 1;
    std::size_t max_chunk = 64;          // each wire delivery is 1..max_chunk octets
    std::size_t max_body_chunk = 64;     // each write_body() piece is 1..max_body_chunk octets
    int defer_rounds = 0;                // each verdict waits 0..defer_rounds rounds
    std::size_t wire_window = 8 * 1024;  // the client stops writing body data past this
    std::size_t round_limit = 1'000'000;
    bool handshake_fails = false;  // STARTTLS: the client's handshake fails
};

class SessionPair {
public:
    explicit SessionPair(PairConfig config)
        : config_(std::move(config)), rng_(config_.seed), server_(config_.server), client_(config_.client) {}

    // Scripted verdicts; everything not named here is accepted.
    void set_rcpt_verdict(std::string mailbox, ScriptedVerdict v) {
        rcpt_verdicts_[std::move(mailbox)] = std::move(v);
    }
    void set_message_verdict(std::string sender, ScriptedVerdict v) {
        message_verdicts_[std::move(sender)] = std::move(v);
    }

    // Queues a message with its body; returns the client's id for it.
    std::uint64_t submit(OutgoingMessage message, std::string body) {
        const std::size_t recipients = message.recipients.size();
        const std::uint64_t id = client_.submit(std::move(message));
        bodies_[id] = std::move(body);
        reports_[id].recipients.resize(recipients);
        return id;
    }

    // Asks the client to QUIT after the submitted messages and pumps both sides
    // until both are closed (or a problem stops it).
    void run() {
        client_.quit();
        for (rounds_ = 0;; ++rounds_) {
            if (rounds_ >= config_.round_limit) {
                problem("round limit reached: the conversation did not end");
                return;
            }
            bool progress = pump_client();
            progress = deliver_to_server() || progress;
            progress = pump_server() || progress;
            progress = deliver_to_client() || progress;
            if (finished()) {
                pump_client();  // the events the last reply made (closed, for one)
                return;
            }
            if (!progress && !pending_) {
                problem("stalled: nothing moved in round " + std::to_string(rounds_));
                return;
            }
        }
    }

    // --- what happened ------------------------------------------------------------
    const std::vector<std::string>& problems() const noexcept { return problems_; }
    const std::vector<ReceivedMessage>& received() const noexcept { return received_; }
    const MessageReport& report(std::uint64_t id) const { return reports_.at(id); }
    const std::map<std::uint64_t, MessageReport>& reports() const noexcept { return reports_; }
    std::size_t mail_commands() const noexcept { return mail_commands_; }              // mail_from events
    std::size_t rcpt_commands() const noexcept { return rcpt_commands_; }              // rcpt_to events
    const std::vector<int>& server_errors() const noexcept { return server_errors_; }  // protocol_error codes
    std::size_t server_refused_messages() const noexcept { return refused_messages_; }
    bool server_quit() const noexcept { return server_quit_; }              // a quit event
    bool client_closed_event() const noexcept { return client_closed_; }    // a closed event
    bool client_failed() const noexcept { return client_failed_; }          // a failed event
    bool peer_close_reported() const noexcept { return peer_close_sent_; }  // peer_closed() called
    bool client_should_close() const noexcept { return client_.should_close(); }
    bool server_should_close() const noexcept { return server_.should_close(); }
    // Octets the server took from the wire while one of its verdicts was held back.
    std::size_t fed_while_waiting() const noexcept { return fed_while_waiting_; }
    // Client output bursts holding both a MAIL and a RCPT: pipelined groups.
    std::size_t pipelined_groups() const noexcept { return pipelined_groups_; }
    std::size_t rounds() const noexcept { return rounds_; }
    // The server's last reply line, without CRLF ("221 2.0.0 Bye").
    std::string last_server_line() const {
        const std::string_view t = std::string_view(server_tail_).substr(0, server_tail_.size() - 2);
        const std::size_t lf = t.rfind('\n');
        return std::string(lf == std::string_view::npos ? t : t.substr(lf + 1));
    }
    const ServerCapabilities& capabilities() const noexcept { return client_.capabilities(); }
    // STARTTLS: tls_begin events on each side, and whether each ended up in TLS.
    int client_tls_begins() const noexcept { return client_tls_begins_; }
    int server_tls_begins() const noexcept { return server_tls_begins_; }
    bool client_in_tls() const noexcept { return client_.in_tls(); }
    bool server_in_tls() const noexcept { return server_.in_tls(); }
    std::size_t client_ready_events() const noexcept { return ready_events_; }
    // The first ConnectionFailure the client reported, none if none.
    ConnectionFailure client_failure() const noexcept { return failure_; }

private:
    // A byte queue; reading from the front is O(1), compacted now and then.
    struct Wire {
        std::string bytes;
        std::size_t head = 0;

        std::string_view view() const noexcept { return std::string_view(bytes).substr(head); }
        std::size_t size() const noexcept { return bytes.size() - head; }
        void pop(std::size_t n) {
            head += n;
            if (head > 4096 && head * 2 > bytes.size()) {
                bytes.erase(0, head);
                head = 0;
            }
        }
    };

    // A verdict the server application has decided but not yet given.
    struct Pending {
        ServerEvent::Kind kind;
        ScriptedVerdict verdict;
        int rounds;
        std::string mailbox;  // rcpt_to: who is accepted or not
    };

    void problem(std::string what) { problems_.push_back(std::move(what)); }

    std::size_t random(std::size_t low, std::size_t high) {
        return std::uniform_int_distribution<std::size_t>(low, high)(rng_);
    }

    bool finished() const {
        if (!client_.should_close() || c2s_.size() != 0) return false;
        // The client has hung up. A server still open would now see EOF and be
        // dropped by its program; the tests check server_should_close() themselves.
        return s2c_.size() == 0 || server_.should_close();
    }

    // --- client side -----------------------------------------------------------------
    bool pump_client() {
        bool progress = false;
        while (auto ev = client_.next_event()) {
            progress = true;
            on_client_event(*ev);
        }
        progress = write_body() || progress;
        const std::string_view out = client_.pending_output();
        if (!out.empty()) {
            const auto mail = out.find("MAIL FROM:");
            if (mail != std::string_view::npos && out.find("RCPT TO:", mail) != std::string_view::npos)
                ++pipelined_groups_;
            c2s_.bytes.append(out);
            client_.consume_output(out.size());
            progress = true;
        }
        return progress;
    }

    void on_client_event(const ClientEvent& ev) {
        using Kind = ClientEvent::Kind;
        switch (ev.kind) {
            case Kind::ready:
                ++ready_events_;
                break;
            case Kind::tls_begin:
                ++client_tls_begins_;
                handshake();
                break;
            case Kind::need_body:
                if (body_) problem("need_body while another body is being written");
                if (!bodies_.count(ev.message)) problem("need_body for unknown message");
                body_ = ev.message;
                body_at_ = 0;
                break;
            case Kind::recipient_result: {
                auto it = reports_.find(ev.message);
                if (it == reports_.end() || ev.recipient >= it->second.recipients.size()) {
                    problem("recipient_result for an unknown recipient");
                    break;
                }
                if (it->second.results != 0) problem("recipient_result after message_result");
                RecipientReport& r = it->second.recipients[ev.recipient];
                ++r.results;
                r.outcome = ev.outcome;
                r.local = ev.local;
                r.code = ev.reply ? ev.reply->code : 0;
                r.status = ev.reply ? ev.reply->enhanced_status() : std::nullopt;
                break;
            }
            case Kind::message_result: {
                auto it = reports_.find(ev.message);
                if (it == reports_.end()) {
                    problem("message_result for an unknown message");
                    break;
                }
                for (const RecipientReport& r : it->second.recipients)
                    if (r.results != 1) problem("message_result before every recipient_result");
                ++it->second.results;
                it->second.delivered = ev.delivered;
                break;
            }
            case Kind::failed:
                if (!client_failed_) failure_ = ev.failure;
                client_failed_ = true;
                break;
            case Kind::closed:
                if (client_closed_) problem("two closed events");
                client_closed_ = true;
                break;
        }
    }

    // The client read the server's 220 to STARTTLS. In the real world the client's
    // TLS hello goes out now and the server's program finishes the handshake first.
    void handshake() {
        if (server_tls_begins_ != client_tls_begins_) problem("client tls_begin without the server's");
        if (c2s_.size() != 0) problem("client bytes on the wire behind STARTTLS");
        if (config_.handshake_fails) {
            if (client_.tls_failed("handshake failure") != Usage::ok) problem("tls_failed refused");
            return;
        }
        if (server_.tls_started() != Usage::ok) problem("server tls_started refused");
        if (client_.tls_started() != Usage::ok) problem("client tls_started refused");
    }

    // Writes the current body in random pieces while little is in flight.
    bool write_body() {
        if (!body_) return false;
        const std::string& body = bodies_[*body_];
        bool progress = false;
        while (body_at_ < body.size() &&
               c2s_.size() + client_.pending_output().size() < config_.wire_window) {
            const std::size_t n = std::min(random(1, config_.max_body_chunk), body.size() - body_at_);
            if (client_.write_body(std::string_view(body).substr(body_at_, n)) != Usage::ok)
                problem("write_body refused after need_body");
            body_at_ += n;
            progress = true;
        }
        if (body_at_ == body.size()) {
            if (client_.end_body() != Usage::ok) problem("end_body refused after need_body");
            body_.reset();
            progress = true;
        }
        return progress;
    }

    bool deliver_to_client() {
        if (s2c_.size() == 0) {
            // The server hung up and all it said has arrived: EOF, once.
            if (server_.should_close() && !client_.should_close() && !peer_close_sent_) {
                peer_close_sent_ = true;
                client_.peer_closed();
                return true;
            }
            return false;
        }
        const std::size_t n = std::min(random(1, config_.max_chunk), s2c_.size());
        client_.feed(s2c_.view().substr(0, n));
        s2c_.pop(n);
        return true;
    }

    // --- server side -----------------------------------------------------------------
    bool deliver_to_server() {
        if (c2s_.size() == 0) return false;
        const std::size_t n = std::min(random(1, config_.max_chunk), c2s_.size());
        const std::size_t room = server_.input_room();
        const std::size_t taken = server_.feed(c2s_.view().substr(0, n));
        if (taken != std::min(n, room)) problem("feed() did not take what input_room() promised");
        c2s_.pop(taken);
        if (pending_) fed_while_waiting_ += taken;
        return taken > 0;
    }

    bool pump_server() {
        bool progress = false;
        if (pending_) {
            if (pending_->rounds-- > 0) return false;
            give(*pending_);
            pending_.reset();
            progress = true;
        }
        while (!pending_) {
            const auto ev = server_.next_event();
            if (!ev) break;
            progress = true;
            on_server_event(*ev);
        }
        const std::string_view out = server_.pending_output();
        if (!out.empty()) {
            s2c_.bytes.append(out);
            server_tail_.append(out);
            if (server_tail_.size() > 1024) server_tail_.erase(0, server_tail_.size() - 512);
            server_.consume_output(out.size());
            progress = true;
        }
        return progress;
    }

    void on_server_event(const ServerEvent& ev) {
        using Kind = ServerEvent::Kind;
        Pending p{ev.kind, accept_verdict(), static_cast<int>(random(0, config_.defer_rounds)), {}};
        switch (ev.kind) {
            case Kind::connect:
            case Kind::hello:
                break;
            case Kind::mail_from:
                ++mail_commands_;
                transaction_ = ReceivedMessage{};
                if (ev.command) transaction_.sender = std::string(ev.command->path.mailbox);
                break;
            case Kind::rcpt_to:
                ++rcpt_commands_;
                if (ev.command) p.mailbox = std::string(ev.command->path.mailbox);
                if (auto it = rcpt_verdicts_.find(p.mailbox); it != rcpt_verdicts_.end())
                    p.verdict = it->second;
                break;
            case Kind::data_begin:
                transaction_.content.clear();
                break;
            case Kind::data_chunk:
                transaction_.content.append(ev.data);
                break;
            case Kind::message_end:
                if (ev.error != Errc::ok) ++refused_messages_;  // answered by the session
                if (auto it = message_verdicts_.find(transaction_.sender); it != message_verdicts_.end())
                    p.verdict = it->second;
                break;
            case Kind::reset:
                transaction_ = ReceivedMessage{};
                break;
            case Kind::quit:
                server_quit_ = true;
                break;
            case Kind::protocol_error:
                server_errors_.push_back(ev.reply_code);
                break;
            case Kind::closing:
                break;
            case Kind::tls_begin:
                ++server_tls_begins_;
                break;
        }
        if (ev.needs_verdict != (ev.kind == Kind::connect || ev.kind == Kind::hello ||
                                 ev.kind == Kind::mail_from || ev.kind == Kind::rcpt_to ||
                                 (ev.kind == Kind::message_end && ev.error == Errc::ok)))
            problem("needs_verdict is not what server_session.hpp says for this event");
        if (!ev.needs_verdict) return;
        if (p.rounds > 0)
            pending_ = std::move(p);
        else
            give(p);
    }

    void give(const Pending& p) {
        const ScriptedVerdict& v = p.verdict;
        const Usage u = v.accepted() ? server_.accept(v.text) : server_.reject(v.code, v.status, v.text);
        if (u != Usage::ok) problem("verdict refused by the server session");
        if (!v.accepted()) return;
        if (p.kind == ServerEvent::Kind::rcpt_to) transaction_.recipients.push_back(p.mailbox);
        if (p.kind == ServerEvent::Kind::message_end) {
            transaction_.protocol = std::string(server_.protocol());
            received_.push_back(transaction_);
        }
    }

    PairConfig config_;
    std::mt19937 rng_;
    ServerSession server_;
    ClientSession client_;
    Wire c2s_, s2c_;
    std::size_t rounds_ = 0;
    std::vector<std::string> problems_;

    // Client application.
    std::map<std::uint64_t, std::string> bodies_;
    std::map<std::uint64_t, MessageReport> reports_;
    std::optional<std::uint64_t> body_;  // the message whose body is being written
    std::size_t body_at_ = 0;
    bool client_closed_ = false;
    bool client_failed_ = false;
    bool peer_close_sent_ = false;
    std::size_t pipelined_groups_ = 0;
    std::size_t ready_events_ = 0;
    int client_tls_begins_ = 0;
    ConnectionFailure failure_ = ConnectionFailure::none;

    // Server application.
    std::map<std::string, ScriptedVerdict> rcpt_verdicts_;
    std::map<std::string, ScriptedVerdict> message_verdicts_;
    std::optional<Pending> pending_;
    ReceivedMessage transaction_;
    std::vector<ReceivedMessage> received_;
    std::vector<int> server_errors_;
    std::size_t mail_commands_ = 0;
    std::size_t rcpt_commands_ = 0;
    std::size_t refused_messages_ = 0;
    std::size_t fed_while_waiting_ = 0;
    bool server_quit_ = false;
    int server_tls_begins_ = 0;
    std::string server_tail_;  // the end of everything the server sent
};

}  // namespace smtp::test

#endif
