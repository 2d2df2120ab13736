// Tests of apps/smtpd/transaction.hpp: a mail transaction stored into real Maildirs
// and a real queue, in a mkdtemp directory (under $TMPDIR, else /tmp) removed at the
// end. MAIL and RCPT commands come from real command lines through parse_command.
//
// Failures: RLIMIT_FSIZE in a forked child (with SIGXFSZ ignored) gives a real EFBIG
// even for root; the child reports through its exit status only (doctest's state
// must not be used from two processes), and the parent inspects the directories.
// A Maildir commit failure after the queue commit is made by removing the mailbox's
// new/ while its delivery is open: renameat(2) into a deleted directory is ENOENT,
// also for root.
#include "../common/temp_dir.hpp"
#include "transaction.hpp"

#include <smtp/server_session.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace fs = std::filesystem;
using smtp::smtpd::ClientInfo;
using smtp::smtpd::Transaction;

namespace {

class TempDir : public smtp::test::TempDir {
public:
    TempDir() : smtp::test::TempDir("smtpd-transaction") {}
};

// The names in a directory, sorted; empty if it does not exist.
std::vector<std::string> entries(const std::string& dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

// Regular files anywhere under `dir`.
std::size_t count_files(const std::string& dir) {
    std::size_t n = 0;
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
        if (it->is_regular_file(ec)) ++n;
    return n;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A mail root and a queue in a temporary directory, and the host name of this
// server. Members are declared in the order the Transaction needs them to outlive it.
struct Store {
    TempDir dir;
    std::string hostname = "mx.example.org";
    smtp::MailRoot root;
    smtp::queue::Queue queue{dir / "queue"};

    Store() {
        REQUIRE(::mkdir((dir / "mail").c_str(), 0700) == 0);
        std::error_code ec;
        root = smtp::MailRoot::open(dir / "mail", ec, hostname);
        REQUIRE_FALSE(ec);
        REQUIRE_FALSE(queue.prepare());
    }

    std::string mailbox_dir(std::string_view mailbox, std::string_view sub) const {
        return dir / ("mail/" + std::string(mailbox) + "/" + std::string(sub));
    }
    // The one message in <mailbox>/new/, with nothing left in tmp/.
    std::string delivered(std::string_view mailbox) const {
        const auto files = entries(mailbox_dir(mailbox, "new"));
        REQUIRE(files.size() == 1);
        CHECK(entries(mailbox_dir(mailbox, "tmp")).empty());
        return read_file(mailbox_dir(mailbox, "new/" + files.front()));
    }
    std::vector<std::string> queued() const {
        std::vector<std::string> ids;
        REQUIRE_FALSE(queue.list(ids));
        return ids;
    }
    smtp::queue::Envelope envelope(std::string_view id) const {
        smtp::queue::Envelope e;
        std::string why;
        INFO(why);
        REQUIRE_FALSE(queue.load(id, e, &why));
        return e;
    }
    std::string content(std::string_view id) const {
        smtp::Fd fd;
        REQUIRE_FALSE(queue.open_content(id, fd));
        std::string out;
        char buf[4096];
        for (;;) {
            const ssize_t n = ::read(fd.get(), buf, sizeof buf);
            REQUIRE(n >= 0);
            if (n == 0) break;
            out.append(buf, static_cast<std::size_t>(n));
        }
        return out;
    }
    // Nothing of any message anywhere: no Maildir file, no queue file of any kind.
    void check_empty() const {
        CHECK(count_files(dir / "mail") == 0);
        CHECK(count_files(dir / "queue") == 0);
    }
};

// One parsed command; the Command's views point into line_, so both live here.
class Parsed {
public:
    explicit Parsed(std::string line, bool smtputf8 = false) : line_(std::move(line)) {
        smtp::ParseOptions options;
        options.smtputf8 = smtputf8;
        INFO("line: ", line_);
        REQUIRE(smtp::parse_command(line_, command_, options).ok());
    }
    Parsed(const Parsed&) = delete;
    Parsed& operator=(const Parsed&) = delete;
    const smtp::Command& operator*() const { return command_; }

private:
    std::string line_;
    smtp::Command command_;
};

const ClientInfo client{"client.example", "rdns.example", "192.0.2.1", "ESMTP", ""};
constexpr std::time_t now = 1700000000;

// The Received: line the transaction must write, computed from its parts.
std::string expected_received(std::string_view id, std::string_view recipient, std::time_t when = now) {
    struct tm local {};
    REQUIRE(::localtime_r(&when, &local) != nullptr);
    smtp::ReceivedFields f{};
    f.helo = client.helo;
    f.reverse_name = client.reverse_name;
    f.address = client.address;
    f.by = "mx.example.org";
    f.protocol = client.protocol;
    f.id = id;
    f.recipient = recipient;
    f.year = local.tm_year + 1900;
    f.month = local.tm_mon + 1;
    f.day = local.tm_mday;
    f.hour = local.tm_hour;
    f.minute = local.tm_min;
    f.second = local.tm_sec;
    f.weekday = local.tm_wday;
    f.utc_offset_minutes = static_cast<int>(local.tm_gmtoff / 60);
    return smtp::received_header(f);
}

const std::string data =
    "From: sender@remote.example\r\n"
    "To: alice@example.org\r\n"
    "Subject: test\r\n"
    "\r\n"
    "Hello.\r\n"
    ".leading dot already unstuffed\r\n";

// Writes `text` in pieces of 1, 2, 3, ... bytes, as the session would hand it over.
void write_in_pieces(Transaction& t, std::string_view text) {
    for (std::size_t n = 1; !text.empty(); ++n) {
        const std::size_t k = std::min(n, text.size());
        t.write(text.substr(0, k));
        text.remove_prefix(k);
    }
}

// Runs `body` in a forked child; returns its exit status, or 128 + signal.
template <typename Body>
int run_in_child(Body body) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) ::_exit(body());
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

// In a child: RLIMIT_FSIZE down to `bytes`, SIGXFSZ ignored, so write(2) fails with
// EFBIG instead of killing the process.
bool limit_file_size(rlim_t bytes) {
    struct rlimit limit {};
    limit.rlim_cur = bytes;
    limit.rlim_max = bytes;
    return std::signal(SIGXFSZ, SIG_IGN) != SIG_ERR && ::setrlimit(RLIMIT_FSIZE, &limit) == 0;
}

}  // namespace

TEST_SUITE("transaction") {
    TEST_CASE("a message for local and remote recipients lands byte-exact in each Maildir and in the queue") {
        Store s;
        Transaction t(s.root, s.queue, s.hostname);
        const Parsed mail("MAIL FROM:<sender@remote.example>");
        const Parsed carol("RCPT TO:<carol@remote.example>");
        t.begin(*mail, client);
        CHECK(t.active());
        CHECK(t.id().empty());
        t.add_local("alice", "alice@example.org");
        t.add_remote(*carol);
        t.add_local("bob", "Bob@example.org");
        CHECK(t.recipient_count() == 3);
        CHECK(t.local_count() == 2);
        CHECK(t.remote_count() == 1);
        CHECK(t.sender() == "sender@remote.example");

        REQUIRE_FALSE(t.open(now));
        REQUIRE(smtp::queue::is_valid_id(t.id()));
        write_in_pieces(t, data);
        CHECK(t.size() == data.size());
        REQUIRE_FALSE(t.commit());
        CHECK_FALSE(t.active());

        // Three recipients: no "for" clause.
        const std::string received = expected_received(t.id(), {});
        CHECK(received.find("for <") == std::string::npos);
        CHECK(received.find(t.id()) != std::string::npos);
        CHECK(received.rfind("Received: from client.example (rdns.example [192.0.2.1])", 0) == 0);
        const std::string local_copy = "Return-Path: <sender@remote.example>\r\n" + received + data;
        CHECK(s.delivered("alice") == local_copy);
        CHECK(s.delivered("bob") == local_copy);

        const auto ids = s.queued();
        REQUIRE(ids.size() == 1);
        CHECK(ids.front() == t.id());
        CHECK(t.short_id() == smtp::queue::short_id(t.id()));
        CHECK(s.content(t.id()) == received + data);
        const auto e = s.envelope(t.id());
        CHECK(e.id == t.id());
        CHECK(e.sender == "sender@remote.example");
        CHECK(e.arrival == now);
        CHECK(e.next_attempt == now);
        CHECK(e.content_size == received.size() + data.size());
        CHECK(e.client == std::optional<std::string>("client.example (rdns.example [192.0.2.1])"));
        REQUIRE(e.recipients.size() == 1);
        CHECK(e.recipients[0].address == "carol@remote.example");
        CHECK(e.recipients[0].domain == "remote.example");
        CHECK(e.recipients[0].state == smtp::queue::RecipientState::pending);
        CHECK(e.recipients[0].notify == smtp::notify_none);
        CHECK(e.recipients[0].orcpt_type.empty());
        // The queue says it is due at once.
        std::vector<std::string> due;
        REQUIRE_FALSE(s.queue.list_due(now, due));
        CHECK(due == ids);

        // Still readable for the log line after the end.
        CHECK(t.sender() == "sender@remote.example");
        CHECK(t.recipient_count() == 3);
        CHECK(t.size() == data.size());
        CHECK(smtp::queue::is_valid_id(t.id()));
    }

    TEST_CASE("a single recipient is named in Received with for") {
        Store s;
        const Parsed mail("MAIL FROM:<sender@remote.example>");
        {
            Transaction t(s.root, s.queue, s.hostname);
            t.begin(*mail, client);
            t.add_local("alice", "Alice@example.org");
            REQUIRE_FALSE(t.open(now));
            t.write(data);
            REQUIRE_FALSE(t.commit());
            const std::string received = expected_received(t.id(), "Alice@example.org");
            CHECK(received.find("for <Alice@example.org>;") != std::string::npos);
            CHECK(s.delivered("alice") == "Return-Path: <sender@remote.example>\r\n" + received + data);
            // Local only: an id of the queue's form, nothing queued.
            CHECK(smtp::queue::is_valid_id(t.id()));
            CHECK(s.queued().empty());
            CHECK(count_files(s.dir / "queue") == 0);
        }
        {
            Transaction t(s.root, s.queue, s.hostname);
            const Parsed carol("RCPT TO:<carol@remote.example>");
            t.begin(*mail, client);
            t.add_remote(*carol);
            REQUIRE_FALSE(t.open(now));
            t.write(data);
            REQUIRE_FALSE(t.commit());
            CHECK(s.content(t.id()) == expected_received(t.id(), "carol@remote.example") + data);
        }
    }

    TEST_CASE("a message received over TLS gets the TLS comment between the From and By clauses") {
        Store s;
        const Parsed mail("MAIL FROM:<sender@remote.example>");
        const Parsed carol("RCPT TO:<carol@remote.example>");
        const std::string summary = "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)";
        const ClientInfo over_tls{"client.example", "rdns.example", "192.0.2.1", "ESMTPS", summary};
        Transaction t(s.root, s.queue, s.hostname);
        t.begin(*mail, over_tls);
        t.add_local("alice", "alice@example.org");
        t.add_remote(*carol);
        REQUIRE_FALSE(t.open(now));
        t.write(data);
        REQUIRE_FALSE(t.commit());
        // What received_header() makes without TLS, the comment line inserted before "by".
        struct tm local {};
        REQUIRE(::localtime_r(&now, &local) != nullptr);
        smtp::ReceivedFields f{};
        f.helo = "client.example";
        f.reverse_name = "rdns.example";
        f.address = "192.0.2.1";
        f.by = "mx.example.org";
        f.protocol = "ESMTPS";
        f.id = t.id();
        f.year = local.tm_year + 1900;
        f.month = local.tm_mon + 1;
        f.day = local.tm_mday;
        f.hour = local.tm_hour;
        f.minute = local.tm_min;
        f.second = local.tm_sec;
        f.weekday = local.tm_wday;
        f.utc_offset_minutes = static_cast<int>(local.tm_gmtoff / 60);
        std::string received = smtp::received_header(f);
        const std::size_t by = received.find("\r\n\tby mx.example.org (libsmtp) with ESMTPS id ");
        REQUIRE(by != std::string::npos);
        received.insert(by, "\r\n\t(using " + summary + ")");
        CHECK(received.rfind("Received: from client.example (rdns.example [192.0.2.1])\r\n\t(using TLSv1.3 ",
                             0) == 0);
        CHECK(s.delivered("alice") == "Return-Path: <sender@remote.example>\r\n" + received + data);
        CHECK(s.content(t.id()) == received + data);
    }

    TEST_CASE("the TLS comment cannot end the header or the comment early") {
        Store s;
        const Parsed mail("MAIL FROM:<sender@remote.example>");
        const ClientInfo odd{"client.example", "", "192.0.2.1", "ESMTPS", "TLSv1.3\r\nX-Evil: 1) (a (b"};
        Transaction t(s.root, s.queue, s.hostname);
        t.begin(*mail, odd);
        t.add_local("alice", "alice@example.org");
        REQUIRE_FALSE(t.open(now));
        REQUIRE_FALSE(t.commit());
        const std::string message = s.delivered("alice");
        // Control characters replaced, the stray ")" dropped, open ones closed.
        CHECK(message.find("\r\n\t(using TLSv1.3__X-Evil: 1 (a (b)))\r\n\tby mx.example.org ") !=
              std::string::npos);
        CHECK(message.find("\r\nX-Evil") == std::string::npos);
    }

    TEST_CASE("the Received date is local time with its UTC offset") {
        // A POSIX TZ rule needs no tzdata: "XST-5:30" is 5 h 30 min east of UTC.
        const char* old = std::getenv("TZ");
        const std::string saved = old != nullptr ? old : "";
        REQUIRE(::setenv("TZ", "XST-5:30", 1) == 0);
        ::tzset();
        std::string file;
        {
            Store s;
            Transaction t(s.root, s.queue, s.hostname);
            const Parsed mail("MAIL FROM:<>");
            t.begin(*mail, client);
            t.add_local("alice", "alice@example.org");
            if (!t.open(0)) {
                t.write(data);
                if (!t.commit()) file = s.delivered("alice");
            }
        }
        if (old != nullptr)
            ::setenv("TZ", saved.c_str(), 1);
        else
            ::unsetenv("TZ");
        ::tzset();
        CHECK(file.find("; Thu, 1 Jan 1970 05:30:00 +0530\r\n") != std::string::npos);
        // The null reverse-path is written as <> (RFC 5321 §4.4).
        CHECK(file.rfind("Return-Path: <>\r\nReceived: ", 0) == 0);
    }

    TEST_CASE("a mailbox named twice gets one copy") {
        Store s;
        Transaction t(s.root, s.queue, s.hostname);
        const Parsed mail("MAIL FROM:<sender@remote.example>");
        t.begin(*mail, client);
        t.add_local("alice", "alice@example.org");
        t.add_local("alice", "Alice@EXAMPLE.org");
        CHECK(t.local_count() == 1);
        REQUIRE_FALSE(t.open(now));
        t.write(data);
        REQUIRE_FALSE(t.commit());
        // Two RCPTs: no "for" clause, even though they reach one mailbox.
        CHECK(s.delivered("alice") ==
              "Return-Path: <sender@remote.example>\r\n" + expected_received(t.id(), {}) + data);
    }

    TEST_CASE("a remote address named twice is queued once, its domain compared in any case") {
        Store s;
        Transaction t(s.root, s.queue, s.hostname);
        const Parsed mail("MAIL FROM:<sender@remote.example>");
        const Parsed a("RCPT TO:<carol@remote.example>");
        const Parsed b("RCPT TO:<carol@REMOTE.Example>");
        const Parsed c("RCPT TO:<Carol@remote.example>");  // another local part: another mailbox
        const Parsed d("RCPT TO:<dave@other.example>");
        t.begin(*mail, client);
        t.add_remote(*a);
        t.add_remote(*b);
        t.add_remote(*c);
        t.add_remote(*d);
        CHECK(t.remote_count() == 3);
        REQUIRE_FALSE(t.open(now));
        t.write(data);
        REQUIRE_FALSE(t.commit());
        const auto e = s.envelope(t.id());
        REQUIRE(e.recipients.size() == 3);
        CHECK(e.recipients[0].address == "carol@remote.example");
        CHECK(e.recipients[1].address == "Carol@remote.example");
        CHECK(e.recipients[2].address == "dave@other.example");
        CHECK(e.recipients[2].domain == "other.example");
    }

    TEST_CASE("the MAIL and RCPT parameters are stored in the envelope, xtext decoded") {
        Store s;
        Transaction t(s.root, s.queue, s.hostname);
        const Parsed mail(
            "MAIL FROM:<sender@remote.example> SIZE=1234 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=abc+2Bdef",
            true);
        const Parsed r1(
            "RCPT TO:<carol@remote.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;carol+40x+2By@remote.example",
            true);
        const Parsed r2("RCPT TO:<dave@remote.example> NOTIFY=NEVER", true);
        const Parsed r3("RCPT TO:<erin@remote.example> NOTIFY=DELAY ORCPT=rfc822;érin@remote.example", true);
        t.begin(*mail, client);
        t.add_remote(*r1);
        t.add_remote(*r2);
        t.add_remote(*r3);
        REQUIRE_FALSE(t.open(now));
        t.write(data);
        REQUIRE_FALSE(t.commit());
        const auto e = s.envelope(t.id());
        CHECK(e.size == std::optional<std::uint64_t>(1234));
        CHECK(e.body == smtp::Body::eight_bit_mime);
        CHECK(e.smtputf8);
        CHECK(e.ret == smtp::Ret::hdrs);
        CHECK(e.envid == std::optional<std::string>("abc+def"));
        REQUIRE(e.recipients.size() == 3);
        CHECK(e.recipients[0].notify == (smtp::notify_success | smtp::notify_failure));
        CHECK(e.recipients[0].orcpt_type == "rfc822");
        CHECK(e.recipients[0].orcpt == "carol@x+y@remote.example");
        CHECK(e.recipients[1].notify == smtp::notify_never);
        CHECK(e.recipients[1].orcpt_type.empty());
        CHECK(e.recipients[1].orcpt.empty());
        // UTF-8 in ORCPT (RFC 6533 §3) is kept as it is.
        CHECK(e.recipients[2].notify == smtp::notify_delay);
        CHECK(e.recipients[2].orcpt == "érin@remote.example");
    }

    TEST_CASE("MAIL without parameters leaves them unspecified in the envelope") {
        Store s;
        Transaction t(s.root, s.queue, s.hostname);
        const Parsed mail("MAIL FROM:<>");
        const Parsed rcpt("RCPT TO:<carol@remote.example>");
        t.begin(*mail, {"client.example", "", "::1", "SMTP", ""});
        t.add_remote(*rcpt);
        REQUIRE_FALSE(t.open(now));
        REQUIRE_FALSE(t.commit());  // an empty message is still a message
        const auto e = s.envelope(t.id());
        CHECK(e.sender.empty());
        CHECK_FALSE(e.size.has_value());
        CHECK(e.body == smtp::Body::unspecified);
        CHECK_FALSE(e.smtputf8);
        CHECK(e.ret == smtp::Ret::unspecified);
        CHECK_FALSE(e.envid.has_value());
        CHECK(e.client == std::optional<std::string>("client.example ([::1])"));
        CHECK(e.content_size > 0);  // the Received: line
        CHECK(s.content(t.id()).rfind("Received: from client.example ([IPv6:::1])", 0) == 0);
    }

    TEST_CASE("abort leaves nothing in tmp, new or the queue") {
        Store s;
        const Parsed mail("MAIL FROM:<sender@remote.example>");
        const Parsed carol("RCPT TO:<carol@remote.example>");
        SUBCASE("abort() after writing") {
            Transaction t(s.root, s.queue, s.hostname);
            t.begin(*mail, client);
            t.add_local("alice", "alice@example.org");
            t.add_remote(*carol);
            REQUIRE_FALSE(t.open(now));
            t.write(data);
            CHECK(count_files(s.dir / "mail") == 1);
            CHECK(count_files(s.dir / "queue") == 1);
            t.abort();
            CHECK_FALSE(t.active());
            t.abort();  // safe twice
        }
        SUBCASE("destruction without commit()") {
            Transaction t(s.root, s.queue, s.hostname);
            t.begin(*mail, client);
            t.add_local("alice", "alice@example.org");
            t.add_remote(*carol);
            REQUIRE_FALSE(t.open(now));
            t.write(data);
        }
        SUBCASE("begin() on an open transaction") {
            Transaction t(s.root, s.queue, s.hostname);
            t.begin(*mail, client);
            t.add_local("alice", "alice@example.org");
            t.add_remote(*carol);
            REQUIRE_FALSE(t.open(now));
            t.write(data);
            t.begin(*mail, client);
            CHECK(t.active());
            CHECK(t.recipient_count() == 0);
            CHECK(t.id().empty());
            CHECK(entries(s.mailbox_dir("alice", "tmp")).empty());
            CHECK(count_files(s.dir / "queue") == 0);
            // The new transaction works.
            t.add_local("bob", "bob@example.org");
            REQUIRE_FALSE(t.open(now));
            t.write(data);
            REQUIRE_FALSE(t.commit());
            CHECK(s.delivered("bob") == "Return-Path: <sender@remote.example>\r\n" +
                                            expected_received(t.id(), "bob@example.org") + data);
            REQUIRE(::unlink((s.mailbox_dir("bob", "new/") + entries(s.mailbox_dir("bob", "new")).front())
                                 .c_str()) == 0);
        }
        SUBCASE("abort() before open()") {
            Transaction t(s.root, s.queue, s.hostname);
            t.begin(*mail, client);
            t.add_local("alice", "alice@example.org");
            t.abort();
            CHECK(t.open(now) == std::errc::invalid_argument);
        }
        s.check_empty();
        CHECK(entries(s.mailbox_dir("alice", "new")).empty());
    }

    TEST_CASE("open() without recipients is EINVAL, and commit() returns it") {
        Store s;
        Transaction t(s.root, s.queue, s.hostname);
        const Parsed mail("MAIL FROM:<sender@remote.example>");
        CHECK(t.open(now) == std::errc::invalid_argument);  // not begun
        CHECK(t.commit() == std::errc::invalid_argument);
        t.begin(*mail, client);
        CHECK(t.open(now) == std::errc::invalid_argument);
        t.write(data);
        CHECK(t.commit() == std::errc::invalid_argument);
        CHECK_FALSE(t.active());
        s.check_empty();
    }

    TEST_CASE("recipients added after open() are ignored, and a second open() is EINVAL") {
        Store s;
        Transaction t(s.root, s.queue, s.hostname);
        const Parsed mail("MAIL FROM:<sender@remote.example>");
        const Parsed carol("RCPT TO:<carol@remote.example>");
        t.begin(*mail, client);
        t.add_local("alice", "alice@example.org");
        REQUIRE_FALSE(t.open(now));
        t.add_local("bob", "bob@example.org");
        t.add_remote(*carol);
        CHECK(t.recipient_count() == 1);
        CHECK(t.open(now) == std::errc::invalid_argument);
        t.write(data);
        REQUIRE_FALSE(t.commit());
        CHECK(entries(s.mailbox_dir("alice", "new")).size() == 1);
        CHECK(entries(s.dir / "mail") == std::vector<std::string>{"alice"});
        CHECK(s.queued().empty());
    }

    TEST_CASE("a large message in uneven chunks arrives whole in every copy") {
        Store s;
        Transaction t(s.root, s.queue, s.hostname);
        const Parsed mail("MAIL FROM:<sender@remote.example>");
        const Parsed carol("RCPT TO:<carol@remote.example>");
        std::string big;
        for (int i = 0; big.size() < 300 * 1024; ++i)
            big += "line " + std::to_string(i) + " of the message\r\n";
        t.begin(*mail, client);
        t.add_local("alice", "alice@example.org");
        t.add_remote(*carol);
        REQUIRE_FALSE(t.open(now));
        // Pieces below, at and above the queue writer's 64 KiB buffer.
        std::string_view rest = big;
        for (std::size_t n :
             {std::size_t{1}, std::size_t{1000}, std::size_t{65536}, std::size_t{70000}, std::size_t{7}}) {
            t.write(rest.substr(0, n));
            rest.remove_prefix(n);
        }
        t.write(rest);
        CHECK(t.size() == big.size());
        REQUIRE_FALSE(t.commit());
        const std::string received = expected_received(t.id(), {});
        CHECK(s.delivered("alice") == "Return-Path: <sender@remote.example>\r\n" + received + big);
        CHECK(s.content(t.id()) == received + big);
    }

    TEST_CASE("a write error (EFBIG) surfaces from commit() and nothing partial remains") {
        // The child's file size limit lies between the header and the end of the data,
        // so the first writes succeed and a later one fails for real.
        Store s;
        const Parsed mail("MAIL FROM:<sender@remote.example>");
        const Parsed carol("RCPT TO:<carol@remote.example>");
        const std::string chunk(4096, 'x');
        for (int variant = 0; variant < 3; ++variant) {
            CAPTURE(variant);
            const int status = run_in_child([&]() -> int {
                if (!limit_file_size(16 * 1024)) return 10;
                Transaction t(s.root, s.queue, s.hostname);
                t.begin(*mail, client);
                if (variant != 1) t.add_local("alice", "alice@example.org");
                if (variant != 0) t.add_remote(*carol);
                if (t.open(now)) return 11;
                for (int i = 0; i < 8; ++i) t.write(chunk);
                const std::error_code ec = t.commit();
                if (ec != std::errc::file_too_large) return 12;
                if (smtp::delivery_error_reply(ec).code != 452) return 13;
                if (t.active()) return 14;
                return 0;
            });
            CHECK(status == 0);
            s.check_empty();
        }
    }

    TEST_CASE("a Maildir failure after the queue commit takes the queued copy back") {
        Store s;
        Transaction t(s.root, s.queue, s.hostname);
        const Parsed mail("MAIL FROM:<sender@remote.example>");
        const Parsed carol("RCPT TO:<carol@remote.example>");
        t.begin(*mail, client);
        t.add_local("alice", "alice@example.org");
        t.add_local("bob", "bob@example.org");
        t.add_remote(*carol);
        REQUIRE_FALSE(t.open(now));
        t.write(data);
        // bob's delivery holds new/ open; once it is gone, the rename into it fails.
        REQUIRE(::rmdir(s.mailbox_dir("bob", "new").c_str()) == 0);
        const std::error_code ec = t.commit();
        CHECK(ec == std::errc::no_such_file_or_directory);
        CHECK(smtp::delivery_error_reply(ec).code == 451);
        CHECK_FALSE(t.active());
        s.check_empty();
        CHECK(s.queued().empty());
    }

    TEST_CASE("a mailbox that cannot be opened fails open() and removes the other copies") {
        Store s;
        // A symlink in place of bob's Maildir is refused (ELOOP), never followed.
        REQUIRE(::mkdir((s.dir / "elsewhere").c_str(), 0700) == 0);
        REQUIRE(::symlink((s.dir / "elsewhere").c_str(), (s.dir / "mail/bob").c_str()) == 0);
        Transaction t(s.root, s.queue, s.hostname);
        const Parsed mail("MAIL FROM:<sender@remote.example>");
        const Parsed carol("RCPT TO:<carol@remote.example>");
        t.begin(*mail, client);
        t.add_local("alice", "alice@example.org");
        t.add_local("bob", "bob@example.org");
        t.add_remote(*carol);
        const std::error_code ec = t.open(now);
        CHECK(ec == std::errc::too_many_symbolic_link_levels);
        CHECK(t.active());
        s.check_empty();
        // The error is kept: write() does nothing and commit() returns it.
        t.write(data);
        CHECK(t.size() == 0);
        CHECK(t.commit() == ec);
        CHECK_FALSE(t.active());
        s.check_empty();
        CHECK(count_files(s.dir / "elsewhere") == 0);
    }
}
