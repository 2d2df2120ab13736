// ReplyParser: the client's incremental, bounded reader of server replies.
//
// It looks at whole lines only, so every decision is made on complete information
// and the result never depends on how the bytes were split by the network: a line
// is either found (an LF within the first Limits::reply_line bytes) or known to be
// too long (reply_line bytes and no LF yet), or we wait. The checks on one line run
// in a fixed order: line length, bare LF, NUL, bare CR, code grammar, code
// mismatch, line count.
#include <smtp/reply.hpp>

#include <algorithm>

namespace smtp {
namespace {

// RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39.
bool is_reply_code(std::string_view s) noexcept {
    return s.size() >= 3 && s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '5' && s[2] >= '0' &&
           s[2] <= '9';
}

}  // namespace

ReplyParser::ReplyParser(const Limits& limits) : limits_(limits) {}

void ReplyParser::reset() noexcept {
    reply_.code = 0;
    reply_.lines.clear();
    in_reply_ = false;
    complete_ = false;
    error_ = Errc::ok;
}

ReplyParser::Result ReplyParser::parse(std::string_view input) {
    if (error_ != Errc::ok) return {Status::error, 0, error_};
    if (complete_) {
        // The caller had its reply; this call starts the next one.
        reply_.code = 0;
        reply_.lines.clear();
        complete_ = false;
    }
    std::size_t used = 0;
    for (;;) {
        const std::string_view rest = input.substr(used);
        // RFC 5321 §4.5.3.1.5: reply_line counts the CRLF, so the LF must be among
        // the first reply_line bytes.
        const std::size_t lf = rest.substr(0, std::min(rest.size(), limits_.reply_line)).find('\n');
        if (lf == std::string_view::npos) {
            // A partial line: wait for more, unless it already cannot fit.
            if (rest.empty() || rest.size() < limits_.reply_line) return {Status::need_more, used};
            error_ = Errc::reply_line_too_long;
            return {Status::error, used, error_};
        }
        if (const Errc e = take_line(rest.substr(0, lf + 1)); e != Errc::ok) {
            error_ = e;
            return {Status::error, used, error_};
        }
        used += lf + 1;
        if (complete_) return {Status::complete, used};
    }
}

Errc ReplyParser::take_line(std::string_view line) {
    // `line` ends in its only LF. Framing first: a line must end in CRLF.
    if (line.size() < 2 || line[line.size() - 2] != '\r') return Errc::reply_bare_lf;
    const std::string_view body = line.substr(0, line.size() - 2);
    if (body.find('\0') != std::string_view::npos) return Errc::reply_nul_byte;
    // A CR not followed by LF: no grammar allows it, and some peers would take it
    // for a line end. Refusing it keeps client and server on one idea of the lines.
    if (body.find('\r') != std::string_view::npos) return Errc::reply_syntax;

    // RFC 5321 §4.2: Reply-code ( "-" [textstring] / [SP textstring] ) CRLF; only the
    // last line may have neither separator nor text ("250\r\n").
    if (!is_reply_code(body)) return Errc::reply_syntax;
    if (body.size() > 3 && body[3] != '-' && body[3] != ' ') return Errc::reply_syntax;
    const int code = (body[0] - '0') * 100 + (body[1] - '0') * 10 + (body[2] - '0');
    const bool last = body.size() == 3 || body[3] == ' ';

    // RFC 5321 §4.2.1: every line of a multi-line reply has the same code.
    if (in_reply_ && code != reply_.code) return Errc::reply_code_mismatch;
    if (reply_.lines.size() >= limits_.reply_lines) return Errc::reply_too_many_lines;

    reply_.code = code;
    reply_.lines.emplace_back(body.size() > 4 ? body.substr(4) : std::string_view{});
    in_reply_ = !last;
    complete_ = last;
    return Errc::ok;
}

}  // namespace smtp
