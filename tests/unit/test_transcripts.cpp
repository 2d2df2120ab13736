// The golden transcripts (tests/transcripts/*.smtp, format in the README there),
// run against ServerSession in memory. Each is fed whole, byte by byte, split at
// every offset and in random pieces, with verdicts given at once and deferred;
// every run must send exactly the S: lines, and close exactly when the file says.
// The directory comes from SMTP_TRANSCRIPT_DIR (set by meson for the unit tests).
#include <smtp/server_session.hpp>

#include "chunking.hpp"
#include "server_driver.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace {

using smtp::ServerEvent;
using smtp::test::Verdict;

// A verdict directive: "! reject rcpt <a@b> 550 5.1.1 No such user".
struct Rejection {
    std::string kind;    // connect, hello, mail, rcpt, data
    std::string target;  // hello: the name; mail, rcpt: the mailbox in <>; else empty
    int code = 0;
    smtp::EnhancedStatus status{};
    std::string text;
    bool used = false;
};

struct Transcript {
    smtp::ServerConfig config;
    std::string client;    // every C: line, in order
    std::string expected;  // every S: line, in order
    std::vector<Rejection> rejections;
    bool closes = false;
    std::string error;  // a malformed file
};

// Decodes \r \n \t \0 \\ \xHH.
bool unescape(std::string_view in, std::string& out) {
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '\\') {
            out += in[i];
            continue;
        }
        if (++i == in.size()) return false;
        switch (in[i]) {
            case 'r':
                out += '\r';
                break;
            case 'n':
                out += '\n';
                break;
            case 't':
                out += '\t';
                break;
            case '0':
                out += '\0';
                break;
            case '\\':
                out += '\\';
                break;
            case 'x': {
                const std::string hex(in.substr(i + 1, 2));
                if (hex.size() != 2 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
                    return false;
                out += static_cast<char>(std::stoi(hex, nullptr, 16));
                i += 2;
                break;
            }
            default:
                return false;
        }
    }
    return true;
}

bool set_option(smtp::ServerConfig& c, const std::string& key, const std::string& value) {
    const auto on = [&](bool& flag) {
        if (value != "on" && value != "off") return false;
        flag = value == "on";
        return true;
    };
    const auto number = [&](auto& field) {
        if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos) return false;
        field = static_cast<std::remove_reference_t<decltype(field)>>(std::stoull(value));
        return true;
    };
    if (key == "hostname") return c.hostname = value, !value.empty();
    if (key == "max_recipients") return number(c.max_recipients);
    if (key == "max_errors") return number(c.max_errors);
    if (key == "message_size") return number(c.limits.message_size);
    if (key == "pipelining") return on(c.extensions.pipelining);
    if (key == "size") return on(c.extensions.size);
    if (key == "8bitmime") return on(c.extensions.eight_bit_mime);
    if (key == "enhancedstatuscodes") return on(c.extensions.enhanced_status_codes);
    if (key == "smtputf8") return on(c.extensions.smtputf8);
    if (key == "dsn") return on(c.extensions.dsn);
    if (key == "bare_line_endings") {
        if (value != "reject" && value != "normalize") return false;
        c.data.bare_line_endings = value == "normalize" ? smtp::DataOptions::BareLineEndings::normalize
                                                        : smtp::DataOptions::BareLineEndings::reject;
        return true;
    }
    return false;
}

bool parse_rejection(std::istringstream& words, Rejection& r) {
    words >> r.kind;
    if (r.kind == "hello" || r.kind == "mail" || r.kind == "rcpt") words >> r.target;
    if (r.kind != "connect" && r.kind != "data" && r.target.empty()) return false;
    std::string status;
    words >> r.code >> status;
    if (!words || r.code < 400 || r.code > 559) return false;
    if (status != "-") {
        const auto s = smtp::parse_enhanced_status(status);
        if (!s) return false;
        r.status = *s;
    }
    std::getline(words >> std::ws, r.text);
    return true;
}

Transcript parse(const std::string& text) {
    Transcript t;
    t.config.hostname = "mx.example";
    std::istringstream in(text);
    std::string line;
    int number = 0;
    bool server_spoke = false;
    const auto fail = [&](const std::string& why) {
        if (t.error.empty()) t.error = "line " + std::to_string(number) + ": " + why;
    };
    while (std::getline(in, line)) {
        ++number;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty() || line[0] == '#') continue;
        const std::string tag = line.substr(0, 3);
        const std::string rest = line.size() > 3 ? line.substr(3) : std::string();
        if (tag == "S: " || line == "S:") {
            t.expected += rest + "\r\n";
            server_spoke = true;
        } else if (tag == "C: " || line == "C:" || tag == "C~ ") {
            if (!server_spoke) fail("the client speaks before the greeting");
            if (!unescape(rest, t.client)) fail("bad escape");
            if (tag != "C~ ") t.client += "\r\n";
        } else if (line[0] == '!') {
            std::istringstream words(line.substr(1));
            std::string directive;
            words >> directive;
            if (directive == "set") {
                std::string key, value;
                words >> key >> value;
                if (!set_option(t.config, key, value)) fail("bad option " + key);
            } else if (directive == "reject") {
                Rejection r;
                if (!parse_rejection(words, r)) fail("bad reject directive");
                t.rejections.push_back(r);
            } else if (directive == "closes") {
                t.closes = true;
            } else {
                fail("unknown directive " + directive);
            }
        } else {
            fail("not a C:, C~, S:, ! or # line");
        }
    }
    return t;
}

