// Tests of ReplyParser: the reply grammar, its limits, and that the result does not
// depend on how the input is split.
#include <smtp/reply.hpp>

#include "chunking.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

namespace {

using Status = smtp::ReplyParser::Status;

// What a parser made of a whole input, as text: each complete reply as
// "code[line|line]", an error as "error:name", separated by spaces; then
// " +N" if N bytes of a partial line were left unconsumed at the end. Clears
// `bounded` if the buffer ever kept reply_line bytes after need_more.
std::string feed(const std::vector<std::string_view>& pieces, const smtp::Limits& limits, bool& bounded) {
    smtp::ReplyParser parser(limits);
    std::string buffer;
    std::string seen;
    for (const std::string_view piece : pieces) {
        buffer.append(piece);
        for (;;) {
            const auto r = parser.parse(buffer);
            buffer.erase(0, r.consumed);
            if (r.status == Status::need_more) break;
            if (!seen.empty()) seen += ' ';
            if (r.status == Status::error) {
                // Sticky: the same error again, nothing consumed.
                const auto again = parser.parse(buffer);
                if (again.status != Status::error || again.error != r.error || again.consumed != 0)
                    return "not sticky";
                return seen + "error:" + std::string(smtp::error_info(r.error).name);
            }
            const smtp::Reply& reply = parser.reply();
            seen += std::to_string(reply.code) + '[';
            for (std::size_t i = 0; i < reply.lines.size(); ++i) seen += (i ? "|" : "") + reply.lines[i];
            seen += ']';
        }
        // The caller's buffer never holds a whole reply_line of a partial line.
        if (buffer.size() >= limits.reply_line && !buffer.empty()) bounded = false;
    }
    return buffer.empty() ? seen : seen + " +" + std::to_string(buffer.size());
}

// Parses `input` in every chunking; all must agree. Returns the whole-input result.
std::string parse(std::string_view input, const smtp::Limits& limits = {}) {
    bool bounded = true;
    const std::string whole = feed({input}, limits, bounded);
    const auto same_as_whole = [&](const std::vector<std::string_view>& pieces, const std::string& label) {
        CAPTURE(label);
        CHECK(feed(pieces, limits, bounded) == whole);
    };
    smtp::test::for_each_chunking(input, same_as_whole);
    CHECK(bounded);
    return whole;
}

smtp::Limits small_limits() {
    smtp::Limits limits;
    limits.reply_line = 16;
    limits.reply_lines = 3;
    return limits;
}

struct Case {
    std::string_view input;
    std::string_view expected;
};

void check_table(const std::vector<Case>& cases, const smtp::Limits& limits = {}) {
    for (const Case& c : cases) {
        CAPTURE(c.input);
        CHECK(parse(c.input, limits) == c.expected);
    }
}

// "ccc-x\r\n" * (n - 1) + "ccc x\r\n": a reply of n lines.
std::string lines_reply(std::size_t n) {
    std::string s;
    for (std::size_t i = 1; i < n; ++i) s += "250-x\r\n";
    return s + "250 x\r\n";
}

// What parse() shows for lines_reply(n): "250[x|x|...|x]".
std::string parsed_lines(std::size_t n) {
    std::string s = "250[x";
    for (std::size_t i = 1; i < n; ++i) s += "|x";
    return s + ']';
}

// One line of exactly `size` bytes including CRLF.
std::string line_of(std::size_t size) { return "250 " + std::string(size - 6, 'x') + "\r\n"; }

}  // namespace

