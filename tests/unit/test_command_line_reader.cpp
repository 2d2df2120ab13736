// CommandLineReader: line framing within 512 octets, errors for bare LF, bare CR,
// NUL and over-long lines, and the same result however the input is chunked.
#include "chunking.hpp"

#include <smtp/command.hpp>

#include <doctest/doctest.h>

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace {

using smtp::CommandLineReader;
using smtp::Errc;
using Status = CommandLineReader::Status;

// What the caller sees, need_more left out: how often it comes depends on chunking.
struct Event {
    std::string text;   // the line for ok
    std::string error;  // error name for error; empty for ok
    friend bool operator==(const Event&, const Event&) = default;
};

std::ostream& operator<<(std::ostream& os, const Event& e) {
    return os << (e.error.empty() ? "ok '" + e.text + "'" : "error " + e.error);
}

// Lets a failed CHECK print both sequences.
std::ostream& operator<<(std::ostream& os, const std::vector<Event>& events) {
    for (const Event& e : events) os << e << "; ";
    return os;
}

Event ok(std::string text) { return {std::move(text), {}}; }
Event error(Errc e) { return {{}, std::string(smtp::error_info(e).name)}; }

// The buffer-and-rescan pattern of a real caller: append what arrived, take lines
// out until need_more, keep the rest.
std::vector<Event> read_all(const std::vector<std::string_view>& pieces, const smtp::Limits& limits = {}) {
    CommandLineReader reader(limits);
    std::string buffer;
    std::vector<Event> events;
    for (std::string_view piece : pieces) {
        buffer.append(piece);
        for (;;) {
            const CommandLineReader::Line line = reader.next(buffer);
            REQUIRE(line.consumed <= buffer.size());
            if (line.status == Status::need_more) {
                buffer.erase(0, line.consumed);
                // The reader never makes the caller hold a line longer than the limit.
                REQUIRE(buffer.size() < limits.command_line);
                break;
            }
            REQUIRE(line.consumed > 0);
            if (line.status == Status::ok) {
                CHECK(line.error == Errc::ok);
                // The text is a view into the buffer, ahead of the consumed end.
                REQUIRE(line.text.data() >= buffer.data());
                REQUIRE(line.text.data() + line.text.size() + 2 <= buffer.data() + line.consumed);
                events.push_back(ok(std::string(line.text)));
            } else {
                events.push_back(error(line.error));
            }
            buffer.erase(0, line.consumed);
        }
    }
    return events;
}

// Every chunking of `input` must give `expected`.
void check_every_chunking(std::string_view input, const std::vector<Event>& expected,
                          const smtp::Limits& limits = {}) {
    smtp::test::for_each_chunking(input,
                                  [&](const std::vector<std::string_view>& pieces, const std::string& label) {
                                      CAPTURE(label);
                                      CHECK(read_all(pieces, limits) == expected);
                                  });
}

}  // namespace

