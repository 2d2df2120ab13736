// Unit tests of DataDecoder (RFC 5321 §4.1.1.4, §4.5.2, §2.3.8). Every input is fed
// in every chunking (chunking.hpp): content, consumed, finished, error and size
// must be the same for all of them.
#include <smtp/data.hpp>

#include "chunking.hpp"

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace {

using smtp::DataDecoder;
using smtp::DataOptions;
using smtp::Errc;
using smtp::Limits;
using Bare = DataOptions::BareLineEndings;
using Long = DataOptions::LongLines;
using namespace std::string_literals;

constexpr auto all = static_cast<std::size_t>(-1);  // Expected::consumed: the whole input

struct Expected {
    std::string content;
    std::size_t consumed = all;
    bool finished = true;
    Errc error = Errc::ok;
};

struct Decoded {
    std::string content;
    std::size_t consumed = 0;
    bool finished = false;
    Errc error = Errc::ok;
    std::uint64_t size = 0;
};

// Feeds the pieces in order as a server does, stopping at the end of the message.
Decoded decode(const std::vector<std::string_view>& pieces, const Limits& limits,
               const DataOptions& options) {
    DataDecoder decoder(limits, options);
    Decoded d;
    for (std::string_view in : pieces) {
        while (!in.empty() && !d.finished) {
            const DataDecoder::Result r = decoder.decode(in);
            REQUIRE(r.consumed <= in.size());
            REQUIRE((r.consumed > 0 || !r.content.empty() || r.finished));  // progress
            d.content += r.content;
            d.consumed += r.consumed;
            d.finished = r.finished;
            in.remove_prefix(r.consumed);
        }
    }
    CHECK(decoder.finished() == d.finished);
    d.error = decoder.error();
    d.size = decoder.size();
    return d;
}

// Decodes `input` in every chunking and checks each against `want`; returns the
// result of the whole input.
Decoded check(std::string_view input, const Expected& want, const Limits& limits = {},
              const DataOptions& options = {}) {
    const Decoded whole = decode({input}, limits, options);
    smtp::test::for_each_chunking(
        input, [&](const std::vector<std::string_view>& pieces, const std::string& way) {
            CAPTURE(way);
            const Decoded d = decode(pieces, limits, options);
            CHECK(d.content == want.content);
            CHECK(d.consumed == (want.consumed == all ? input.size() : want.consumed));
            CHECK(d.finished == want.finished);
            CHECK(d.error == want.error);
            CHECK(d.size == whole.size);
        });
    return whole;
}

DataOptions normalize() {
    DataOptions o;
    o.bare_line_endings = Bare::normalize;
    return o;
}

DataOptions accept_long() {
    DataOptions o;
    o.long_lines = Long::accept;
    return o;
}

struct Case {
    const char* fact;
    std::string input;
    Expected want;
};

void check_table(const std::vector<Case>& cases, const Limits& limits = {}, const DataOptions& options = {}) {
    for (const Case& c : cases) {
        const std::string fact = c.fact;
        CAPTURE(fact);
        check(c.input, c.want, limits, options);
    }
}

}  // namespace

