// Unit tests of received_header(): the Received: trace field (RFC 5321 §4.4,
// RFC 5322 §3.6.7), its folding, and that no field can break out of its place.
#include <smtp/server_session.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace {

smtp::ReceivedFields fields() {
    smtp::ReceivedFields f{};
    f.helo = "helo.example";
    f.reverse_name = "rdns.example";
    f.address = "192.0.2.1";
    f.by = "mx.example";
    f.protocol = "ESMTP";
    f.id = "4F2A1";
    f.recipient = "rcpt@example.org";
    f.year = 2026;
    f.month = 11;
    f.day = 22;
    f.hour = 5;
    f.minute = 53;
    f.second = 11;
    f.weekday = 0;
    f.utc_offset_minutes = 0;
    return f;
}

std::vector<std::string> split_lines(const std::string& header) {
    std::vector<std::string> out;
    std::size_t at = 0;
    while (at < header.size()) {
        const std::size_t end = header.find("\r\n", at);
        if (end == std::string::npos) break;
        out.push_back(header.substr(at, end - at));
        at = end + 2;
    }
    return out;
}

// Every line within 78 characters, CRLF only at line ends, no bare CR or LF,
// continuation lines start with WSP and are not blank, and it ends in CRLF.
void check_shape(const std::string& h) {
    REQUIRE(h.size() >= 2);
    CHECK(h.substr(h.size() - 2) == "\r\n");
    const std::vector<std::string> ls = split_lines(h);
    std::size_t total = 0;
    for (std::size_t i = 0; i < ls.size(); ++i) {
        CAPTURE(ls[i]);
        CHECK(ls[i].size() <= 78);
        CHECK(ls[i].find_first_of("\r\n") == std::string::npos);
        if (i > 0) {
            CHECK(ls[i][0] == '\t');
            CHECK(ls[i].find_first_not_of(" \t") != std::string::npos);
        }
        total += ls[i].size() + 2;
    }
    CHECK(total == h.size());
}

}  // namespace

TEST_SUITE("server") {
    TEST_CASE("a Received header has from, by, with, id, for and the date, folded") {
        const std::string h = smtp::received_header(fields());
        CHECK(h ==
              "Received: from helo.example (rdns.example [192.0.2.1])\r\n"
              "\tby mx.example (libsmtp) with ESMTP id 4F2A1\r\n"
              "\tfor <rcpt@example.org>; Sun, 22 Nov 2026 05:53:11 +0000\r\n");
        check_shape(h);
    }

    TEST_CASE("the date has the weekday, the month name and the UTC offset (RFC 5322 3.3)") {
        smtp::ReceivedFields f = fields();
        f.weekday = 3;
        f.month = 1;
        f.day = 2;
        f.hour = 23;
        f.minute = 0;
        f.second = 9;
        f.utc_offset_minutes = -330;
        CHECK(smtp::received_header(f).find("; Wed, 2 Jan 2026 23:00:09 -0530\r\n") != std::string::npos);
        f.utc_offset_minutes = 60;
        CHECK(smtp::received_header(f).find(" +0100\r\n") != std::string::npos);
    }

    TEST_CASE("the parts of the TCP comment that are unknown are left out") {
        smtp::ReceivedFields f = fields();
        f.reverse_name = {};
        CHECK(smtp::received_header(f).rfind("Received: from helo.example ([192.0.2.1])\r\n", 0) == 0);
        f.address = {};
        CHECK(smtp::received_header(f).rfind("Received: from helo.example\r\n", 0) == 0);
        f.helo = {};
        f.address = "192.0.2.1";
        CHECK(smtp::received_header(f).rfind("Received: from [192.0.2.1]\r\n", 0) == 0);
        f.reverse_name = "rdns.example";
        CHECK(smtp::received_header(f).rfind("Received: from rdns.example ([192.0.2.1])\r\n", 0) == 0);
    }

    TEST_CASE("an IPv6 address is written as an IPv6 address literal") {
        smtp::ReceivedFields f = fields();
        f.address = "2001:db8::1";
        CHECK(smtp::received_header(f).find("(rdns.example [IPv6:2001:db8::1])") != std::string::npos);
    }

    TEST_CASE("without a recipient there is no for clause") {
        smtp::ReceivedFields f = fields();
        f.recipient = {};
        f.id = {};
        const std::string h = smtp::received_header(f);
        CHECK(h ==
              "Received: from helo.example (rdns.example [192.0.2.1])\r\n"
              "\tby mx.example (libsmtp) with ESMTP; Sun, 22 Nov 2026 05:53:11 +0000\r\n");
        check_shape(h);
    }

    TEST_CASE("a HELO name cannot break the header, close the comment or add a clause") {
        smtp::ReceivedFields f = fields();
        f.helo = "evil.example)\r\nX-Injected: yes; by (x";
        f.reverse_name = "ptr\nwith(junk)";
        const std::string h = smtp::received_header(f);
        check_shape(h);
        CHECK(h.find("X-Injected:") == std::string::npos);
        CHECK(h.find("evil.example___X-Injected__yes__by__x") != std::string::npos);
        CHECK(h.find("ptr_with_junk_") != std::string::npos);
        // One comment only: the TCP information.
        CHECK(std::count(h.begin(), h.end(), '(') == 2);  // and "(libsmtp)"
        CHECK(std::count(h.begin(), h.end(), ';') == 1);
    }

    TEST_CASE("a recipient cannot leave its angle brackets or break the line") {
        smtp::ReceivedFields f = fields();
        f.recipient = "\"a>b\r\n\"@example.org";
        const std::string h = smtp::received_header(f);
        check_shape(h);
        CHECK(h.find("for <\"a?b??\"@example.org>;") != std::string::npos);
    }

    TEST_CASE("long names are folded so no line passes 78 characters where avoidable") {
        smtp::ReceivedFields f = fields();
        const std::string helo = std::string(60, 'h') + ".example";
        const std::string rdns = std::string(50, 'r') + ".example";
        const std::string by = std::string(40, 'b') + ".example";
        const std::string rcpt = std::string(50, 'u') + "@example.org";
        f.helo = helo;
        f.reverse_name = rdns;
        f.by = by;
        f.recipient = rcpt;
        f.address = "2001:db8:1234:5678:9abc:def0:1234:5678";
        check_shape(smtp::received_header(f));
    }

    TEST_CASE("a word longer than a line stays whole on a line of its own") {
        smtp::ReceivedFields f = fields();
        const std::string helo = std::string(100, 'h') + ".example";
        f.helo = helo;
        const std::string h = smtp::received_header(f);
        const auto ls = split_lines(h);
        REQUIRE(ls.size() >= 3);
        CHECK(ls[0] == "Received: from");
        CHECK(ls[1] == "\t" + helo);
        for (std::size_t i = 2; i < ls.size(); ++i) CHECK(ls[i].size() <= 78);
    }

    TEST_CASE("out-of-range date fields do not index out of bounds") {
        smtp::ReceivedFields f = fields();
        f.weekday = -1;
        f.month = 13;
        const std::string h = smtp::received_header(f);
        CHECK(h.find("Sat, 22 Jan 2026") != std::string::npos);
    }
}
