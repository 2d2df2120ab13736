/// @file
/// The errors libsmtp reports, as C++ error codes.
///
/// Every error the peer can cause (a bad command, a bad reply, bad message data) is
/// one `smtp::Errc`. Each has a stable name, a reason in plain words and, where it is
/// the server's to answer, the reply to send: basic code plus enhanced status code
/// (RFC 3463). `smtp::Errc` plugs into `<system_error>`, so
/// `std::error_code ec = smtp::Errc::bare_lf;` works and `ec.message()` is the reason.
///
/// Errors caused by the embedding program (calling the API wrongly) are not Errc:
/// they are reported by the session types with their own type (smtp::Usage), so the
/// two can never be confused.
///
/// Thread safety: everything here is immutable and safe from any thread.
#ifndef SMTP_ERROR_HPP
#define SMTP_ERROR_HPP

#include <cstdint>
#include <string_view>
#include <system_error>

namespace smtp {

/// RFC 3463 enhanced status code class.subject.detail, such as 5.1.3. All zero: none.
struct EnhancedStatus {
    std::uint8_t klass = 0;     ///< 2, 4 or 5
    std::uint16_t subject = 0;  ///< 0..999
    std::uint16_t detail = 0;   ///< 0..999

    /// True when there is a status (`klass` is not 0).
    constexpr bool present() const noexcept { return klass != 0; }
    /// Equal when all three parts are.
    friend constexpr bool operator==(const EnhancedStatus&, const EnhancedStatus&) = default;
};

/// An error the peer caused. Each value says the reply a server sends for it
/// (error_info() has it as data); the reply_* values are a server's breaches of the
/// reply grammar, found by the client, and have no reply to send.
enum class Errc : std::uint8_t {
    ok = 0,  ///< no error

    // Command line framing (server side).
    line_too_long,    ///< 500 5.5.2 over Limits::command_line; the line is skipped
    bare_lf,          ///< 500 5.5.2 LF without CR in a command line
    bare_cr,          ///< 500 5.5.2 CR without LF in a command line
    nul_byte,         ///< 500 5.5.2 NUL in a command line
    bad_utf8,         ///< 500 5.5.2 ill-formed UTF-8 where UTF-8 is allowed
    unknown_command,  ///< 500 5.5.2 verb not recognized

    // Command arguments (server side).
    syntax_error,           ///< 501 5.5.4 argument grammar violated (generic)
    missing_argument,       ///< 501 5.5.4 e.g. HELO with no domain
    unexpected_argument,    ///< 501 5.5.4 e.g. DATA foo
    bad_domain,             ///< 501 5.5.2 HELO/EHLO argument is no domain or literal
    bad_sender,             ///< 501 5.1.7 MAIL FROM path syntax
    bad_recipient,          ///< 501 5.1.3 RCPT TO path syntax
    path_too_long,          ///< 501 5.1.0 over Limits::path, local_part or domain
    non_ascii_address,      ///< 553 5.6.7 UTF-8 address without SMTPUTF8 (RFC 6531 §3.5)
    parameter_syntax,       ///< 501 5.5.4 esmtp-param grammar violated
    parameter_duplicate,    ///< 501 5.5.4 the same keyword twice
    parameter_value,        ///< 501 5.5.4 known keyword, bad value
    parameter_unsupported,  ///< 555 5.5.4 keyword unknown (RFC 5321 §4.1.1.11)

    // Message data (server side, answered after the final dot).
    message_too_big,     ///< 552 5.3.4 over Limits::message_size
    data_line_too_long,  ///< 550 5.6.0 over Limits::text_line, when rejecting
    data_bare_lf,        ///< 550 5.5.2 bare LF in message data, when rejecting
    data_bare_cr,        ///< 550 5.5.2 bare CR in message data, when rejecting

    // Session (server side): sequence and policy.
    pregreet,             ///< 554 5.5.0 the client spoke before the greeting
    bad_sequence,         ///< 503 5.5.1 command out of order (RFC 5321 §4.1.4)
    not_implemented,      ///< 502 5.5.1 known command this server does not do
    no_valid_recipients,  ///< 554 5.5.1 DATA with no accepted recipient (RFC 2920 §3.1)
    tls_required,         ///< 530 5.7.0 MAIL, RCPT or DATA before STARTTLS (RFC 3207 §4)
    tls_active,           ///< 503 5.5.1 STARTTLS inside TLS (RFC 3207 §4.2)
    too_many_recipients,  ///< 452 4.5.3 over ServerConfig::max_recipients
    too_many_errors,      ///< 421 4.7.0 over ServerConfig::max_errors; closes
    timed_out,            ///< 421 4.4.2 the peer was silent too long; closes
    shutting_down,        ///< 421 4.3.2 the server is stopping; closes

    // Replies (client side): the server broke the reply grammar. No reply to send.
    reply_syntax,          ///< not "ddd", "ddd-" or "ddd " at the start of a line
    reply_code_mismatch,   ///< lines of one multi-line reply with different codes
    reply_line_too_long,   ///< over Limits::reply_line
    reply_too_many_lines,  ///< over Limits::reply_lines
    reply_bare_lf,         ///< LF without CR
    reply_nul_byte,        ///< NUL in a reply line
};

/// What is known about one error code. `reply_code` is 0 where the error is not the
/// server's to answer (the reply_* errors, ok).
struct ErrorInfo {
    std::string_view name;    ///< "bare_lf": stable, for logs and tests
    std::string_view reason;  ///< "Bare LF in command line": the reply text
    int reply_code;           ///< 500
    EnhancedStatus status;    ///< 5.5.2
};

/// The entry for `e`. Total over Errc: every value has an entry (a number outside the
/// enumeration gets syntax_error's). Never throws.
/// @return an entry in static storage: it and its views are valid for the life of the
///         program.
const ErrorInfo& error_info(Errc e) noexcept;

/// The std::error_category of Errc: `name()` is "smtp", `message()` the reason of
/// error_info(). A static object, valid for the life of the program.
const std::error_category& error_category() noexcept;
/// `e` as a std::error_code of error_category(). Found by argument-dependent lookup,
/// it is what makes `std::error_code ec = smtp::Errc::bare_lf;` work.
inline std::error_code make_error_code(Errc e) noexcept { return {static_cast<int>(e), error_category()}; }

}  // namespace smtp

/// Lets an smtp::Errc convert to std::error_code (through smtp::make_error_code()).
template <>
struct std::is_error_code_enum<smtp::Errc> : std::true_type {};

#endif
