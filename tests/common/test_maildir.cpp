// Tests of common/maildir.hpp: Maildir delivery on a real file system.
// Each test works in its own mkdtemp directory (under $TMPDIR, else /tmp), removed at
// the end. Failures that cannot be provoked in-process (RLIMIT_FSIZE, a full tmpfs, a
// non-root user) run in a forked child that reports through its exit status only:
// doctest's state must not be used from two processes.
#include "../common/temp_dir.hpp"
#include <common/maildir.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using smtp::MaildirDelivery;
using smtp::MaildirWriter;
using smtp::MailRoot;

namespace {

// An exit status for "this environment cannot run the test": the parent skips.
constexpr int child_skip = 77;

class TempDir : public smtp::test::TempDir {
public:
    TempDir() : smtp::test::TempDir("maildir-test") {}
};

// The names in a directory, sorted; empty if it does not exist.
std::vector<std::string> entries(const std::string& dir) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

MailRoot open_root(const std::string& path, std::string_view host = "mx.example") {
    std::error_code ec;
    MailRoot root = MailRoot::open(path, ec, host);
    REQUIRE_FALSE(ec);
    REQUIRE(root.valid());
    return root;
}

// Runs `body` in a forked child; returns its exit status, or 128 + signal.
template <typename Body>
int run_in_child(Body body) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) ::_exit(body());
    int status = 0;
    pid_t r;
    do r = ::waitpid(pid, &status, 0);
    while (r < 0 && errno == EINTR);
    REQUIRE(r == pid);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

const std::string prefix =
    "Return-Path: <sender@example.org>\r\n"
    "Received: from client.example (client.example [192.0.2.1])\r\n"
    "\tby mx.example (libsmtp) with ESMTP id 4F2A1; Sun, 22 Nov 2026 05:53:11 +0000\r\n";

// A body of `n` bytes that is not periodic in small steps, so a misplaced chunk shows.
std::string body_of(std::size_t n) {
    std::string s;
    s.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
        s += static_cast<char>(i % 78 == 77 ? '\n' : 'a' + (i * 7 + i / 13) % 26);
    return s;
}

// Delivers `body` in one go; returns the error of the first failing step.
std::error_code deliver(const MailRoot& root, std::string_view mailbox, std::string_view body,
                        std::string* name = nullptr) {
    MaildirWriter w;
    if (auto ec = w.open(root, mailbox, prefix)) return ec;
    if (auto ec = w.write(body)) return ec;
    if (auto ec = w.commit()) return ec;
    if (name != nullptr) *name = w.file_name();
    return {};
}

// A child's check of one expectation: the step number as exit status when it fails.
struct ChildChecks {
    int failed = 0;
    void operator()(int step, bool ok) {
        if (!ok && failed == 0) failed = step;
    }
};

}  // namespace

