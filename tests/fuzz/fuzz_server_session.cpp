// libFuzzer target for ServerSession: any client bytes, any verdicts, any timing.
//
// Invariant (each violation calls abort(), which libFuzzer reports as a crash):
// - No crash, no exception, no hang: every loop is bounded, and a session that
//   takes no input while nothing else can proceed is a stall.
// - Only valid replies out: the whole output parses with smtp::ReplyParser
//   (default limits: lines of at most 512 octets) completely and without error,
//   every code is one this server or the verdict script can send, the first reply
//   is the greeting (220) or the connection's rejection, and a closed session's
//   last reply is 221, 421 or 554.
// - Bounded memory: pending output never exceeds output_buffer; while the session
//   reads (want_read()), input_room() never exceeds input_buffer (once closed it
//   discards input and takes any amount).
// - After should_close() nothing more is output, whatever the program calls.
// - Events are well formed (a hello has a name, a chunk has data, a protocol_error
//   says the reply it sent), and verdicts are asked for one at a time.
// - The output does not depend on how the input is chunked, how slowly output is
//   drained, or whether verdicts are given at once or after more input arrived:
//   the input fed whole with immediate verdicts and fed in pieces with deferred
//   verdicts and slow draining give the same bytes. A third run adds a timeout()
//   or shutdown() in the middle and checks only the invariants above.
// - STARTTLS (RFC 3207): the program sends all output (the 220 last), then calls
//   tls_started(); the chunked run first feeds one more piece "during the
//   handshake". Nothing is said and no event comes between tls_begin and
//   tls_started(), and what was fed meanwhile is never read: when all the input
//   was fed before the handshake (the whole run, mostly), nothing at all is said
//   after the 220. Where the handshake falls in the client's stream depends on
//   timing (that is the point), so the two runs must agree only up to the 220.
//
// Input: byte 0 picks options: bit 0 small limits, bit 1 other extensions, bit 2
// lenient data (normalize bare line endings, accept long lines), bit 3 small
// buffers and slow draining, bit 4 pregreet (the first piece goes in before the
// greeting), bit 5 lenient commands, bits 6-7 the chunking. Byte 1 is the verdict
// script (2 bits per verdict: accept, accept with text, reject 5xx, reject 4xx);
// byte 2 where the third run interrupts (bits 0-5: after which piece; bit 6:
// timeout or shutdown) and, bit 7, STARTTLS offered (byte 0 having no bit left),
// with require_tls too when byte 0 bit 0 is set. The rest is the client's byte
// stream.
#include <smtp/reply.hpp>
#include <smtp/server_session.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

struct Setup {
    smtp::ServerConfig config;
    std::size_t drain = 0;  // octets of output sent per round in the chunked runs; 0: all
    bool pregreet = false;
    unsigned chunking = 0;
    std::uint8_t script = 0;
    std::uint8_t interrupt = 0;
};

Setup setup_from(const std::uint8_t* data) {
    Setup s;
    const std::uint8_t o = data[0];
    smtp::ServerConfig& c = s.config;
    c.hostname = "mx.example";
    if (o & 1) {
        c.max_recipients = 2;
        c.max_errors = 4;
        c.limits.message_size = 200;
        c.limits.text_line = 80;
    }
    if (o & 2) {
        c.extensions.dsn = true;
        c.extensions.enhanced_status_codes = false;
        c.extensions.smtputf8 = false;
        c.extensions.eight_bit_mime = false;
    }
    if (o & 4) {
        c.data.bare_line_endings = smtp::DataOptions::BareLineEndings::normalize;
        c.data.long_lines = smtp::DataOptions::LongLines::accept;
    }
    if (o & 8) {
        c.input_buffer = 1;   // raised to two command lines
        c.output_buffer = 1;  // raised to what one step may write
        s.drain = 7;
    }
    s.pregreet = o & 16;
    if (o & 32) {
        c.leniency.space_after_colon = true;
        c.leniency.missing_brackets = true;
        c.leniency.helo_address_literal = true;
    }
    s.chunking = o >> 6;
    s.script = data[1];
    s.interrupt = data[2];
    c.extensions.starttls = data[2] & 128;
    c.require_tls = c.extensions.starttls && (o & 1);
    return s;
}

// The session raises buffers that are too small; these are the sizes it promises
// (9 lines with STARTTLS offered: its EHLO reply has one line more).
std::size_t output_capacity(const smtp::ServerConfig& c) {
    const std::size_t lines = c.extensions.starttls ? 9 : 8;
    return std::max<std::size_t>(c.output_buffer, lines * std::max<std::size_t>(c.limits.reply_line, 64));
}
std::size_t input_capacity(const smtp::ServerConfig& c) {
    return std::max(c.input_buffer, 2 * c.limits.command_line);
}

std::size_t chunk_length(unsigned mode, std::string_view input, std::size_t at) {
    switch (mode) {
        case 0:
            return 1;
        case 1:
            return 1 + static_cast<unsigned char>(input[at]) % 16;
        case 2:
            return 13;
        default:
            return 200;
    }
}

