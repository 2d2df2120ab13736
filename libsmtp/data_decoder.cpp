// DataDecoder: the bytes after "354" to message content (RFC 5321 §4.1.1.4, §4.5.2).
//
// Decisions the RFC leaves open, made here:
// - Line length counts the line as sent (§4.5.3.1.6 limits the transmitted text
//   line), so a stuffing dot counts: "." + 998 octets + CRLF is 1001 octets, too long.
// - A NUL byte is content like any other: §4.5.2 gives DATA no byte rules besides
//   line endings and dots, and a relay must not alter what it does not understand.
// - size() keeps counting after an error, so a server can log how big a refused
//   message really was. A bare CR or LF counts 1 when refused, 2 when normalized.
// - When normalizing, a bare CR or LF ends an output line, so the line length
//   starts again after it (a sender that ends every line in LF is the reason that
//   option exists); it never ends a *transmitted* line, so a dot after it is content.
// - Each error is placed at the octet that breaks the rule, and the first one in the
//   stream wins, so error() never depends on how the input was chunked.
#include <smtp/data.hpp>

#include "line_scan.hpp"

#include <limits>

namespace smtp {
namespace {

// What a line ending held back across a chunk boundary, or a normalized bare CR or
// LF, is emitted as: it is not in the caller's input, so it lives here.
constexpr std::string_view crlf = "\r\n";

constexpr auto npos = static_cast<std::size_t>(-1);

// Octets a line may have before its CRLF: Limits::text_line counts the CRLF.
std::size_t line_octets(const Limits& limits, const DataOptions& options) {
    if (options.long_lines == DataOptions::LongLines::accept) return npos;
    return limits.text_line >= 2 ? limits.text_line - 2 : 0;
}

}  // namespace

DataDecoder::DataDecoder(const Limits& limits, const DataOptions& options) noexcept
    : max_size_(limits.message_size),
      max_line_(line_octets(limits, options)),
      normalize_(options.bare_line_endings == DataOptions::BareLineEndings::normalize) {}

DataDecoder::Result DataDecoder::decode(std::string_view input) noexcept {
    std::size_t p = 0;
    for (;;) {
        if (state_ == State::done) return {p, {}, true};
        if (state_ == State::in_line) return scan(input, p);
        if (p == input.size()) return {p, {}, false};
        const char c = input[p];
        switch (state_) {
            case State::line_start:
                if (c == '.') {
                    // §4.5.2: the first dot of a line is the sender's stuffing (or the
                    // start of the final ".CRLF"); it is not content, but it was sent.
                    ++p;
                    state_ = State::after_dot;
                    line_length_ = 1;
                    if (line_length_ > max_line_) fail(Errc::data_line_too_long);
                } else {
                    state_ = State::in_line;
                }
                break;
            case State::after_dot:
                if (c == '\r') {
                    ++p;
                    state_ = State::after_dot_cr;
                } else {
                    state_ = State::in_line;
                }
                break;
            case State::after_cr:
            case State::after_dot_cr:
                if (c == '\n') {
                    ++p;
                    if (state_ == State::after_dot_cr) {  // CRLF "." CRLF: the end
                        state_ = State::done;
                        return {p, {}, true};
                    }
                    state_ = State::line_start;
                    end_line();
                    return emit(p, crlf);
                }
                // The held CR is bare (after ".", the dot was stuffing). A "." after it
                // is content: only CRLF starts a line (SMTP smuggling, §2.3.8).
                state_ = State::in_line;
                if (!normalize_) {
                    fail(Errc::data_bare_cr);
                    add_text(1);
                    break;
                }
                end_line();  // normalized: it ends the output line, as CRLF
                if (error_ == Errc::ok) return {p, crlf, false};
                break;
            case State::in_line:
            case State::done:
                break;
        }
    }
}

// The hot path: one contiguous piece of content from `from`, across as many whole
// lines as it can, until a dot to drop, a bare CR or LF, an error, or the end of the
// input. At the first error the piece ends right before the octet that broke the
// rule, so the content handed out never depends on the chunking.
DataDecoder::Result DataDecoder::scan(std::string_view input, std::size_t from) noexcept {
    const char* const data = input.data();
    const std::size_t size = input.size();
    const std::size_t begin = from;
    const auto piece = [&](std::size_t end) { return std::string_view(data + begin, end - begin); };
    std::size_t p = from;
    for (;;) {
        const std::size_t q = detail::find_line_break(data, p, size);
        if (const std::size_t over = add_text(q - p); over != npos) [[unlikely]]
            return {q, piece(p + over), false};
        if (q == size) return emit(size, piece(size));
        if (data[q] == '\r') {
            if (q + 1 == size) {  // LF may come next: hold the CR back, emit it later
                state_ = State::after_cr;
                return emit(size, piece(q));
            }
            if (data[q + 1] == '\n') {
                p = q + 2;
                if (end_line()) [[unlikely]] {
                    state_ = State::line_start;
                    return {p, piece(q), false};
                }
                if (p == size) {
                    state_ = State::line_start;
                    return emit(size, piece(size));
                }
                if (data[p] == '.') {  // not content: the piece ends; decode() takes it next
                    state_ = State::line_start;
                    return emit(p, piece(p));
                }
                continue;
            }
        }
        // A bare CR or LF at q (RFC 5321 §2.3.8 forbids them in DATA).
        if (!normalize_) {
            const bool first = error_ == Errc::ok;
            fail(data[q] == '\r' ? Errc::data_bare_cr : Errc::data_bare_lf);
            add_text(1);
            if (first) return {q + 1, piece(q), false};
            p = q + 1;
            continue;
        }
        if (error_ == Errc::ok && q > begin) return emit(q, piece(q));  // the CRLF is next call's piece
        end_line();  // normalized: it ends the output line, as CRLF
        if (error_ == Errc::ok) return {q + 1, crlf, false};
        p = q + 1;
    }
}

// Adds a run of line octets. Returns where in the run the first error was met (the
// first octet over a limit), or npos if none was met now.
std::size_t DataDecoder::add_text(std::size_t octets) noexcept {
    line_length_ += octets;
    size_ += octets;
    if (line_length_ > max_line_ || size_ > max_size_) [[unlikely]]
        return over_limit(octets);
    return npos;
}

std::size_t DataDecoder::over_limit(std::size_t octets) noexcept {
    if (error_ != Errc::ok) return npos;
    // No error yet, so both counts were within their limits before this run.
    const std::uint64_t line_at = line_length_ > max_line_ ? max_line_ - (line_length_ - octets) : npos;
    const std::uint64_t size_at = size_ > max_size_ ? max_size_ - (size_ - octets) : npos;
    fail(line_at <= size_at ? Errc::data_line_too_long : Errc::message_too_big);
    return static_cast<std::size_t>(line_at <= size_at ? line_at : size_at);
}

// A line ending (CRLF, or a normalized bare CR or LF): two content octets, taken as
// one unit. Returns whether the first error was met now.
bool DataDecoder::end_line() noexcept {
    line_length_ = 0;
    size_ += 2;
    if (size_ <= max_size_ || error_ != Errc::ok) return false;
    fail(Errc::message_too_big);
    return true;
}

}  // namespace smtp
