// apps/common/text.hpp: ASCII case rules for domains and mailbox names (RFC 5321 §2.4:
// domains are case-insensitive; only ASCII letters fold, never by locale).
//
// Thread safety: pure functions.
#ifndef SMTP_APPS_COMMON_TEXT_HPP
#define SMTP_APPS_COMMON_TEXT_HPP

#include <algorithm>
#include <string>
#include <string_view>

namespace smtp {

constexpr char ascii_lower(char c) noexcept {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

// `text` with ASCII letters lower-cased; other bytes (UTF-8 included) unchanged.
inline std::string ascii_lower(std::string_view text) {
    std::string out(text);
    for (char& c : out) c = ascii_lower(c);
    return out;
}

// Equal but for the case of ASCII letters.
constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return ascii_lower(x) == ascii_lower(y);
           });
}

}  // namespace smtp

#endif
