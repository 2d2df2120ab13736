// Fuzz target for ClientSession: the fuzzer plays a hostile server.
//
// Invariant: no crash, no hang (every loop is bounded by the input), and
//  - every line the client writes outside message data is a well-formed command
//    line: at most Limits::command_line (512) octets with its CRLF, no CR, LF or NUL
//    inside, accepted by parse_command() as EHLO, HELO, MAIL, RCPT, DATA, RSET or
//    QUIT, or the lone "." of the empty message RFC 2920 §3.1 asks for. Message data
//    runs from need_body to end_body and ends in CRLF ".CRLF";
//  - every recipient gets exactly one recipient_result, then its message exactly
//    one message_result whose `delivered` counts the delivered recipients (only
//    after need_body, with the server's 2xx, before any `failed`); by the
//    end (the input ends with peer_closed()) all have come; `failed` comes at most
//    once, `closed` exactly once and last (but for the results of a message
//    submitted once closed, which come at once); every result carries a reply;
//  - pending output stays bounded (one transaction's commands plus a small body);
//  - STARTTLS (RFC 3207) only with a TlsPolicy and once; tls_begin at most once,
//    and then nothing is written before tls_started() (called at once, unless the
//    input picks tls_failed()), after which the first command is EHLO; with
//    `encrypt` no MAIL, RCPT or DATA ever goes out in plaintext, `ready` comes
//    only in TLS, and nothing is delivered without it; `ready` at most once.
// A violation calls abort(), which libFuzzer reports as a crash.
//
// Input: byte 0: bits 0-1 messages submitted at the start (0-3), bit 2
// use_pipelining, bit 3 eight_bit, bit 4 smtputf8, bit 5 a declared size, bit 6
// quit() at the start, bit 7 consume only part of the output each round.
// Byte 1: bits 0-1 recipients per message (0-3), bit 2 one bad address, bit 3
// another message on `ready`, bits 4-7 the chunk after which timeout() (odd) or
// peer_closed() (even) is called, 0 never. Byte 2: the chunk size, byte / 4; 0
// feeds line by line, so whole conversations (each reply after its command was
// sent) are reachable; its bits 0-1 (byte 0 has none left) the TLS policy: none,
// may, encrypt, or may with the handshake failing. The rest: the server's bytes,
// those after a 220 to STARTTLS standing for the decrypted stream. The output is
// taken before each chunk is fed.
#include <smtp/client_session.hpp>
#include <smtp/command.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using Kind = smtp::ClientEvent::Kind;

void check(bool ok) {
    if (!ok) std::abort();
}

constexpr std::size_t max_pending = 16 * 1024;

struct Book {
    std::vector<int> results;  // per recipient: how many recipient_results
    std::size_t delivered = 0;
    int message_results = 0;
    bool body = false;  // need_body came
    bool late = false;  // submitted once the session was closed: results come at once
};

class Harness {
public:
    explicit Harness(std::uint8_t flags, std::uint8_t shape, std::uint8_t tls)
        : flags_(flags), shape_(shape), tls_(tls & 3), session_(config(flags, tls_)) {}

    void submit() {
        smtp::OutgoingMessage m;
        static const char* const good[] = {"b@example.net", "Postmaster", "\"q r\"@example.net",
                                           "x@[192.0.2.1]"};
        static const char* const bad[] = {"bad\r\nRSET", "no-at", "@r.example:a@example.net",
                                          "caf\xc3\xa9@example.net"};
        const std::size_t n = shape_ & 3;
        m.sender = books_.size() % 2 ? "" : "a@example.org";
        for (std::size_t i = 0; i < n; ++i) m.recipients.emplace_back(good[(books_.size() + i) % 4]);
        if ((shape_ & 4) && n != 0) m.recipients[n - 1] = bad[books_.size() % 4];
        if ((shape_ & 4) && books_.size() % 3 == 2) m.sender = bad[books_.size() % 4];
        m.eight_bit = flags_ & 8;
        m.smtputf8 = flags_ & 16;
        if (flags_ & 32) m.size = books_.size() % 2 ? 1000 : 1'000'000'000'000;
        const bool late = !session_.want_read();
        const std::uint64_t id = session_.submit(std::move(m));
        check(id == books_.size() + 1);
        books_[id].results.assign(n, 0);
        books_[id].late = late;
    }

    // Takes the output as the network would: all of it, or in part.
    void send() {
        const std::string_view out = session_.pending_output();
        check(out.size() <= max_pending);
        const std::size_t n = (flags_ & 128) ? out.size() / 2 + 1 : out.size();
        wire_.append(out.substr(0, n));
        session_.consume_output(n);
    }

