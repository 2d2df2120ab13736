// smtp/command.hpp: SMTP command lines, framed and parsed (RFC 5321 §4.1).
//
// Two steps, both sans-IO and allocation-free:
//  1. CommandLineReader finds the next command line in the bytes received, within
//     Limits::command_line. An over-long line is reported once (500 5.5.2) and then
//     skipped to its end: its tail is never taken for a command.
//  2. parse_command() parses one line into a Command whose string_views point into
//     that line. They are valid as long as the line's bytes are.
//
// Strict by default (RFC 5321 grammar, RFC 1869/1870/6152/3461/6531 parameters).
// Each leniency is one named switch in ParseOptions, off by default, with its risk.
// Errors are returned as an Errc plus a detail view; append_error_reply() in
// smtp/reply.hpp turns them into the reply to send.
// Thread safety: CommandLineReader is a value owned by one thread; parse_command()
// is reentrant.
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

// Finds command lines in a byte stream.
//
//   auto line = reader.next(buf);
//   buf.erase(0, line.consumed);
//   switch (line.status) { case ok: parse line.text; case need_more: read more; ... }
//
// It never buffers: the caller keeps unconsumed bytes. A partial line is left
// unconsumed (consumed 0) while it is within Limits::command_line; once it is
// longer, line_too_long is returned once, consuming the line through its LF if the
// LF is in view and all of the input otherwise; then the rest of that line (up to
// and including its LF) is consumed silently by later calls: need_more with
// consumed > 0, or, when a line follows in the same input, that line's result with
// the skipped bytes counted in `consumed` (so `text` need not start at input[0]).
// A line is judged only once its LF is in view or the limit is passed, so the
// results do not depend on how the input was chunked. A bare LF never ends a line
// as a CRLF would (SMTP smuggling): it is bare_lf.
class CommandLineReader {
public:
    enum class Status {
        ok,         // `text` is a complete line without its CRLF
        need_more,  // no complete line yet
        error,      // a complete line that is not acceptable; `error` says why
    };
    struct Line {
        Status status;
        std::size_t consumed;   // bytes of the input used (the line and its CRLF)
        std::string_view text;  // for ok: the line without CRLF (view into input)
        Errc error = Errc::ok;  // for error: line_too_long, bare_lf, bare_cr, nul_byte
    };

    explicit CommandLineReader(const Limits& limits = {}) : max_line_(limits.command_line) {}

    Line next(std::string_view input) noexcept;

    // True while the tail of an over-long line is being skipped.
    bool skipping() const noexcept { return skipping_; }

private:
    std::size_t max_line_;
    bool skipping_ = false;
};

// ---------------------------------------------------------------- parsed values

enum class Verb : std::uint8_t {
    helo,
    ehlo,
    mail,
    rcpt,
    data,
    rset,
    noop,
    quit,
    vrfy,
    expn,
    help,
    bdat,
    starttls,
    auth,
    unknown
};

// "HELO", "EHLO", ...; "unknown" for Verb::unknown.
std::string_view verb_name(Verb v) noexcept;

// A mailbox local@domain, or the null reverse-path <> (all empty), or <Postmaster>
// (local_part and mailbox "Postmaster" as written, domain empty, postmaster true).
// Views into the line.
struct Path {
    std::string_view local_part;  // as written: dot-string or quoted-string with quotes
    std::string_view domain;      // domain, or address literal with its brackets
    std::string_view mailbox;     // "local_part@domain" as written; source route dropped
    bool postmaster = false;      // RCPT TO:<Postmaster> (no domain), RFC 5321 §4.5.1

    bool is_null() const noexcept { return mailbox.empty() && !postmaster; }
};

// The local part with quoting removed: "\"a\\\"b\"" -> a"b. Dot-strings unchanged.
std::string unquote_local_part(std::string_view local_part);

// One ESMTP parameter as written: keyword[=value]. Views into the line.
struct Parameter {
    std::string_view keyword;
    std::string_view value;  // empty when there is no "="
    bool has_value = false;
};

enum class Body : std::uint8_t { unspecified, seven_bit, eight_bit_mime };  // RFC 6152
enum class Ret : std::uint8_t { unspecified, full, hdrs };                  // RFC 3461 §4.3

// NOTIFY bits (RFC 3461 §4.1). never excludes the others.
enum NotifyFlags : std::uint8_t {
    notify_none = 0,
    notify_never = 1,
    notify_success = 2,
    notify_failure = 4,
    notify_delay = 8,
};

// xtext (RFC 3461 §4): "+XX" hex escapes decoded. nullopt if malformed.
std::optional<std::string> decode_xtext(std::string_view xtext);
// The inverse: every byte outside %d33-126, '+' and '=' becomes "+XX".
std::string encode_xtext(std::string_view text);

