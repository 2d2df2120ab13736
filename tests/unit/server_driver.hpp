// Test helper: drives a ServerSession as an embedding program would, in memory.
//
// It feeds the client's bytes (as much as the session takes), reads every event,
// gives verdicts from a Policy (now, or deferred until more input has been fed),
// sends all output, and keeps a record: the bytes sent, one log line per event,
// the message content. It also checks the session's promises on the way: pending
// output within ServerConfig::output_buffer, nothing said after should_close(),
// and progress (a feed that takes nothing is followed by one that does).
// STARTTLS: a tls_begin event sets `handshake`; the test plays the handshake by
// calling tls_started() when its client would have finished it.
#ifndef SMTP_TESTS_SERVER_DRIVER_HPP
#define SMTP_TESTS_SERVER_DRIVER_HPP

#include <smtp/server_session.hpp>

#include <doctest/doctest.h>

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace smtp::test {

// The program's decision on one event that needs a verdict.
struct Verdict {
    bool accept = true;
    std::string text;  // accept: replaces the default text; reject: the reply text
    int code = 0;      // reject
    EnhancedStatus status{};

    static Verdict yes(std::string text = {}) { return {true, std::move(text), 0, {}}; }
    static Verdict no(int code, EnhancedStatus status, std::string text) {
        return {false, std::move(text), code, status};
    }
};
using Policy = std::function<Verdict(const ServerEvent&)>;

inline Verdict accept_all(const ServerEvent&) { return Verdict::yes(); }

inline std::string_view kind_name(ServerEvent::Kind k) {
    using K = ServerEvent::Kind;
    switch (k) {
        case K::connect:
            return "connect";
        case K::hello:
            return "hello";
        case K::mail_from:
            return "mail_from";
        case K::rcpt_to:
            return "rcpt_to";
        case K::data_begin:
            return "data_begin";
        case K::data_chunk:
            return "data_chunk";
        case K::message_end:
            return "message_end";
        case K::reset:
            return "reset";
        case K::quit:
            return "quit";
        case K::protocol_error:
            return "protocol_error";
        case K::closing:
            return "closing";
        case K::tls_begin:
            return "tls_begin";
    }
    return "?";
}

// One event as a log line: "hello EHLO client.example", "rcpt_to <a@b>",
// "protocol_error bad_sequence 503", "closing 421", "message_end 31 octets".
// Data chunks are not logged one by one (their split is the session's business);
// their content goes to Driver::message.
inline std::string describe(const ServerEvent& e, std::size_t message_octets) {
    using K = ServerEvent::Kind;
    std::string s(kind_name(e.kind));
    switch (e.kind) {
        case K::hello:
            s += e.esmtp ? " EHLO " : " HELO ";
            s += e.name;
            break;
        case K::mail_from:
        case K::rcpt_to:
            s += " <" + std::string(e.command->path.mailbox) + ">";
            break;
        case K::message_end:
            s += " " + std::to_string(message_octets) + " octets";
            if (e.error != Errc::ok) s += " " + std::string(error_info(e.error).name);
            break;
        case K::protocol_error:
            s += " " + std::string(error_info(e.error).name) + " " + std::to_string(e.reply_code);
            break;
        case K::closing:
            s += " " + std::to_string(e.reply_code);
            break;
        default:
            break;
    }
    return s;
}

class Driver {
public:
    // `defer`: keep each verdict until the next feed() (or finish()), so that the
    // session has more input buffered behind the pending verdict.
    // `drain`: octets of output sent per step (0: all of it).
    explicit Driver(ServerConfig config = {}, Policy policy = accept_all, bool defer = false,
                    std::size_t drain = 0)
        : output_limit_(config.output_buffer),
          session(std::move(config)),
          policy_(std::move(policy)),
          defer_(defer),
          drain_(drain) {}

    // Takes the connect event and answers it at once (a deferred answer would
    // make the client's first bytes a pregreet), then sends the greeting.
    void greet() {
        pump();
        decide();
        pump();
    }

    // Feeds all of `bytes`, as much as the session takes at a time; a deferred
    // verdict is given only after more input was buffered behind it.
    void feed(std::string_view bytes) {
        int stuck = 0;
        while (!bytes.empty()) {
            const std::size_t n = session.feed(bytes);
            bytes.remove_prefix(n);
            if (n > 0) {
                stuck = 0;
            } else if (++stuck > 3) {
                FAIL_CHECK("the session takes no input and makes no progress");
                return;
            }
            decide();
            pump();
        }
    }

    // Gives any deferred verdict and runs the session until nothing can proceed.
    void finish() {
        for (int i = 0; i < 1000 && (held_ || send()); ++i) {
            decide();
            pump();
        }
        pump();
    }

    // Reads events until none is ready; sends output as it goes.
    void pump() {
        for (int guard = 0; guard < 1'000'000; ++guard) {
            send();
            if (held_) return;
            const std::optional<ServerEvent> e = session.next_event();
            if (!e) {
                if (send()) continue;  // drained some output: maybe the session can go on
                return;
            }
            record(*e);
            if (e->needs_verdict) {
                held_ = e;
                if (!defer_) decide();
            }
        }
        FAIL_CHECK("the session never stops producing events");
    }

    // The verdict for the held event, if any.
    void decide() {
        if (!held_) return;
        const ServerEvent e = *held_;
        held_.reset();
        const Verdict v = policy_(e);
        const Usage u = v.accept ? session.accept(v.text) : session.reject(v.code, v.status, v.text);
        CHECK(u == Usage::ok);
        send();
    }

    // The TLS handshake is done: all output (the 220) is sent first, as a program
    // must; then the session goes on with the "decrypted" stream.
    void tls_started() {
        while (send()) {
        }
        CHECK(handshake);
        CHECK(session.tls_started() == Usage::ok);
        handshake = false;
        pump();
    }

    // Sends pending output (up to `drain` octets); true if any was sent.
    bool send() {
        const std::string_view out = session.pending_output();
        if (output_limit_ >= 8 * 512) CHECK(out.size() <= output_limit_);
        if (out.empty()) return false;
        CHECK_FALSE(closed_);  // nothing is said after should_close()
        const std::size_t n = drain_ == 0 ? out.size() : std::min(drain_, out.size());
        output.append(out.substr(0, n));
        session.consume_output(n);
        closed_ = session.should_close();
        return true;
    }

    std::size_t output_limit_;
    ServerSession session;
    std::string output;            // everything sent
    std::vector<std::string> log;  // one line per event, data chunks left out
    std::string message;           // the content of all data chunks
    std::size_t chunks = 0;
    bool handshake = false;  // a tls_begin came; tls_started() not yet called

private:
    void record(const ServerEvent& e) {
        if (e.kind == ServerEvent::Kind::data_chunk) {
            CHECK_FALSE(e.data.empty());
            message.append(e.data);
            message_octets_ += e.data.size();
            ++chunks;
            return;
        }
        log.push_back(describe(e, message_octets_));
        if (e.kind == ServerEvent::Kind::tls_begin) handshake = true;
        if (e.kind == ServerEvent::Kind::message_end) message_octets_ = 0;
    }

    Policy policy_;
    bool defer_;
    std::size_t drain_;
    std::optional<ServerEvent> held_;
    bool closed_ = false;
    std::size_t message_octets_ = 0;
};

// Joins lines with CRLF after each: the wire form of S: lines.
inline std::string lines(std::initializer_list<std::string_view> ls) {
    std::string s;
    for (const std::string_view l : ls) {
        s.append(l);
        s += "\r\n";
    }
    return s;
}

}  // namespace smtp::test

#endif