    void feed(std::string_view bytes) { session_.feed(bytes); }
    void timeout() { session_.timeout(); }
    void peer_closed() { session_.peer_closed(); }

    void events() {
        while (const auto e = session_.next_event()) {
            const bool result = e->kind == Kind::recipient_result || e->kind == Kind::message_result;
            check(!result || e->reply != nullptr);
            // Nothing after `closed` but the results of messages submitted after it.
            check(!closed_ || (result && book(e->message).late));
            switch (e->kind) {
                case Kind::ready:
                    check(++readies_ == 1);
                    check(policy() != smtp::TlsPolicy::encrypt || session_.in_tls());
                    if (shape_ & 8) submit();
                    break;
                case Kind::tls_begin:
                    handshake();
                    break;
                case Kind::need_body:
                    book(e->message).body = true;
                    write_body(e->message);
                    break;
                case Kind::recipient_result: {
                    Book& b = book(e->message);
                    check(b.message_results == 0 && e->recipient < b.results.size());
                    check(++b.results[e->recipient] == 1);
                    if (e->outcome == smtp::Outcome::delivered) {
                        // Only a server's 2xx to the final dot delivers.
                        check(b.body && !failed_ && !e->local && e->reply->is_positive());
                        check(policy() != smtp::TlsPolicy::encrypt || session_.in_tls());
                        ++b.delivered;
                    } else {
                        check(!e->reply->is_positive() || !e->local);
                    }
                    break;
                }
                case Kind::message_result: {
                    Book& b = book(e->message);
                    check(++b.message_results == 1 && e->delivered == b.delivered);
                    for (const int r : b.results) check(r == 1);
                    break;
                }
                case Kind::failed:
                    check(!failed_);
                    failed_ = true;
                    // Unsent output is dropped: a command cut short ends here.
                    breaks_.push_back(wire_.size());
                    break;
                case Kind::closed:
                    closed_ = true;
                    break;
            }
        }
        check(session_.pending_output().size() <= max_pending);
        (void)session_.timeout_ms();
        if (closed_) check(session_.timeout_ms() == 0 && !session_.want_read());
    }

    bool closed() const { return closed_; }
    void quit() { session_.quit(); }

    // The end: the server is gone. Everything must be accounted for.
    void finish() {
        for (int round = 0; round < 64 && !session_.pending_output().empty(); ++round) send();
        events();
        session_.peer_closed();
        events();
        for (int round = 0; round < 64 && !session_.pending_output().empty(); ++round) send();
        check(closed_ && session_.should_close());
        for (const auto& [id, b] : books_) {
            check(b.message_results == 1);
            for (const int r : b.results) check(r == 1);
        }
        check_wire();
    }

private:
    static smtp::TlsPolicy policy_of(unsigned tls) {
        return tls == 2 ? smtp::TlsPolicy::encrypt : tls == 0 ? smtp::TlsPolicy::none : smtp::TlsPolicy::may;
    }
    smtp::TlsPolicy policy() const { return policy_of(tls_); }

    static smtp::ClientConfig config(std::uint8_t flags, unsigned tls) {
        smtp::ClientConfig c;
        c.helo_name = "client.example.org";
        c.use_pipelining = flags & 4;
        c.tls = policy_of(tls);
        return c;
    }

    // The server's 220 to STARTTLS: the "handshake" happens now. The STARTTLS line
    // must be the last thing written, and nothing may be waiting to go out.
    void handshake() {
        check(policy() != smtp::TlsPolicy::none && tls_at_ == std::string::npos && !session_.in_tls());
        check(session_.pending_output().empty() && !session_.want_read());
        check(wire_.size() >= 10 && wire_.compare(wire_.size() - 10, 10, "STARTTLS\r\n") == 0);
        if (tls_ == 3) {
            check(session_.tls_failed("handshake failure") == smtp::Usage::ok);
            return;
        }
        check(session_.tls_started() == smtp::Usage::ok);
        check(session_.in_tls() && session_.tls_started() == smtp::Usage::no_verdict_pending);
        tls_at_ = wire_.size();
        check(session_.pending_output() == "EHLO client.example.org\r\n");
    }

    Book& book(std::uint64_t id) {
        const auto it = books_.find(id);
        check(it != books_.end());
        return it->second;
    }

