/// @file
/// SMTP command lines, framed and parsed (RFC 5321 §4.1).
///
/// Two steps, both sans-IO and allocation-free:
///  1. CommandLineReader finds the next command line in the bytes received, within
///     Limits::command_line. An over-long line is reported once (500 5.5.2) and then
///     skipped to its end: its tail is never taken for a command.
///  2. parse_command() parses one line into a Command whose string_views point into
///     that line. They are valid as long as the line's bytes are.
///
/// Strict by default (RFC 5321 grammar, RFC 1869/1870/6152/3461/6531 parameters).
/// Each leniency is one named switch in ParseOptions, off by default, with its risk.
/// Errors are returned as an Errc plus a detail view; append_error_reply() in
/// smtp/reply.hpp turns them into the reply to send.
///
/// Thread safety: CommandLineReader is a value owned by one thread; parse_command()
/// is reentrant.
#ifndef SMTP_COMMAND_HPP
#define SMTP_COMMAND_HPP

#include <smtp/error.hpp>
#include <smtp/limits.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace smtp {

// ---------------------------------------------------------------- line framing

/// Finds command lines in a byte stream.
///
/// @code
///   auto line = reader.next(buf);
///   buf.erase(0, line.consumed);
///   switch (line.status) { case ok: parse line.text; case need_more: read more; ... }
/// @endcode
///
/// It never buffers: the caller keeps unconsumed bytes. A partial line is left
/// unconsumed (consumed 0) while it is within Limits::command_line; once it is
/// longer, line_too_long is returned once, consuming the line through its LF if the
/// LF is in view and all of the input otherwise; then the rest of that line (up to
/// and including its LF) is consumed silently by later calls: need_more with
/// consumed > 0, or, when a line follows in the same input, that line's result with
/// the skipped bytes counted in `consumed` (so `text` need not start at `input[0]`).
/// A line is judged only once its LF is in view or the limit is passed, so the
/// results do not depend on how the input was chunked. A bare LF never ends a line
/// as a CRLF would (SMTP smuggling): it is bare_lf.
class CommandLineReader {
public:
    /// What next() found.
    enum class Status {
        ok,         ///< `text` is a complete line without its CRLF
        need_more,  ///< no complete line yet
        error,      ///< a complete line that is not acceptable; `error` says why
    };
    /// The result of next().
    struct Line {
        Status status;          ///< what was found
        std::size_t consumed;   ///< bytes of the input used (the line and its CRLF)
        std::string_view text;  ///< for ok: the line without CRLF (view into input)
        Errc error = Errc::ok;  ///< for error: line_too_long, bare_lf, bare_cr, nul_byte
    };

    /// A reader of lines of at most `limits.command_line` octets, CRLF included.
    explicit CommandLineReader(const Limits& limits = {}) : max_line_(limits.command_line) {}

    /// Looks for the next line at the start of `input`, the bytes not yet consumed.
    /// Never allocates, never fails: a bad line is a Line with Status::error.
    /// @return the status, the bytes to drop from the front of the buffer, and for ok
    ///         the line: `text` points into `input`, valid as long as those bytes are
    ///         (dropping `consumed` bytes from the buffer ends it).
    Line next(std::string_view input) noexcept;

    /// True while the tail of an over-long line is being skipped.
    bool skipping() const noexcept { return skipping_; }

private:
    std::size_t max_line_;
    bool skipping_ = false;
};

// ---------------------------------------------------------------- parsed values

/// A command verb (RFC 5321 §4.1.1 unless said otherwise), recognized case-insensitively.
enum class Verb : std::uint8_t {
    helo,      ///< HELO (§4.1.1.1)
    ehlo,      ///< EHLO (§4.1.1.1)
    mail,      ///< MAIL FROM (§4.1.1.2)
    rcpt,      ///< RCPT TO (§4.1.1.3)
    data,      ///< DATA (§4.1.1.4)
    rset,      ///< RSET (§4.1.1.5)
    noop,      ///< NOOP (§4.1.1.9)
    quit,      ///< QUIT (§4.1.1.10)
    vrfy,      ///< VRFY (§4.1.1.6)
    expn,      ///< EXPN (§4.1.1.7)
    help,      ///< HELP (§4.1.1.8)
    bdat,      ///< BDAT (RFC 3030)
    starttls,  ///< STARTTLS (RFC 3207)
    auth,      ///< AUTH (RFC 4954)
    unknown    ///< none of the above
};