TEST_SUITE("data") {
    TEST_CASE("well-formed messages decode to their lines") {
        check_table({
            {"empty message", ".\r\n", {""}},
            {"one line", "Hello\r\n.\r\n", {"Hello\r\n"}},
            {"two lines", "a\r\nb\r\n.\r\n", {"a\r\nb\r\n"}},
            {"empty lines", "\r\n\r\n.\r\n", {"\r\n\r\n"}},
            {"a stuffed dot is removed", "..\r\n.\r\n", {".\r\n"}},
            {"only the first dot is removed", "...\r\n.\r\n", {"..\r\n"}},
            {"a stuffed line keeps its text", "..foo\r\nbar\r\n.\r\n", {".foo\r\nbar\r\n"}},
            {"a dot inside a line stays", "a.b\r\n a.\r\n.\r\n", {"a.b\r\n a.\r\n"}},
            {"a dot line that is not stuffed loses its dot", ".foo\r\n.\r\n", {"foo\r\n"}},
            {"stuffed lines in a row", "..\r\n..\r\n..x\r\n.\r\n", {".\r\n.\r\n.x\r\n"}},
            {"NUL bytes are content", "a\0b\r\n\0\r\n.\r\n"s, {"a\0b\r\n\0\r\n"s}},
            {"8-bit bytes are content", "caf\xc3\xa9\xff\r\n.\r\n", {"caf\xc3\xa9\xff\r\n"}},
        });
    }

    TEST_CASE("bytes after the final dot are not consumed") {
        check("a\r\n.\r\nQUIT\r\n", {"a\r\n", 6});
        check(".\r\nRSET\r\n", {"", 3});
        check("x\r\n.\r\n.\r\n", {"x\r\n", 6});
    }

    TEST_CASE("an unfinished message is consumed but not finished") {
        check("", {"", 0, false});
        check("abc", {"abc", all, false});
        check("abc\r\n", {"abc\r\n", all, false});
        check("abc\r\n.", {"abc\r\n", all, false});
        check("abc\r\n.\r", {"abc\r\n", all, false});
    }

    TEST_CASE("a CR at the end of a chunk is emitted once its LF arrives") {
        const std::vector<std::string_view> pieces{"ab\r", "\ncd\r", "\n", ".\r", "\n"};
        const Decoded d = decode(pieces, {}, {});
        CHECK(d.content == "ab\r\ncd\r\n");
        CHECK(d.consumed == 11);
        CHECK(d.finished);
        CHECK(d.error == Errc::ok);
    }

    TEST_CASE("a held-back CR comes out as static CRLF, everything else points into the input") {
        DataDecoder decoder;
        const std::string first = "ab\r";
        const DataDecoder::Result r1 = decoder.decode(first);
        CHECK(r1.consumed == 3);
        CHECK(r1.content == "ab");
        CHECK(r1.content.data() == first.data());
        const std::string second = "\n.\r\n";
        const DataDecoder::Result r2 = decoder.decode(second);
        CHECK(r2.consumed == 1);
        CHECK(r2.content == "\r\n");
        CHECK((r2.content.data() < second.data() || r2.content.data() >= second.data() + second.size()));
        const DataDecoder::Result r3 = decoder.decode(std::string_view(second).substr(1));
        CHECK(r3.consumed == 3);
        CHECK(r3.content.empty());
        CHECK(r3.finished);
    }

    TEST_CASE("LF.LF, LF.CRLF, CR.CR, CRLF.LF and CRLF.CR do not end the message") {
        // SMTP smuggling: only CRLF "." CRLF ends the data (RFC 5321 §4.1.1.4).
        check_table({
            {"LF.LF", "a\n.\nb\r\n.\r\n", {"a", all, true, Errc::data_bare_lf}},
            {"LF.CRLF", "a\n.\r\nb\r\n.\r\n", {"a", all, true, Errc::data_bare_lf}},
            {"CR.CR", "a\r.\rb\r\n.\r\n", {"a", all, true, Errc::data_bare_cr}},
            {"CR.CRLF", "a\r.\r\nb\r\n.\r\n", {"a", all, true, Errc::data_bare_cr}},
            {"CRLF.LF", "a\r\n.\nb\r\n.\r\n", {"a\r\n", all, true, Errc::data_bare_lf}},
            {"CRLF.CR", "a\r\n.\rb\r\n.\r\n", {"a\r\n", all, true, Errc::data_bare_cr}},
            {"CRLF.CR then LF later", "a\r\n.\r.\r\n.\r\n", {"a\r\n", all, true, Errc::data_bare_cr}},
            {"a bare LF at the very start", "\n.\r\n.\r\n", {"", all, true, Errc::data_bare_lf}},
            {"the first error is kept", "a\rb\nc\r\n.\r\n", {"a", all, true, Errc::data_bare_cr}},
        });
    }

    TEST_CASE("the smuggling sequences are normalized to CRLF, their dot kept as content") {
        check_table(
            {
                {"LF.LF", "a\n.\nb\r\n.\r\n", {"a\r\n.\r\nb\r\n"}},
                {"LF.CRLF", "a\n.\r\nb\r\n.\r\n", {"a\r\n.\r\nb\r\n"}},
                {"CR.CR", "a\r.\rb\r\n.\r\n", {"a\r\n.\r\nb\r\n"}},
                {"CR.CRLF", "a\r.\r\nb\r\n.\r\n", {"a\r\n.\r\nb\r\n"}},
                {"CRLF.LF: the stuffing dot goes", "a\r\n.\nb\r\n.\r\n", {"a\r\n\r\nb\r\n"}},
                {"CRLF.CR: the stuffing dot goes", "a\r\n.\rb\r\n.\r\n", {"a\r\n\r\nb\r\n"}},
                {"CRLF.CR then a dot", "a\r\n.\r.\r\n.\r\n", {"a\r\n\r\n.\r\n"}},
                {"bare LFs in a row", "\n\n\r\n.\r\n", {"\r\n\r\n\r\n"}},
                {"CR CRLF", "a\r\r\n.\r\n", {"a\r\n\r\n"}},
                {"LF then the final dot", "a\n.\r\n", {"a\r\n.\r\n", all, false}},
            },
            {}, normalize());
    }

    TEST_CASE("a message at the size limit is accepted, one octet over is refused") {
        Limits limits;
        limits.message_size = 10;  // "12345678\r\n" is exactly 10 content octets
        check("1234567\r\n.\r\n", {"1234567\r\n"}, limits);
        check("12345678\r\n.\r\n", {"12345678\r\n"}, limits);
        check("123456789\r\n.\r\n", {"123456789", all, true, Errc::message_too_big}, limits);
        check("1234567890\r\n.\r\n", {"1234567890", all, true, Errc::message_too_big}, limits);
        check("12345678901\r\n.\r\n", {"1234567890", all, true, Errc::message_too_big}, limits);
        // Stuffing dots do not count: ".." is one content octet.
        check("..234567\r\n.\r\n", {".234567\r\n"}, limits);
    }

    TEST_CASE("size keeps counting after the limit so the real size can be logged") {
        Limits limits;
        limits.message_size = 4;
        const Decoded d = check("abcdef\r\n..x\r\n.\r\n", {"abcd", all, true, Errc::message_too_big}, limits);
        CHECK(d.size == 12);
    }

    TEST_CASE("size counts content octets after unstuffing") {
        const Decoded d = check("..a\r\nbc\r\n.\r\n", {".a\r\nbc\r\n"});
        CHECK(d.size == 8);
    }

    TEST_CASE("a line of 998 octets plus CRLF is the longest accepted") {
        const std::string ok(998, 'x');
        check(ok + "\r\n.\r\n", {ok + "\r\n"});
        check(std::string(997, 'x') + "\r\n.\r\n", {std::string(997, 'x') + "\r\n"});
        check(std::string(999, 'x') + "\r\n.\r\n", {ok, all, true, Errc::data_line_too_long});
        check(std::string(1000, 'x') + "\r\n.\r\n", {ok, all, true, Errc::data_line_too_long});
        check("a\r\n" + std::string(999, 'x') + "\r\nb\r\n.\r\n",
              {"a\r\n" + ok, all, true, Errc::data_line_too_long});
    }

    TEST_CASE("a stuffing dot counts toward the line length as sent") {
        const std::string text(997, 'x');
        check("." + text + "\r\n.\r\n", {text + "\r\n"});  // 998 sent, 997 content
        const std::string shorter(996, 'x');
        check(".." + shorter + "\r\n.\r\n", {"." + shorter + "\r\n"});                           // 998 sent
        check(".." + text + "\r\n.\r\n", {"." + shorter, all, true, Errc::data_line_too_long});  // 999 sent
    }

    TEST_CASE("long lines pass through when accepted") {
        for (std::size_t n : {998u, 999u, 1000u, 5000u}) {
            const std::string line(n, 'y');
            check(line + "\r\n.\r\n", {line + "\r\n"}, {}, accept_long());
        }
    }

    TEST_CASE("the line limit is configurable and checked at limit-1, limit and limit+1") {
        Limits limits;
        limits.text_line = 6;  // 4 octets + CRLF
        check_table(
            {
                {"3 octets", "abc\r\n.\r\n", {"abc\r\n"}},
                {"4 octets", "abcd\r\n.\r\n", {"abcd\r\n"}},
                {"5 octets", "abcde\r\n.\r\n", {"abcd", all, true, Errc::data_line_too_long}},
                {"the line ends at CRLF only", "ab\r\ncd\r\n.\r\n", {"ab\r\ncd\r\n"}},
            },
            limits);
    }

    TEST_CASE("a normalized bare line ending starts a new output line") {
        Limits limits;
        limits.text_line = 6;
        check("abcd\nabcd\r\n.\r\n", {"abcd\r\nabcd\r\n"}, limits, normalize());
        check("abcd\nabcde\r\n.\r\n", {"abcd\r\nabcd", all, true, Errc::data_line_too_long}, limits,
              normalize());
    }

    TEST_CASE("a normalized bare line ending counts two octets") {
        Limits limits;
        limits.message_size = 4;
        check("ab\n\r\n.\r\n", {"ab\r\n", all, true, Errc::message_too_big}, limits, normalize());
        check("abc\n\r\n.\r\n", {"abc", all, true, Errc::message_too_big}, limits, normalize());
        check("ab\n.\r\n", {"ab\r\n", all, false, Errc::message_too_big}, limits, normalize());
        check("a\nb\r\n.\r\n", {"a\r\nb", all, true, Errc::message_too_big}, limits, normalize());
    }

    TEST_CASE("the first of two errors met is reported") {
        Limits limits;
        limits.message_size = 5;
        limits.text_line = 5;  // 3 octets + CRLF
        check("abcd\r\n.\r\n", {"abc", all, true, Errc::data_line_too_long}, limits);
        check("abc\r\nx\nyz\r\n.\r\n", {"abc\r\n", all, true, Errc::message_too_big}, limits);
        check("ab\nabcdefg\r\n.\r\n", {"ab", all, true, Errc::data_bare_lf}, limits);
    }

    TEST_CASE("a decoder that finished consumes nothing more") {
        DataDecoder decoder;
        CHECK(decoder.decode(".\r\n").finished);
        const DataDecoder::Result r = decoder.decode("MAIL FROM:<>\r\n");
        CHECK(r.consumed == 0);
        CHECK(r.content.empty());
        CHECK(r.finished);
        CHECK(decoder.finished());
    }
}