    void write_body(std::uint64_t id) {
        check(book(id).message_results == 0);
        // Data starts after what is already queued.
        const std::size_t start = wire_.size() + session_.pending_output().size();
        // The session may have failed after the 354 (a bad reply in the same
        // feed): then `failed` is still queued behind need_body and writes say so.
        if (session_.write_body(".dot\r\nline\nbare LF\r") == smtp::Usage::closed) {
            check(session_.end_body() == smtp::Usage::closed && !session_.want_read());
            return;
        }
        check(session_.write_body("\n..\r\nend") == smtp::Usage::ok);
        check(session_.end_body() == smtp::Usage::ok);
        check(session_.end_body() == smtp::Usage::no_verdict_pending);
        data_.push_back({start, wire_.size() + session_.pending_output().size()});
    }

    // Every command line is well-formed; every data run ends the message. Where a
    // failure dropped the unsent output, a command or data may be cut short.
    void check_wire() const {
        const auto next_break = [&](std::size_t after) {
            for (const std::size_t b : breaks_)
                if (b > after) return b;
            return wire_.size();
        };
        std::size_t at = 0, next_data = 0;
        while (at < wire_.size()) {
            if (next_data < data_.size() && at == data_[next_data].first) {
                const auto [start, end] = data_[next_data++];
                const std::size_t cut = next_break(start);
                if (end <= cut) {
                    const std::string_view run = std::string_view(wire_).substr(start, end - start);
                    check(run.size() >= 5 && run.substr(run.size() - 5) == "\r\n.\r\n");
                }
                at = std::min(end, cut);
                continue;
            }
            std::size_t boundary = next_break(at);
            if (next_data < data_.size()) boundary = std::min(boundary, data_[next_data].first);
            const std::size_t crlf = wire_.find("\r\n", at);
            if (crlf != std::string::npos && crlf + 2 <= boundary) {
                check_command(std::string_view(wire_).substr(at, crlf - at), at);
                at = crlf + 2;
                continue;
            }
            // No whole line before the boundary: a command cut short by a failure.
            check(std::find(breaks_.begin(), breaks_.end(), boundary) != breaks_.end());
            at = boundary;
        }
    }

    void check_command(std::string_view line, std::size_t at) const {
        check(line.size() + 2 <= smtp::Limits{}.command_line);
        check(line.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos);
        if (line == ".") return;  // the empty message after a 354 nobody wanted
        smtp::Command command;
        check(smtp::parse_command(line, command, smtp::ParseOptions{.smtputf8 = true}).ok());
        const bool plaintext = at < tls_at_;  // tls_at_ is npos without TLS
        switch (command.verb) {
            case smtp::Verb::ehlo:
            case smtp::Verb::helo:
            case smtp::Verb::rset:
            case smtp::Verb::quit:
                break;
            case smtp::Verb::mail:
            case smtp::Verb::rcpt:
            case smtp::Verb::data:
                check(!plaintext || policy() != smtp::TlsPolicy::encrypt);
                break;
            case smtp::Verb::starttls:
                check(plaintext && policy() != smtp::TlsPolicy::none && ++starttls_ == 1);
                break;
            default:
                check(false);
        }
    }

    std::uint8_t flags_, shape_;
    unsigned tls_;  // 0 none, 1 may, 2 encrypt, 3 may with the handshake failing
    smtp::ClientSession session_;
    std::map<std::uint64_t, Book> books_;
    std::string wire_;                                       // everything the client wrote that was taken
    std::vector<std::pair<std::size_t, std::size_t>> data_;  // message data in wire_
    std::vector<std::size_t> breaks_;                        // where a failure dropped output
    bool failed_ = false, closed_ = false;
    int readies_ = 0;
    mutable int starttls_ = 0;                // STARTTLS lines seen by check_wire()
    std::size_t tls_at_ = std::string::npos;  // where in wire_ the TLS stream starts
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return 0;
    const std::uint8_t flags = data[0], shape = data[1];
    const std::size_t chunk = data[2] / 4;  // 0: line by line
    const std::size_t stop_after = shape >> 4;
    const std::string_view server(reinterpret_cast<const char*>(data + 3), size - 3);

    Harness h(flags, shape, data[2]);
    for (unsigned i = 0; i < (flags & 3u); ++i) h.submit();
    if (flags & 64) h.quit();
    h.events();

    std::size_t round = 0;
    for (std::size_t at = 0; at < server.size() && !h.closed(); ++round) {
        const std::size_t n =
            chunk != 0 ? chunk : std::min(server.find('\n', at), server.size() - 1) + 1 - at;
        h.send();
        h.feed(server.substr(at, n));
        at += n;
        h.events();
        if (round + 1 == stop_after) {
            if (stop_after % 2)
                h.timeout();
            else
                h.peer_closed();
            h.events();
        }
    }
    h.finish();
    return 0;
}