// The verdict for the i-th event that needs one. The connection itself is
// refused only rarely, or little would be explored.
smtp::Usage give_verdict(smtp::ServerSession& s, const smtp::ServerEvent& e, std::size_t i,
                         std::uint8_t script) {
    static const std::string long_text(700, 'z');
    if (e.kind == smtp::ServerEvent::Kind::connect) {
        if ((script & 0x0F) != 0x0F) return s.accept();
        return script & 0x10 ? s.reject(554, {5, 7, 1}, "No service") : s.reject(421, {4, 3, 2}, "Later");
    }
    const unsigned d = (script >> ((i % 4) * 2)) & 3;
    const std::size_t variant = (i / 4 + script) % 3;
    switch (d) {
        case 0:
            return s.accept();
        case 1:
            return s.accept(variant == 0 ? std::string_view("queued as 4F2A1") : std::string_view(long_text));
        case 2:
            return variant == 0   ? s.reject(550, {5, 1, 1}, "No such user")
                   : variant == 1 ? s.reject(554, {5, 7, 1}, long_text)
                                  : s.reject(553, {4, 1, 1}, "mismatched class\r\n250 injected");
        default:
            return variant == 0 ? s.reject(421, {4, 3, 0}, "Busy") : s.reject(451, {4, 3, 0}, "Try again");
    }
}

bool allowed_code(int code) {
    switch (code) {
        case 220:  // the greeting, and STARTTLS's
        case 221:
        case 250:
        case 252:
        case 354:
        case 421:
        case 451:
        case 452:
        case 500:
        case 501:
        case 502:
        case 503:
        case 530:
        case 550:
        case 552:
        case 553:
        case 554:
        case 555:
            return true;
        default:
            return false;
    }
}

void check_event(const smtp::ServerEvent& e) {
    using K = smtp::ServerEvent::Kind;
    switch (e.kind) {
        case K::hello:
            check(e.needs_verdict && !e.name.empty() && e.command != nullptr && e.command->domain == e.name);
            break;
        case K::mail_from:
        case K::rcpt_to:
            check(e.needs_verdict && e.command != nullptr);
            break;
        case K::data_chunk:
            check(!e.needs_verdict && !e.data.empty());
            break;
        case K::message_end:
            check(e.needs_verdict == (e.error == smtp::Errc::ok));
            break;
        case K::protocol_error:
            check(!e.needs_verdict && e.error != smtp::Errc::ok &&
                  e.reply_code == smtp::error_info(e.error).reply_code);
            break;
        case K::closing:
            // 0: closed during the TLS handshake, where nothing can be said.
            check(!e.needs_verdict && (e.reply_code == 0 || (e.reply_code >= 400 && e.reply_code < 600)));
            break;
        case K::connect:
            check(e.needs_verdict);
            break;
        default:
            check(!e.needs_verdict);
            break;
    }
}

// Every byte sent is a complete, well-formed reply. `in_handshake`: the session
// closed while waiting for the TLS handshake, so the last reply is STARTTLS's 220.
void check_output(const std::string& out, bool closed, bool in_handshake) {
    smtp::ReplyParser parser;
    std::string_view rest = out;
    int first = 0, last = 0;
    while (!rest.empty()) {
        const auto r = parser.parse(rest);
        check(r.status == smtp::ReplyParser::Status::complete);
        check(r.consumed > 0 && r.consumed <= rest.size());
        rest.remove_prefix(r.consumed);
        const smtp::Reply& reply = parser.reply();
        check(allowed_code(reply.code));
        if (first == 0) first = reply.code;
        last = reply.code;
        if (const auto status = reply.enhanced_status()) check(status->klass == reply.code / 100);
    }
    check(first == 220 || first == 554 || first == 421 || out.empty());
    if (closed) check(last == 221 || last == 421 || last == 554 || (in_handshake && last == 220));
}

struct Conversation {
    std::string output;
    std::size_t tls_mark = std::string::npos;  // output octets up to the end of the 220 to STARTTLS
};

