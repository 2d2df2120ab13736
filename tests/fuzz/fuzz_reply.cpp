// Fuzz target for ReplyParser and the reply builder.
//
// Invariant: no crash, no hang, bounded memory, and only grammatical replies out.
//  - After need_more the caller's buffer holds less than reply_line bytes: a longer
//    partial line is an error at once.
//  - Every complete reply has a code whose first digit is 2-5 and second 0-5,
//    1..reply_lines lines, no CR, LF or NUL in them, and each line written out
//    again fits in reply_line.
//  - Reply::to_string() of a parsed reply parses again, in one call, to an equal
//    reply.
//  - The input fed whole and fed in chunks gives the same replies and error.
//  - append_reply() output always parses to one reply with a valid code.
// A violation calls abort(), which libFuzzer reports as a crash.
//
// Input: byte 0 picks options: bit 0 small limits (reply_line 8..36, reply_lines
// 1..4, from bits 1-3), bits 4-7 the chunk size (1..16). The rest is the server's
// byte stream.
#include <smtp/reply.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Status = smtp::ReplyParser::Status;

void check(bool ok) {
    if (!ok) std::abort();
}

struct Outcome {
    std::vector<smtp::Reply> replies;
    smtp::Errc error = smtp::Errc::ok;
    std::string rest;  // unconsumed partial line when no error
};

bool same(const smtp::Reply& a, const smtp::Reply& b) { return a.code == b.code && a.lines == b.lines; }

void check_reply(const smtp::Reply& r, const smtp::Limits& limits) {
    check(r.code >= 200 && r.code <= 559 && r.code / 10 % 10 <= 5);
    check(!r.lines.empty() && r.lines.size() <= limits.reply_lines);
    for (const std::string& line : r.lines) {
        check(line.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos);
        check(line.size() + 6 <= limits.reply_line || (line.empty() && limits.reply_line >= 5));
    }
    (void)r.enhanced_status();

    // Written out and parsed again: the same reply, all of it in one call.
    const std::string wire = r.to_string();
    smtp::ReplyParser again(limits);
    const auto res = again.parse(wire);
    check(res.status == Status::complete && res.consumed == wire.size());
    check(same(again.reply(), r));
}

Outcome feed(std::string_view input, std::size_t chunk, const smtp::Limits& limits) {
    smtp::ReplyParser parser(limits);
    std::string buffer;
    Outcome out;
    for (std::size_t at = 0; at < input.size(); at += chunk) {
        buffer.append(input.substr(at, chunk));
        for (;;) {
            const auto r = parser.parse(buffer);
            check(r.consumed <= buffer.size());
            buffer.erase(0, r.consumed);
            if (r.status == Status::need_more) break;
            if (r.status == Status::error) {
                check(r.error != smtp::Errc::ok);
                const auto sticky = parser.parse(buffer);
                check(sticky.status == Status::error && sticky.error == r.error && sticky.consumed == 0);
                out.error = r.error;
                return out;
            }
            check_reply(parser.reply(), limits);
            out.replies.push_back(std::move(parser.reply()));
        }
        // Bounded: a partial line never reaches reply_line bytes without an error.
        check(buffer.empty() || buffer.size() < limits.reply_line);
    }
    out.rest = buffer;
    return out;
}

// The builder side: whatever code, status and text, the line parses back.
void check_builder(const std::uint8_t* data, std::size_t size) {
    if (size < 6) return;
    const int code = (data[0] << 8 | data[1]) % 1200 - 100;
    const smtp::EnhancedStatus status{static_cast<std::uint8_t>(data[2] % 7), data[3], data[4]};
    const std::string_view text(reinterpret_cast<const char*>(data + 5),
                                std::min<std::size_t>(size - 5, 400));
    std::string wire;
    smtp::append_reply(wire, code, status, text);
    smtp::ReplyParser parser;
    const auto r = parser.parse(wire);
    check(r.status == Status::complete && r.consumed == wire.size());
    const smtp::Reply& reply = parser.reply();
    check(reply.lines.size() == 1);
    check(reply.code == code || reply.code == 451);
    if (const auto parsed = reply.enhanced_status()) check(parsed->klass == reply.code / 100);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t options = data[0];
    smtp::Limits limits;
    if (options & 1) {
        limits.reply_line = 8 + ((options >> 1) & 7) * 4;
        limits.reply_lines = 1 + ((options >> 1) & 3);
    }
    const std::size_t chunk = 1 + (options >> 4);
    const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

    const Outcome whole = feed(input, input.size() + 1, limits);
    const Outcome chunked = feed(input, chunk, limits);
    check(whole.error == chunked.error && whole.rest == chunked.rest);
    check(whole.replies.size() == chunked.replies.size());
    for (std::size_t i = 0; i < whole.replies.size(); ++i) check(same(whole.replies[i], chunked.replies[i]));

    (void)smtp::parse_enhanced_status(input);
    check_builder(data + 1, size - 1);
    return 0;
}