/// "HELO", "EHLO", ...; "unknown" for Verb::unknown.
/// @return a view of a string literal: valid for the life of the program.
std::string_view verb_name(Verb v) noexcept;

/// A mailbox local_part\@domain, or the null reverse-path `<>` (all empty), or
/// `<Postmaster>` (local_part and mailbox "Postmaster" as written, domain empty,
/// postmaster true). Views into the line.
struct Path {
    std::string_view local_part;  ///< as written: dot-string or quoted-string with quotes
    std::string_view domain;      ///< domain, or address literal with its brackets
    std::string_view mailbox;     ///< local_part\@domain as written; source route dropped
    bool postmaster = false;      ///< `RCPT TO:<Postmaster>` (no domain), RFC 5321 §4.5.1

    /// True for the null reverse-path `<>`.
    bool is_null() const noexcept { return mailbox.empty() && !postmaster; }
};

/// The local part with quoting removed: `"\"a\\\"b\""` -> `a"b`. Dot-strings unchanged.
/// Throws std::bad_alloc.
std::string unquote_local_part(std::string_view local_part);

/// One ESMTP parameter as written: keyword[=value]. Views into the line.
struct Parameter {
    std::string_view keyword;  ///< as written, case preserved
    std::string_view value;    ///< empty when there is no "="
    bool has_value = false;    ///< there was a "="
};

/// The BODY parameter (RFC 6152).
enum class Body : std::uint8_t {
    unspecified,    ///< no BODY parameter
    seven_bit,      ///< BODY=7BIT
    eight_bit_mime  ///< BODY=8BITMIME
};
/// The RET parameter (RFC 3461 §4.3).
enum class Ret : std::uint8_t {
    unspecified,  ///< no RET parameter
    full,         ///< RET=FULL
    hdrs          ///< RET=HDRS
};

/// NOTIFY bits (RFC 3461 §4.1). never excludes the others.
enum NotifyFlags : std::uint8_t {
    notify_none = 0,     ///< no NOTIFY parameter
    notify_never = 1,    ///< NEVER
    notify_success = 2,  ///< SUCCESS
    notify_failure = 4,  ///< FAILURE
    notify_delay = 8,    ///< DELAY
};

/// xtext (RFC 3461 §4): "+XX" hex escapes decoded. nullopt if malformed.
/// Throws std::bad_alloc.
std::optional<std::string> decode_xtext(std::string_view xtext);
/// The inverse: every byte outside "!" (33) to "~" (126), '+' and '=' becomes "+XX".
/// Throws std::bad_alloc.
std::string encode_xtext(std::string_view text);

/// One parsed command line, as parse_command() leaves it. Which fields are set
/// depends on the verb; the others keep their defaults. Every view points into the
/// line given to parse_command(), valid as long as the line's bytes are.
struct Command {
    /// The most ESMTP parameters one command may carry; more is parameter_syntax.
    static constexpr std::size_t max_parameters = 16;

    Verb verb = Verb::unknown;   ///< the command
    std::string_view verb_text;  ///< the verb as written ("mail")
    std::string_view argument;   ///< everything after the verb and its space

    /// HELO/EHLO: the domain or address literal.
    std::string_view domain;

    /// MAIL/RCPT: the path (source route dropped, RFC 5321 §3.6.1).
    Path path;

    /// MAIL/RCPT: every parameter as written, in order. Unknown keywords never get
    /// here: they are parameter_unsupported. Known on MAIL: SIZE, BODY, SMTPUTF8 (only
    /// with ParseOptions::smtputf8), RET, ENVID, AUTH (RFC 4954 §5, kept here only);
    /// on RCPT: NOTIFY, ORCPT.
    std::array<Parameter, max_parameters> parameters{};
    std::size_t parameter_count = 0;  ///< how many of `parameters` are used

    /// @name MAIL: typed values of the known parameters
    /// @{
    std::optional<std::uint64_t> size;  ///< SIZE (RFC 1870)
    Body body = Body::unspecified;      ///< BODY (RFC 6152)
    bool smtputf8 = false;              ///< SMTPUTF8 (RFC 6531)
    Ret ret = Ret::unspecified;         ///< RET (RFC 3461)
    std::string_view envid;             ///< ENVID, still xtext-encoded (RFC 3461)
    /// @}

    /// @name RCPT: typed values of the known parameters
    /// @{
    std::uint8_t notify = notify_none;  ///< NOTIFY (RFC 3461): NotifyFlags bits
    std::string_view orcpt_type;        ///< ORCPT addr-type ("rfc822")
    std::string_view orcpt;             ///< ORCPT address, still xtext-encoded
    /// @}

