// Test helper: canonical(x), the message content a server must receive when a client
// sends x (the round-trip property in smtp/data.hpp), written out byte by byte and
// independently of DataEncoder: each bare CR and bare LF becomes CRLF (RFC 5321
// §2.3.8), and a non-empty x that does not end in CRLF gets one.
#ifndef SMTP_TESTS_CANONICAL_HPP
#define SMTP_TESTS_CANONICAL_HPP

#include <cstddef>
#include <string>
#include <string_view>

namespace smtp::test {

inline std::string canonical(std::string_view x) {
    std::string out;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const char c = x[i];
        if (c == '\r' && i + 1 < x.size() && x[i + 1] == '\n') ++i;
        if (c == '\r' || c == '\n')
            out += "\r\n";
        else
            out += c;
    }
    if (!out.empty() && !out.ends_with("\r\n")) out += "\r\n";
    return out;
}

}  // namespace smtp::test

#endif
