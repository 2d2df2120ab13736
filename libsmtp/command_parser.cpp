// parse_command(): one command line (without CRLF) into a Command (RFC 5321 §4.1.1,
// with the ESMTP parameters of RFC 1870, 3461, 4954, 6152, 6531 and BDAT of RFC 3030).
//
// Hot path: the verb is four bytes loaded and case-folded at once, character
// classes are one table, nothing is allocated or copied; every result is a view
// into the line.
#include "address_grammar.hpp"

#include <smtp/command.hpp>

#include <iterator>
#include <limits>

namespace smtp {
namespace {

using namespace detail;

// Longest detail put into a ParseResult: the error reply ("555 5.5.4 Unsupported
// parameter: " + detail + CRLF) must stay within a 512-octet reply line.
constexpr std::size_t max_detail = 64;

ParseResult fail(Errc e, std::string_view detail = {}) noexcept { return {e, detail.substr(0, max_detail)}; }

// Four bytes as one little-endian word, letters folded to lower case. OR 0x20 maps
// only "A"-"Z" and "a"-"z" onto lower-case letters, so comparing the result with a
// word of letters is an exact case-insensitive match.
constexpr std::uint32_t fold4(const char* p) noexcept {
    return (std::uint32_t(static_cast<unsigned char>(p[0])) |
            std::uint32_t(static_cast<unsigned char>(p[1])) << 8 |
            std::uint32_t(static_cast<unsigned char>(p[2])) << 16 |
            std::uint32_t(static_cast<unsigned char>(p[3])) << 24) |
           0x20202020u;
}
constexpr std::uint32_t word(const char (&s)[5]) noexcept { return fold4(s); }

// The verb of `line` and its length; Verb::unknown if none.
Verb recognize(std::string_view line, std::size_t& length) noexcept {
    length = 4;
    if (line.size() < 4) return Verb::unknown;
    if (line.size() > 4 && line[4] != ' ') {
        // STARTTLS is the one verb of more than four letters.
        if (line.size() >= 8 && fold4(line.data()) == word("star") &&
            fold4(line.data() + 4) == word("ttls") && (line.size() == 8 || line[8] == ' ')) {
            length = 8;
            return Verb::starttls;
        }
        return Verb::unknown;
    }
    switch (fold4(line.data())) {
        case word("helo"):
            return Verb::helo;
        case word("ehlo"):
            return Verb::ehlo;
        case word("mail"):
            return Verb::mail;
        case word("rcpt"):
            return Verb::rcpt;
        case word("data"):
            return Verb::data;
        case word("rset"):
            return Verb::rset;
        case word("noop"):
            return Verb::noop;
        case word("quit"):
            return Verb::quit;
        case word("vrfy"):
            return Verb::vrfy;
        case word("expn"):
            return Verb::expn;
        case word("help"):
            return Verb::help;
        case word("bdat"):
            return Verb::bdat;
        case word("auth"):
            return Verb::auth;
        default:
            return Verb::unknown;
    }
}

// 1*DIGIT that fits in uint64 (at most `max_digits` digits); false otherwise.
bool parse_number(std::string_view s, std::size_t max_digits, std::uint64_t& out) noexcept {
    if (s.empty() || s.size() > max_digits) return false;
    std::uint64_t v = 0;
    for (char c : s) {
        if (!is(c, c_digit)) return false;
        const auto d = static_cast<std::uint64_t>(c - '0');
        if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) return false;
        v = v * 10 + d;
    }
    out = v;
    return true;
}

// ------------------------------------------------------------------ HELO, EHLO

ParseResult parse_hello(Command& out, const ParseOptions& options, const Limits& limits) noexcept {
    const std::string_view arg = out.argument;
    if (arg.empty()) return fail(Errc::missing_argument);
    // RFC 5321 §4.1.1.1: helo = "HELO" SP Domain; ehlo = "EHLO" SP ( Domain / address-literal ).
    // RFC 6531 leaves EHLO's argument ASCII: SMTPUTF8 is not negotiated yet.
    const bool literal_ok = out.verb == Verb::ehlo || options.helo_address_literal;
    const bool valid = arg.front() == '['
                           ? literal_ok && arg.size() <= limits.domain && is_valid_address_literal(arg)
                           : is_valid_domain(arg, limits);
    if (!valid) return fail(Errc::bad_domain);
    out.domain = arg;
    return {};
}

// ------------------------------------------------------------------ paths

Errc path_error(Verb verb, Scan scan) noexcept {
    switch (scan) {
        case Scan::bad_utf8:
            return Errc::bad_utf8;
        case Scan::non_ascii:
            return Errc::non_ascii_address;
        default:
            return verb == Verb::mail ? Errc::bad_sender : Errc::bad_recipient;
    }
}

// Mailbox = Local-part "@" ( Domain / address-literal ), at s[i].
Scan scan_mailbox(std::string_view s, std::size_t& i, const Limits& limits, Utf8& utf8, Path& path) noexcept {
    const std::size_t start = i;
    if (i >= s.size()) return Scan::bad;
    const Scan local = s[i] == '"' ? scan_quoted_string(s, i, utf8) : scan_dot_string(s, i, utf8);
    if (local != Scan::ok) return local;
    path.local_part = s.substr(start, i - start);
    if (i >= s.size() || s[i] != '@') return Scan::bad;
    const std::size_t domain = ++i;
    if (i < s.size() && s[i] == '[') {
        // dcontent excludes "]", so the first one closes the literal.
        const std::size_t close = s.find(']', i);
        if (close == std::string_view::npos || !is_valid_address_literal(s.substr(i, close + 1 - i)))
            return Scan::bad;
        i = close + 1;
    } else if (const Scan r = scan_domain(s, i, limits.domain_label, utf8); r != Scan::ok) {
        return r;
    }
    path.domain = s.substr(domain, i - domain);
    path.mailbox = s.substr(start, i - start);
    return Scan::ok;
}

// Path = "<" [ A-d-l ":" ] Mailbox ">" at s[i] == '<' (RFC 5321 §4.1.2), plus "<>"
// for MAIL and "<Postmaster>" for RCPT (§4.1.1.3).
Scan scan_path(std::string_view s, std::size_t& i, Verb verb, const Limits& limits, Utf8& utf8,
               Path& path) noexcept {
    ++i;
    if (verb == Verb::mail && i < s.size() && s[i] == '>') {
        ++i;
        return Scan::ok;
    }
    if (i < s.size() && s[i] == '@') {
        // A-d-l = At-domain *( "," At-domain ): a source route, which RFC 5321
        // §3.6.1 says to accept and ignore. Its domains are checked all the same.
        for (;;) {
            ++i;  // "@"
            if (const Scan r = scan_domain(s, i, limits.domain_label, utf8); r != Scan::ok) return r;
            if (i < s.size() && s[i] == ',' && i + 1 < s.size() && s[i + 1] == '@') {
                ++i;
                continue;
            }
            if (i < s.size() && s[i] == ':') break;
            return Scan::bad;
        }
        ++i;  // ":"
    } else if (verb == Verb::rcpt && iequals(s.substr(i, 11), "postmaster>")) {
        path.local_part = path.mailbox = s.substr(i, 10);
        path.postmaster = true;
        i += 11;
        return Scan::ok;
    }
    if (const Scan r = scan_mailbox(s, i, limits, utf8, path); r != Scan::ok) return r;
    if (i >= s.size() || s[i] != '>') return Scan::bad;
    ++i;
    return Scan::ok;
}

// ------------------------------------------------------------------ parameters

// Known keywords, one bit each for duplicate detection.
enum Keyword : std::uint8_t {
    k_size,
    k_body,
    k_smtputf8,
    k_ret,
    k_envid,
    k_auth,
    k_notify,
    k_orcpt,
    k_unknown
};

Keyword keyword_of(Verb verb, std::string_view k, const ParseOptions& options) noexcept {
    if (verb == Verb::mail) {
        if (iequals(k, "size")) return k_size;
        if (iequals(k, "body")) return k_body;
        // RFC 6531 §3.4: only when the server offered SMTPUTF8.
        if (iequals(k, "smtputf8")) return options.smtputf8 ? k_smtputf8 : k_unknown;
        if (iequals(k, "ret")) return k_ret;
        if (iequals(k, "envid")) return k_envid;
        if (iequals(k, "auth")) return k_auth;
    } else {
        if (iequals(k, "notify")) return k_notify;
        if (iequals(k, "orcpt")) return k_orcpt;
    }
    return k_unknown;
}

// NOTIFY="NEVER" / 1#( "SUCCESS" / "FAILURE" / "DELAY" ) (RFC 3461 §4.1).
bool parse_notify(std::string_view v, std::uint8_t& out) noexcept {
    if (iequals(v, "never")) {
        out = notify_never;
        return true;
    }
    std::uint8_t bits = 0;
    for (;;) {
        const std::size_t comma = v.find(',');
        const std::string_view item = v.substr(0, comma);
        std::uint8_t bit = 0;
        if (iequals(item, "success"))
            bit = notify_success;
        else if (iequals(item, "failure"))
            bit = notify_failure;
        else if (iequals(item, "delay"))
            bit = notify_delay;
        if (bit == 0 || (bits & bit)) return false;  // NEVER in a list falls here too
        bits |= bit;
        if (comma == std::string_view::npos) break;
        v.remove_prefix(comma + 1);
    }
    out = bits;
    return true;
}

// Checks one known parameter's value and stores its typed form.
bool apply(Keyword k, const Parameter& p, Command& out, const ParseOptions& options,
           const Limits& limits) noexcept {
    const std::string_view v = p.value;
    switch (k) {
        case k_size: {
            // RFC 1870 §3: size-value = 1*20DIGIT
            std::uint64_t size = 0;
            if (!parse_number(v, 20, size)) return false;
            out.size = size;
            return true;
        }
        case k_body:
            if (iequals(v, "7bit"))
                out.body = Body::seven_bit;
            else if (iequals(v, "8bitmime"))
                out.body = Body::eight_bit_mime;
            else
                return false;
            return true;
        case k_smtputf8:
            out.smtputf8 = true;
            return !p.has_value;  // RFC 6531 §3.4: no value
        case k_ret:
            if (iequals(v, "full"))
                out.ret = Ret::full;
            else if (iequals(v, "hdrs"))
                out.ret = Ret::hdrs;
            else
                return false;
            return true;
        case k_envid:
            // RFC 3461 §4.4: xtext of at most 100 characters.
            if (!p.has_value || v.size() > limits.envid || !is_valid_xtext(v)) return false;
            out.envid = v;
            return true;
        case k_auth:
            // RFC 4954 §5: AUTH=<> or AUTH=xtext mailbox; servers that offer AUTH
            // must accept it, so it is known. Kept in `parameters` only.
            return v == "<>" || (p.has_value && is_valid_xtext(v));
        case k_notify:
            return parse_notify(v, out.notify);
        case k_orcpt: {
            // RFC 3461 §4.2: addr-type ";" xtext, at most 500 characters. With
            // SMTPUTF8, RFC 6533 §3 lets the address carry UTF-8.
            const std::size_t semi = v.find(';');
            if (v.size() > limits.orcpt || semi == 0 || semi == std::string_view::npos) return false;
            const std::string_view type = v.substr(0, semi), address = v.substr(semi + 1);
            for (char c : type)
                if (!is(c, c_atext)) return false;
            if (!is_valid_xtext(address, options.smtputf8)) return false;
            out.orcpt_type = type;
            out.orcpt = address;
            return true;
        }
        case k_unknown:
            break;
    }
    return false;
}

// Mail-parameters = esmtp-param *(SP esmtp-param) (RFC 5321 §4.1.2):
//   esmtp-param = esmtp-keyword ["=" esmtp-value]
//   esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
//   esmtp-value = 1*(%d33-60 / %d62-126)   ; RFC 6531 §3.3 adds UTF8-non-ascii
// Grammar first, over the whole list, then the meaning of each in order: a line
// that is not parameter grammar at all is a syntax error, whatever its keywords.
ParseResult parse_parameters(std::string_view s, Command& out, const ParseOptions& options,
                             const Limits& limits) noexcept {
    for (std::size_t i = 0;; ++i) {  // ++i steps over the SP
        const std::size_t start = i;
        // An empty keyword is a trailing or doubled SP.
        if (i >= s.size() || !is(s[i], c_alpha | c_digit)) return fail(Errc::parameter_syntax);
        while (i < s.size() && (is(s[i], c_alpha | c_digit) || s[i] == '-')) ++i;
        Parameter p{s.substr(start, i - start), {}, false};
        if (i < s.size() && s[i] == '=') {
            const std::size_t value = ++i;
            while (i < s.size() && s[i] != ' ') {
                if (is(s[i], c_value)) {
                    ++i;
                } else if (is_non_ascii(s[i]) && options.smtputf8) {
                    const std::size_t n = utf8_sequence_length(s, i);
                    if (n == 0) return fail(Errc::bad_utf8);
                    i += n;
                } else {
                    return fail(Errc::parameter_syntax, p.keyword);
                }
            }
            if (i == value) return fail(Errc::parameter_syntax, p.keyword);
            p.value = s.substr(value, i - value);
            p.has_value = true;
        }
        if (i < s.size() && s[i] != ' ') return fail(Errc::parameter_syntax, p.keyword);
        if (out.parameter_count == Command::max_parameters) return fail(Errc::parameter_syntax, p.keyword);
        out.parameters[out.parameter_count++] = p;
        if (i == s.size()) break;
    }

    unsigned seen = 0;
    for (std::size_t n = 0; n < out.parameter_count; ++n) {
        const Parameter& p = out.parameters[n];
        const Keyword k = keyword_of(out.verb, p.keyword, options);
        ParseResult r;
        if (k == k_unknown)
            r = fail(Errc::parameter_unsupported, p.keyword);
        else if (seen & (1u << k))
            r = fail(Errc::parameter_duplicate, p.keyword);
        else if (!apply(k, p, out, options, limits))
            r = fail(Errc::parameter_value, p.keyword);
        if (!r.ok()) {
            out.parameter_count = 0;  // unknown keywords never stay in `parameters`
            return r;
        }
        seen |= 1u << k;
    }
    return {};
}

// ------------------------------------------------------------------ MAIL, RCPT

// mail = "MAIL FROM:" Reverse-path [SP Mail-parameters]
// rcpt = "RCPT TO:" ( "<Postmaster@" Domain ">" / "<Postmaster>" / Forward-path ) [SP Rcpt-parameters]
ParseResult parse_mail_rcpt(Command& out, const ParseOptions& options, const Limits& limits) noexcept {
    const std::string_view arg = out.argument;
    if (arg.empty()) return fail(Errc::missing_argument);
    const std::string_view prefix = out.verb == Verb::mail ? "from:" : "to:";
    if (!iequals(arg.substr(0, prefix.size()), prefix)) return fail(Errc::syntax_error);
    std::size_t i = prefix.size();
    if (options.space_after_colon)
        while (i < arg.size() && arg[i] == ' ') ++i;

    Utf8 utf8{options.smtputf8};
    const std::size_t start = i;
    std::size_t path_length = 0;
    if (i < arg.size() && arg[i] == '<') {
        if (const Scan r = scan_path(arg, i, out.verb, limits, utf8, out.path); r != Scan::ok)
            return fail(path_error(out.verb, r));
        path_length = i - start;
    } else if (options.missing_brackets) {
        // Only a bare mailbox and nothing after it: with parameters the end of
        // the address would be a guess.
        if (out.verb == Verb::rcpt && iequals(arg.substr(i), "postmaster")) {
            out.path.local_part = out.path.mailbox = arg.substr(i);
            out.path.postmaster = true;
            i = arg.size();
        } else if (const Scan r = scan_mailbox(arg, i, limits, utf8, out.path); r != Scan::ok) {
            return fail(path_error(out.verb, r));
        }
        if (i != arg.size()) return fail(path_error(out.verb, Scan::bad));
        path_length = i - start + 2;  // as if bracketed: the limit counts them
    } else {
        return fail(path_error(out.verb, Scan::bad));
    }

    // RFC 5321 §4.5.3.1: sizes are checked once the grammar has found the parts.
    if (path_length > limits.path || out.path.local_part.size() > limits.local_part ||
        out.path.domain.size() > limits.domain)
        return fail(Errc::path_too_long);

    if (i < arg.size()) {
        if (arg[i] != ' ') return fail(path_error(out.verb, Scan::bad));
        if (const ParseResult r = parse_parameters(arg.substr(i + 1), out, options, limits); !r.ok())
            return r;
    }
    // RFC 6531 §3.4: a UTF-8 reverse-path needs the SMTPUTF8 parameter with it.
    if (out.verb == Verb::mail && utf8.seen && !out.smtputf8) return fail(Errc::non_ascii_address);
    return {};
}

// ------------------------------------------------------------------ the rest

// BDAT SP chunk-size [ SP end-marker ] (RFC 3030 §2)
ParseResult parse_bdat(Command& out) noexcept {
    std::string_view arg = out.argument;
    if (arg.empty()) return fail(Errc::missing_argument);
    const std::size_t space = arg.find(' ');
    if (space != std::string_view::npos) {
        if (!iequals(arg.substr(space + 1), "last")) return fail(Errc::syntax_error);
        out.last = true;
    }
    if (!parse_number(arg.substr(0, space), arg.size(), out.chunk_size)) return fail(Errc::syntax_error);
    return {};
}

// initial-response = base64 / "=" (RFC 4954 §4); base64 per RFC 4648 with padding.
bool is_initial_response(std::string_view s) noexcept {
    if (s == "=") return true;
    if (s.empty() || s.size() % 4 != 0) return false;
    std::size_t padding = 0;
    if (s.back() == '=') padding = s[s.size() - 2] == '=' ? 2 : 1;
    for (std::size_t i = 0; i < s.size() - padding; ++i)
        if (!is(s[i], c_base64)) return false;
    return true;
}

// AUTH SP sasl-mech [SP initial-response] (RFC 4954 §4); sasl-mech = 1*20mech-char.
// RFC 4422 writes mechanism names in upper case; lower case is accepted like any
// other SMTP keyword, and the session compares them case-insensitively.
ParseResult parse_auth(Command& out) noexcept {
    const std::string_view arg = out.argument;
    if (arg.empty()) return fail(Errc::missing_argument);
    const std::size_t space = arg.find(' ');
    const std::string_view mech = arg.substr(0, space);
    if (mech.empty() || mech.size() > 20) return fail(Errc::syntax_error);
    for (char c : mech)
        if (!is(c, c_mech)) return fail(Errc::syntax_error);
    out.mechanism = mech;
    if (space != std::string_view::npos) {
        const std::string_view response = arg.substr(space + 1);
        if (!is_initial_response(response)) return fail(Errc::syntax_error);
        out.initial_response = response;
    }
    return {};
}

}  // namespace

