// Tests of apps/smtpc/bounce: the DSN's structure (RFC 3464, RFC 6522), read back by
// a small strict MIME reader here, and its delivery to a Maildir or the queue. The
// delivery tests work in their own mkdtemp directory under /tmp, removed at the end.
#include "bounce.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
using smtp::MailRoot;
using smtp::queue::Envelope;
using smtp::queue::make_recipient;
using smtp::queue::Queue;
using smtp::queue::RecipientState;
using smtp::smtpc::BounceContext;
using smtp::smtpc::make_dsn;
using smtp::smtpc::send_bounce;

constexpr std::int64_t arrival = 1732262400;  // Fri, 22 Nov 2024 08:00:00 +0000
constexpr std::int64_t now = arrival + 3600;  // 09:00:00
constexpr std::string_view seed = "0660d83c08fd2d00005d51000215";

const std::string_view small_original =
    "Received: from client.example.org\r\n"
    "From: Alice <alice@example.org>\r\n"
    "To: bob@example.net\r\n"
    "Subject: hello\r\n"
    "\r\n"
    "The body, which RET=HDRS leaves out.\r\n";

BounceContext context() { return BounceContext{"mx.example", now, seed}; }

// A message from alice@example.org, its recipients bounced with `errors` (one each).
Envelope bounced(const std::vector<std::string>& errors, std::string sender = "alice@example.org") {
    Envelope e;
    e.id = std::string(seed);
    e.arrival = arrival;
    e.sender = std::move(sender);
    for (std::size_t i = 0; i < errors.size(); ++i) {
        e.recipients.push_back(make_recipient("user" + std::to_string(i) + "@example.net"));
        e.recipients.back().state = RecipientState::bounced;
        e.recipients.back().last_error = errors[i];
        e.last_error = errors[i];
    }
    return e;
}

std::vector<std::size_t> all(const Envelope& e) {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < e.recipients.size(); ++i) out.push_back(i);
    return out;
}

// ---------------------------------------------------------------- a strict reader

bool crlf_only(std::string_view s) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return false;
        if (s[i] == '\r' && (i + 1 == s.size() || s[i + 1] != '\n')) return false;
    }
    return true;
}

std::size_t longest_line(std::string_view s) {
    std::size_t longest = 0;
    std::size_t pos = 0;
    while (pos < s.size()) {
        std::size_t end = s.find("\r\n", pos);
        if (end == std::string_view::npos) end = s.size();
        longest = std::max(longest, end - pos);
        pos = end + 2;
    }
    return longest;
}

std::vector<std::string> lines_of(std::string_view s) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos < s.size()) {
        std::size_t end = s.find("\r\n", pos);
        if (end == std::string_view::npos) end = s.size();
        out.emplace_back(s.substr(pos, end - pos));
        pos = end + 2;
    }
    return out;
}

struct Field {
    std::string name;
    std::string value;
};
using Fields = std::vector<Field>;

std::string lower(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return s;
}

// The header fields of `lines` up to the first empty line (continuations unfolded);
// `next` gets the index after that empty line. A line that is neither a field nor a
// continuation fails the test.
Fields read_fields(const std::vector<std::string>& lines, std::size_t& next) {
    Fields out;
    std::size_t i = 0;
    for (; i < lines.size() && !lines[i].empty(); ++i) {
        const std::string& l = lines[i];
        if (l[0] == ' ' || l[0] == '\t') {
            REQUIRE(!out.empty());
            out.back().value += l;
            continue;
        }
        const std::size_t colon = l.find(':');
        REQUIRE_MESSAGE(colon != std::string::npos, l);
        REQUIRE(colon > 0);
        Field f{l.substr(0, colon), l.substr(colon + 1)};
        f.value.erase(0, f.value.find_first_not_of(' '));
        out.push_back(std::move(f));
    }
    next = i < lines.size() ? i + 1 : i;
    return out;
}

std::optional<std::string> get(const Fields& fields, std::string_view name) {
    for (const Field& f : fields)
        if (lower(f.name) == lower(std::string(name))) return f.value;
    return std::nullopt;
}

std::size_t count(const Fields& fields, std::string_view name) {
    return static_cast<std::size_t>(std::count_if(fields.begin(), fields.end(), [&](const Field& f) {
        return lower(f.name) == lower(std::string(name));
    }));
}

