// received_header(): the Received: trace field (RFC 5321 §4.4, RFC 5322 §3.6.7).
//
//   Stamp = From-domain By-domain Opt-info [CFWS] ";" FWS date-time
//
// Every field but the date comes from outside: the HELO name from the client, the
// reverse name from DNS (a PTR record may hold any octet), the rest from the
// program. Each is cut down to the characters its place in the grammar allows, so
// no input can end the header early (CR, LF), close a comment early (")") or add
// a clause of its own (";"). Lines are folded with CRLF TAB (RFC 5322 §2.2.3)
// between words, so none is longer than 78 characters unless one word is.
#include <smtp/server_session.hpp>

#include <fmt/format.h>

#include <array>
#include <iterator>
#include <string>
#include <string_view>

namespace smtp {
namespace {

constexpr std::size_t line_limit = 78;  // RFC 5322 §2.1.1, without the CRLF

// RFC 5321 §4.5.3.1.2: no domain is longer; a longer HELO name is junk anyway.
constexpr std::size_t max_name = 255;

bool is_alnum(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// A domain, or an address literal: letters, digits, "-", ".", and for a literal
// (it starts with "[") also ":", "[", "]". Anything else (space, "(", ")", ";",
// CR, LF, non-ASCII) becomes "_", which is visible in the header and harmless.
std::string domain_text(std::string_view s) {
    const bool literal = !s.empty() && s.front() == '[';
    std::string out;
    for (const char c : s.substr(0, max_name)) {
        const bool ok =
            is_alnum(c) || c == '-' || c == '.' || (literal && (c == ':' || c == '[' || c == ']'));
        out += ok ? c : '_';
    }
    return out;
}

// An IP address as an address literal: "[192.0.2.1]", "[IPv6:2001:db8::1]"
// (RFC 5321 §4.1.3). Brackets already there are kept.
std::string address_literal(std::string_view address) {
    if (address.empty()) return {};
    if (address.front() == '[') return domain_text(address);
    const bool v6 = address.find(':') != std::string_view::npos;
    return domain_text((v6 ? "[IPv6:" : "[") + std::string(address) + "]");
}

// ID = Atom / msg-id (RFC 5321 §4.4): atext, here without the specials that could
// start a comment or an address.
std::string atom_text(std::string_view s) {
    std::string out;
    for (const char c : s.substr(0, max_name))
        out += is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '+' || c == '=' ? c : '_';
    return out;
}

// The mailbox of For (RFC 5321 §4.4), inside angle brackets. It may be a quoted
// string with almost any character (and UTF-8 under SMTPUTF8, RFC 6532), so only
// what could break the line or leave the brackets is replaced.
std::string mailbox_text(std::string_view s) {
    std::string out;
    for (const char c : s.substr(0, 512)) {
        const auto u = static_cast<unsigned char>(c);
        out += u < 0x20 || u == 0x7F || c == '<' || c == '>' ? '?' : c;
    }
    return out;
}

// RFC 5322 §3.3: "Sun, 22 Nov 2026 05:53:11 +0000". Out-of-range fields are
// wrapped, not trusted as indexes.
std::string date_text(const ReceivedFields& f) {
    static constexpr std::array<std::string_view, 7> days{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr std::array<std::string_view, 12> months{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const auto wrap = [](int v, int n) { return static_cast<std::size_t>(((v % n) + n) % n); };
    const int offset = f.utc_offset_minutes;
    const int magnitude = (offset < 0 ? -offset : offset) % (100 * 60);
    return fmt::format("{}, {} {} {:04} {:02}:{:02}:{:02} {}{:02}{:02}", days[wrap(f.weekday, 7)], f.day,
                       months[wrap(f.month - 1, 12)], f.year, f.hour, f.minute, f.second,
                       offset < 0 ? '-' : '+', magnitude / 60, magnitude % 60);
}

// Joins words with SP, or with CRLF TAB where a line would grow past 78
// characters or where a clause should start a line of its own.
class Folder {
public:
    explicit Folder(std::string_view start) : out_(start), line_(start.size()) {}

    void word(std::string_view w, bool new_line = false) {
        if (w.empty()) return;
        if (new_line || line_ + 1 + w.size() > line_limit) {
            out_ += "\r\n\t";
            line_ = 1;
        } else {
            out_ += ' ';
            ++line_;
        }
        out_ += w;
        line_ += w.size();
    }
    // Appends to the last word, without a space ("id X" + ";").
    void glue(std::string_view s) {
        out_ += s;
        line_ += s.size();
    }
    std::string finish() && {
        out_ += "\r\n";
        return std::move(out_);
    }

private:
    std::string out_;
    std::size_t line_;
};

}  // namespace

std::string received_header(const ReceivedFields& f) {
    const std::string helo = domain_text(f.helo);
    const std::string reverse = domain_text(f.reverse_name);
    const std::string literal = address_literal(f.address);

    Folder h("Received:");
    // From-domain: the HELO name, then what TCP told us in a comment: "(rdns
    // [ip])", "(rdns)" or "([ip])". Without a HELO name the best-known name
    // stands in for it.
    h.word("from");
    if (!helo.empty()) {
        h.word(helo);
        if (!reverse.empty() && !literal.empty()) {
            h.word("(" + reverse);
            h.word(literal + ")");
        } else if (!reverse.empty() || !literal.empty()) {
            h.word("(" + reverse + literal + ")");
        }
    } else if (!reverse.empty()) {
        h.word(reverse);
        h.word("(" + (literal.empty() ? std::string("unknown") : literal) + ")");
    } else {
        h.word(literal.empty() ? std::string("unknown") : literal);
    }

    // By-domain and Opt-info, each clause on the line if it fits.
    const std::string by = domain_text(f.by);
    h.word("by", true);
    h.word(by.empty() ? std::string("localhost") : by);
    h.word("(libsmtp)");
    if (const std::string protocol = atom_text(f.protocol); !protocol.empty()) {
        h.word("with");
        h.word(protocol);
    }
    if (const std::string id = atom_text(f.id); !id.empty()) {
        h.word("id");
        h.word(id);
    }

    // For, and the date after ";" (RFC 5321 §4.4: one recipient only, so that the
    // header does not disclose the other, blind, recipients).
    const std::string date = date_text(f);
    if (!f.recipient.empty()) {
        h.word("for", true);
        h.word("<" + mailbox_text(f.recipient) + ">;");
        h.word(date);
    } else {
        h.glue(";");
        h.word(date);
    }
    return std::move(h).finish();
}

}  // namespace smtp