    /// @name BDAT (RFC 3030)
    /// @{
    std::uint64_t chunk_size = 0;  ///< the chunk's size in octets
    bool last = false;             ///< LAST was given
    /// @}

    /// @name AUTH (RFC 4954): mechanism and optional initial response
    /// @{
    std::string_view mechanism;         ///< the SASL mechanism
    std::string_view initial_response;  ///< the initial response, empty if none
    /// @}

    /// VRFY, EXPN, HELP, NOOP: the string argument, possibly empty.
    std::string_view text;
};

/// Named leniencies of parse_command(), each off by default.
struct ParseOptions {
    /// UTF-8 is allowed in addresses and parameter values: the server offered
    /// SMTPUTF8 (RFC 6531). For MAIL, a UTF-8 path also needs the SMTPUTF8 parameter;
    /// for RCPT set this only when the transaction's MAIL had it.
    bool smtputf8 = false;

    /// Accept `MAIL FROM: <user@example.org>` (a space after the colon). Sent by some
    /// old clients; RFC 5321 §4.1.2 forbids it. Risk: low.
    bool space_after_colon = false;

    /// Accept `MAIL FROM:user@example.org` without angle brackets (RFC 821 habit of a
    /// few scripts). Risk: the end of the address becomes ambiguous with parameters;
    /// only the form with no parameters is accepted. Limits::path still counts the two
    /// brackets.
    bool missing_brackets = false;

    /// Accept an address literal as the HELO argument (RFC 5321 §4.1.1.1 allows it
    /// only for EHLO; many clients send `HELO [192.0.2.1]`). Risk: none known.
    bool helo_address_literal = false;
};

/// The result of parse_command().
struct ParseResult {
    Errc error = Errc::ok;  ///< ok, or why the line was refused
    /// The parameter keyword for parameter_unsupported, _duplicate and _value (and
    /// _syntax where a keyword was read); else empty. A view into the line, cut to
    /// 64 octets so that the error reply fits in a reply line.
    std::string_view detail;
    /// True when `error` is Errc::ok.
    bool ok() const noexcept { return error == Errc::ok; }
};

/// Parses one command line (without CRLF). `out` is reset first. On success `out`
/// describes it; on error `out.verb` is still set when the verb was recognized, so
/// the caller knows which command failed, and the other fields are unspecified. An
/// unrecognized verb returns unknown_command. Never allocates.
/// The views `out` and the result's `detail` hold point into `line`: valid as long as
/// its bytes are.
///
/// Errors: unknown_command; missing_argument, unexpected_argument, syntax_error;
/// bad_domain (HELO/EHLO); bad_sender, bad_recipient, path_too_long,
/// non_ascii_address, bad_utf8 (MAIL/RCPT paths); parameter_syntax,
/// parameter_duplicate, parameter_value, parameter_unsupported (ESMTP parameters).
ParseResult parse_command(std::string_view line, Command& out, const ParseOptions& options = {},
                          const Limits& limits = {}) noexcept;

/// @name Validators the parser uses, public because applications need them too
/// @{

/// True for a domain (RFC 5321 §4.1.2 Domain): at most `limits.domain` octets, ASCII
/// labels at most `limits.domain_label`; with `allow_utf8`, UTF-8 labels too (RFC
/// 6531 §3.3). An address literal is not a domain.
bool is_valid_domain(std::string_view domain, const Limits& limits = {}, bool allow_utf8 = false) noexcept;
/// True for an address literal (RFC 5321 §4.1.3), with its brackets: `[192.0.2.1]`,
/// `[IPv6:2001:db8::1]`, or a general address literal `[tag:content]`.
bool is_valid_address_literal(std::string_view literal) noexcept;
/// True for a dotted-quad IPv4 address (RFC 5321 §4.1.3 IPv4-address-literal, no
/// brackets).
bool is_valid_ipv4(std::string_view text) noexcept;
/// True for an IPv6 address in the RFC 5321 §4.1.3 forms (full, compressed, with an
/// IPv4 tail), without brackets and "IPv6:" tag.
bool is_valid_ipv6(std::string_view text) noexcept;
/// True for well-formed UTF-8 (RFC 3629): no overlong forms, surrogates or code
/// points over U+10FFFF. ASCII is.
bool is_valid_utf8(std::string_view text) noexcept;
/// @}

}  // namespace smtp

#endif
