// Building SMTP replies (server side) and reading enhanced status codes.
//
// Every line goes through append_line(), which is where the two guarantees of
// reply.hpp live: caller text can never start a new line, and only codes the
// RFC 5321 §4.2 grammar allows reach the wire.
#include <smtp/reply.hpp>

#include <fmt/format.h>

#include <iterator>

namespace smtp {
namespace {

// RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39.
bool valid_code(int code) noexcept { return code >= 200 && code <= 559 && code / 10 % 10 <= 5; }

// The status to write for `code`, or none. RFC 3463 §2: class is 2, 4 or 5, subject
// and detail at most three digits; RFC 2034 §4: the class is the code's first digit.
EnhancedStatus checked_status(int code, EnhancedStatus status) noexcept {
    if (status.klass != 2 && status.klass != 4 && status.klass != 5) return {};
    if (status.klass != code / 100 || status.subject > 999 || status.detail > 999) return {};
    return status;
}

// Copies caller text, turning CR, LF and NUL into spaces: a CR or LF would end the
// line early and let the rest pose as a reply of its own (reply injection).
void append_text(std::string& out, std::string_view text) {
    for (const char c : text) out.push_back(c == '\r' || c == '\n' || c == '\0' ? ' ' : c);
}

// One line: "code" sep [status] [SP] text [": " detail] CRLF, where `last` picks SP
// or "-" as separator. With neither status nor text it is "code CRLF" / "code-CRLF",
// without the separator's SP: RFC 5321 §4.2 textstring is 1*char.
void append_line(std::string& out, int code, EnhancedStatus status, bool last, std::string_view text,
                 std::string_view detail = {}) {
    if (!valid_code(code)) {
        code = 451;  // RFC 5321 §4.2.3 "local error in processing"; see reply.hpp
        if (status.present()) status = {4, 3, 0};
    }
    status = checked_status(code, status);
    auto it = std::back_inserter(out);
    fmt::format_to(it, "{}", code);
    const bool has_text = !text.empty() || !detail.empty();
    if (!last) {
        out.push_back('-');
    } else if (status.present() || has_text) {
        out.push_back(' ');
    }
    if (status.present()) {
        fmt::format_to(it, "{}.{}.{}", status.klass, status.subject, status.detail);
        if (has_text) out.push_back(' ');
    }
    append_text(out, text);
    if (!detail.empty()) {
        if (!text.empty()) out += ": ";
        append_text(out, detail);
    }
    out += "\r\n";
}

// 1*3digit without leading zeros (RFC 3463 §2), at text[i]; advances i.
bool parse_sub_code(std::string_view text, std::size_t& i, std::uint16_t& value) noexcept {
    const std::size_t start = i;
    value = 0;
    while (i < text.size() && i - start < 3 && text[i] >= '0' && text[i] <= '9') {
        value = static_cast<std::uint16_t>(value * 10 + (text[i] - '0'));
        ++i;
    }
    const std::size_t digits = i - start;
    return digits > 0 && !(digits > 1 && text[start] == '0');
}

}  // namespace

void append_reply(std::string& out, int code, EnhancedStatus status, std::string_view text) {
    append_line(out, code, status, true, text);
}

void append_reply(std::string& out, int code, EnhancedStatus status,
                  std::span<const std::string_view> lines) {
    if (lines.empty()) {
        append_line(out, code, status, true, {});
        return;
    }
    for (std::size_t i = 0; i < lines.size(); ++i)
        append_line(out, code, status, i + 1 == lines.size(), lines[i]);
}

void append_error_reply(std::string& out, Errc e, std::string_view detail) {
    const ErrorInfo& info = error_info(e);
    if (info.reply_code == 0) {
        // Not the server's to answer (a reply_* error): a transient local error is
        // the answer that loses nothing.
        append_line(out, 451, {4, 3, 0}, true, info.reason, detail);
        return;
    }
    append_line(out, info.reply_code, info.status, true, info.reason, detail);
}

std::optional<EnhancedStatus> parse_enhanced_status(std::string_view text) noexcept {
    // RFC 3463 §2: status-code = class "." subject "." detail; class = "2"/"4"/"5".
    if (text.size() < 5) return std::nullopt;
    const char k = text[0];
    if ((k != '2' && k != '4' && k != '5') || text[1] != '.') return std::nullopt;
    EnhancedStatus status;
    status.klass = static_cast<std::uint8_t>(k - '0');
    std::size_t i = 2;
    if (!parse_sub_code(text, i, status.subject)) return std::nullopt;
    if (i >= text.size() || text[i] != '.') return std::nullopt;
    ++i;
    if (!parse_sub_code(text, i, status.detail)) return std::nullopt;
    // The code is a word of its own: "2.0.0 Ok" or just "2.0.0", never "2.0.0x".
    if (i < text.size() && text[i] != ' ') return std::nullopt;
    return status;
}

std::optional<EnhancedStatus> Reply::enhanced_status() const {
    if (lines.empty()) return std::nullopt;
    const auto status = parse_enhanced_status(lines.front());
    if (!status || status->klass != code / 100) return std::nullopt;
    return status;
}

void Reply::append_to(std::string& out) const {
    if (lines.empty()) {
        append_line(out, code, {}, true, {});
        return;
    }
    for (std::size_t i = 0; i < lines.size(); ++i)
        append_line(out, code, {}, i + 1 == lines.size(), lines[i]);
}

std::string Reply::to_string() const {
    std::string out;
    append_to(out);
    return out;
}

}  // namespace smtp