TEST_SUITE("maildir") {
    TEST_CASE("a message written in many chunks lands byte-exact in new/ and nothing stays in tmp/") {
        TempDir dir;
        const MailRoot root = open_root(dir.path());
        const std::string body = body_of(100'000);

        MaildirWriter w;
        REQUIRE_FALSE(w.open(root, "alice", prefix));
        CHECK(w.is_open());
        // While writing, the message is in tmp/ only.
        CHECK(entries(dir / "alice/tmp") == std::vector<std::string>{w.file_name()});
        CHECK(entries(dir / "alice/new").empty());
        // Uneven chunks, including empty ones and single bytes.
        std::size_t at = 0, step = 0;
        while (at < body.size()) {
            const std::size_t n = std::min(body.size() - at, (step * 37) % 4099);
            REQUIRE_FALSE(w.write(std::string_view(body).substr(at, n)));
            at += n;
            ++step;
        }
        CHECK(w.size() == prefix.size() + body.size());
        REQUIRE_FALSE(w.commit());
        CHECK(w.committed());
        CHECK_FALSE(w.is_open());

        CHECK(entries(dir / "alice/tmp").empty());
        CHECK(entries(dir / "alice/cur").empty());
        REQUIRE(entries(dir / "alice/new") == std::vector<std::string>{w.file_name()});
        CHECK(slurp(dir / "alice/new/" + w.file_name()) == prefix + body);
        CHECK(entries(dir.path()) == std::vector<std::string>{"alice"});
    }

    TEST_CASE("mailbox directories are created 0700 and the message file 0600") {
        TempDir dir;
        const MailRoot root = open_root(dir.path());
        std::string name;
        const mode_t old_umask = ::umask(0);  // the modes must not depend on the umask
        const std::error_code ec = deliver(root, "bob", "x\r\n", &name);
        ::umask(old_umask);
        REQUIRE_FALSE(ec);
        struct stat st {};
        for (const char* d : {"bob", "bob/tmp", "bob/new", "bob/cur"}) {
            CAPTURE(d);
            REQUIRE(::lstat((dir / d).c_str(), &st) == 0);
            CHECK(S_ISDIR(st.st_mode));
            CHECK((st.st_mode & 07777) == 0700);
        }
        REQUIRE(::lstat((dir / "bob/new/" + name).c_str(), &st) == 0);
        CHECK(S_ISREG(st.st_mode));
        CHECK((st.st_mode & 07777) == 0600);
        CHECK(root.has_mailbox("bob"));
        CHECK_FALSE(root.has_mailbox("carol"));
    }

    TEST_CASE("unique names have the maildir form, with / and : of the host escaped") {
        TempDir dir;
        const MailRoot root = open_root(dir.path(), "h/o:st");
        CHECK(root.host_part() == "h\\057o\\072st");
        std::string name;
        REQUIRE_FALSE(deliver(root, "alice", "x", &name));
        // <sec>.M<usec>P<pid>Q<n>.<host>
        const std::string pid = std::to_string(::getpid());
        const auto dot = name.find('.');
        REQUIRE(dot != std::string::npos);
        CHECK(std::all_of(name.begin(), name.begin() + static_cast<long>(dot),
                          [](char c) { return c >= '0' && c <= '9'; }));
        const auto m = name.find(".M");
        const auto p = name.find('P');
        const auto q = name.find('Q');
        REQUIRE(m == dot);
        REQUIRE(p != std::string::npos);
        REQUIRE(q != std::string::npos);
        const std::string usec = name.substr(m + 2, p - m - 2);
        CHECK_FALSE(usec.empty());
        CHECK(std::stol(usec) < 1'000'000);
        CHECK(name.substr(p + 1, q - p - 1) == pid);
        const std::string tail = name.substr(q + 1);
        const auto host_dot = tail.find('.');
        REQUIRE(host_dot != std::string::npos);
        CHECK(tail.substr(host_dot + 1) == "h\\057o\\072st");
        CHECK(name.find('/') == std::string::npos);
        CHECK(name.find(':') == std::string::npos);
        CHECK(entries(dir / "alice/new") == std::vector<std::string>{name});
    }

    TEST_CASE("two deliveries get two distinct names") {
        TempDir dir;
        const MailRoot root = open_root(dir.path());
        std::string a, b;
        REQUIRE_FALSE(deliver(root, "alice", "first\r\n", &a));
        REQUIRE_FALSE(deliver(root, "alice", "second\r\n", &b));
        CHECK(a != b);
        CHECK(entries(dir / "alice/new").size() == 2);
        CHECK(slurp(dir / "alice/new/" + a) == prefix + "first\r\n");
        CHECK(slurp(dir / "alice/new/" + b) == prefix + "second\r\n");
    }

    TEST_CASE("1000 deliveries in a loop all get distinct names") {
        TempDir dir;
        const MailRoot root = open_root(dir.path());
        std::set<std::string> names;
        for (int i = 0; i < 1000; ++i) {
            std::string name;
            REQUIRE_FALSE(deliver(root, "alice", std::to_string(i), &name));
            names.insert(name);
        }
        CHECK(names.size() == 1000);
        const auto on_disk = entries(dir / "alice/new");
        CHECK(on_disk.size() == 1000);
        CHECK(std::set<std::string>(on_disk.begin(), on_disk.end()) == names);
        CHECK(entries(dir / "alice/tmp").empty());
    }

    TEST_CASE("abort leaves tmp/ and new/ empty, and the writer refuses more data") {
        TempDir dir;
        const MailRoot root = open_root(dir.path());
        MaildirWriter w;
        REQUIRE_FALSE(w.open(root, "alice", prefix));
        REQUIRE_FALSE(w.write("half a message"));
        CHECK(entries(dir / "alice/tmp").size() == 1);
        w.abort();
        CHECK_FALSE(w.is_open());
        CHECK_FALSE(w.committed());
        CHECK(entries(dir / "alice/tmp").empty());
        CHECK(entries(dir / "alice/new").empty());
        CHECK(w.write("more") == std::errc::bad_file_descriptor);
        CHECK(w.commit() == std::errc::bad_file_descriptor);
        w.abort();  // twice is harmless
    }

    TEST_CASE("destruction without commit leaves tmp/ and new/ empty") {
        TempDir dir;
        const MailRoot root = open_root(dir.path());
        {
            MaildirWriter w;
            REQUIRE_FALSE(w.open(root, "alice", prefix));
            REQUIRE_FALSE(w.write("never committed"));
            CHECK(entries(dir / "alice/tmp").size() == 1);
        }
        CHECK(entries(dir / "alice/tmp").empty());
        CHECK(entries(dir / "alice/new").empty());
    }

    TEST_CASE("re-opening a writer aborts the delivery in progress") {
        TempDir dir;
        const MailRoot root = open_root(dir.path());
        MaildirWriter w;
        REQUIRE_FALSE(w.open(root, "alice", prefix));
        const std::string first = w.file_name();
        REQUIRE_FALSE(w.open(root, "alice", prefix));
        CHECK(w.file_name() != first);
        CHECK(entries(dir / "alice/tmp") == std::vector<std::string>{w.file_name()});
        REQUIRE_FALSE(w.commit());
        CHECK(entries(dir / "alice/tmp").empty());
        CHECK(entries(dir / "alice/new") == std::vector<std::string>{w.file_name()});
    }

    TEST_CASE("a moved writer keeps the delivery; the moved-from one owns nothing") {
        TempDir dir;
        const MailRoot root = open_root(dir.path());
        MaildirWriter a;
        REQUIRE_FALSE(a.open(root, "alice", prefix));
        MaildirWriter b(std::move(a));
        CHECK(b.is_open());
        a.abort();  // NOLINT(bugprone-use-after-move): must not touch b's file
        CHECK(entries(dir / "alice/tmp").size() == 1);
        MaildirWriter c;
        c = std::move(b);
        REQUIRE_FALSE(c.write("body"));
        REQUIRE_FALSE(c.commit());
        CHECK(slurp(dir / "alice/new/" + c.file_name()) == prefix + "body");
        CHECK(entries(dir / "alice/tmp").empty());
    }

    TEST_CASE("a missing mail root is ENOENT and is not created") {
        TempDir dir;
        std::error_code ec;
        const MailRoot root = MailRoot::open(dir / "nonexistent", ec);
        CHECK(ec == std::errc::no_such_file_or_directory);
        CHECK_FALSE(root.valid());
        CHECK_FALSE(fs::exists(dir / "nonexistent"));
        MaildirWriter w;
        CHECK(w.open(root, "alice") == std::errc::invalid_argument);
    }

    TEST_CASE("a mail root given with a trailing slash works the same") {
        TempDir dir;
        const MailRoot root = open_root(dir.path() + "/");
        REQUIRE_FALSE(deliver(root, "alice", "x"));
        CHECK(entries(dir / "alice/new").size() == 1);
    }

    TEST_CASE("the host name defaults to gethostname") {
        TempDir dir;
        std::error_code ec;
        const MailRoot root = MailRoot::open(dir.path(), ec);
        REQUIRE_FALSE(ec);
        CHECK_FALSE(root.host_part().empty());
        CHECK(root.host_part().find('/') == std::string::npos);
        CHECK(root.host_part().find(':') == std::string::npos);
    }

    TEST_CASE("mailbox names from local parts") {
        struct Case {
            std::string local_part;
            std::optional<std::string> expected;
        };
        const std::string a64(64, 'a');
        const std::string a65(65, 'a');
        const Case cases[] = {
            {"Alice", "alice"},
            {"alice", "alice"},
            {"ALICE.Smith+Tag", "alice.smith+tag"},
            {"\"john.doe\"", "john.doe"},
            {"\"John Doe\"", "john doe"},
            {"\"a\\\"b\"", "a\"b"},
            {"a.", "a."},  // a trailing dot is harmless as a file name
            {"../etc", std::nullopt},
            {"\"../etc\"", std::nullopt},
            {"a/b", std::nullopt},  // '/' is atext in a dot-string (RFC 5322 §3.2.3)
            {"\"a/b\"", std::nullopt},
            {".hidden", std::nullopt},
            {"\".hidden\"", std::nullopt},
            {".", std::nullopt},
            {"..", std::nullopt},
            {"\"a..b\"", std::nullopt},
            {"a..b", std::nullopt},
            {"", std::nullopt},
            {"\"\"", std::nullopt},
            {"x\x01y", std::nullopt},
            {"\"x\x1fy\"", std::nullopt},
            {"x\x7fy", std::nullopt},
            {std::string("x\0y", 3), std::nullopt},
            {"\"x\\\ty\"", std::nullopt},
            {a64, a64},
            {a65, std::nullopt},
            {"\"" + a64 + "\"", a64},  // the limit is on the name, not on the quoting
            {"\"" + a65 + "\"", std::nullopt},
            // UTF-8 (RFC 6531): well-formed is kept as is, only ASCII is lower-cased.
            {"J\xc3\xbcrgen", "j\xc3\xbcrgen"},
            {"\xc3\x9c"
             "BER",
             "\xc3\x9c"
             "ber"},
            {"\xe7\x94\xb0\xe4\xb8\xad", "\xe7\x94\xb0\xe4\xb8\xad"},
            {"\xc3", std::nullopt},          // truncated sequence
            {"\xff", std::nullopt},          // never UTF-8
            {"\xc0\xaf", std::nullopt},      // overlong '/'
            {"\xed\xa0\x80", std::nullopt},  // a surrogate
            {"a\xc2\x85", std::nullopt},     // U+0085, a C1 control
            {"a\xc2\xa0", "a\xc2\xa0"},      // U+00A0 is not a control
        };
        for (const auto& c : cases) {
            const auto got = smtp::mailbox_for(c.local_part);
            INFO("local part <", c.local_part, "> gave <", got.value_or("(refused)"), ">");
            CHECK(got == c.expected);
        }
        // 21 UTF-8 characters of 3 octets = 63 octets: in; 22 = 66 octets: out.
        std::string kanji63, kanji66;
        for (int i = 0; i < 21; ++i) kanji63 += "\xe7\x94\xb0";
        kanji66 = kanji63 + "\xe7\x94\xb0";
        CHECK(smtp::mailbox_for(kanji63) == kanji63);
        CHECK(smtp::mailbox_for(kanji66) == std::nullopt);
    }

    TEST_CASE("open refuses unsafe mailbox names with EINVAL before touching the file system") {
        TempDir dir;
        const MailRoot root = open_root(dir / "");
        for (std::string_view bad : {"", ".", "..", "../x", "a/b", ".x", "a..b", "/etc"}) {
            CAPTURE(bad);
            MaildirWriter w;
            CHECK(w.open(root, bad, prefix) == std::errc::invalid_argument);
            CHECK_FALSE(w.is_open());
        }
        CHECK(entries(dir.path()).empty());
    }

    TEST_CASE("a symlink planted as the mailbox is refused and nothing is written outside") {
        TempDir dir;
        REQUIRE(::mkdir((dir / "root").c_str(), 0700) == 0);
        REQUIRE(::mkdir((dir / "outside").c_str(), 0700) == 0);
        REQUIRE(::symlink((dir / "outside").c_str(), (dir / "root/alice").c_str()) == 0);
        // A dangling one: mkdir must not create its target either.
        REQUIRE(::symlink((dir / "outside/made").c_str(), (dir / "root/bob").c_str()) == 0);
        const MailRoot root = open_root(dir / "root");

        MaildirWriter w;
        CHECK(w.open(root, "alice", prefix) == std::errc::too_many_symbolic_link_levels);
        CHECK(w.open(root, "bob", prefix) == std::errc::too_many_symbolic_link_levels);
        CHECK_FALSE(w.is_open());
        CHECK(entries(dir / "outside").empty());
        CHECK_FALSE(root.has_mailbox("alice"));
        CHECK_FALSE(root.has_mailbox("bob"));
    }

    TEST_CASE("a symlink planted as new/ or tmp/ is refused and nothing is written outside") {
        TempDir dir;
        REQUIRE(::mkdir((dir / "root").c_str(), 0700) == 0);
        REQUIRE(::mkdir((dir / "outside").c_str(), 0700) == 0);
        REQUIRE(::mkdir((dir / "root/alice").c_str(), 0700) == 0);
        REQUIRE(::symlink((dir / "outside").c_str(), (dir / "root/alice/new").c_str()) == 0);
        REQUIRE(::mkdir((dir / "root/bob").c_str(), 0700) == 0);
        REQUIRE(::symlink((dir / "outside").c_str(), (dir / "root/bob/tmp").c_str()) == 0);
        const MailRoot root = open_root(dir / "root");

        MaildirWriter w;
        CHECK(w.open(root, "alice", prefix) == std::errc::too_many_symbolic_link_levels);
        CHECK(entries(dir / "root/alice/tmp").empty());
        CHECK(w.open(root, "bob", prefix) == std::errc::too_many_symbolic_link_levels);
        CHECK(entries(dir / "outside").empty());
    }

    TEST_CASE("a file in place of the mailbox directory is ENOTDIR") {
        TempDir dir;
        {
            std::ofstream f(dir / "alice");
            f << "not a maildir";
        }
        const MailRoot root = open_root(dir.path());
        MaildirWriter w;
        CHECK(w.open(root, "alice", prefix) == std::errc::not_a_directory);
        CHECK(slurp(dir / "alice") == "not a maildir");
    }

    TEST_CASE("delivery errors map to 452 4.3.1 for a full disk or quota, 451 4.3.0 otherwise") {
        struct Case {
            std::error_code ec;
            int code;
            smtp::EnhancedStatus status;
        };
        const Case cases[] = {
            {{ENOSPC, std::system_category()}, 452, {4, 3, 1}},
            {{EDQUOT, std::system_category()}, 452, {4, 3, 1}},
            {{EFBIG, std::system_category()}, 452, {4, 3, 1}},
            {std::make_error_code(std::errc::no_space_on_device), 452, {4, 3, 1}},
            {{EIO, std::system_category()}, 451, {4, 3, 0}},
            {{EACCES, std::system_category()}, 451, {4, 3, 0}},
            {{ELOOP, std::system_category()}, 451, {4, 3, 0}},
            {{}, 451, {4, 3, 0}},                           // not an error: still never 250
            {smtp::Errc::message_too_big, 451, {4, 3, 0}},  // not errno: the value 28 means nothing
        };
        for (const auto& c : cases) {
            CAPTURE(c.ec.message());
            const auto r = smtp::delivery_error_reply(c.ec);
            CHECK(r.code == c.code);
            CHECK(r.status == c.status);
        }
        CHECK(smtp::delivery_error_reply({ENOSPC, std::system_category()}).text ==
              "Insufficient system storage");
        CHECK(smtp::delivery_error_reply({EIO, std::system_category()}).text == "Local error in processing");
        CHECK(smtp::bad_mailbox_reply.code == 550);
        CHECK(smtp::bad_mailbox_reply.status == smtp::EnhancedStatus{5, 1, 3});
        CHECK(smtp::unknown_mailbox_reply.status == smtp::EnhancedStatus{5, 1, 1});
    }

    TEST_CASE("a real EFBIG from RLIMIT_FSIZE is reported, maps to 452 4.3.1, and leaves nothing behind") {
        TempDir dir;
        const MailRoot root = open_root(dir.path());
        // Create the mailbox first, so the parent can look into it afterwards.
        REQUIRE_FALSE(deliver(root, "alice", "first"));
        const auto before = entries(dir / "alice/new");
        REQUIRE(before.size() == 1);

        const int status = run_in_child([&] {
            ChildChecks check;
            const rlimit limit{4096, 4096};
            check(1, ::setrlimit(RLIMIT_FSIZE, &limit) == 0);
            check(2, ::signal(SIGXFSZ, SIG_IGN) != SIG_ERR);
            MaildirWriter w;
            check(3, !w.open(root, "alice", prefix));
            std::error_code ec;
            const std::string chunk = body_of(1000);
            for (int i = 0; i < 10 && !ec; ++i) ec = w.write(chunk);
            check(4, ec == std::errc::file_too_large);
            check(5, ec.value() == EFBIG);
            const auto reply = smtp::delivery_error_reply(ec);
            check(6, reply.code == 452 && reply.status == smtp::EnhancedStatus{4, 3, 1});
            check(7, w.commit() == std::errc::file_too_large);  // sticky
            check(8, !w.is_open());
            check(9, entries(dir / "alice/tmp").empty());
            return check.failed;
        });
        CHECK(status == 0);
        CHECK(entries(dir / "alice/tmp").empty());
        CHECK(entries(dir / "alice/new") == before);
    }

    TEST_CASE("a full tmpfs gives ENOSPC, 452 4.3.1, and leaves nothing behind") {
        TempDir dir;
        REQUIRE(::mkdir((dir / "small").c_str(), 0700) == 0);
        const std::string small = dir / "small";
        const int status = run_in_child([&] {
            // A mount namespace of our own, so the mount never shows outside this child
            // and disappears with it; as non-root, a user namespace first.
            if (::unshare(CLONE_NEWNS) != 0 && ::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return child_skip;
            if (::mount("none", "/", "none", MS_REC | MS_PRIVATE, nullptr) != 0) return child_skip;
            if (::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=64k,mode=0700") != 0) return child_skip;
            ChildChecks check;
            std::error_code ec;
            {
                const MailRoot root = MailRoot::open(small, ec, "mx.example");
                check(1, !ec);
                MaildirWriter w;
                check(2, !w.open(root, "alice", prefix));
                const std::string chunk = body_of(8192);
                for (int i = 0; i < 64 && !ec; ++i) ec = w.write(chunk);
                check(3, ec == std::errc::no_space_on_device);
                const auto reply = smtp::delivery_error_reply(ec);
                check(4, reply.code == 452 && reply.status == smtp::EnhancedStatus{4, 3, 1});
                check(5, entries(small + "/alice/tmp").empty());
                check(6, entries(small + "/alice/new").empty());
                // The space is given back: a small message fits again.
                check(7, !deliver(root, "alice", "small"));
                check(8, entries(small + "/alice/new").size() == 1);
            }
            check(9, ::umount2(small.c_str(), 0) == 0);
            return check.failed;
        });
        if (status == child_skip) {
            MESSAGE("tmpfs part skipped: mounting a tmpfs is not permitted here");
            return;
        }
        CHECK(status == 0);
        CHECK(entries(small).empty());
    }

    TEST_CASE("new/ removed during the delivery makes commit fail and leaves nothing in tmp/") {
        TempDir dir;
        const MailRoot root = open_root(dir.path());
        MaildirWriter w;
        REQUIRE_FALSE(w.open(root, "alice", prefix));
        REQUIRE_FALSE(w.write("body"));
        REQUIRE(::rmdir((dir / "alice/new").c_str()) == 0);
        const std::error_code ec = w.commit();
        CHECK(ec == std::errc::no_such_file_or_directory);
        CHECK(smtp::delivery_error_reply(ec).code == 451);
        CHECK(entries(dir / "alice/tmp").empty());
        CHECK_FALSE(fs::exists(dir / "alice/new"));
        CHECK_FALSE(w.committed());
    }

    TEST_CASE("a read-only new/ makes commit fail with EACCES and leaves nothing behind") {
        TempDir dir;
        // The check needs a user without CAP_DAC_OVERRIDE. As root, a child drops to
        // nobody (65534) first; if it cannot, the test is skipped.
        const bool as_root = ::geteuid() == 0;
        if (as_root) REQUIRE(::chown(dir.path().c_str(), 65534, 65534) == 0);
        const int status = run_in_child([&] {
            if (as_root && (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0))
                return child_skip;
            if (as_root && ::setuid(0) == 0) return child_skip;  // root could come back: not a real test
            ChildChecks check;
            std::error_code ec;
            const MailRoot root = MailRoot::open(dir.path(), ec, "mx.example");
            check(1, !ec);
            MaildirWriter w;
            check(2, !w.open(root, "alice", prefix));
            check(3, !w.write("body"));
            check(4, ::chmod((dir / "alice/new").c_str(), 0500) == 0);
            ec = w.commit();
            check(5, ec == std::errc::permission_denied);
            check(6, smtp::delivery_error_reply(ec).code == 451);
            check(7, !w.committed());
            check(8, ::chmod((dir / "alice/new").c_str(), 0700) == 0);
            check(9, entries(dir / "alice/tmp").empty());
            check(10, entries(dir / "alice/new").empty());
            return check.failed;
        });
        if (status == child_skip) {
            MESSAGE("read-only new/ test skipped: running as root and cannot drop to uid 65534");
            return;
        }
        CHECK(status == 0);
        CHECK(entries(dir / "alice/tmp").empty());
        CHECK(entries(dir / "alice/new").empty());
    }
}

TEST_SUITE("maildir") {
    TEST_CASE("a delivery to several mailboxes writes the same bytes into each, once per mailbox") {
        TempDir dir;
        const MailRoot root = open_root(dir.path());
        const std::string body = body_of(50'000);
        MaildirDelivery d(root);
        for (std::string_view mb : {"alice", "bob", "carol", "alice"}) REQUIRE_FALSE(d.add(mb, prefix));
        CHECK(d.size() == 3);
        for (std::size_t at = 0; at < body.size(); at += 1000)
            REQUIRE_FALSE(d.write(std::string_view(body).substr(at, 1000)));
        REQUIRE_FALSE(d.commit());
        for (const char* mb : {"alice", "bob", "carol"}) {
            CAPTURE(mb);
            const std::string base = dir / mb;
            CHECK(entries(base + "/tmp").empty());
            const auto files = entries(base + "/new");
            REQUIRE(files.size() == 1);
            CHECK(slurp(base + "/new/" + files[0]) == prefix + body);
        }
        CHECK(d.commit() == std::errc::bad_file_descriptor);
    }

    TEST_CASE("a delivery to several mailboxes with one bad mailbox delivers to none") {
        TempDir dir;
        REQUIRE(::mkdir((dir / "root").c_str(), 0700) == 0);
        REQUIRE(::mkdir((dir / "outside").c_str(), 0700) == 0);
        REQUIRE(::symlink((dir / "outside").c_str(), (dir / "root/mallory").c_str()) == 0);
        const MailRoot root = open_root(dir / "root");
        MaildirDelivery d(root);
        REQUIRE_FALSE(d.add("alice", prefix));
        REQUIRE_FALSE(d.write("early chunk"));
        CHECK(d.add("mallory", prefix) == std::errc::too_many_symbolic_link_levels);
        // Sticky: nothing more happens.
        CHECK(d.write("x") == std::errc::too_many_symbolic_link_levels);
        CHECK(d.add("bob", prefix) == std::errc::too_many_symbolic_link_levels);
        CHECK(d.commit() == std::errc::too_many_symbolic_link_levels);
        CHECK(entries(dir / "root/alice/tmp").empty());
        CHECK(entries(dir / "root/alice/new").empty());
        CHECK_FALSE(fs::exists(dir / "root/bob"));
        CHECK(entries(dir / "outside").empty());
    }

    TEST_CASE("a rename failing for one mailbox takes the message out of the others' new/ again") {
        TempDir dir;
        const MailRoot root = open_root(dir.path());
        MaildirDelivery d(root);
        REQUIRE_FALSE(d.add("alice", prefix));
        REQUIRE_FALSE(d.add("bob", prefix));
        REQUIRE_FALSE(d.add("carol", prefix));
        REQUIRE_FALSE(d.write("body"));
        REQUIRE(::rmdir((dir / "bob/new").c_str()) == 0);
        CHECK(d.commit() == std::errc::no_such_file_or_directory);
        for (const char* mb : {"alice", "bob", "carol"}) {
            CAPTURE(mb);
            CHECK(entries(dir / mb + "/tmp").empty());
            CHECK(entries(dir / mb + "/new").empty());
        }
    }

    TEST_CASE("a delivery to no mailbox cannot be committed; destruction cleans up") {
        TempDir dir;
        const MailRoot root = open_root(dir.path());
        {
            MaildirDelivery empty(root);
            CHECK(empty.commit() == std::errc::invalid_argument);
        }
        {
            MaildirDelivery d(root);
            REQUIRE_FALSE(d.add("alice", prefix));
            REQUIRE_FALSE(d.write("body"));
        }
        CHECK(entries(dir / "alice/tmp").empty());
        CHECK(entries(dir / "alice/new").empty());
    }
}