struct Part {
    Fields header;
    std::string body;  // lines joined with CRLF, without the CRLF the delimiter owns
};

struct Dsn {
    Fields header;
    std::string boundary;
    std::vector<Part> parts;
    bool closed = false;  // the close delimiter was seen
};

std::string join(const std::vector<std::string>& lines, std::size_t from, std::size_t to) {
    std::string out;
    for (std::size_t i = from; i < to; ++i) {
        if (i > from) out += "\r\n";
        out += lines[i];
    }
    return out;
}

// Reads a multipart message, checking the framing rules on the way.
Dsn read_dsn(std::string_view text) {
    REQUIRE(crlf_only(text));
    REQUIRE(text.size() >= 2);
    REQUIRE(text.substr(text.size() - 2) == "\r\n");
    CHECK(longest_line(text) <= 998);
    CHECK(text.find('\0') == std::string_view::npos);

    const std::vector<std::string> lines = lines_of(text);
    Dsn dsn;
    std::size_t i = 0;
    dsn.header = read_fields(lines, i);
    const auto type = get(dsn.header, "Content-Type");
    REQUIRE(type);
    const std::size_t b = type->find("boundary=\"");
    REQUIRE(b != std::string::npos);
    const std::size_t end = type->find('"', b + 10);
    REQUIRE(end != std::string::npos);
    dsn.boundary = type->substr(b + 10, end - b - 10);
    REQUIRE(!dsn.boundary.empty());
    CHECK(dsn.boundary.size() <= 70);  // RFC 2046 §5.1.1

    const std::string delimiter = "--" + dsn.boundary;
    std::optional<std::size_t> start;
    for (; i < lines.size(); ++i) {
        const bool open = lines[i] == delimiter;
        const bool close = lines[i] == delimiter + "--";
        if (!open && !close) continue;
        REQUIRE_FALSE(dsn.closed);
        if (start) {
            // The CRLF before a delimiter is the delimiter's (RFC 2046 §5.1.1).
            std::vector<std::string> part(lines.begin() + static_cast<std::ptrdiff_t>(*start),
                                          lines.begin() + static_cast<std::ptrdiff_t>(i));
            std::size_t body = 0;
            Part p;
            p.header = read_fields(part, body);
            p.body = join(part, body, part.size());
            dsn.parts.push_back(std::move(p));
        }
        start = i + 1;
        if (close) dsn.closed = true;
    }
    CHECK(dsn.closed);
    return dsn;
}

// The groups of message/delivery-status: per-message fields, then per recipient.
std::vector<Fields> report_groups(std::string_view body) {
    std::vector<std::string> lines = lines_of(body);
    std::vector<Fields> out;
    std::size_t i = 0;
    while (i < lines.size()) {
        if (lines[i].empty()) {
            ++i;
            continue;
        }
        std::vector<std::string> rest(lines.begin() + static_cast<std::ptrdiff_t>(i), lines.end());
        std::size_t next = 0;
        out.push_back(read_fields(rest, next));
        i += next;
    }
    return out;
}

bool contains(std::string_view haystack, std::string_view needle) {
    return haystack.find(needle) != std::string_view::npos;
}

// ---------------------------------------------------------------- files