struct Command {
    static constexpr std::size_t max_parameters = 16;

    Verb verb = Verb::unknown;
    std::string_view verb_text;  // the verb as written ("mail")
    std::string_view argument;   // everything after the verb and its space

    // HELO/EHLO: the domain or address literal.
    std::string_view domain;

    // MAIL/RCPT: the path (source route dropped, RFC 5321 §3.6.1).
    Path path;

    // MAIL/RCPT: every parameter as written, in order. Unknown keywords never get
    // here: they are parameter_unsupported. Known on MAIL: SIZE, BODY, SMTPUTF8 (only
    // with ParseOptions::smtputf8), RET, ENVID, AUTH (RFC 4954 §5, kept here only);
    // on RCPT: NOTIFY, ORCPT.
    std::array<Parameter, max_parameters> parameters{};
    std::size_t parameter_count = 0;

    // MAIL: typed values of the known parameters.
    std::optional<std::uint64_t> size;  // SIZE (RFC 1870)
    Body body = Body::unspecified;      // BODY (RFC 6152)
    bool smtputf8 = false;              // SMTPUTF8 (RFC 6531)
    Ret ret = Ret::unspecified;         // RET (RFC 3461)
    std::string_view envid;             // ENVID, still xtext-encoded (RFC 3461)

    // RCPT: typed values of the known parameters.
    std::uint8_t notify = notify_none;  // NOTIFY (RFC 3461)
    std::string_view orcpt_type;        // ORCPT addr-type ("rfc822")
    std::string_view orcpt;             // ORCPT address, still xtext-encoded

    // BDAT (RFC 3030).
    std::uint64_t chunk_size = 0;
    bool last = false;

    // AUTH (RFC 4954): mechanism and optional initial response.
    std::string_view mechanism;
    std::string_view initial_response;

    // VRFY, EXPN, HELP, NOOP: the string argument, possibly empty.
    std::string_view text;
};

// Named leniencies, each off by default.
struct ParseOptions {
    // UTF-8 is allowed in addresses and parameter values: the server offered
    // SMTPUTF8 (RFC 6531). For MAIL, a UTF-8 path also needs the SMTPUTF8 parameter;
    // for RCPT set this only when the transaction's MAIL had it.
    bool smtputf8 = false;

    // Accept "MAIL FROM: <a@b>" (a space after the colon). Sent by some old clients;
    // RFC 5321 §4.1.2 forbids it. Risk: low.
    bool space_after_colon = false;

    // Accept "MAIL FROM:a@b" without angle brackets (RFC 821 habit of a few scripts).
    // Risk: the end of the address becomes ambiguous with parameters; only the form
    // with no parameters is accepted. Limits::path still counts the two brackets.
    bool missing_brackets = false;

    // Accept an address literal as the HELO argument (RFC 5321 §4.1.1.1 allows it
    // only for EHLO; many clients send HELO [192.0.2.1]). Risk: none known.
    bool helo_address_literal = false;
};

struct ParseResult {
    Errc error = Errc::ok;
    // The parameter keyword for parameter_unsupported, _duplicate and _value (and
    // _syntax where a keyword was read); else empty. A view into the line, cut to
    // 64 octets so that the error reply fits in a reply line.
    std::string_view detail;
    bool ok() const noexcept { return error == Errc::ok; }
};

// Parses one command line (without CRLF). `out` is reset first. On success `out`
// describes it; on error `out.verb` is still set when the verb was recognized, so
// the caller knows which command failed, and the other fields are unspecified. An
// unrecognized verb returns unknown_command. Never allocates.
// Errors: unknown_command; missing_argument, unexpected_argument, syntax_error;
// bad_domain (HELO/EHLO); bad_sender, bad_recipient, path_too_long,
// non_ascii_address, bad_utf8 (MAIL/RCPT paths); parameter_syntax,
// parameter_duplicate, parameter_value, parameter_unsupported (ESMTP parameters).
ParseResult parse_command(std::string_view line, Command& out, const ParseOptions& options = {},
                          const Limits& limits = {}) noexcept;

// Validators the parser uses, public because applications need them too.
bool is_valid_domain(std::string_view domain, const Limits& limits = {}, bool allow_utf8 = false) noexcept;
bool is_valid_address_literal(std::string_view literal) noexcept;  // with brackets
bool is_valid_ipv4(std::string_view text) noexcept;
bool is_valid_ipv6(std::string_view text) noexcept;
bool is_valid_utf8(std::string_view text) noexcept;

}  // namespace smtp

#endif
