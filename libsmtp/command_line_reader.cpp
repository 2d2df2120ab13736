// CommandLineReader: finds CRLF-terminated command lines within Limits::command_line
// (RFC 5321 §4.5.3.1.4: 512 octets including the CRLF).
//
// The result depends only on the bytes, never on how they were chunked: a line is
// judged when its LF is in view, or when more than the limit is in view without an
// LF (then it is too long whatever follows). Bare LF is an error, never a line end:
// accepting it is what SMTP smuggling exploits.
#include <smtp/command.hpp>

#include <cstring>

namespace smtp {
namespace {

using Line = CommandLineReader::Line;
using Status = CommandLineReader::Status;

const char* find(std::string_view s, char c) noexcept {
    return s.empty() ? nullptr : static_cast<const char*>(std::memchr(s.data(), c, s.size()));
}

// A complete line of `n` bytes including its LF.
Line judge(std::string_view input, std::size_t n) noexcept {
    const std::size_t lf = n - 1;
    if (lf == 0 || input[lf - 1] != '\r') return {Status::error, n, {}, Errc::bare_lf};
    const std::string_view text = input.substr(0, lf - 1);
    if (find(text, '\0')) return {Status::error, n, {}, Errc::nul_byte};
    if (find(text, '\r')) return {Status::error, n, {}, Errc::bare_cr};
    return {Status::ok, n, text, Errc::ok};
}

}  // namespace

CommandLineReader::Line CommandLineReader::next(std::string_view input) noexcept {
    std::size_t skipped = 0;
    if (skipping_) {
        // The tail of an over-long line: drop it through its LF, then go on with
        // what follows, so a pipelined command after it is not held back.
        const char* lf = find(input, '\n');
        if (!lf) return {Status::need_more, input.size(), {}, Errc::ok};
        skipping_ = false;
        skipped = static_cast<std::size_t>(lf - input.data()) + 1;
        input.remove_prefix(skipped);
    }
    if (input.empty()) return {Status::need_more, skipped, {}, Errc::ok};

    // Only the first max_line_ bytes can hold the LF of an acceptable line.
    const char* lf = find(input.substr(0, max_line_), '\n');
    if (lf) {
        Line line = judge(input, static_cast<std::size_t>(lf - input.data()) + 1);
        line.consumed += skipped;
        return line;
    }
    if (input.size() < max_line_) return {Status::need_more, skipped, {}, Errc::ok};

    // Too long, complete or not. Consume through its LF if in view, else all of it
    // and skip the rest in later calls.
    const char* end = find(input.substr(max_line_), '\n');
    std::size_t n = input.size();
    if (end)
        n = static_cast<std::size_t>(end - input.data()) + 1;
    else
        skipping_ = true;
    return {Status::error, skipped + n, {}, Errc::line_too_long};
}

}  // namespace smtp
