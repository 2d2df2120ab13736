// xtext (RFC 3461 §4), the encoding of the DSN parameters ENVID and ORCPT:
//   xtext = *( xchar / hexchar )
//   xchar = any ASCII CHAR between "!" (33) and "~" (126) inclusive, except "+" and "="
//   hexchar = ASCII "+" immediately followed by two upper case hexadecimal digits
#include "address_grammar.hpp"

#include <smtp/command.hpp>

namespace smtp {
namespace {

int hex_value(char c) noexcept { return c <= '9' ? c - '0' : c - 'A' + 10; }

}  // namespace

namespace detail {

bool is_valid_xtext(std::string_view s, bool utf8) noexcept {
    for (std::size_t i = 0; i < s.size();) {
        const char c = s[i];
        if (is(c, c_xchar)) {
            ++i;
        } else if (c == '+') {
            // RFC 3461 says upper case; lower case is a different (invalid) text.
            if (s.size() - i < 3 || !is(s[i + 1], c_upper_hex) || !is(s[i + 2], c_upper_hex)) return false;
            i += 3;
        } else if (utf8 && is_non_ascii(c)) {
            const std::size_t n = utf8_sequence_length(s, i);
            if (n == 0) return false;
            i += n;
        } else {
            return false;
        }
    }
    return true;
}

}  // namespace detail

std::optional<std::string> decode_xtext(std::string_view xtext) {
    if (!detail::is_valid_xtext(xtext)) return std::nullopt;
    std::string out;
    out.reserve(xtext.size());
    for (std::size_t i = 0; i < xtext.size(); ++i) {
        if (xtext[i] == '+') {
            out += static_cast<char>(hex_value(xtext[i + 1]) * 16 + hex_value(xtext[i + 2]));
            i += 2;
        } else {
            out += xtext[i];
        }
    }
    return out;
}

std::string encode_xtext(std::string_view text) {
    static constexpr char digits[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        if (detail::is(c, detail::c_xchar)) {
            out += c;
        } else {
            const auto b = static_cast<unsigned char>(c);
            out += '+';
            out += digits[b >> 4];
            out += digits[b & 15];
        }
    }
    return out;
}

}  // namespace smtp
