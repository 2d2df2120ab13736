// Tests of the reply builder, enhanced status codes and Reply's own methods.
#include <smtp/reply.hpp>

#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

std::string reply(int code, smtp::EnhancedStatus status, std::string_view text) {
    std::string out;
    smtp::append_reply(out, code, status, text);
    return out;
}

std::string reply(int code, smtp::EnhancedStatus status, std::initializer_list<std::string_view> lines) {
    std::string out;
    smtp::append_reply(out, code, status, lines);
    return out;
}

std::string error_reply(smtp::Errc e, std::string_view detail = {}) {
    std::string out;
    smtp::append_error_reply(out, e, detail);
    return out;
}

// Parses `wire` whole; it must be exactly one reply.
smtp::Reply parse_one(std::string_view wire) {
    smtp::ReplyParser parser;
    const auto r = parser.parse(wire);
    REQUIRE(r.status == smtp::ReplyParser::Status::complete);
    REQUIRE(r.consumed == wire.size());
    return parser.reply();
}

constexpr smtp::EnhancedStatus none{};

}  // namespace

TEST_SUITE("reply") {
    TEST_CASE("a one-line reply is code, space, text and CRLF") {
        CHECK(reply(250, none, "OK") == "250 OK\r\n");
        CHECK(reply(554, none, "Transaction failed") == "554 Transaction failed\r\n");
    }

    TEST_CASE("an enhanced status code goes between code and text") {
        CHECK(reply(250, {2, 1, 0}, "Sender OK") == "250 2.1.0 Sender OK\r\n");
        CHECK(reply(550, {5, 1, 1}, "No such user") == "550 5.1.1 No such user\r\n");
        CHECK(reply(452, {4, 3, 1}, "Full") == "452 4.3.1 Full\r\n");
        CHECK(reply(250, {2, 999, 999}, "x") == "250 2.999.999 x\r\n");
    }

    TEST_CASE("empty text gives a line without trailing space") {
        CHECK(reply(250, none, "") == "250\r\n");
        CHECK(reply(250, {2, 0, 0}, "") == "250 2.0.0\r\n");
        CHECK(reply(250, none, {"a", "", "b", ""}) == "250-a\r\n250-\r\n250-b\r\n250\r\n");
    }

    TEST_CASE("a multi-line reply has a hyphen after the code on all lines but the last") {
        CHECK(reply(250, none, {"mx.example.com greets client.example.org", "PIPELINING", "8BITMIME"}) ==
              "250-mx.example.com greets client.example.org\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
        CHECK(reply(250, none, {"only"}) == "250 only\r\n");
        CHECK(reply(250, none, {}) == "250\r\n");
    }

    TEST_CASE("a multi-line reply carries the enhanced status on every line") {
        CHECK(reply(550, {5, 7, 1}, {"Rejected", "see policy"}) ==
              "550-5.7.1 Rejected\r\n550 5.7.1 see policy\r\n");
        CHECK(reply(250, {2, 0, 0}, {}) == "250 2.0.0\r\n");
    }

    TEST_CASE("the span form gives the same bytes as the initializer list form") {
        const std::vector<std::string_view> lines{"one", "two"};
        std::string out;
        smtp::append_reply(out, 220, none, std::span<const std::string_view>(lines));
        CHECK(out == "220-one\r\n220 two\r\n");
    }

    TEST_CASE("the builder appends and keeps what is already in the buffer") {
        std::string out = "221 Bye\r\n";
        smtp::append_reply(out, 250, none, "OK");
        smtp::append_error_reply(out, smtp::Errc::bad_sender);
        CHECK(out == "221 Bye\r\n250 OK\r\n501 5.1.7 Bad sender address syntax\r\n");
    }

    TEST_CASE("CR, LF and NUL in caller text become spaces so no reply line can be injected") {
        const std::string wire = reply(250, none, "a\r\n250 b");
        CHECK(wire == "250 a  250 b\r\n");
        const smtp::Reply parsed = parse_one(wire);
        CHECK(parsed.code == 250);
        REQUIRE(parsed.lines.size() == 1);
        CHECK(parsed.lines[0] == "a  250 b");

        CHECK(reply(250, none, std::string_view("x\0y\nz\r", 6)) == "250 x y z \r\n");
        CHECK(reply(250, none, {"a\r\n550 evil", "b\n"}) == "250-a  550 evil\r\n250 b \r\n");
        CHECK(error_reply(smtp::Errc::bad_recipient, "x\r\n250 ok") ==
              "501 5.1.3 Bad recipient address syntax: x  250 ok\r\n");
    }

    TEST_CASE("a code outside the reply grammar is sent as 451, with 4.3.0 if a status was given") {
        for (const int code : {0, -1, 199, 600, 999, 1000, 260, 299, 361, 470, 560, 599}) {
            CAPTURE(code);
            CHECK(reply(code, none, "oops") == "451 oops\r\n");
            CHECK(reply(code, {2, 0, 0}, "oops") == "451 4.3.0 oops\r\n");
            CHECK(reply(code, none, {"a", "b"}) == "451-a\r\n451 b\r\n");
        }
        for (const int code : {200, 259, 355, 421, 559}) {
            CAPTURE(code);
            CHECK(reply(code, none, "fine") == std::to_string(code) + " fine\r\n");
        }
    }

    TEST_CASE("an enhanced status that does not fit the code is left out") {
        CHECK(reply(250, {5, 1, 1}, "class differs") == "250 class differs\r\n");
        CHECK(reply(550, {4, 1, 1}, "class differs") == "550 class differs\r\n");
        CHECK(reply(250, {2, 1000, 0}, "subject too big") == "250 subject too big\r\n");
        CHECK(reply(250, {2, 0, 1000}, "detail too big") == "250 detail too big\r\n");
        CHECK(reply(354, {3, 0, 0}, "no class 3") == "354 no class 3\r\n");
    }

    TEST_CASE("append_error_reply writes the error's code, status and reason") {
        CHECK(error_reply(smtp::Errc::parameter_unsupported, "FOO") ==
              "555 5.5.4 Unsupported parameter: FOO\r\n");
        CHECK(error_reply(smtp::Errc::bad_recipient) == "501 5.1.3 Bad recipient address syntax\r\n");
        CHECK(error_reply(smtp::Errc::line_too_long) == "500 5.5.2 Line too long\r\n");
        CHECK(error_reply(smtp::Errc::message_too_big) == "552 5.3.4 Message size exceeds fixed limit\r\n");
        CHECK(error_reply(smtp::Errc::non_ascii_address, "<j\xc3\xb6rg@example.com>") ==
              "553 5.6.7 Non-ASCII address requires SMTPUTF8: <j\xc3\xb6rg@example.com>\r\n");
    }

    TEST_CASE("append_error_reply answers an error without a reply code with 451 4.3.0") {
        CHECK(error_reply(smtp::Errc::reply_syntax) == "451 4.3.0 Malformed reply line\r\n");
        CHECK(error_reply(smtp::Errc::reply_nul_byte, "at 3") == "451 4.3.0 NUL byte in reply: at 3\r\n");
    }

    TEST_CASE("every error reply parses back to the error's code and status") {
        for (int i = 0; i <= static_cast<int>(smtp::Errc::reply_nul_byte); ++i) {
            const auto e = static_cast<smtp::Errc>(i);
            const auto& info = smtp::error_info(e);
            CAPTURE(info.name);
            const smtp::Reply parsed = parse_one(error_reply(e, "detail"));
            const bool answered = info.reply_code != 0;
            CHECK(parsed.code == (answered ? info.reply_code : 451));
            REQUIRE(parsed.enhanced_status().has_value());
            CHECK(*parsed.enhanced_status() == (answered ? info.status : smtp::EnhancedStatus{4, 3, 0}));
        }
    }

    TEST_CASE("parse_enhanced_status reads class.subject.detail followed by space or end") {
        CHECK(smtp::parse_enhanced_status("2.0.0") == smtp::EnhancedStatus{2, 0, 0});
        CHECK(smtp::parse_enhanced_status("5.1.3 Bad recipient") == smtp::EnhancedStatus{5, 1, 3});
        CHECK(smtp::parse_enhanced_status("4.7.1 ") == smtp::EnhancedStatus{4, 7, 1});
        CHECK(smtp::parse_enhanced_status("5.999.999") == smtp::EnhancedStatus{5, 999, 999});
        CHECK(smtp::parse_enhanced_status("2.10.120 x") == smtp::EnhancedStatus{2, 10, 120});
    }

    TEST_CASE("parse_enhanced_status rejects what RFC 3463 does not allow") {
        for (const std::string_view text :
             {"",       "2",       "2.0",     "2.0.",   "2..0",   ".0.0",   "3.0.0 x",  "1.0.0",    "6.0.0",
              "x.0.0",  "20.0.0",  "2.00.0",  "2.0.00", "2.01.0", "2.0.01", "2.1000.0", "2.0.1000", "2.0.0x",
              "2.0.0.", "2.0.0\t", "2.0.0-x", "2,0,0",  " 2.0.0", "2.a.0",  "2.0.a"}) {
            CAPTURE(text);
            CHECK_FALSE(smtp::parse_enhanced_status(text).has_value());
        }
    }

    TEST_CASE("Reply::enhanced_status reads the first line when its class matches the code") {
        CHECK(smtp::Reply{250, {"2.1.0 Sender OK"}}.enhanced_status() == smtp::EnhancedStatus{2, 1, 0});
        CHECK(smtp::Reply{550, {"5.1.1 No such user", "5.1.1 really"}}.enhanced_status() ==
              smtp::EnhancedStatus{5, 1, 1});
        CHECK_FALSE(smtp::Reply{550, {"2.1.0 mismatched"}}.enhanced_status().has_value());
        CHECK_FALSE(smtp::Reply{250, {"hello", "2.0.0 second line"}}.enhanced_status().has_value());
        CHECK_FALSE(smtp::Reply{250, {}}.enhanced_status().has_value());
        CHECK_FALSE(smtp::Reply{250, {"OK"}}.enhanced_status().has_value());
    }

    TEST_CASE("Reply classifies its code as positive, transient or permanent") {
        CHECK(smtp::Reply{250, {}}.is_positive());
        CHECK(smtp::Reply{354, {}}.is_positive());
        CHECK(smtp::Reply{421, {}}.is_transient());
        CHECK(smtp::Reply{554, {}}.is_permanent());
        CHECK_FALSE(smtp::Reply{554, {}}.is_positive());
        CHECK_FALSE(smtp::Reply{450, {}}.is_permanent());
    }

    TEST_CASE("Reply::to_string writes the lines as they are, status included") {
        CHECK(smtp::Reply{250, {"2.0.0 OK"}}.to_string() == "250 2.0.0 OK\r\n");
        CHECK(smtp::Reply{250, {"mx", "SIZE 1000", "HELP"}}.to_string() ==
              "250-mx\r\n250-SIZE 1000\r\n250 HELP\r\n");
        CHECK(smtp::Reply{250, {"", ""}}.to_string() == "250-\r\n250\r\n");
        CHECK(smtp::Reply{250, {}}.to_string() == "250\r\n");
        CHECK(smtp::Reply{0, {"x"}}.to_string() == "451 x\r\n");
        std::string out = "pre";
        smtp::Reply{221, {"Bye"}}.append_to(out);
        CHECK(out == "pre221 Bye\r\n");
    }

    TEST_CASE("a built reply parses back to its code and lines") {
        const std::string wire = reply(250, {2, 0, 0}, {"mx.example.com", "PIPELINING", ""});
        const smtp::Reply parsed = parse_one(wire);
        CHECK(parsed.code == 250);
        CHECK(parsed.lines == std::vector<std::string>{"2.0.0 mx.example.com", "2.0.0 PIPELINING", "2.0.0"});
        CHECK(parsed.enhanced_status() == smtp::EnhancedStatus{2, 0, 0});
        CHECK(parsed.to_string() == wire);
    }

    TEST_CASE("a parsed reply written out again parses to an equal reply") {
        for (const std::string_view wire : {"250 OK\r\n", "250\r\n", "250 \r\n", "250-\r\n250 \r\n",
                                            "220-a\r\n220-  b \r\n220 c\r\n", "550 5.1.1 \xff\x80 x\r\n"}) {
            CAPTURE(wire);
            const smtp::Reply first = parse_one(wire);
            const smtp::Reply second = parse_one(first.to_string());
            CHECK(second.code == first.code);
            CHECK(second.lines == first.lines);
        }
        CHECK(parse_one("250 \r\n").to_string() == "250\r\n");
    }
}