// What a directive calls the event, and the target it is matched against.
Rejection* rejection_for(std::vector<Rejection>& rs, const ServerEvent& e) {
    using K = ServerEvent::Kind;
    std::string kind, target;
    switch (e.kind) {
        case K::connect:
            kind = "connect";
            break;
        case K::hello:
            kind = "hello", target = std::string(e.name);
            break;
        case K::mail_from:
            kind = "mail", target = "<" + std::string(e.command->path.mailbox) + ">";
            break;
        case K::rcpt_to:
            kind = "rcpt", target = "<" + std::string(e.command->path.mailbox) + ">";
            break;
        case K::message_end:
            kind = "data";
            break;
        default:
            return nullptr;
    }
    for (Rejection& r : rs)
        if (r.kind == kind && r.target == target) return &r;
    return nullptr;
}

struct Outcome {
    std::string output;
    bool closed = false;
};

Outcome run(Transcript& t, const std::vector<std::string_view>& pieces, bool defer) {
    smtp::test::Driver d(
        t.config,
        [&](const ServerEvent& e) {
            Rejection* r = rejection_for(t.rejections, e);
            if (!r) return Verdict::yes();
            r->used = true;
            return Verdict::no(r->code, r->status, r->text);
        },
        defer);
    d.greet();
    for (const std::string_view piece : pieces) d.feed(piece);
    d.finish();
    return {d.output, d.session.should_close()};
}

std::vector<std::filesystem::path> transcript_files() {
    std::vector<std::filesystem::path> files;
    const char* dir = std::getenv("SMTP_TRANSCRIPT_DIR");
    if (!dir) return files;
    for (const auto& entry : std::filesystem::directory_iterator(dir))
        if (entry.path().extension() == ".smtp") files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    return files;
}

std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

}  // namespace

TEST_SUITE("server") {
    TEST_CASE("every golden transcript gives its S: lines in every chunking") {
        const std::vector<std::filesystem::path> files = transcript_files();
        REQUIRE_MESSAGE(std::getenv("SMTP_TRANSCRIPT_DIR") != nullptr, "set SMTP_TRANSCRIPT_DIR");
        REQUIRE(files.size() >= 8);
        for (const auto& file : files) {
            CAPTURE(file.filename().string());
            Transcript t = parse(read_file(file));
            REQUIRE_MESSAGE(t.error.empty(), t.error);
            REQUIRE(!t.expected.empty());

            const Outcome whole = run(t, {t.client}, false);
            CHECK(whole.output == t.expected);
            CHECK(whole.closed == t.closes);
            for (const Rejection& r : t.rejections) {
                CAPTURE(r.kind);
                CAPTURE(r.target);
                CHECK(r.used);
            }

            for (const bool defer : {false, true}) {
                smtp::test::for_each_chunking(
                    t.client, [&](const std::vector<std::string_view>& pieces, const std::string& label) {
                        const Outcome o = run(t, pieces, defer);
                        if (o.output != t.expected || o.closed != t.closes) {
                            CAPTURE(label);
                            CAPTURE(defer);
                            CHECK(o.output == t.expected);
                            CHECK(o.closed == t.closes);
                        }
                    });
            }
        }
    }

    TEST_CASE("the transcript parser reads escapes and directives") {
        Transcript t = parse(
            "# comment\n"
            "! set hostname foo.com\n"
            "! set max_recipients 2\n"
            "! reject rcpt <Green@foo.com> 550 5.1.1 No such user here\n"
            "! reject connect 554 - Go away\n"
            "! closes\n"
            "S: 220 foo.com ESMTP ready\n"
            "C: A\\tB\\\\\n"
            "C~ x\\ny\\r\\n\\x41\n");
        CHECK(t.error.empty());
        CHECK(t.config.hostname == "foo.com");
        CHECK(t.config.max_recipients == 2);
        CHECK(t.client == "A\tB\\\r\nx\ny\r\nA");
        CHECK(t.expected == "220 foo.com ESMTP ready\r\n");
        REQUIRE(t.rejections.size() == 2);
        CHECK(t.rejections[0].target == "<Green@foo.com>");
        CHECK(t.rejections[0].status == smtp::EnhancedStatus{5, 1, 1});
        CHECK(t.rejections[0].text == "No such user here");
        CHECK_FALSE(t.rejections[1].status.present());
        CHECK(t.closes);
        CHECK_FALSE(parse("C: early\n").error.empty());
        CHECK_FALSE(parse("S: x\nC: \\q\n").error.empty());
        CHECK_FALSE(parse("! set nonsense 1\n").error.empty());
    }
}
