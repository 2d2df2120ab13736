// The table of every Errc: name, reason (the reply text), reply code, enhanced code.
#include <smtp/error.hpp>

#include <array>
#include <cstddef>
#include <string>

namespace smtp {
namespace {

constexpr EnhancedStatus s(std::uint8_t k, std::uint16_t subject, std::uint16_t detail) {
    return {k, subject, detail};
}

// Indexed by Errc; the static_assert below keeps it total.
constexpr std::array error_table{
    ErrorInfo{"ok", "Ok", 250, s(2, 0, 0)},
    // Command line framing. RFC 5321 §4.2.2: 500 is "syntax error, command
    // unrecognized (this may include errors such as command line too long)".
    ErrorInfo{"line_too_long", "Line too long", 500, s(5, 5, 2)},
    ErrorInfo{"bare_lf", "Bare LF in command line", 500, s(5, 5, 2)},
    ErrorInfo{"bare_cr", "Bare CR in command line", 500, s(5, 5, 2)},
    ErrorInfo{"nul_byte", "NUL byte in command line", 500, s(5, 5, 2)},
    ErrorInfo{"bad_utf8", "Invalid UTF-8", 500, s(5, 5, 2)},
    ErrorInfo{"unknown_command", "Command unrecognized", 500, s(5, 5, 2)},
    // Command arguments: 501, "syntax error in parameters or arguments".
    ErrorInfo{"syntax_error", "Syntax error in parameters or arguments", 501, s(5, 5, 4)},
    ErrorInfo{"missing_argument", "Argument required", 501, s(5, 5, 4)},
    ErrorInfo{"unexpected_argument", "No arguments allowed", 501, s(5, 5, 4)},
    ErrorInfo{"bad_domain", "Invalid domain name", 501, s(5, 5, 2)},
    // RFC 3463 §3.2: X.1.7 bad sender's mailbox syntax, X.1.3 bad destination syntax.
    ErrorInfo{"bad_sender", "Bad sender address syntax", 501, s(5, 1, 7)},
    ErrorInfo{"bad_recipient", "Bad recipient address syntax", 501, s(5, 1, 3)},
    // RFC 5321 §4.5.3.1.10: "501 Path too long".
    ErrorInfo{"path_too_long", "Path too long", 501, s(5, 1, 0)},
    // RFC 6531 §3.7.4.2 / RFC 6533: 553 5.6.7 non-ASCII address not permitted.
    ErrorInfo{"non_ascii_address", "Non-ASCII address requires SMTPUTF8", 553, s(5, 6, 7)},
    ErrorInfo{"parameter_syntax", "Malformed parameter", 501, s(5, 5, 4)},
    ErrorInfo{"parameter_duplicate", "Duplicate parameter", 501, s(5, 5, 4)},
    ErrorInfo{"parameter_value", "Bad parameter value", 501, s(5, 5, 4)},
    // RFC 5321 §4.1.1.11: 555 for a parameter not recognized or not implemented.
    ErrorInfo{"parameter_unsupported", "Unsupported parameter", 555, s(5, 5, 4)},
    // Message data. RFC 1870 §6.2 / RFC 3463: 552 5.3.4 message too big.
    ErrorInfo{"message_too_big", "Message size exceeds fixed limit", 552, s(5, 3, 4)},
    ErrorInfo{"data_line_too_long", "Message line too long", 550, s(5, 6, 0)},
    ErrorInfo{"data_bare_lf", "Bare LF in message data", 550, s(5, 5, 2)},
    ErrorInfo{"data_bare_cr", "Bare CR in message data", 550, s(5, 5, 2)},
    // Session. RFC 5321 §4.2.2 / §4.2.4 for the codes; RFC 3463 for the detail.
    ErrorInfo{"pregreet", "Protocol error: client spoke before the greeting", 554, s(5, 5, 0)},
    ErrorInfo{"bad_sequence", "Bad sequence of commands", 503, s(5, 5, 1)},
    ErrorInfo{"not_implemented", "Command not implemented", 502, s(5, 5, 1)},
    ErrorInfo{"no_valid_recipients", "No valid recipients", 554, s(5, 5, 1)},
    // RFC 3207 §4: "530 Must issue a STARTTLS command first"; 5.7.0 as RFC 3207
    // and Postfix use. A second STARTTLS is out of sequence (§4.2: "MUST NOT").
    ErrorInfo{"tls_required", "Must issue a STARTTLS command first", 530, s(5, 7, 0)},
    ErrorInfo{"tls_active", "TLS already active", 503, s(5, 5, 1)},
    ErrorInfo{"too_many_recipients", "Too many recipients", 452, s(4, 5, 3)},
    ErrorInfo{"too_many_errors", "Too many errors, closing connection", 421, s(4, 7, 0)},
    ErrorInfo{"timed_out", "Timeout, closing connection", 421, s(4, 4, 2)},
    ErrorInfo{"shutting_down", "Service shutting down, closing connection", 421, s(4, 3, 2)},
    // Replies a server sent: nothing to answer.
    ErrorInfo{"reply_syntax", "Malformed reply line", 0, {}},
    ErrorInfo{"reply_code_mismatch", "Reply code changed within a multi-line reply", 0, {}},
    ErrorInfo{"reply_line_too_long", "Reply line too long", 0, {}},
    ErrorInfo{"reply_too_many_lines", "Too many lines in one reply", 0, {}},
    ErrorInfo{"reply_bare_lf", "Bare LF in reply", 0, {}},
    ErrorInfo{"reply_nul_byte", "NUL byte in reply", 0, {}},
};
static_assert(error_table.size() == static_cast<std::size_t>(Errc::reply_nul_byte) + 1,
              "error_table must have one entry per Errc, in order");

class Category final : public std::error_category {
public:
    const char* name() const noexcept override { return "smtp"; }
    std::string message(int value) const override {
        if (value < 0 || static_cast<std::size_t>(value) >= error_table.size()) return "Unknown smtp error";
        return std::string(error_table[static_cast<std::size_t>(value)].reason);
    }
};

}  // namespace

const ErrorInfo& error_info(Errc e) noexcept {
    const auto i = static_cast<std::size_t>(e);
    return i < error_table.size() ? error_table[i]
                                  : error_table[static_cast<std::size_t>(Errc::syntax_error)];
}

const std::error_category& error_category() noexcept {
    static const Category category;
    return category;
}

}  // namespace smtp
