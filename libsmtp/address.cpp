// Addresses: domains, address literals, IP addresses, local parts and UTF-8
// (RFC 5321 §4.1.2-§4.1.3, RFC 6531 §3.3). No inet_pton: libsmtp is sans-IO, and
// RFC 5321's IPv6 grammar is stricter than inet_pton's anyway ("::" is at least
// two groups).
#include "address_grammar.hpp"

#include <smtp/command.hpp>

namespace smtp {
namespace detail {

std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
    const auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char b = at(i);
    // The second byte's range depends on the first (Unicode Table 3-7): this is
    // what excludes overlongs (C0, C1, E0 80-9F, F0 80-8F), surrogates (ED A0-BF)
    // and code points over U+10FFFF (F4 90-BF, F5-FF).
    std::size_t n = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
        n = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
        n = 3;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        n = 4;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (s.size() - i < n) return 0;
    if (at(i + 1) < lo || at(i + 1) > hi) return 0;
    for (std::size_t k = 2; k < n; ++k)
        if (at(i + k) < 0x80 || at(i + k) > 0xBF) return 0;
    return n;
}

namespace {

// One non-ASCII character at s[i]: accepted (i advanced) only where UTF-8 is allowed.
Scan take_utf8(std::string_view s, std::size_t& i, Utf8& utf8) noexcept {
    if (!utf8.allowed) return Scan::non_ascii;
    const std::size_t n = utf8_sequence_length(s, i);
    if (n == 0) return Scan::bad_utf8;
    utf8.seen = true;
    i += n;
    return Scan::ok;
}

}  // namespace

Scan scan_dot_string(std::string_view s, std::size_t& i, Utf8& utf8) noexcept {
    // Dot-string = Atom *("." Atom): no empty atom, so no leading, trailing or
    // doubled dot.
    bool atom_empty = true;
    while (i < s.size()) {
        const char c = s[i];
        if (is(c, c_atext)) {
            ++i;
            atom_empty = false;
        } else if (c == '.') {
            if (atom_empty) return Scan::bad;
            ++i;
            atom_empty = true;
        } else if (is_non_ascii(c)) {
            if (const Scan r = take_utf8(s, i, utf8); r != Scan::ok) return r;
            atom_empty = false;
        } else {
            break;
        }
    }
    return atom_empty ? Scan::bad : Scan::ok;
}

Scan scan_quoted_string(std::string_view s, std::size_t& i, Utf8& utf8) noexcept {
    ++i;  // the opening DQUOTE
    while (i < s.size()) {
        const char c = s[i];
        if (c == '"') {
            ++i;
            return Scan::ok;
        }
        if (c == '\\') {
            // quoted-pairSMTP = %d92 %d32-126: RFC 6531 does not extend it to UTF-8.
            if (i + 1 >= s.size() || s[i + 1] < 32 || s[i + 1] > 126) return Scan::bad;
            i += 2;
        } else if (is(c, c_qtext)) {
            ++i;
        } else if (is_non_ascii(c)) {
            if (const Scan r = take_utf8(s, i, utf8); r != Scan::ok) return r;
        } else {
            return Scan::bad;
        }
    }
    return Scan::bad;  // no closing DQUOTE
}

Scan scan_domain(std::string_view s, std::size_t& i, std::size_t max_label, Utf8& utf8) noexcept {
    // sub-domain = Let-dig [Ldh-str]: letters, digits and inner hyphens. RFC 6531
    // adds U-labels; their octet length is not a label's (the A-label form counts,
    // which we cannot compute without IDNA tables), so only ASCII labels are bounded.
    for (;;) {
        const std::size_t start = i;
        bool label_utf8 = false;
        char last = '-';
        while (i < s.size()) {
            const char c = s[i];
            if (is(c, c_alpha | c_digit) || c == '-') {
                if (i == start && c == '-') return Scan::bad;
                last = c;
                ++i;
            } else if (is_non_ascii(c)) {
                if (const Scan r = take_utf8(s, i, utf8); r != Scan::ok) return r;
                label_utf8 = true;
                last = 'a';
            } else {
                break;
            }
        }
        if (i == start || last == '-') return Scan::bad;
        if (!label_utf8 && i - start > max_label) return Scan::bad;
        // A dot must start another label: "example.com." is not a Domain.
        if (i < s.size() && s[i] == '.') {
            ++i;
            continue;
        }
        return Scan::ok;
    }
}

}  // namespace detail