TEST_SUITE("reply") {
    TEST_CASE("well-formed replies parse in every chunking") {
        check_table({
            {"250 OK\r\n", "250[OK]"},
            {"220 mx.example.com ESMTP ready\r\n", "220[mx.example.com ESMTP ready]"},
            {"550 5.1.1 No such user\r\n", "550[5.1.1 No such user]"},
            {"250\r\n", "250[]"},
            {"250 \r\n", "250[]"},
            {"250  two spaces \r\n", "250[ two spaces ]"},
            {"250-\r\n250 \r\n", "250[|]"},
            {"250-\r\n250\r\n", "250[|]"},
            {"200 x\r\n", "200[x]"},
            {"559 x\r\n", "559[x]"},
            {"354 Start mail input; end with <CRLF>.<CRLF>\r\n",
             "354[Start mail input; end with <CRLF>.<CRLF>]"},
            {"250 tab\there\r\n", "250[tab\there]"},
            {"250 caf\xc3\xa9 \xff\r\n", "250[caf\xc3\xa9 \xff]"},
            {"250-a-b\r\n250 c d\r\n", "250[a-b|c d]"},
        });
    }

    TEST_CASE("an EHLO reply as in RFC 5321 Appendix D parses to one reply of many lines") {
        const std::string_view ehlo =
            "250-foo.com greets bar.com\r\n"
            "250-8BITMIME\r\n"
            "250-SIZE\r\n"
            "250-DSN\r\n"
            "250 HELP\r\n";
        CHECK(parse(ehlo) == "250[foo.com greets bar.com|8BITMIME|SIZE|DSN|HELP]");

        smtp::ReplyParser parser;
        const auto r = parser.parse(ehlo);
        CHECK(r.status == Status::complete);
        CHECK(r.consumed == ehlo.size());
        CHECK(parser.reply().code == 250);
        CHECK(parser.reply().lines.size() == 5);
        CHECK(parser.reply().lines[1] == "8BITMIME");
    }

    TEST_CASE("malformed reply lines are reply_syntax") {
        check_table({
            {"600 x\r\n", "error:reply_syntax"},
            {"199 x\r\n", "error:reply_syntax"},
            {"260 x\r\n", "error:reply_syntax"},
            {"2x0 x\r\n", "error:reply_syntax"},
            {"25\r\n", "error:reply_syntax"},
            {"\r\n", "error:reply_syntax"},
            {"250x\r\n", "error:reply_syntax"},
            {"250\tx\r\n", "error:reply_syntax"},
            {"2500 x\r\n", "error:reply_syntax"},
            {" 250 x\r\n", "error:reply_syntax"},
            {"abc\r\n", "error:reply_syntax"},
            {"HTTP/1.1 200 OK\r\n", "error:reply_syntax"},
            {"250-a\r\nxyz\r\n", "error:reply_syntax"},
        });
    }

    TEST_CASE("a CR not followed by LF inside a line is reply_syntax") {
        check_table({
            {"250 a\rb\r\n", "error:reply_syntax"},
            {"250 a\r\r\n", "error:reply_syntax"},
            {"250\r \r\n", "error:reply_syntax"},
        });
    }

    TEST_CASE("a line ending in LF without CR is reply_bare_lf") {
        using namespace std::string_view_literals;
        check_table({
            {"250 OK\n", "error:reply_bare_lf"},
            {"\n", "error:reply_bare_lf"},
            {"250-a\n250 b\r\n", "error:reply_bare_lf"},
            {"250-a\r\n250 b\n", "error:reply_bare_lf"},
            {"250 a\r\n250 b\n", "250[a] error:reply_bare_lf"},
            {"250 a\0\n"sv, "error:reply_bare_lf"},
        });
    }

    TEST_CASE("a NUL byte in a reply line is reply_nul_byte") {
        using namespace std::string_view_literals;
        check_table({
            {"250 a\0b\r\n"sv, "error:reply_nul_byte"},
            {"\0"
             "250 x\r\n"sv,
             "error:reply_nul_byte"},
            {"250-a\r\n250 \0\r\n"sv, "error:reply_nul_byte"},
            {"250 a\0\rb\r\n"sv, "error:reply_nul_byte"},
        });
    }

    TEST_CASE("lines of one reply with different codes are reply_code_mismatch") {
        check_table({
            {"250-a\r\n251 b\r\n", "error:reply_code_mismatch"},
            {"250-a\r\n250-b\r\n550 c\r\n", "error:reply_code_mismatch"},
            // Different codes in two replies are fine.
            {"250 a\r\n550 b\r\n", "250[a] 550[b]"},
        });
    }

    TEST_CASE("pipelined replies in one buffer come out one per parse call") {
        const std::string_view input = "250 2.1.0 Ok\r\n250-2.1.5 Ok\r\n250 2.1.5 yes\r\n354 Go ahead\r\n";
        CHECK(parse(input) == "250[2.1.0 Ok] 250[2.1.5 Ok|2.1.5 yes] 354[Go ahead]");

        smtp::ReplyParser parser;
        auto r = parser.parse(input);
        CHECK(r.status == Status::complete);
        CHECK(r.consumed == 14);
        CHECK(parser.reply().lines == std::vector<std::string>{"2.1.0 Ok"});
        r = parser.parse(input.substr(14));
        CHECK(r.status == Status::complete);
        CHECK(r.consumed == 29);
        CHECK(parser.reply().lines == std::vector<std::string>{"2.1.5 Ok", "2.1.5 yes"});
        r = parser.parse(input.substr(43));
        CHECK(r.status == Status::complete);
        CHECK(r.consumed == 14);
        CHECK(parser.reply().code == 354);
        r = parser.parse({});
        CHECK(r.status == Status::need_more);
        CHECK(r.consumed == 0);
    }

    TEST_CASE("a partial line is left unconsumed and whole lines of a partial reply are taken") {
        CHECK(parse("250 O") == " +5");
        CHECK(parse("250-a\r\n250 b") == " +5");
        CHECK(parse("250 a\r\n25") == "250[a] +2");
        CHECK(parse("250 a\r") == " +6");

        smtp::ReplyParser parser;
        auto r = parser.parse("250-a\r\n250 b");
        CHECK(r.status == Status::need_more);
        CHECK(r.consumed == 7);
        r = parser.parse("250 b");
        CHECK(r.status == Status::need_more);
        CHECK(r.consumed == 0);
        r = parser.parse("250 b\r\n");
        CHECK(r.status == Status::complete);
        CHECK(r.consumed == 7);
        CHECK(parser.reply().lines == std::vector<std::string>{"a", "b"});
    }

    TEST_CASE("a line of reply_line bytes including CRLF is accepted, one more is reply_line_too_long") {
        const smtp::Limits limits;
        REQUIRE(limits.reply_line == 512);
        const std::string at_limit = line_of(512);
        const std::string below = line_of(511);
        const std::string over = line_of(513);
        REQUIRE(at_limit.size() == 512);
        CHECK(parse(below) == "250[" + std::string(505, 'x') + ']');
        CHECK(parse(at_limit) == "250[" + std::string(506, 'x') + ']');
        CHECK(parse(over) == "error:reply_line_too_long");
        CHECK(parse("250-a\r\n" + over) == "error:reply_line_too_long");
    }

    TEST_CASE("line length limit at small limits: limit-1, limit, limit+1") {
        const smtp::Limits limits = small_limits();  // reply_line 16
        CHECK(parse(line_of(15), limits) == "250[xxxxxxxxx]");
        CHECK(parse(line_of(16), limits) == "250[xxxxxxxxxx]");
        CHECK(parse(line_of(17), limits) == "error:reply_line_too_long");
        // Over the limit only because of the CR: the LF is the 17th byte.
        CHECK(parse("250 xxxxxxxxxxx\r\n", limits) == "error:reply_line_too_long");
    }

    TEST_CASE("a partial line of reply_line bytes without LF is reply_line_too_long at once") {
        const smtp::Limits limits = small_limits();
        CHECK(parse(std::string(15, 'x'), limits) == " +15");
        CHECK(parse(std::string(16, 'x'), limits) == "error:reply_line_too_long");
        CHECK(parse("250 xxxxxxxxxxx\r", limits) == "error:reply_line_too_long");
        CHECK(parse("250 a\r\n" + std::string(16, 'x'), limits) == "250[a] error:reply_line_too_long");

        smtp::ReplyParser parser;
        const std::string flood(512, 'A');
        const auto r = parser.parse(flood);
        CHECK(r.status == Status::error);
        CHECK(r.error == smtp::Errc::reply_line_too_long);
        CHECK(r.consumed == 0);
        CHECK(parser.parse(flood.substr(0, 511)).status == Status::error);  // sticky

        smtp::ReplyParser fresh;
        CHECK(fresh.parse(flood.substr(0, 511)).status == Status::need_more);
    }

    TEST_CASE("a reply of reply_lines lines is accepted, one more line is reply_too_many_lines") {
        const smtp::Limits limits;
        REQUIRE(limits.reply_lines == 100);
        CHECK(parse(lines_reply(99)) == parsed_lines(99));
        CHECK(parse(lines_reply(100)) == parsed_lines(100));
        CHECK(parse(lines_reply(101)) == "error:reply_too_many_lines");
    }

    TEST_CASE("line count limit at small limits: limit-1, limit, limit+1") {
        const smtp::Limits limits = small_limits();  // reply_lines 3
        CHECK(parse(lines_reply(2), limits) == parsed_lines(2));
        CHECK(parse(lines_reply(3), limits) == "250[x|x|x]");
        CHECK(parse(lines_reply(4), limits) == "error:reply_too_many_lines");
        // The limit is per reply: three replies of three lines are fine.
        CHECK(parse(lines_reply(3) + lines_reply(3) + lines_reply(3), limits) ==
              "250[x|x|x] 250[x|x|x] 250[x|x|x]");
    }

    TEST_CASE("an error is sticky until reset and reset starts afresh") {
        smtp::ReplyParser parser;
        auto r = parser.parse("250-a\r\n999 b\r\n250 c\r\n");
        CHECK(r.status == Status::error);
        CHECK(r.error == smtp::Errc::reply_syntax);
        CHECK(r.consumed == 7);
        r = parser.parse("250 fine\r\n");
        CHECK(r.status == Status::error);
        CHECK(r.error == smtp::Errc::reply_syntax);
        CHECK(r.consumed == 0);

        parser.reset();
        r = parser.parse("251 fine\r\n");
        CHECK(r.status == Status::complete);
        CHECK(r.consumed == 10);
        CHECK(parser.reply().code == 251);
        CHECK(parser.reply().lines == std::vector<std::string>{"fine"});
    }

    TEST_CASE("reset forgets a partial multi-line reply") {
        smtp::ReplyParser parser;
        CHECK(parser.parse("250-a\r\n").status == Status::need_more);
        parser.reset();
        const auto r = parser.parse("550 b\r\n");
        CHECK(r.status == Status::complete);
        CHECK(parser.reply().code == 550);
        CHECK(parser.reply().lines == std::vector<std::string>{"b"});
    }

    TEST_CASE("a complete reply can be moved out and the next parse starts a new one") {
        smtp::ReplyParser parser;
        REQUIRE(parser.parse("220-x\r\n220 y\r\n").status == Status::complete);
        const smtp::Reply kept = std::move(parser.reply());
        REQUIRE(parser.parse("221 z\r\n").status == Status::complete);
        CHECK(kept.code == 220);
        CHECK(kept.lines == std::vector<std::string>{"x", "y"});
        CHECK(parser.reply().code == 221);
        CHECK(parser.reply().lines == std::vector<std::string>{"z"});
    }

    TEST_CASE("a parsed reply's enhanced status is read from its first line") {
        smtp::ReplyParser parser;
        REQUIRE(parser.parse("550-5.1.1 No such user\r\n550 5.1.1 here\r\n").status == Status::complete);
        CHECK(parser.reply().enhanced_status() == smtp::EnhancedStatus{5, 1, 1});
        CHECK(parser.reply().is_permanent());
    }
}