std::string_view verb_name(Verb v) noexcept {
    static constexpr std::string_view names[] = {"HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET",     "NOOP",
                                                 "QUIT", "VRFY", "EXPN", "HELP", "BDAT", "STARTTLS", "AUTH"};
    const auto i = static_cast<std::size_t>(v);
    return i < std::size(names) ? names[i] : "unknown";
}

std::string unquote_local_part(std::string_view local_part) {
    if (local_part.size() < 2 || local_part.front() != '"' || local_part.back() != '"')
        return std::string(local_part);
    std::string out;
    for (std::size_t i = 1; i + 1 < local_part.size(); ++i) {
        // quoted-pairSMTP: the backslash escapes the next character, whatever it is.
        if (local_part[i] == '\\' && i + 2 < local_part.size()) ++i;
        out += local_part[i];
    }
    return out;
}

ParseResult parse_command(std::string_view line, Command& out, const ParseOptions& options,
                          const Limits& limits) noexcept {
    out = Command{};
    std::size_t length = 0;
    out.verb = recognize(line, length);
    if (out.verb == Verb::unknown) {
        out.verb_text = line.substr(0, line.find(' '));
        return fail(Errc::unknown_command);
    }
    out.verb_text = line.substr(0, length);
    // The verb, then exactly one SP and the argument, or the end of the line. A SP
    // with nothing after it still counts as an argument (an empty one).
    const bool has_argument = line.size() > length;
    out.argument = has_argument ? line.substr(length + 1) : std::string_view{};

    switch (out.verb) {
        case Verb::helo:
        case Verb::ehlo:
            return parse_hello(out, options, limits);
        case Verb::mail:
        case Verb::rcpt:
            return parse_mail_rcpt(out, options, limits);
        case Verb::data:
        case Verb::rset:
        case Verb::quit:
        case Verb::starttls:
            return has_argument ? fail(Errc::unexpected_argument) : ParseResult{};
        case Verb::noop:
        case Verb::help:
            // RFC 5321 §4.1.1.9: NOOP's argument is ignored; HELP's is advisory. Any text.
            out.text = out.argument;
            return {};
        case Verb::vrfy:
        case Verb::expn:
            // "SP String" (§4.1.1.6-7). Atom does not allow the mailboxes clients
            // really send ("VRFY user@example.com"), so any non-empty text goes.
            if (out.argument.empty()) return fail(Errc::missing_argument);
            out.text = out.argument;
            return {};
        case Verb::bdat:
            return parse_bdat(out);
        case Verb::auth:
            return parse_auth(out);
        case Verb::unknown:
            break;
    }
    return fail(Errc::unknown_command);
}

}  // namespace smtp