using namespace detail;

bool is_valid_utf8(std::string_view text) noexcept {
    for (std::size_t i = 0; i < text.size();) {
        if (!is_non_ascii(text[i])) {
            ++i;
            continue;
        }
        const std::size_t n = utf8_sequence_length(text, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

bool is_valid_domain(std::string_view domain, const Limits& limits, bool allow_utf8) noexcept {
    if (domain.empty() || domain.size() > limits.domain) return false;
    std::size_t i = 0;
    Utf8 utf8{allow_utf8};
    return scan_domain(domain, i, limits.domain_label, utf8) == Scan::ok && i == domain.size();
}

bool is_valid_ipv4(std::string_view text) noexcept {
    // IPv4-address-literal = Snum 3("." Snum); Snum = 1*3DIGIT, 0-255.
    std::size_t i = 0;
    for (int part = 0; part < 4; ++part) {
        if (part > 0) {
            if (i >= text.size() || text[i] != '.') return false;
            ++i;
        }
        unsigned value = 0;
        const std::size_t start = i;
        while (i < text.size() && i - start < 3 && is(text[i], c_digit))
            value = value * 10 + unsigned(text[i++] - '0');
        if (i == start || value > 255) return false;
    }
    return i == text.size();
}

namespace {

// Colon-separated IPv6-hex groups (1*4HEXDIG), the last of which may be an IPv4
// address when `v4_allowed`. Empty text is zero groups; an empty group is invalid.
bool ipv6_groups(std::string_view text, bool v4_allowed, int& groups, bool& v4) noexcept {
    groups = 0;
    v4 = false;
    if (text.empty()) return true;
    for (;;) {
        const std::size_t colon = text.find(':');
        const std::string_view group = text.substr(0, colon);
        if (colon == std::string_view::npos && v4_allowed && group.find('.') != std::string_view::npos) {
            v4 = true;
            return is_valid_ipv4(group);
        }
        if (group.empty() || group.size() > 4) return false;
        for (char c : group)
            if (!is(c, c_hex)) return false;
        ++groups;
        if (colon == std::string_view::npos) return true;
        text.remove_prefix(colon + 1);
    }
}

}  // namespace

bool is_valid_ipv6(std::string_view text) noexcept {
    // RFC 5321 §4.1.3: IPv6-full / IPv6-comp / IPv6v4-full / IPv6v4-comp. The "::"
    // stands for at least two groups, so at most 6 (4 with IPv4) groups beside it.
    int groups = 0;
    bool v4 = false;
    const std::size_t gap = text.find("::");
    if (gap == std::string_view::npos) {
        if (!ipv6_groups(text, true, groups, v4)) return false;
        return v4 ? groups == 6 : groups == 8;
    }
    int left = 0, right = 0;
    bool left_v4 = false;
    if (!ipv6_groups(text.substr(0, gap), false, left, left_v4)) return false;
    // A third colon ("1:::2") makes an empty group on the right.
    if (!ipv6_groups(text.substr(gap + 2), true, right, v4)) return false;
    return left + right <= (v4 ? 4 : 6);
}

bool is_valid_address_literal(std::string_view literal) noexcept {
    // address-literal = "[" ( IPv4 / IPv6 / General-address-literal ) "]"
    if (literal.size() < 3 || literal.front() != '[' || literal.back() != ']') return false;
    const std::string_view inner = literal.substr(1, literal.size() - 2);
    if (is_valid_ipv4(inner)) return true;
    const std::size_t colon = inner.find(':');
    if (colon == std::string_view::npos) return false;
    const std::string_view tag = inner.substr(0, colon), content = inner.substr(colon + 1);
    // "IPv6" is itself an Ldh-str: without this, "[IPv6:junk]" would pass as a
    // General-address-literal.
    if (iequals(tag, "ipv6")) return is_valid_ipv6(content);
    // Standardized-tag = Ldh-str = *( ALPHA / DIGIT / "-" ) Let-dig
    if (tag.empty() || tag.back() == '-') return false;
    for (char c : tag)
        if (!is(c, c_alpha | c_digit) && c != '-') return false;
    if (content.empty()) return false;
    for (char c : content)
        if (!is(c, c_dcontent)) return false;
    return true;
}

}  // namespace smtp
