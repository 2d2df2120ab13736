// libsmtp/address_grammar.hpp: private pieces of the RFC 5321 §4.1.2 grammar shared by
// the command parser (command_parser.cpp), the address validators (address.cpp) and
// xtext (xtext.cpp). Not installed; nothing here is API.
//
// Character classes are one constexpr 256-entry table, so every grammar test is a
// load and a mask. The scanners take a position `i` into `s`, advance it over what
// they accept and say why they stopped: they never allocate and never read past `s`.
// Thread safety: stateless.
#ifndef SMTP_ADDRESS_GRAMMAR_HPP
#define SMTP_ADDRESS_GRAMMAR_HPP

#include <smtp/command.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace smtp::detail {

enum CharClass : std::uint16_t {
    c_alpha = 1 << 0,      // ALPHA
    c_digit = 1 << 1,      // DIGIT
    c_atext = 1 << 2,      // RFC 5322 §3.2.3 atext
    c_qtext = 1 << 3,      // RFC 5321 §4.1.2 qtextSMTP: %d32-33 / %d35-91 / %d93-126
    c_xchar = 1 << 4,      // RFC 3461 §4 xchar: %d33-42 / %d44-60 / %d62-126
    c_value = 1 << 5,      // RFC 5321 §4.1.2 esmtp-value char: %d33-60 / %d62-126
    c_dcontent = 1 << 6,   // RFC 5321 §4.1.3 dcontent: %d33-90 / %d94-126
    c_hex = 1 << 7,        // HEXDIG, either case (RFC 5234 strings are case-insensitive)
    c_upper_hex = 1 << 8,  // 0-9 A-F: RFC 3461 §4 says xtext's hexchar is upper case
    c_base64 = 1 << 9,     // RFC 4648 alphabet without the padding "="
    c_mech = 1 << 10,      // RFC 4422 §3.1 mech-char, letters of either case
};

constexpr std::array<std::uint16_t, 256> make_char_classes() {
    std::array<std::uint16_t, 256> t{};
    for (int c = 0; c < 256; ++c) {
        std::uint16_t bits = 0;
        const bool upper = c >= 'A' && c <= 'Z', lower = c >= 'a' && c <= 'z';
        const bool digit = c >= '0' && c <= '9';
        if (upper || lower) bits |= c_alpha;
        if (digit) bits |= c_digit;
        if (upper || lower || digit ||
            std::string_view("!#$%&'*+-/=?^_`{|}~").find(char(c)) != std::string_view::npos)
            bits |= c_atext;
        if ((c >= 32 && c <= 33) || (c >= 35 && c <= 91) || (c >= 93 && c <= 126)) bits |= c_qtext;
        if ((c >= 33 && c <= 42) || (c >= 44 && c <= 60) || (c >= 62 && c <= 126)) bits |= c_xchar;
        if ((c >= 33 && c <= 60) || (c >= 62 && c <= 126)) bits |= c_value;
        if ((c >= 33 && c <= 90) || (c >= 94 && c <= 126)) bits |= c_dcontent;
        if (digit || (c >= 'A' && c <= 'F')) bits |= c_upper_hex | c_hex;
        if (c >= 'a' && c <= 'f') bits |= c_hex;
        if (upper || lower || digit || c == '+' || c == '/') bits |= c_base64;
        if (upper || lower || digit || c == '-' || c == '_') bits |= c_mech;
        t[static_cast<std::size_t>(c)] = bits;
    }
    return t;
}

inline constexpr std::array<std::uint16_t, 256> char_classes = make_char_classes();

constexpr bool is(char c, std::uint16_t classes) noexcept {
    return (char_classes[static_cast<unsigned char>(c)] & classes) != 0;
}
constexpr bool is_non_ascii(char c) noexcept { return static_cast<unsigned char>(c) >= 0x80; }
constexpr char to_lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

// Case-insensitive ASCII comparison with a lower-case literal.
constexpr bool iequals(std::string_view s, std::string_view lower) noexcept {
    if (s.size() != lower.size()) return false;
    for (std::size_t i = 0; i < s.size(); ++i)
        if (to_lower(s[i]) != lower[i]) return false;
    return true;
}

// Length of the well-formed UTF-8 sequence (RFC 3629 §4, UTF8-2/3/4) starting at
// s[i], a non-ASCII byte; 0 when ill-formed (overlong, surrogate, over U+10FFFF,
// truncated, stray continuation byte).
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept;

// Why a scanner stopped. `ok` means it accepted something and `i` is past it.
enum class Scan : std::uint8_t {
    ok,
    bad,        // grammar violated
    bad_utf8,   // ill-formed UTF-8 where UTF-8 is allowed
    non_ascii,  // a non-ASCII byte where UTF-8 is not allowed
};

// How a scanner treats non-ASCII bytes (RFC 6531 §3.3).
struct Utf8 {
    bool allowed = false;  // the peer may use UTF-8 here
    bool seen = false;     // set when a non-ASCII character was accepted
};

// RFC 5321 §4.1.2 Dot-string, extended by RFC 6531 §3.3 (atext =/ UTF8-non-ascii).
Scan scan_dot_string(std::string_view s, std::size_t& i, Utf8& utf8) noexcept;

// RFC 5321 §4.1.2 Quoted-string starting at s[i] == '"' (qtextSMTP =/ UTF8-non-ascii).
Scan scan_quoted_string(std::string_view s, std::size_t& i, Utf8& utf8) noexcept;

// RFC 5321 §4.1.2 Domain (with RFC 6531 U-labels when utf8.allowed): takes the
// longest run of domain characters at s[i] and checks it. Labels of ASCII only are
// at most `max_label` octets; the total length is the caller's to check.
Scan scan_domain(std::string_view s, std::size_t& i, std::size_t max_label, Utf8& utf8) noexcept;

// RFC 3461 §4 xtext; with `utf8` also well-formed UTF-8 (RFC 6533 §3 utf-8-addr-xtext
// is a subset of this, and the value was already checked for UTF-8).
bool is_valid_xtext(std::string_view s, bool utf8 = false) noexcept;

}  // namespace smtp::detail

#endif
