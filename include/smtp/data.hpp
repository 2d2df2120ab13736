/// @file
/// The DATA stream codec (RFC 5321 §4.1.1.4, §4.5.2).
///
/// DataDecoder (server side) turns the bytes after "354" into message content:
/// it ends only at CRLF "." CRLF, removes dot-stuffing, and enforces the size and
/// line limits. It works over any chunking and hands out views, never copies a line.
/// DataEncoder (client side) does the reverse: dot-stuffing, line endings
/// normalized to CRLF, the final ".CRLF", streaming chunk by chunk.
///
/// SMTP smuggling: a bare LF or bare CR never ends a line, so LF.LF, LF.CRLF,
/// CR.CR, CRLF.LF and friends can never end the message: they stay inside it and
/// are then rejected (default) or normalized, per DataOptions::bare_line_endings.
///
/// Round trip: for any byte string x, decode(encode(x)) == canonical(x), where
/// canonical(x) is x with each bare CR and bare LF turned into CRLF and a CRLF added
/// at the end if x is not empty and does not end in one. For x made of CRLF-ended
/// lines (any valid SMTP content) that is x itself.
///
/// Thread safety: each object is a value owned by one thread.
#ifndef SMTP_DATA_HPP
#define SMTP_DATA_HPP

#include <smtp/error.hpp>
#include <smtp/limits.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace smtp {

/// What the DataDecoder does with message data that breaks a rule: strict by default.
struct DataOptions {
    /// A bare LF or CR in the message (RFC 5321 §2.3.8 forbids them).
    enum class BareLineEndings {
        reject,     ///< default: read to the end, then 550 5.5.2
        normalize,  ///< turn each into CRLF; a dot after it is kept as content
    };
    /// What to do with a bare LF or CR.
    BareLineEndings bare_line_endings = BareLineEndings::reject;

    /// A line over Limits::text_line.
    enum class LongLines {
        reject,  ///< default: read to the end, then 550 5.6.0
        accept,  ///< keep it as it is, as Postfix does
    };
    /// What to do with a line over Limits::text_line.
    LongLines long_lines = LongLines::reject;
};

/// Decoder of one message's data. Create one per DATA command.
///
/// @code
///   while (!in.empty()) {
///       auto r = decoder.decode(in);
///       write(r.content);               // may be empty
///       in.remove_prefix(r.consumed);
///       if (r.finished) break;          // bytes after the dot are the next command
///   }
///   if (decoder.error() != Errc::ok) reply 5xx, discard the content written
/// @endcode
///
/// decode() returns one contiguous piece of content per call, so call it until it
/// has consumed everything (or finished); each call consumes input or returns
/// content. `content` points into the input, or into static storage (`"\r\n"`) for a
/// CR held back across a chunk boundary or a normalized bare CR or LF; it is valid
/// as long as the input is. After an error is found, content stops (empty views)
/// right before the octet that broke the rule, in any chunking, and the input is
/// still consumed up to the end of the message, keeping the stream in sync; error()
/// tells which limit or rule was broken (the first one met).
class DataDecoder {
public:
    /// The result of decode().
    struct Result {
        std::size_t consumed = 0;  ///< bytes of the input used
        std::string_view content;  ///< message content, unstuffed; valid as long as the input is
        bool finished = false;     ///< the final CRLF.CRLF was consumed
    };

    /// A decoder within `limits.message_size` and `limits.text_line`, by `options`.
    explicit DataDecoder(const Limits& limits = {}, const DataOptions& options = {}) noexcept;

    /// Decodes from the start of `input`, the bytes not yet consumed. Never fails:
    /// a broken rule is kept for error(), and decoding goes on to the final dot.
    /// @return the bytes consumed, the next piece of content (a view into `input` or
    ///         into static storage: valid as long as `input` is), and whether the
    ///         final dot was consumed.
    Result decode(std::string_view input) noexcept;

    /// The final dot has been consumed.
    bool finished() const noexcept { return state_ == State::done; }
    /// The first rule broken: ok, message_too_big, data_line_too_long, data_bare_lf or
    /// data_bare_cr.
    Errc error() const noexcept { return error_; }
    /// Content octets so far, after unstuffing; still counted after an error, so a
    /// refused message's real size can be logged.
    std::uint64_t size() const noexcept { return size_; }

private:
    enum class State : std::uint8_t {
        line_start,    // at the start of a line (after CRLF, or the first line)
        in_line,       // inside a line
        after_cr,      // a CR ended the last input and was held back; LF may follow
        after_dot,     // a line began with "."; it was dropped
        after_dot_cr,  // ".CR" seen, the CR held back; LF ends the message
        done,
    };
    Result scan(std::string_view input, std::size_t from) noexcept;
    std::size_t add_text(std::size_t octets) noexcept;
    std::size_t over_limit(std::size_t octets) noexcept;
    bool end_line() noexcept;
    void fail(Errc e) noexcept {
        if (error_ == Errc::ok) error_ = e;
    }
    Result emit(std::size_t consumed, std::string_view content) const noexcept {
        return {consumed, error_ == Errc::ok ? content : std::string_view{}, false};
    }

    std::uint64_t max_size_;
    std::size_t max_line_;  // octets of a line before its CRLF; SIZE_MAX for LongLines::accept
    bool normalize_;        // BareLineEndings::normalize
    State state_ = State::line_start;
    Errc error_ = Errc::ok;
    std::uint64_t size_ = 0;
    std::size_t line_length_ = 0;  // octets of the current line so far as sent, CRLF excluded
};

/// Encoder of one message's data, streaming. Output is appended to the caller's
/// string, which the caller sends and clears as it likes; no call holds more than
/// the chunk it was given plus its dot-stuffing. A default-constructed encoder is
/// ready for a message.
class DataEncoder {
public:
    /// Appends the encoded form of `content` (any bytes, any chunking) to `out`.
    /// Throws std::bad_alloc.
    void encode(std::string_view content, std::string& out);

    /// Appends what ends the data: a CRLF if the content did not end in one, then
    /// ".CRLF". The encoder is then ready for the next message. Throws std::bad_alloc.
    void finish(std::string& out);

private:
    bool at_line_start_ = true;
    bool pending_cr_ = false;  // the last chunk ended in CR, not yet written; LF may follow
};

}  // namespace smtp

#endif