// Runs one conversation; returns what the server sent.
Conversation converse(const Setup& setup, std::string_view input, bool chunked, bool interrupt) {
    smtp::ServerSession s(setup.config);
    const std::size_t out_cap = output_capacity(setup.config);
    const std::size_t in_cap = input_capacity(setup.config);
    const std::size_t drain = chunked ? setup.drain : 0;
    std::string output;
    std::size_t fed = 0, pieces = 0, verdicts = 0;
    std::optional<smtp::ServerEvent> held;
    bool closed = false;
    bool handshake = false;      // tls_begin came; tls_started() not yet called
    bool closed_in_tls = false;  // an interrupt closed the session during the handshake
    std::size_t tls_mark = std::string::npos, fed_at_tls = 0;

    const auto feed_piece = [&] {
        const std::size_t length = chunked ? chunk_length(setup.chunking, input, fed) : input.size() - fed;
        const std::size_t n = s.feed(input.substr(fed, length));
        check(n <= length);
        fed += n;
        ++pieces;
        if (interrupt && pieces == (setup.interrupt & 63u)) setup.interrupt & 64 ? s.timeout() : s.shutdown();
        return n > 0;
    };
    if (setup.pregreet && !input.empty()) feed_piece();

    const std::size_t bound = 64 * input.size() + 10'000;
    for (std::size_t round = 0;; ++round) {
        check(round < bound);  // no hang
        bool progress = false;
        while (!held) {
            const std::optional<smtp::ServerEvent> e = s.next_event();
            if (!e) break;
            progress = true;
            check_event(*e);
            if (e->kind == smtp::ServerEvent::Kind::tls_begin) {
                check(!handshake && tls_mark == std::string::npos);  // one STARTTLS at most
                check(!s.want_read() && s.input_room() == std::numeric_limits<std::size_t>::max());
                handshake = true;
                // The 220 is the last thing said before the handshake.
                tls_mark = output.size() + s.pending_output().size();
                fed_at_tls = fed;
                check(!s.next_event());  // nothing goes on until tls_started()
                break;
            }
            if (!e->needs_verdict) continue;
            // Deferred in the chunked run: every other verdict waits for more input.
            check(!s.next_event());  // one verdict at a time: nothing goes on meanwhile
            if (chunked && verdicts % 2 == 1)
                held = e;
            else
                check(give_verdict(s, *e, verdicts, setup.script) == smtp::Usage::ok);
            ++verdicts;
        }

        const std::string_view out = s.pending_output();
        check(out.size() <= out_cap);
        check(!s.want_read() || s.input_room() <= in_cap);
        if (!out.empty()) {
            check(!closed);  // nothing after should_close()
            const std::size_t n = drain == 0 ? out.size() : std::min(drain, out.size());
            output.append(out.substr(0, n));
            s.consume_output(n);
            progress = true;
        }
        if (s.should_close()) closed = true;

        // The handshake, once the 220 is out. In the chunked run the client's next
        // piece arrives meanwhile: discarded, with no reply and no event.
        if (handshake && s.pending_output().empty() && !closed) {
            if (chunked && fed < input.size()) {
                feed_piece();
                check(s.pending_output().empty());
                if (s.should_close()) closed_in_tls = true;  // the interrupt hit the handshake
                check(!s.next_event() || closed_in_tls);
            }
            const smtp::Usage u = s.tls_started();
            check(u == smtp::Usage::ok || (interrupt && u == smtp::Usage::closed));
            if (u == smtp::Usage::ok) {
                check(s.in_tls() && s.helo_name().empty());
                check(s.tls_started() == smtp::Usage::no_verdict_pending);
            }
            handshake = false;
            progress = true;
        }
        if (handshake && s.should_close()) closed_in_tls = true;

        // A client speaks once it has read the greeting (its first line), unless this
        // is the pregreet case.
        const bool greeted = output.find('\n') != std::string::npos;
        if (fed < input.size() && !closed && greeted) progress |= feed_piece();
        if (held) {  // given after more input was fed; moot if an interrupt closed the session
            const smtp::Usage u = give_verdict(s, *held, verdicts - 1, setup.script);
            check(u == smtp::Usage::ok || (interrupt && u == smtp::Usage::closed));
            held.reset();
            progress = true;
        }
        if (!progress) break;
    }
    // Nothing left undone: all input taken (or the session closed) and no verdict
    // pending; a session that stops taking input without closing has stalled.
    check(fed == input.size() || closed || s.should_close());

    if (s.should_close()) {
        s.timeout();
        s.shutdown();
        check(s.feed("NOOP\r\n") == 6);
        while (s.next_event()) {
        }
        check(s.pending_output().empty());
        check(s.accept() == smtp::Usage::closed);
    }
    check_output(output, s.should_close(), closed_in_tls);
    // Everything fed before the handshake was plaintext behind STARTTLS: if that
    // was all the input, nothing more was said (CVE-2011-0411).
    if (tls_mark != std::string::npos && fed_at_tls == input.size() && !interrupt)
        check(output.size() == tls_mark);
    return {output, tls_mark};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return 0;
    const Setup setup = setup_from(data);
    const std::string_view input(reinterpret_cast<const char*>(data + 3), size - 3);

    const Conversation whole = converse(setup, input, false, false);
    const Conversation chunked = converse(setup, input, true, false);
    // Up to STARTTLS's 220 timing does not matter; after it, it does (see above).
    check(whole.tls_mark == chunked.tls_mark);
    if (whole.tls_mark == std::string::npos)
        check(whole.output == chunked.output);
    else
        check(whole.output.compare(0, whole.tls_mark, chunked.output, 0, chunked.tls_mark) == 0);
    (void)converse(setup, input, true, true);
    return 0;
}