class TempDir {
public:
    TempDir() {
        char templ[] = "/tmp/bounce-test-XXXXXX";
        REQUIRE(::mkdtemp(templ) != nullptr);
        path_ = templ;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// A queue and a mail root under one temporary directory.
struct Stores {
    TempDir dir;
    Queue queue{dir.path() + "/queue"};
    MailRoot root;

    Stores() {
        REQUIRE(!queue.prepare());
        REQUIRE(::mkdir((dir.path() + "/mail").c_str(), 0700) == 0);
        std::error_code ec;
        root = MailRoot::open(dir.path() + "/mail", ec, "mx.example");
        REQUIRE(!ec);
    }

    // Regular files under the directory, relative to it.
    std::vector<std::string> files() const {
        std::vector<std::string> out;
        for (const auto& e : fs::recursive_directory_iterator(dir.path()))
            if (e.is_regular_file()) out.push_back(fs::relative(e.path(), dir.path()).string());
        std::sort(out.begin(), out.end());
        return out;
    }
};

std::string read_fd(int fd) {
    std::string out;
    char buf[4096];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        REQUIRE(n >= 0);
        if (n == 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

std::string read_file(const std::string& path) {
    smtp::Fd fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    REQUIRE(fd.valid());
    return read_fd(fd.get());
}

}  // namespace

TEST_SUITE("bounce") {
    TEST_CASE("a DSN is a multipart/report of a notice, a delivery-status and the original header") {
        const Envelope e = bounced({"550 5.1.1 No such user"});
        const std::string text = make_dsn(e, all(e), small_original, context());
        const Dsn dsn = read_dsn(text);

        CHECK(get(dsn.header, "From") == "MAILER-DAEMON@mx.example (Mail Delivery System)");
        CHECK(get(dsn.header, "To") == "<alice@example.org>");
        CHECK(get(dsn.header, "Subject") == "Undelivered Mail Returned to Sender");
        CHECK(get(dsn.header, "Date") == "Fri, 22 Nov 2024 09:00:00 +0000");
        CHECK(get(dsn.header, "Message-ID") == "<0660d83c08fd2d00005d51000215.1732266000@mx.example>");
        CHECK(get(dsn.header, "Auto-Submitted") == "auto-replied");
        CHECK(get(dsn.header, "MIME-Version") == "1.0");
        CHECK(contains(*get(dsn.header, "Content-Type"), "multipart/report; report-type=delivery-status;"));
        CHECK_FALSE(get(dsn.header, "Return-Path"));                // only the Maildir copy has one
        CHECK_FALSE(get(dsn.header, "Content-Transfer-Encoding"));  // all 7bit

        REQUIRE(dsn.parts.size() == 3);
        CHECK(get(dsn.parts[0].header, "Content-Type") == "text/plain; charset=us-ascii");
        CHECK(get(dsn.parts[1].header, "Content-Type") == "message/delivery-status");
        CHECK(get(dsn.parts[2].header, "Content-Type") == "text/rfc822-headers");

        CHECK(contains(dsn.parts[0].body, "<user0@example.net>: 550 5.1.1 No such user"));
        CHECK(contains(dsn.parts[0].body, "Its header is attached below."));

        // RET unspecified = HDRS: the header, ending in its CRLF, and no body.
        CHECK(dsn.parts[2].body ==
              "Received: from client.example.org\r\n"
              "From: Alice <alice@example.org>\r\n"
              "To: bob@example.net\r\n"
              "Subject: hello\r\n");
        CHECK_FALSE(contains(text, "The body"));
    }

    TEST_CASE("the delivery-status part has the per-message and per-recipient fields of RFC 3464") {
        Envelope e = bounced({"550 5.1.1 No such user", "554 Transaction failed"});
        e.client = "client.example.org [192.0.2.1]";
        const Dsn dsn = read_dsn(make_dsn(e, all(e), small_original, context()));
        REQUIRE(dsn.parts.size() == 3);
        const std::vector<Fields> groups = report_groups(dsn.parts[1].body);
        REQUIRE(groups.size() == 3);

        CHECK(get(groups[0], "Reporting-MTA") == "dns; mx.example");
        CHECK(get(groups[0], "Received-From-MTA") == "dns; client.example.org [192.0.2.1]");
        CHECK(get(groups[0], "Arrival-Date") == "Fri, 22 Nov 2024 08:00:00 +0000");
        CHECK_FALSE(get(groups[0], "Original-Envelope-Id"));

        CHECK(get(groups[1], "Final-Recipient") == "rfc822; user0@example.net");
        CHECK(get(groups[1], "Action") == "failed");
        CHECK(get(groups[1], "Status") == "5.1.1");
        CHECK(get(groups[1], "Diagnostic-Code") == "smtp; 550 5.1.1 No such user");
        CHECK(get(groups[1], "Last-Attempt-Date") == "Fri, 22 Nov 2024 09:00:00 +0000");
        CHECK_FALSE(get(groups[1], "Remote-MTA"));  // the reply does not say who gave it
        CHECK_FALSE(get(groups[1], "Original-Recipient"));

        CHECK(get(groups[2], "Final-Recipient") == "rfc822; user1@example.net");
        CHECK(get(groups[2], "Status") == "5.0.0");
        CHECK(get(groups[2], "Diagnostic-Code") == "smtp; 554 Transaction failed");
    }

    TEST_CASE("Status is the reply's enhanced code, else derived from its basic code") {
        struct Case {
            const char* reply;
            const char* status;
            const char* diagnostic_type;
        };
        const Case cases[] = {
            {"550 5.1.1 No such user", "5.1.1", "smtp"},
            {"552 5.3.4 Message too big", "5.3.4", "smtp"},
            {"554 Transaction failed", "5.0.0", "smtp"},
            {"550", "5.0.0", "smtp"},
            {"550 4.1.1 class mismatch", "5.0.0", "smtp"},      // RFC 2034 §4: not this reply's
            {"451 4.4.1 Connection refused", "4.4.1", "smtp"},  // expired after deferrals
            {"451 4.4.7 Delivery time expired", "4.4.7", "smtp"},
            {"452 Too many recipients", "4.0.0", "smtp"},
            {"550-5.7.1 multi-line, joined", "5.7.1", "smtp"},
            {"no code at all", "5.0.0", "X-Smtpc"},
            {"250 2.0.0 Ok", "5.0.0", "smtp"},  // a failed recipient never gets 2.x.x
        };
        for (const Case& c : cases) {
            CAPTURE(c.reply);
            const Envelope e = bounced({c.reply});
            const Dsn dsn = read_dsn(make_dsn(e, all(e), small_original, context()));
            REQUIRE(dsn.parts.size() == 3);
            const std::vector<Fields> groups = report_groups(dsn.parts[1].body);
            REQUIRE(groups.size() == 2);
            CHECK(get(groups[1], "Status") == c.status);
            CHECK(get(groups[1], "Diagnostic-Code") == std::string(c.diagnostic_type) + "; " + c.reply);
        }
    }

    TEST_CASE("a recipient that failed by expiry is explained in the text") {
        const Envelope e = bounced({"451 4.4.1 Connection refused"});
        const Dsn dsn = read_dsn(make_dsn(e, all(e), small_original, context()));
        REQUIRE(dsn.parts.size() == 3);
        CHECK(contains(dsn.parts[0].body, "<user0@example.net>: 451 4.4.1 Connection refused"));
        CHECK(contains(dsn.parts[0].body, "delivery time expired"));
    }

    TEST_CASE("each listed recipient gets one Final-Recipient block, in order, once") {
        const Envelope e = bounced({"550 5.1.1 a", "550 5.1.2 b", "550 5.1.3 c"});
        const Dsn dsn = read_dsn(make_dsn(e, {2, 0, 2, 99}, small_original, context()));
        REQUIRE(dsn.parts.size() == 3);
        const std::vector<Fields> groups = report_groups(dsn.parts[1].body);
        REQUIRE(groups.size() == 3);
        CHECK(get(groups[1], "Final-Recipient") == "rfc822; user2@example.net");
        CHECK(get(groups[1], "Status") == "5.1.3");
        CHECK(get(groups[2], "Final-Recipient") == "rfc822; user0@example.net");
        CHECK(get(groups[2], "Status") == "5.1.1");
        CHECK_FALSE(contains(dsn.parts[0].body, "user1@"));
    }

    TEST_CASE("recipients that asked for no failure notice are left out") {
        Envelope e = bounced({"550 5.1.1 a", "550 5.1.1 b", "550 5.1.1 c", "550 5.1.1 d"});
        e.recipients[0].notify = smtp::notify_never;
        e.recipients[1].notify = smtp::notify_success;
        e.recipients[2].notify = smtp::notify_failure;
        const Dsn dsn = read_dsn(make_dsn(e, all(e), small_original, context()));
        REQUIRE(dsn.parts.size() == 3);
        const std::vector<Fields> groups = report_groups(dsn.parts[1].body);
        REQUIRE(groups.size() == 3);
        CHECK(get(groups[1], "Final-Recipient") == "rfc822; user2@example.net");
        CHECK(get(groups[2], "Final-Recipient") == "rfc822; user3@example.net");
    }

    TEST_CASE("ENVID and ORCPT come back as Original-Envelope-Id and Original-Recipient") {
        Envelope e = bounced({"550 5.1.1 No such user", "550 5.1.1 No such user"});
        e.envid = "QQ314159";
        e.recipients[0].orcpt_type = "rfc822";
        e.recipients[0].orcpt = "Bob@Example.NET";
        e.recipients[1].orcpt_type = "x-odd";
        e.recipients[1].orcpt = "a\r\nb";
        const Dsn dsn = read_dsn(make_dsn(e, all(e), small_original, context()));
        REQUIRE(dsn.parts.size() == 3);
        const std::vector<Fields> groups = report_groups(dsn.parts[1].body);
        REQUIRE(groups.size() == 3);
        CHECK(get(groups[0], "Original-Envelope-Id") == "QQ314159");
        CHECK(get(groups[1], "Original-Recipient") == "rfc822; Bob@Example.NET");
        CHECK(get(groups[2], "Original-Recipient") == "x-odd; a  b");
    }

    TEST_CASE("a hostile reply with CR, LF and NUL cannot add a header line or a part") {
        const std::string hostile = std::string("550 5.1.1 x\r\nBcc: evil@example.com\r\n\r\n--") +
                                    "=_smtpc_0660d83c08fd2d00005d51000215_1732266000--\r\nX-Evil: 1" +
                                    std::string(1, '\0') + "\nX-Evil2: 2\rX-Evil3: 3\x1b[2J\x7f" +
                                    std::string(5000, 'A');
        Envelope e = bounced({hostile});
        e.envid = "id\r\nX-Evil-Envid: 1";
        e.client = "helo\r\nX-Evil-Client: 1";
        const std::string text = make_dsn(e, all(e), small_original, context());
        const Dsn dsn = read_dsn(text);  // CRLF only, no line over 998, no NUL
        CHECK(text.find('\x1b') == std::string::npos);
        CHECK(text.find('\x7f') == std::string::npos);
        REQUIRE(dsn.parts.size() == 3);
        CHECK_FALSE(get(dsn.header, "Bcc"));
        for (const Part& p : dsn.parts) {
            CHECK_FALSE(get(p.header, "Bcc"));
            CHECK_FALSE(get(p.header, "X-Evil"));
        }
        const std::vector<Fields> groups = report_groups(dsn.parts[1].body);
        REQUIRE(groups.size() == 2);
        for (const Fields& g : groups) {
            CHECK_FALSE(get(g, "Bcc"));
            CHECK_FALSE(get(g, "X-Evil"));
            CHECK_FALSE(get(g, "X-Evil2"));
            CHECK_FALSE(get(g, "X-Evil3"));
            CHECK_FALSE(get(g, "X-Evil-Envid"));
            CHECK_FALSE(get(g, "X-Evil-Client"));
        }
        CHECK(groups[0].size() == 4);  // Original-Envelope-Id, Reporting-MTA, Received-From-MTA, Arrival-Date
        CHECK(groups[1].size() == 5);  // Final-Recipient, Action, Status, Diagnostic-Code, Last-Attempt-Date
        CHECK(get(groups[1], "Status") == "5.1.1");
        const std::string diagnostic = *get(groups[1], "Diagnostic-Code");
        CHECK(diagnostic.substr(0, 32) == "smtp; 550 5.1.1 x  Bcc: evil@exa");
        CHECK(diagnostic.size() < 998);
        // The text part: the hostile reply is one line there too.
        CHECK(count(dsn.parts[0].header, "Content-Type") == 1);
        for (const std::string& l : lines_of(dsn.parts[0].body)) CHECK_FALSE(l.rfind("Bcc:", 0) == 0);
    }

    TEST_CASE("RET=FULL returns a small original whole as message/rfc822") {
        Envelope e = bounced({"550 5.1.1 No such user"});
        e.ret = smtp::Ret::full;
        const Dsn dsn = read_dsn(make_dsn(e, all(e), small_original, context()));
        REQUIRE(dsn.parts.size() == 3);
        CHECK(get(dsn.parts[2].header, "Content-Type") == "message/rfc822");
        CHECK(dsn.parts[2].body == small_original);
        CHECK(contains(dsn.parts[0].body, "It is attached below."));
    }

    TEST_CASE("RET=FULL returns the original with bare LF endings as CRLF") {
        Envelope e = bounced({"550 5.1.1 No such user"});
        e.ret = smtp::Ret::full;
        const std::string text = make_dsn(e, all(e), "Subject: lf\n\nline 1\nline 2", context());
        const Dsn dsn = read_dsn(text);
        REQUIRE(dsn.parts.size() == 3);
        CHECK(dsn.parts[2].body == "Subject: lf\r\n\r\nline 1\r\nline 2\r\n");
    }

    TEST_CASE("RET=FULL with a huge original returns its header and says so") {
        Envelope e = bounced({"550 5.1.1 No such user"});
        e.ret = smtp::Ret::full;
        std::string original = "Subject: big\r\nX-Big: yes\r\n\r\n";
        while (original.size() <= 65536) original += std::string(70, 'x') + "\r\n";
        const std::string text = make_dsn(e, all(e), original, context());
        const Dsn dsn = read_dsn(text);
        REQUIRE(dsn.parts.size() == 3);
        CHECK(get(dsn.parts[2].header, "Content-Type") == "text/rfc822-headers");
        CHECK(dsn.parts[2].body == "Subject: big\r\nX-Big: yes\r\n");
        CHECK(contains(dsn.parts[0].body, "larger than 65536 bytes, so only its header"));
        CHECK(text.size() < 4096);
    }

    TEST_CASE("RET=FULL returns 64 KiB - 1 and 64 KiB whole, 64 KiB + 1 as its header") {
        Envelope e = bounced({"550 5.1.1 No such user"});
        e.ret = smtp::Ret::full;
        for (std::size_t size : {65535u, 65536u, 65537u}) {
            CAPTURE(size);
            // A header, then lines of 100 octets, the last one shorter to hit `size`.
            std::string original = "Subject: edge\r\n\r\n";
            while (original.size() + 100 <= size) original += std::string(98, 'y') + "\r\n";
            original += std::string(size - original.size(), 'z');
            REQUIRE(original.size() == size);
            const Dsn dsn = read_dsn(make_dsn(e, all(e), original, context()));
            REQUIRE(dsn.parts.size() == 3);
            if (size <= 65536) {
                CHECK(get(dsn.parts[2].header, "Content-Type") == "message/rfc822");
                CHECK(dsn.parts[2].body == original + "\r\n");  // the last line gets its CRLF
            } else {
                CHECK(get(dsn.parts[2].header, "Content-Type") == "text/rfc822-headers");
                CHECK(dsn.parts[2].body == "Subject: edge\r\n");
            }
        }
    }

    TEST_CASE("a huge header is cut at a line boundary and the text says so") {
        const Envelope e = bounced({"550 5.1.1 No such user"});
        std::string original;
        while (original.size() <= 200000) original += "X-Filler: " + std::string(60, 'f') + "\r\n";
        original += "\r\nbody\r\n";
        const std::string text = make_dsn(e, all(e), original, context());
        const Dsn dsn = read_dsn(text);
        REQUIRE(dsn.parts.size() == 3);
        CHECK(dsn.parts[2].body.size() <= 65536);
        CHECK(dsn.parts[2].body.size() > 60000);
        for (const std::string& l : lines_of(dsn.parts[2].body))
            CHECK(l == "X-Filler: " + std::string(60, 'f'));
        CHECK(contains(dsn.parts[0].body, "cut to its first 65536 bytes"));
    }

    TEST_CASE("an original line over 998 octets is broken, a header line as a folded continuation") {
        Envelope e = bounced({"550 5.1.1 No such user"});
        const std::string long_value(3000, 'v');
        const std::string original =
            "Subject: " + long_value + "\r\nTo: x@example.net\r\n\r\n" + long_value + "\r\n";
        const Dsn headers = read_dsn(make_dsn(e, all(e), original, context()));
        REQUIRE(headers.parts.size() == 3);
        const std::vector<std::string> lines = lines_of(headers.parts[2].body);
        REQUIRE(lines.size() == 5);  // 3009 octets: 998, then " " + 997 twice, then " " + 17; then To:
        CHECK(lines[1][0] == ' ');
        CHECK(lines[3] == " " + std::string(17, 'v'));
        CHECK(lines[4] == "To: x@example.net");

        e.ret = smtp::Ret::full;
        const Dsn full = read_dsn(make_dsn(e, all(e), original, context()));
        REQUIRE(full.parts.size() == 3);
        CHECK(get(full.parts[2].header, "Content-Type") == "message/rfc822");
    }

    TEST_CASE("an original holding the boundary does not end its part") {
        Envelope e = bounced({"550 5.1.1 No such user"});
        e.ret = smtp::Ret::full;
        const std::string first = make_dsn(e, all(e), small_original, context());
        const std::string boundary = read_dsn(first).boundary;
        const std::string original = std::string(small_original) + "--" + boundary + "\r\n" +
                                     "Content-Type: x/y\r\n" + "\r\n--" + boundary + "--\r\n";
        const Dsn dsn = read_dsn(make_dsn(e, all(e), original, context()));
        CHECK(dsn.boundary != boundary);
        REQUIRE(dsn.parts.size() == 3);
        CHECK(dsn.parts[2].body == original);
    }

    TEST_CASE("no original means no third part") {
        const Envelope e = bounced({"550 5.1.1 No such user"});
        const Dsn dsn = read_dsn(make_dsn(e, all(e), "", context()));
        CHECK(dsn.parts.size() == 2);
    }

    TEST_CASE("a UTF-8 recipient is written in the 7bit form of RFC 6533") {
        Envelope e = bounced({"550 5.1.1 No such user"},
                             "al\xc3\xaf"
                             "ce@example.org");
        e.recipients[0] = make_recipient("b\xc3\xb6+b=\\@example.net");
        e.recipients[0].state = RecipientState::bounced;
        e.recipients[0].last_error = "550 5.1.1 No such user \xc3\xb6";
        const std::string text = make_dsn(e, all(e), small_original, context());
        const Dsn dsn = read_dsn(text);
        REQUIRE(dsn.parts.size() == 3);
        const std::vector<Fields> groups = report_groups(dsn.parts[1].body);
        REQUIRE(groups.size() == 2);
        CHECK(get(groups[1], "Final-Recipient") == "utf-8; b\\x{F6}\\x{2B}b\\x{3D}\\x{5C}@example.net");
        CHECK(get(groups[1], "Diagnostic-Code") == "smtp; 550 5.1.1 No such user ??");
        for (char c : dsn.parts[1].body) CHECK(static_cast<unsigned char>(c) < 0x80);
        // The human part and the header may carry UTF-8, and say so.
        CHECK(get(dsn.header, "To") ==
              "<al\xc3\xaf"
              "ce@example.org>");
        CHECK(get(dsn.header, "Content-Transfer-Encoding") == "8bit");
        CHECK(get(dsn.parts[0].header, "Content-Type") == "text/plain; charset=utf-8");
        CHECK(get(dsn.parts[0].header, "Content-Transfer-Encoding") == "8bit");
    }

    TEST_CASE("dates are RFC 5322 in UTC") {
        struct Case {
            std::int64_t t;
            const char* date;
        };
        const Case cases[] = {
            {0, "Thu, 01 Jan 1970 00:00:00 +0000"},
            {-1, "Wed, 31 Dec 1969 23:59:59 +0000"},
            {951782400, "Tue, 29 Feb 2000 00:00:00 +0000"},
            {4102444799, "Thu, 31 Dec 2099 23:59:59 +0000"},
            {253402300799, "Fri, 31 Dec 9999 23:59:59 +0000"},
        };
        for (const Case& c : cases) {
            CAPTURE(c.t);
            const Envelope e = bounced({"550 5.1.1 x"});
            const Dsn dsn = read_dsn(make_dsn(e, all(e), "", BounceContext{"mx.example", c.t, seed}));
            CHECK(get(dsn.header, "Date") == c.date);
        }
    }

    TEST_CASE("an odd host name or seed cannot break the header") {
        const Envelope e = bounced({"550 5.1.1 x"});
        const Dsn dsn =
            read_dsn(make_dsn(e, all(e), small_original, BounceContext{"mx\r\nX-Evil: 1", now, "\"<>\r\n"}));
        CHECK_FALSE(get(dsn.header, "X-Evil"));
        CHECK(get(dsn.header, "From") == "MAILER-DAEMON@mx--X-Evil--1 (Mail Delivery System)");
        CHECK(get(dsn.header, "Message-ID") == "<dsn.1732266000@mx--X-Evil--1>");
        CHECK(dsn.parts.size() == 3);
    }

    // ------------------------------------------------------------ send_bounce

    TEST_CASE("a bounce for a local sender goes into its Maildir with Return-Path: <>") {
        Stores s;
        const Envelope e = bounced({"550 5.1.1 No such user"}, "Alice@Example.ORG");
        const std::string dsn = make_dsn(e, all(e), small_original, context());
        std::string where;
        REQUIRE(!send_bounce(e, dsn, {"other.example", "example.org"}, s.root, s.queue, now, where));

        const std::vector<std::string> files = s.files();
        REQUIRE(files.size() == 1);
        CHECK(files[0].rfind("mail/alice/new/", 0) == 0);
        CHECK(where == s.dir.path() + "/" + files[0]);
        CHECK(read_file(where) == "Return-Path: <>\r\n" + dsn);
    }

    TEST_CASE("a bounce for a remote sender is queued from <> to the sender") {
        Stores s;
        const Envelope e = bounced({"550 5.1.1 No such user"}, "alice@example.org");
        const std::string dsn = make_dsn(e, all(e), small_original, context());
        std::string where;
        REQUIRE(!send_bounce(e, dsn, {"example.net"}, s.root, s.queue, now, where));

        std::vector<std::string> ids;
        REQUIRE(!s.queue.list(ids));
        REQUIRE(ids.size() == 1);
        CHECK(where == ids[0]);
        Envelope q;
        REQUIRE(!s.queue.load(ids[0], q));
        CHECK(q.sender.empty());
        REQUIRE(q.recipients.size() == 1);
        CHECK(q.recipients[0].address == "alice@example.org");
        CHECK(q.recipients[0].domain == "example.org");
        CHECK(q.recipients[0].state == RecipientState::pending);
        CHECK(q.arrival == now);
        CHECK(q.next_attempt == now);
        CHECK(q.attempts == 0);
        CHECK_FALSE(q.smtputf8);
        CHECK(q.body == smtp::Body::unspecified);
        CHECK(q.content_size == dsn.size());
        smtp::Fd content;
        REQUIRE(!s.queue.open_content(ids[0], content));
        CHECK(read_fd(content.get()) == dsn);
        // Nothing in the mail root.
        for (const std::string& f : s.files()) CHECK(f.rfind("queue/", 0) == 0);
    }

    TEST_CASE("a bounce for a UTF-8 sender is queued with SMTPUTF8 and 8BITMIME") {
        Stores s;
        const Envelope e = bounced({"550 5.1.1 No such user"},
                                   "al\xc3\xaf"
                                   "ce@example.org");
        const std::string dsn = make_dsn(e, all(e), small_original, context());
        std::string where;
        REQUIRE(!send_bounce(e, dsn, {}, s.root, s.queue, now, where));
        Envelope q;
        REQUIRE(!s.queue.load(where, q));
        CHECK(q.smtputf8);
        CHECK(q.body == smtp::Body::eight_bit_mime);
    }

    TEST_CASE("the null sender gets no bounce: EINVAL and nothing written") {
        Stores s;
        const Envelope e = bounced({"550 5.1.1 No such user"}, "");
        std::string where = "untouched";
        const std::error_code ec = send_bounce(e, "x\r\n", {"example.org"}, s.root, s.queue, now, where);
        CHECK(ec == std::errc::invalid_argument);
        CHECK(where == "untouched");
        CHECK(s.files().empty());
    }

    TEST_CASE("a local sender with an unsafe mailbox name gets EINVAL and nothing written") {
        Stores s;
        for (const char* sender : {".hidden@example.org", "a/b@example.org", "..@example.org"}) {
            CAPTURE(sender);
            const Envelope e = bounced({"550 5.1.1 No such user"}, sender);
            std::string where;
            CHECK(send_bounce(e, "x\r\n", {"example.org"}, s.root, s.queue, now, where) ==
                  std::errc::invalid_argument);
            CHECK(s.files().empty());
        }
    }

    TEST_CASE("a quoted local part with @ is split at the last @") {
        Stores s;
        const Envelope e = bounced({"550 5.1.1 No such user"}, "\"a@b\"@example.org");
        std::string where;
        REQUIRE(!send_bounce(e, "x\r\n", {"example.org"}, s.root, s.queue, now, where));
        const std::vector<std::string> files = s.files();
        REQUIRE(files.size() == 1);
        CHECK(files[0].rfind("mail/a@b/new/", 0) == 0);
    }
}
