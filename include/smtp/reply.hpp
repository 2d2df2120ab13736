/// @file
/// SMTP replies, built (server side) and parsed (client side).
///
/// RFC 5321 §4.2:
/// @code{.unparsed}
/// Reply-line = *( Reply-code "-" [ textstring ] CRLF )
///              Reply-code [ SP textstring ] CRLF
/// @endcode
/// Reply-code is three digits, the first 2-5, the second 0-5. Every line of one
/// multi-line reply carries the same code.
///
/// Building never fails: text is the caller's and must not contain CR or LF (each is
/// replaced by a space, as is NUL, so no caller can inject a reply line). A code the
/// grammar does not allow is a programming error; it is sent as 451 (see
/// append_reply()), never as a positive or permanent reply. Keeping a line within
/// Limits::reply_line is the caller's job: the builder does not truncate. The
/// builders append to a std::string, so they throw std::bad_alloc if it cannot grow.
/// Parsing is incremental and bounded by Limits::reply_line and Limits::reply_lines.
///
/// Thread safety: a ReplyParser is a value owned by one thread; the free functions
/// are reentrant.
#ifndef SMTP_REPLY_HPP
#define SMTP_REPLY_HPP

#include <smtp/error.hpp>
#include <smtp/limits.hpp>

#include <cstddef>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace smtp {

/// A complete reply. `lines` holds the text of each line without code, separator,
/// or CRLF; a reply has at least one line (possibly empty text).
struct Reply {
    int code = 0;                    ///< the reply code, 200..559
    std::vector<std::string> lines;  ///< each line's text, as sent

    /// 2xx or 3xx.
    bool is_positive() const noexcept { return code >= 200 && code < 400; }
    /// 4xx: try again later.
    bool is_transient() const noexcept { return code >= 400 && code < 500; }
    /// 5xx: do not try again.
    bool is_permanent() const noexcept { return code >= 500 && code < 600; }

    /// The enhanced status code at the start of the first line ("2.1.0 Ok"), if it
    /// has one whose class matches the reply code's first digit (RFC 2034 §4);
    /// nullopt otherwise.
    std::optional<EnhancedStatus> enhanced_status() const;

    /// The reply on the wire, CRLF-terminated lines, appended to `out`. The lines'
    /// text is written as is (an enhanced status is part of it), through
    /// append_reply(): a line with empty text is `"ddd\r\n"` (`"ddd-\r\n"` if more
    /// follow), and an empty `lines` is one such line, so what ReplyParser parsed
    /// comes out equal when parsed again. Throws std::bad_alloc.
    void append_to(std::string& out) const;
    /// The same as append_to(), as a new string. Throws std::bad_alloc.
    std::string to_string() const;
};

/// Appends one reply line "code SP [status SP] text CRLF" to `out`.
/// `status` is omitted when not present(). Returns nothing; never fails (but for
/// std::bad_alloc).
/// With no status and empty text the line is "code CRLF" (RFC 5321 §4.2: the text
/// after SP is `1*char`, so "250 " with nothing after it is not grammar).
/// A `code` outside the grammar (first digit 2-5, second 0-5: 200..559 without
/// 260..299, 360..399, ...) is a programming error and becomes 451 "local error in
/// processing" (RFC 5321 §4.2.3), with status 4.3.0 if one was given: a bug must
/// neither accept nor permanently fail anything. A `status` that is not valid (RFC
/// 3463 §2: class 2, 4 or 5, subject and detail at most 999) or whose class is not
/// the code's first digit (RFC 2034 §4) is left out.
void append_reply(std::string& out, int code, EnhancedStatus status, std::string_view text);

/// Appends a multi-line reply: "code-[status ]line1", ..., "code [status ]lineN".
/// The status goes on every line (RFC 2034 §4). An empty `lines` appends one line
/// with empty text. Code and status are checked as for the one-line form.
void append_reply(std::string& out, int code, EnhancedStatus status, std::span<const std::string_view> lines);
/// The multi-line form for a braced list: `append_reply(out, 250, {}, {"a", "b"})`.
inline void append_reply(std::string& out, int code, EnhancedStatus status,
                         std::initializer_list<std::string_view> lines) {
    append_reply(out, code, status, std::span<const std::string_view>(lines.begin(), lines.size()));
}