TEST_SUITE("command") {
    TEST_CASE("pipelined command lines come out one by one, however they are chunked") {
        check_every_chunking(
            "EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n",
            {ok("EHLO client.example"), ok("MAIL FROM:<a@b.example>"), ok("RCPT TO:<c@d.example>"),
             ok("DATA")});
    }

    TEST_CASE("an empty line is an ok line with empty text") {
        check_every_chunking("\r\nQUIT\r\n", {ok(""), ok("QUIT")});
    }

    TEST_CASE("a partial line within the limit needs more and consumes nothing") {
        CommandLineReader reader;
        const auto line = reader.next("MAIL FROM:<a@b");
        CHECK(line.status == Status::need_more);
        CHECK(line.consumed == 0);
        const auto cr = reader.next("QUIT\r");
        CHECK(cr.status == Status::need_more);
        CHECK(cr.consumed == 0);
        const auto empty = reader.next("");
        CHECK(empty.status == Status::need_more);
        CHECK(empty.consumed == 0);
    }

    TEST_CASE("a complete line reports its text and the bytes it used") {
        CommandLineReader reader;
        const std::string input = "NOOP\r\nQUIT\r\n";
        const auto line = reader.next(input);
        CHECK(line.status == Status::ok);
        CHECK(line.text == "NOOP");
        CHECK(line.consumed == 6);
        CHECK(line.text.data() == input.data());
    }

    TEST_CASE("a command line of 512 octets including CRLF is accepted, 513 is too long") {
        for (std::size_t text : {509u, 510u, 511u}) {
            CAPTURE(text);
            const std::string line(text, 'A');
            CommandLineReader reader;
            const auto r = reader.next(line + "\r\n");
            if (text <= 510) {
                CHECK(r.status == Status::ok);
                CHECK(r.text.size() == text);
                CHECK(r.consumed == text + 2);
            } else {
                CHECK(r.status == Status::error);
                CHECK(r.error == Errc::line_too_long);
                CHECK(r.consumed == 513);
                CHECK_FALSE(reader.skipping());
            }
        }
    }

    TEST_CASE("the limit holds for lines still incomplete: 511 octets wait, 512 without LF are too long") {
        CommandLineReader reader;
        const std::string partial(511, 'A');
        CHECK(reader.next(partial).status == Status::need_more);
        CHECK(reader.next(partial).consumed == 0);
        const std::string full = std::string(511, 'A') + "\r";  // 512 octets, LF not yet here
        const auto r = reader.next(full);
        CHECK(r.status == Status::error);
        CHECK(r.error == Errc::line_too_long);
        CHECK(r.consumed == 512);
        CHECK(reader.skipping());
        // The LF still counts as part of the over-long line, then the next line follows.
        const auto next = reader.next("\nQUIT\r\n");
        CHECK(next.status == Status::ok);
        CHECK(next.text == "QUIT");
        CHECK(next.consumed == 7);
        CHECK_FALSE(reader.skipping());
    }

    TEST_CASE("an over-long line is reported once and its tail is never taken for a command") {
        // The tail of the long line looks like commands; none of them may come out.
        const std::string input = std::string(600, 'A') + "RSET\r\nQUIT\r\n";
        check_every_chunking(input, {error(Errc::line_too_long), ok("QUIT")});

        const std::string tail_is_a_command = std::string(510, 'X') + "RCPT TO:<evil@x>\r\nNOOP\r\n";
        check_every_chunking(tail_is_a_command, {error(Errc::line_too_long), ok("NOOP")});

        check_every_chunking(std::string(600, 'A') + "\r\nQUIT\r\n",
                             {error(Errc::line_too_long), ok("QUIT")});
    }

    TEST_CASE("an endless line is reported once and skipped while it lasts") {
        CommandLineReader reader;
        const std::string chunk(1000, 'A');
        const auto first = reader.next(chunk);
        CHECK(first.status == Status::error);
        CHECK(first.error == Errc::line_too_long);
        CHECK(first.consumed == 1000);
        for (int i = 0; i < 3; ++i) {
            const auto more = reader.next(chunk);
            CHECK(more.status == Status::need_more);
            CHECK(more.consumed == 1000);
            CHECK(reader.skipping());
        }
        const auto end = reader.next("AAA\r\n");
        CHECK(end.status == Status::need_more);
        CHECK(end.consumed == 5);
        CHECK_FALSE(reader.skipping());
    }

    TEST_CASE("two over-long lines in a row are two errors") {
        const std::string input = std::string(700, 'A') + "\r\n" + std::string(513, 'B') + "\r\nQUIT\r\n";
        check_every_chunking(input, {error(Errc::line_too_long), error(Errc::line_too_long), ok("QUIT")});
    }

    TEST_CASE("a line ending in bare LF is an error, and the next line is read normally") {
        check_every_chunking("NOOP\nQUIT\r\n", {error(Errc::bare_lf), ok("QUIT")});
        check_every_chunking("\nQUIT\r\n", {error(Errc::bare_lf), ok("QUIT")});
        // The SMTP smuggling shape: "<LF>.<LF>" is no end of anything here.
        check_every_chunking("NOOP\r\n.\nMAIL FROM:<a@b>\r\n",
                             {ok("NOOP"), error(Errc::bare_lf), ok("MAIL FROM:<a@b>")});
    }

    TEST_CASE("a CR not followed by LF inside a line is bare_cr") {
        check_every_chunking("NO\rOP\r\nQUIT\r\n", {error(Errc::bare_cr), ok("QUIT")});
        check_every_chunking("NOOP\r\r\nQUIT\r\n", {error(Errc::bare_cr), ok("QUIT")});
        check_every_chunking("\r.\r\r\n", {error(Errc::bare_cr)});
    }

    TEST_CASE("a NUL byte in a line is nul_byte") {
        using namespace std::string_literals;
        check_every_chunking("NO\0OP\r\nQUIT\r\n"s, {error(Errc::nul_byte), ok("QUIT")});
        check_every_chunking("\0\r\n"s, {error(Errc::nul_byte)});
    }

    TEST_CASE("the line limit comes from Limits::command_line") {
        smtp::Limits small;
        small.command_line = 8;  // 6 text octets + CRLF
        check_every_chunking("ABCDEF\r\nABCDEFG\r\nQUIT\r\n",
                             {ok("ABCDEF"), error(Errc::line_too_long), ok("QUIT")}, small);
        // A bare LF inside the limit is bare_lf, beyond it the line is just too long.
        check_every_chunking("ABCDEFGH\nQUIT\r\n", {error(Errc::line_too_long), ok("QUIT")}, small);
        check_every_chunking("ABCDEF\nQUIT\r\n", {error(Errc::bare_lf), ok("QUIT")}, small);
    }

    TEST_CASE("non-ASCII bytes pass the reader: the parser judges them") {
        check_every_chunking("MAIL FROM:<j\xc3\xbcrgen@example.com>\r\n",
                             {ok("MAIL FROM:<j\xc3\xbcrgen@example.com>")});
    }
}