/// Appends the reply for a server-side error: error_info(e)'s code, status and
/// reason, with ": detail" added when `detail` is not empty. For Errc values that
/// have no reply (reply_code 0) it appends "451 4.3.0 <reason>" as a safe default.
/// Throws std::bad_alloc.
void append_error_reply(std::string& out, Errc e, std::string_view detail = {});

/// Parses "class.subject.detail" (RFC 3463 §2) at the start of `text`, followed by a
/// space or the end of text. Class is 2, 4 or 5; subject and detail are 1 to 3 digits
/// without leading zeros ("0" itself is fine, "01" is not). Returns nullopt if it is
/// not one.
std::optional<EnhancedStatus> parse_enhanced_status(std::string_view text) noexcept;

/// Incremental parser of the replies a server sends.
///
/// Usage: keep the received bytes in your buffer and call parse() on the unparsed
/// part. It consumes only whole lines; a partial line stays in your buffer until
/// more arrives (but a partial line already over Limits::reply_line is an error).
///
/// @code
///   auto r = parser.parse(buf);
///   buf.erase(0, r.consumed);
///   if (r.status == ReplyParser::Status::complete) use(parser.reply());
/// @endcode
///
/// Errors are sticky: after one, every parse() returns it again with consumed 0,
/// until reset(). The parser's memory is bounded by reply_line * reply_lines.
///
/// Strict framing: every line ends in CRLF. LF without CR is reply_bare_lf (bare LF is
/// how SMTP smuggling works), a CR not followed by LF is reply_syntax, NUL is
/// reply_nul_byte. The text after the code is kept as sent, any other byte included
/// (servers send UTF-8, RFC 6531, and worse). A line over Limits::reply_line
/// including CRLF is reply_line_too_long, also while it is still partial: once the
/// caller's buffer holds reply_line bytes without LF. So after need_more the
/// unconsumed rest is always shorter than reply_line.
class ReplyParser {
public:
    /// What parse() found.
    enum class Status {
        need_more,  ///< no complete reply yet: feed more
        complete,   ///< reply() holds a complete reply
        error       ///< the server broke the grammar; `error` says how
    };
    /// The result of parse().
    struct Result {
        Status status;          ///< what was found
        std::size_t consumed;   ///< bytes of `input` used, whole lines only; for an error,
                                ///< the lines before the offending one
        Errc error = Errc::ok;  ///< set when status == error
    };

    /// A parser bounded by `limits.reply_line` and `limits.reply_lines`.
    explicit ReplyParser(const Limits& limits = {});

    /// Parses lines from `input` until one reply is complete, input runs out, or an
    /// error. Stops right after a complete reply, so pipelined replies come out one
    /// per call. Throws nothing but std::bad_alloc (each line's text is stored).
    /// @return the status and the bytes to drop from the front of the buffer.
    ///         Errors: reply_syntax, reply_code_mismatch, reply_line_too_long,
    ///         reply_too_many_lines, reply_bare_lf, reply_nul_byte.
    Result parse(std::string_view input);

    /// The last complete reply. Valid after parse() returned complete, until the next
    /// parse() or reset(). Move from it if you keep it.
    Reply& reply() noexcept { return reply_; }

    /// Forgets any partial reply and a sticky error.
    void reset() noexcept;

private:
    // Checks one line (ending in LF) and adds it to reply_; ok or the error.
    Errc take_line(std::string_view line);

    Limits limits_;
    Reply reply_;
    bool in_reply_ = false;  // a "ddd-" line has been seen
    bool complete_ = false;  // reply_ is complete; the next line starts a new one
    Errc error_ = Errc::ok;
};

}  // namespace smtp

#endif
