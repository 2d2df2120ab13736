// Tests of apps/common/queue: the outgoing queue's files, crash safety and index.
// Each test works in its own mkdtemp directory under /tmp and removes it.
#include "common/queue.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <csignal>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

using namespace smtp::queue;
namespace fs = std::filesystem;

namespace {

// A fresh queue under /tmp, removed with everything in it at the end of the test.
struct TempQueue {
    std::string root;
    Queue queue{""};

    TempQueue() {
        char templ[] = "/tmp/queue-test-XXXXXX";
        REQUIRE(::mkdtemp(templ) != nullptr);
        root = templ;
        queue = Queue(root + "/q");
        REQUIRE(!queue.prepare());
    }
    ~TempQueue() {
        std::error_code ec;
        fs::remove_all(root, ec);
    }
    TempQueue(const TempQueue&) = delete;
    TempQueue& operator=(const TempQueue&) = delete;

    std::string path(const std::string& rel) const { return root + "/q/" + rel; }

    // Regular files anywhere under the queue, as paths relative to it, sorted.
    std::vector<std::string> files() const {
        std::vector<std::string> out;
        for (const auto& e : fs::recursive_directory_iterator(root + "/q"))
            if (e.is_regular_file()) out.push_back(fs::relative(e.path(), root + "/q").string());
        std::sort(out.begin(), out.end());
        return out;
    }
};

Envelope make_envelope(std::vector<std::string> recipients, std::int64_t arrival = 1000) {
    Envelope e;
    e.arrival = arrival;
    e.next_attempt = arrival;
    e.sender = "sender@example.org";
    for (const auto& r : recipients) e.recipients.push_back(make_recipient(r));
    return e;
}

// Queues `content` with `e`; returns the id ("" on failure, which the CHECKs show).
std::string queue_message(const Queue& q, Envelope& e,
                          std::string_view content = "Subject: x\r\n\r\nhi\r\n") {
    std::error_code ec;
    Writer w = q.create(ec);
    CHECK(!ec);
    CHECK(!w.write(content));
    ec = w.commit(e);
    CHECK(!ec);
    return ec ? std::string() : e.id;
}

std::string read_all(const std::string& path) {
    std::string out;
    smtp::Fd fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    REQUIRE(fd.valid());
    char buf[65536];
    for (;;) {
        const ssize_t r = ::read(fd.get(), buf, sizeof buf);
        REQUIRE(r >= 0);
        if (r == 0) break;
        out.append(buf, static_cast<std::size_t>(r));
    }
    return out;
}

void write_raw(const std::string& path, std::string_view text) {
    smtp::Fd fd{::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)};
    REQUIRE(fd.valid());
    REQUIRE(::write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    REQUIRE(!fd.close());
}

void set_mtime(const std::string& path, std::int64_t t) {
    const timespec times[2] = {{static_cast<time_t>(t), 0}, {static_cast<time_t>(t), 0}};
    REQUIRE(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) == 0);
}

std::int64_t wall_clock() { return static_cast<std::int64_t>(::time(nullptr)); }

// A valid envelope text, line by line, to break in the parser tests.
const std::vector<std::string> good_lines = {
    "queue-envelope 1",
    "id 0000000000000100000000000000",
    "arrival 1000",
    "content-size 5",
    "sender a@b",
    "body 8bitmime",
    "smtputf8 no",
    "ret unspecified",
    "attempts 0",
    "next-attempt 1000",
    "last-error ",
    "rcpt to=x@example.com domain=example.com state=pending attempts=0 notify= error=",
    "end",
};

std::string join(const std::vector<std::string>& lines) {
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
}

}  // namespace

TEST_SUITE("queue") {
    TEST_CASE("a committed message loads back equal, with hostile values escaped onto one line each") {
        TempQueue t;
        const std::string nasty = std::string("a b+c=d%e\"f\"\r\nrcpt to=evil domain=x\nend\n\0\xff", 42);
        Envelope e = make_envelope(
            {"\"john doe\"@Example.COM", "caf\xC3\xA9@b\xC3\xBC\x63her.example", nasty + "@evil.example"});
        e.sender = "\"q\\\"x\" +tag=1%2@s\xC3\xA9nder.example";
        e.size = 12345;
        e.body = smtp::Body::eight_bit_mime;
        e.smtputf8 = true;
        e.ret = smtp::Ret::hdrs;
        e.envid = nasty;
        e.client = "mail.example [192.0.2.1]\nend";
        e.attempts = 3;
        e.next_attempt = 4000;
        e.last_error = "451 4.3.0 try\r\nlater";
        e.recipients[0].notify = smtp::notify_success | smtp::notify_failure | smtp::notify_delay;
        e.recipients[0].orcpt_type = "rfc822";
        e.recipients[0].orcpt = "john+doe@example.com";
        e.recipients[1].notify = smtp::notify_never;
        e.recipients[1].state = RecipientState::bounced;
        e.recipients[1].attempts = 7;
        e.recipients[1].last_error = nasty;
        e.recipients[2].orcpt_type = std::string("utf-8;\0", 7);
        e.recipients[2].orcpt = "";

        const std::string id = queue_message(t.queue, e, "");
        REQUIRE(is_valid_id(id));
        CHECK(e.content_size == 0);
        CHECK(e.recipients[0].domain == "example.com");
        CHECK(e.recipients[1].domain == "b\xC3\xBC\x63her.example");

        Envelope loaded;
        REQUIRE(!t.queue.load(id, loaded));
        CHECK(loaded == e);

        // Version, 13 keys (size, envid, client included), 3 recipients, end.
        const std::string text = read_all(t.path("envelope/" + id));
        CHECK(std::count(text.begin(), text.end(), '\n') == 18);
        CHECK(std::all_of(text.begin(), text.end(),
                          [](char c) { return c == '\n' || (c >= 0x20 && c <= 0x7e); }));
        CHECK(text.find("\nrcpt to=evil") == std::string::npos);
        CHECK(text.find("\nend\n") == text.size() - 5);
        CHECK(text.find("sender \"q\\\"x\"+20+2Btag+3D1%2@s+C3+A9nder.example\n") != std::string::npos);
    }

    TEST_CASE("any byte string in any value survives format and parse") {
        std::string all_bytes;
        for (int b = 0; b < 256; ++b) all_bytes += static_cast<char>(b);
        const std::vector<std::string> values = {
            "", " ", "+", "=", "+2B", "\n", std::string(1, '\0'), all_bytes, std::string(3000, '\n')};
        for (const auto& v : values) {
            Envelope e = make_envelope({"x@example.com"});
            e.id = "0123456789abcdef0123456789ab";
            e.sender = v;
            e.envid = v;
            e.client = v;
            e.last_error = v;
            e.recipients[0].address = v;
            e.recipients[0].domain = v.empty() ? "d" : v;
            e.recipients[0].last_error = v;
            e.recipients[0].orcpt_type = v.empty() ? "t" : v;
            e.recipients[0].orcpt = v;
            Envelope back;
            std::string why;
            CHECK(!parse_envelope(format_envelope(e), back, &why));
            CHECK(why == "");
            CHECK(back == e);
        }
    }

    TEST_CASE("1000 recipients round trip and are indexed under their 7 domains") {
        TempQueue t;
        std::vector<std::string> rcpts;
        for (int i = 0; i < 1000; ++i) rcpts.push_back(fmt::format("user{}@D{}.example", i, i % 7));
        Envelope e = make_envelope(rcpts);
        const std::string id = queue_message(t.queue, e);
        Envelope loaded;
        REQUIRE(!t.queue.load(id, loaded));
        CHECK(loaded.recipients.size() == 1000);
        CHECK(loaded == e);
        for (int d = 0; d < 7; ++d) {
            std::vector<std::string> ids;
            REQUIRE(!t.queue.list_domain(fmt::format("d{}.example", d), ids));
            CHECK(ids == std::vector<std::string>{id});
        }
        CHECK(t.files().size() == 2 + 7);  // content, envelope, one marker per domain
    }

    TEST_CASE("10 MB written in 64 KB chunks reads back byte for byte") {
        TempQueue t;
        std::string content(10 * 1024 * 1024, '\0');
        for (std::size_t i = 0; i < content.size(); ++i)
            content[i] = static_cast<char>((i * 131 + i / 65536) & 0xff);
        std::error_code ec;
        Writer w = t.queue.create(ec);
        REQUIRE(!ec);
        for (std::size_t off = 0; off < content.size(); off += 65536)
            REQUIRE(!w.write(std::string_view(content).substr(off, 65536)));
        CHECK(w.size() == content.size());
        Envelope e = make_envelope({"a@example.com"});
        REQUIRE(!w.commit(e));
        CHECK(e.content_size == 10 * 1024 * 1024);

        smtp::Fd fd;
        REQUIRE(!t.queue.open_content(e.id, fd));
        struct stat st {};
        REQUIRE(::fstat(fd.get(), &st) == 0);
        CHECK(st.st_size == 10 * 1024 * 1024);
        CHECK(read_all(t.path("content/" + e.id)) == content);
    }

    TEST_CASE("small chunks are gathered and arrive in order") {
        TempQueue t;
        std::error_code ec;
        Writer w = t.queue.create(ec);
        REQUIRE(!ec);
        std::string expected;
        for (int i = 0; i < 20000; ++i) {
            const std::string line = fmt::format("line {}\r\n", i);
            expected += line;
            REQUIRE(!w.write(line));
        }
        REQUIRE(!w.write(std::string(100000, 'x')));  // larger than the buffer: direct
        expected += std::string(100000, 'x');
        REQUIRE(!w.write("tail"));
        expected += "tail";
        Envelope e = make_envelope({"a@example.com"});
        REQUIRE(!w.commit(e));
        CHECK(read_all(t.path("content/" + e.id)) == expected);
    }

    TEST_CASE("a message is invisible until commit returns success") {
        TempQueue t;
        std::error_code ec;
        Writer w = t.queue.create(ec);
        REQUIRE(!ec);
        REQUIRE(!w.write("hello"));
        std::vector<std::string> ids;
        REQUIRE(!t.queue.list(ids));
        CHECK(ids.empty());
        REQUIRE(!t.queue.list_domain("example.com", ids));
        CHECK(ids.empty());
        CHECK(t.files() == std::vector<std::string>{"tmp/" + w.id() + ".content"});

        Envelope e = make_envelope({"a@example.com"});
        REQUIRE(!w.commit(e));
        CHECK(!w.valid());
        REQUIRE(!t.queue.list(ids));
        CHECK(ids == std::vector<std::string>{e.id});
        CHECK(t.files() ==
              std::vector<std::string>{"content/" + e.id, "domain/example.com/" + e.id, "envelope/" + e.id});
        CHECK(read_all(t.path("content/" + e.id)) == "hello");
    }

    TEST_CASE("abort, a destroyed writer and a failed commit leave no file") {
        TempQueue t;
        std::error_code ec;
        {
            Writer w = t.queue.create(ec);
            REQUIRE(!ec);
            REQUIRE(!w.write("x"));
            w.abort();
            CHECK(!w.valid());
            CHECK(w.write("y") == std::errc::bad_file_descriptor);
        }
        {
            Writer w = t.queue.create(ec);
            REQUIRE(!w.write(std::string(200000, 'x')));
            Writer moved = std::move(w);  // the moved-from writer owns nothing
            CHECK(!w.valid());
            CHECK(moved.valid());
        }
        {
            Writer w = t.queue.create(ec);
            Envelope no_rcpt = make_envelope({});
            CHECK(w.commit(no_rcpt) == std::errc::invalid_argument);
            CHECK(!w.valid());
        }
        {
            Writer w = t.queue.create(ec);
            Envelope no_domain = make_envelope({"postmaster"});
            CHECK(w.commit(no_domain) == std::errc::invalid_argument);
        }
        CHECK(t.files().empty());
        std::vector<std::string> ids;
        REQUIRE(!t.queue.list(ids));
        CHECK(ids.empty());
    }

    TEST_CASE("ids are valid, unique and sorted by creation; short ids have 12 digits") {
        TempQueue t;
        std::vector<std::string> ids;
        for (int i = 0; i < 500; ++i) {
            std::error_code ec;
            Writer w = t.queue.create(ec);
            REQUIRE(!ec);
            ids.push_back(w.id());
        }
        CHECK(std::all_of(ids.begin(), ids.end(), [](const std::string& id) { return is_valid_id(id); }));
        CHECK(std::is_sorted(ids.begin(), ids.end()));
        CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
        CHECK(short_id(ids[0]).size() == 12);
        CHECK(short_id("0123456789abcdef0123456789ab") == "789abcd345ab");
        CHECK(!is_valid_id("0123456789ABCDEF0123456789ab"));
        CHECK(!is_valid_id("../../etc/passwd"));
        CHECK(!is_valid_id("0123456789abcdef0123456789a"));
        CHECK(t.files().empty());
    }

    TEST_CASE("ids from parent and child processes differ") {
        TempQueue t;
        int pipefd[2];
        REQUIRE(::pipe(pipefd) == 0);
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            std::error_code ec;
            Writer w = t.queue.create(ec);
            const std::string id = w.id();
            const bool ok =
                !ec && ::write(pipefd[1], id.data(), id.size()) == static_cast<ssize_t>(id.size());
            w.abort();
            ::_exit(ok ? 0 : 1);
        }
        ::close(pipefd[1]);
        std::error_code ec;
        Writer w = t.queue.create(ec);
        char buf[64] = {};
        const ssize_t n = ::read(pipefd[0], buf, sizeof buf);
        ::close(pipefd[0]);
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
        CHECK(n == 28);
        CHECK(std::string(buf, static_cast<std::size_t>(std::max<ssize_t>(n, 0))) != w.id());
    }

    TEST_CASE("list by domain returns exactly the messages with a pending recipient there") {
        TempQueue t;
        Envelope a = make_envelope({"x@a.example"});
        Envelope b = make_envelope({"y@B.Example"});
        Envelope ab = make_envelope({"z@a.example", "w@b.example", "v@A.EXAMPLE"});
        const std::string ida = queue_message(t.queue, a), idb = queue_message(t.queue, b),
                          idab = queue_message(t.queue, ab);
        std::vector<std::string> ids;
        REQUIRE(!t.queue.list_domain("a.example", ids));
        CHECK(ids == std::vector<std::string>{ida, idab});
        REQUIRE(!t.queue.list_domain("B.EXAMPLE", ids));
        CHECK(ids == std::vector<std::string>{idb, idab});
        REQUIRE(!t.queue.list_domain("c.example", ids));
        CHECK(ids.empty());
        CHECK(t.queue.list_domain("", ids) == std::errc::invalid_argument);

        REQUIRE(!t.queue.remove(idab));
        REQUIRE(!t.queue.list_domain("a.example", ids));
        CHECK(ids == std::vector<std::string>{ida});
        REQUIRE(!t.queue.list_domain("b.example", ids));
        CHECK(ids == std::vector<std::string>{idb});
        Envelope gone;
        CHECK(t.queue.load(idab, gone) == std::errc::no_such_file_or_directory);
        smtp::Fd fd;
        CHECK(t.queue.open_content(idab, fd) == std::errc::no_such_file_or_directory);
        CHECK(t.queue.remove(idab) == std::errc::no_such_file_or_directory);
        CHECK(t.files() == std::vector<std::string>{"content/" + ida, "content/" + idb,
                                                    "domain/a.example/" + ida, "domain/b.example/" + idb,
                                                    "envelope/" + ida, "envelope/" + idb});
    }

    TEST_CASE("update drops the marker of a domain once none of its recipients is pending") {
        TempQueue t;
        Envelope e = make_envelope({"1@a.example", "2@b.example", "3@a.example"});
        const std::string id = queue_message(t.queue, e);
        e.recipients[0].state = RecipientState::delivered;
        e.recipients[1].state = RecipientState::delivered;
        e.recipients[1].attempts = 1;
        e.attempts = 1;
        e.next_attempt = 1600;
        e.last_error = "421 4.4.2 timeout";
        e.recipients[2].last_error = "450 4.2.1 mailbox busy";
        REQUIRE(!t.queue.update(e));

        std::vector<std::string> ids;
        REQUIRE(!t.queue.list_domain("a.example", ids));
        CHECK(ids == std::vector<std::string>{id});  // 3@a.example is still pending
        REQUIRE(!t.queue.list_domain("b.example", ids));
        CHECK(ids.empty());
        Envelope loaded;
        REQUIRE(!t.queue.load(id, loaded));
        CHECK(loaded == e);
        CHECK(!loaded.finished());

        // Pending again (an admin's requeue): the marker comes back.
        e.recipients[1].state = RecipientState::pending;
        REQUIRE(!t.queue.update(e));
        REQUIRE(!t.queue.list_domain("b.example", ids));
        CHECK(ids == std::vector<std::string>{id});

        for (auto& r : e.recipients) r.state = RecipientState::bounced;
        REQUIRE(!t.queue.update(e));
        REQUIRE(!t.queue.load(id, loaded));
        CHECK(loaded.finished());
        REQUIRE(!t.queue.list_domain("a.example", ids));
        CHECK(ids.empty());
        REQUIRE(!t.queue.list_domain("b.example", ids));
        CHECK(ids.empty());

        REQUIRE(!t.queue.remove(id));
        CHECK(t.queue.update(e) == std::errc::no_such_file_or_directory);  // no resurrection
        CHECK(t.files().empty());
        Envelope bad = e;
        bad.id = "../x";
        CHECK(t.queue.update(bad) == std::errc::invalid_argument);
    }

    TEST_CASE("removing several messages together takes their envelopes, contents and markers") {
        TempQueue t;
        Envelope a = make_envelope({"1@a.example"});
        Envelope b = make_envelope({"2@b.example", "3@a.example"});
        Envelope c = make_envelope({"4@c.example"});
        Envelope keep = make_envelope({"5@a.example"});
        const std::string ida = queue_message(t.queue, a), idb = queue_message(t.queue, b),
                          idc = queue_message(t.queue, c), idkeep = queue_message(t.queue, keep);
        const std::vector<std::string> batch{ida, idb, idc};
        const std::vector<std::error_code> errors = t.queue.remove(batch);
        REQUIRE(errors.size() == 3);
        for (const auto& ec : errors) CHECK(!ec);
        CHECK(t.files() == std::vector<std::string>{"content/" + idkeep, "domain/a.example/" + idkeep,
                                                    "envelope/" + idkeep});
        std::vector<std::string> ids;
        REQUIRE(!t.queue.list(ids));
        CHECK(ids == std::vector<std::string>{idkeep});
        REQUIRE(!t.queue.list_domain("b.example", ids));
        CHECK(ids.empty());
        Envelope gone;
        CHECK(t.queue.load(idb, gone) == std::errc::no_such_file_or_directory);
        // Again: each is already gone.
        for (const auto& ec : t.queue.remove(batch)) CHECK(ec == std::errc::no_such_file_or_directory);
    }

    TEST_CASE("a bad or missing id in a removal batch gets its own error and spares the others") {
        TempQueue t;
        Envelope a = make_envelope({"1@a.example"});
        Envelope b = make_envelope({"2@b.example"});
        Envelope bad = make_envelope({"3@c.example"});
        const std::string ida = queue_message(t.queue, a), idb = queue_message(t.queue, b),
                          idbad = queue_message(t.queue, bad);
        write_raw(t.path("envelope/" + idbad), "queue-envelope 1\nid " + idbad + "\nbogus 1\n");
        std::string missing;
        REQUIRE(!new_id(missing));
        const std::vector<std::string> batch{"../x", ida, missing, idbad, "", idb, ida};
        const std::vector<std::error_code> errors = t.queue.remove(batch);
        REQUIRE(errors.size() == batch.size());
        CHECK(errors[0] == std::errc::invalid_argument);
        CHECK(!errors[1]);
        CHECK(errors[2] == std::errc::no_such_file_or_directory);
        CHECK(!errors[3]);  // malformed: removed too, its marker left for recover()
        CHECK(errors[4] == std::errc::invalid_argument);
        CHECK(!errors[5]);
        CHECK(errors[6] == std::errc::no_such_file_or_directory);  // given twice
        CHECK(t.files() == std::vector<std::string>{"domain/c.example/" + idbad});
        RecoverReport report;
        REQUIRE(!t.queue.recover(wall_clock() + 10, 0, report));
        CHECK(report.markers_removed == 1);
        CHECK(t.files().empty());
    }

    TEST_CASE("an empty removal batch returns no errors and touches nothing") {
        TempQueue t;
        Envelope a = make_envelope({"1@a.example"});
        const std::string ida = queue_message(t.queue, a);
        const auto before = t.files();
        CHECK(t.queue.remove(std::span<const std::string>{}).empty());
        CHECK(t.queue.remove(std::vector<std::string>{}).empty());
        CHECK(t.files() == before);
        // The single-id form still works next to it.
        CHECK(!t.queue.remove(ida));
        CHECK(t.files().empty());
    }

    TEST_CASE("list_due returns the messages whose next attempt has come") {
        TempQueue t;
        Envelope m1 = make_envelope({"a@x.example"});
        m1.next_attempt = 100;
        Envelope m2 = make_envelope({"b@x.example"});
        m2.next_attempt = 200;
        const std::string id1 = queue_message(t.queue, m1), id2 = queue_message(t.queue, m2);
        std::vector<std::string> ids;
        REQUIRE(!t.queue.list_due(99, ids));
        CHECK(ids.empty());
        REQUIRE(!t.queue.list_due(100, ids));
        CHECK(ids == std::vector<std::string>{id1});
        REQUIRE(!t.queue.list_due(200, ids));
        CHECK(ids == std::vector<std::string>{id1, id2});
        m1.next_attempt = 300;
        REQUIRE(!t.queue.update(m1));
        REQUIRE(!t.queue.list_due(250, ids));
        CHECK(ids == std::vector<std::string>{id2});
        REQUIRE(!t.queue.list(ids));
        CHECK(ids == std::vector<std::string>{id1, id2});
    }

    TEST_CASE("a crash mid-update leaves the old envelope; recover removes only stale leftovers") {
        TempQueue t;
        Envelope e = make_envelope({"a@a.example", "b@b.example"});
        const std::string id = queue_message(t.queue, e);
        const Envelope before = e;
        // What a crash leaves: a half-written temporary envelope, a finished one that
        // was never renamed, a content temp file of a dead writer, junk.
        Envelope after = e;
        after.recipients[0].state = RecipientState::delivered;
        const std::string full = format_envelope(after);
        write_raw(t.path("tmp/" + id + ".envelope.half"), full.substr(0, full.size() / 2));
        write_raw(t.path("tmp/" + id + ".envelope.whole"), full);
        write_raw(t.path("tmp/0000000000000100000000000000.content"), "partial");
        // An orphan content and marker (a crash inside commit or remove).
        const std::string orphan = "0000000000000200000000000000";
        write_raw(t.path("content/" + orphan), "orphan");
        write_raw(t.path("domain/a.example/" + orphan), "");
        // A marker for a domain with nothing pending (a crash inside update).
        REQUIRE(fs::create_directory(t.path("domain/c.example")));
        write_raw(t.path("domain/c.example/" + id), "");
        // A missing marker (lost by a crash before its fsync, or deleted by hand).
        REQUIRE(::unlink(t.path("domain/b.example/" + id).c_str()) == 0);

        Envelope loaded;
        REQUIRE(!t.queue.load(id, loaded));
        CHECK(loaded == before);
        std::vector<std::string> ids;
        REQUIRE(!t.queue.list(ids));
        CHECK(ids == std::vector<std::string>{id});

        // Young leftovers may belong to a commit in progress: kept.
        RecoverReport report;
        REQUIRE(!t.queue.recover(wall_clock(), 3600, report));
        CHECK(report.temps_removed == 0);
        CHECK(report.contents_removed == 0);
        CHECK(report.markers_removed == 0);
        CHECK(report.markers_added == 1);
        CHECK(report.corrupt.empty());
        REQUIRE(!t.queue.list_domain("b.example", ids));
        CHECK(ids == std::vector<std::string>{id});
        CHECK(t.files().size() == 10);

        for (const auto& f : t.files())
            if (f.find(id) == std::string::npos || f.rfind("tmp/", 0) == 0 || f.rfind("domain/c", 0) == 0)
                set_mtime(t.path(f), 1000);
        set_mtime(t.path("domain/c.example"), 1000);
        REQUIRE(!t.queue.recover(1000 + 3600, 3600, report));
        CHECK(report.temps_removed == 3);
        CHECK(report.contents_removed == 1);
        CHECK(report.markers_removed == 2);
        CHECK(report.markers_added == 0);
        CHECK(t.files() == std::vector<std::string>{"content/" + id, "domain/a.example/" + id,
                                                    "domain/b.example/" + id, "envelope/" + id});
        CHECK(!fs::exists(t.path("domain/c.example")));  // empty and old: pruned
        REQUIRE(!t.queue.load(id, loaded));
        CHECK(loaded == before);
    }

    TEST_CASE("recover reports an unparsable envelope and leaves it alone") {
        TempQueue t;
        Envelope e = make_envelope({"a@a.example"});
        const std::string id = queue_message(t.queue, e);
        write_raw(t.path("envelope/" + id), "queue-envelope 1\nid " + id + "\n");
        RecoverReport report;
        REQUIRE(!t.queue.recover(wall_clock() + 100000, 3600, report));
        CHECK(report.corrupt == std::vector<std::string>{id});
        CHECK(report.markers_removed == 0);
        CHECK(report.contents_removed == 0);
        CHECK(t.files().size() == 3);
        Envelope loaded;
        std::string why;
        CHECK(t.queue.load(id, loaded, &why) == std::errc::bad_message);
        CHECK(why == "line 3: truncated: no end line");
        std::string listing;
        REQUIRE(!t.queue.summary(0, listing));
        CHECK(listing == id + " " + short_id(id) + " unreadable: line 3: truncated: no end line\n");
    }

    TEST_CASE("the parser rejects malformed envelopes with a reason and never crashes") {
        struct Case {
            std::string text;
            std::string why;
        };
        auto with = [](std::size_t index, const std::string& line) {
            auto lines = good_lines;
            lines[index] = line;
            return join(lines);
        };
        auto inserted = [](std::size_t index, const std::string& line) {
            auto lines = good_lines;
            lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(index), line);
            return join(lines);
        };
        auto without = [](std::size_t index) {
            auto lines = good_lines;
            lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(index));
            return join(lines);
        };
        const std::string good = join(good_lines);
        const std::vector<Case> cases = {
            {"", "line 0: empty file"},
            {good.substr(0, good.size() - 1), "line 0: truncated: no final newline"},
            {join({good_lines.begin(), good_lines.end() - 1}), "line 13: truncated: no end line"},
            {with(0, "queue-envelope 2"), "line 1: unsupported version \"2\""},
            {with(0, "queue-envelope  1"), "line 1: unsupported version \" 1\""},
            {with(0, "From a@b"), "line 1: not a queue envelope"},
            {inserted(3, "colour blue"), "line 4: unknown key \"colour\""},
            {inserted(3, "Arrival 5"), "line 4: unknown key \"Arrival\""},
            {inserted(3, "x\x1b[2J 5"), "line 4: unknown key \"x+1B[2J\""},
            {inserted(3, "arrival 1000"), "line 4: duplicate key arrival"},
            {inserted(5, "sender c@d"), "line 6: duplicate key sender"},
            {without(4), "line 13: missing key sender"},
            {without(1), "line 13: missing key id"},
            {without(11), "line 13: no rcpt"},
            {with(4, "sender a+2"), "line 5: bad escape in sender"},
            {with(4, "sender a+2g"), "line 5: bad escape in sender"},
            {with(4, "sender a+2b"), "line 5: bad escape in sender"},
            {with(4, "sender a=b"), "line 5: bad escape in sender"},
            {with(4, "sender a\rb"), "line 5: bad escape in sender"},
            {with(4, "sender a b"), "line 5: space in the value of sender"},
            {with(4, "sender"), "line 5: line without a space"},
            {with(2, "arrival 01000"), "line 3: bad number in arrival"},
            {with(2, "arrival +1000"), "line 3: bad number in arrival"},
            {with(2, "arrival -0"), "line 3: bad number in arrival"},
            {with(2, "arrival 99999999999999999999"), "line 3: bad number in arrival"},
            {with(3, "content-size -1"), "line 4: bad number in content-size"},
            {with(1, "id 0000000000000100000000000000/"), "line 2: bad id"},
            {with(5, "body binarymime"), "line 6: bad body"},
            {with(6, "smtputf8 1"), "line 7: bad smtputf8"},
            {with(7, "ret FULL"), "line 8: bad ret"},
            {with(11, "rcpt to=x domain=e state=sent attempts=0 notify= error="), "line 12: bad rcpt state"},
            {with(11, "rcpt to=x domain= state=pending attempts=0 notify= error="),
             "line 12: rcpt domain is empty"},
            {with(11, "rcpt domain=e to=x state=pending attempts=0 notify= error="),
             "line 12: rcpt field 1 must be to"},
            {with(11, "rcpt to=x domain=e state=pending attempts=0 notify= "),
             "line 12: rcpt ends with a space"},
            {with(11, "rcpt to=x domain=e state=pending attempts=0 notify=never,never error="),
             "line 12: bad rcpt notify"},
            {with(11, "rcpt to=x domain=e state=pending attempts=0 notify=success, error="),
             "line 12: bad rcpt notify"},
            {with(11, "rcpt to=x domain=e state=pending attempts=x notify= error="),
             "line 12: bad number in rcpt attempts"},
            {with(11, "rcpt to=x domain=e state=pending attempts=0 notify= error=a+0"),
             "line 12: bad escape in rcpt error"},
            {with(11, "rcpt to=x domain=e state=pending attempts=0 notify= orcpt-type= orcpt=y error="),
             "line 12: rcpt orcpt-type is empty"},
            {with(11, "rcpt to=x domain=e state=pending"),
             "line 12: rcpt needs fields to, domain, state, attempts, notify, error"},
            {with(11, "rcpt to"), "line 12: rcpt field without '='"},
            {good + "end\n", "line 14: data after end"},
            {good + "rcpt to=x domain=e state=pending attempts=0 notify= error=\n",
             "line 14: data after end"},
            {std::string("queue-envelope 1\0\n", 18), "line 1: unsupported version \"1+00\""},
        };
        for (const auto& c : cases) {
            CAPTURE(c.text);
            Envelope e;
            std::string why;
            CHECK(parse_envelope(c.text, e, &why) == std::errc::bad_message);
            CHECK(why == c.why);
        }

        Envelope e;
        REQUIRE(!parse_envelope(good, e));
        // Every proper prefix is a truncation, and is refused.
        for (std::size_t n = 0; n < good.size(); ++n)
            CHECK(parse_envelope(good.substr(0, n), e) == std::errc::bad_message);
        // Any byte changed to anything: an error or a valid envelope, never a crash.
        std::size_t accepted = 0;
        for (std::size_t i = 0; i < good.size(); ++i) {
            for (int b = 0; b < 256; ++b) {
                std::string mutated = good;
                mutated[i] = static_cast<char>(b);
                const auto ec = parse_envelope(mutated, e);
                CHECK((!ec || ec == std::errc::bad_message));
                if (!ec) ++accepted;
            }
        }
        CHECK(accepted > good.size());  // the unchanged byte at least, and some digits
    }

    TEST_CASE("load refuses a malformed envelope file and one whose id is not its name") {
        TempQueue t;
        Envelope e = make_envelope({"a@a.example"});
        const std::string id = queue_message(t.queue, e);
        Envelope loaded;
        std::string why;
        write_raw(t.path("envelope/" + id), join(good_lines));
        CHECK(t.queue.load(id, loaded, &why) == std::errc::bad_message);
        CHECK(why == "line 2: id does not match the file name");
        write_raw(t.path("envelope/" + id), "queue-envelope 1\nid " + id + "\nbogus 1\n");
        CHECK(t.queue.load(id, loaded, &why) == std::errc::bad_message);
        CHECK(why == "line 3: unknown key \"bogus\"");
        CHECK(t.queue.load("nope", loaded) == std::errc::invalid_argument);
        // remove() still takes a malformed message away.
        REQUIRE(!t.queue.remove(id));
        std::vector<std::string> ids;
        REQUIRE(!t.queue.list(ids));
        CHECK(ids.empty());
    }

    TEST_CASE("a write failure (EFBIG) is reported and leaves nothing behind") {
        TempQueue t;
        Envelope keep = make_envelope({"a@a.example"});
        const std::string kept = queue_message(t.queue, keep, "kept");
        const auto before = t.files();

        // The child lowers RLIMIT_FSIZE so that write(2) really fails; exit status 0
        // means every check in it held, another value names the first that failed.
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            struct rlimit limit {};
            limit.rlim_cur = limit.rlim_max = 1024 * 1024;
            if (std::signal(SIGXFSZ, SIG_IGN) == SIG_ERR || ::setrlimit(RLIMIT_FSIZE, &limit) != 0)
                ::_exit(10);

            // Failure while writing content.
            std::error_code ec;
            Writer w = t.queue.create(ec);
            if (ec) ::_exit(11);
            const std::string chunk(65536, 'x');
            std::error_code write_ec;
            for (int i = 0; i < 40 && !write_ec; ++i) write_ec = w.write(chunk);
            if (write_ec != std::errc::file_too_large) ::_exit(12);
            if (!is_resource_error(write_ec)) ::_exit(13);
            if (w.valid() || w.write("x") != std::errc::bad_file_descriptor) ::_exit(14);
            if (t.files() != before) ::_exit(15);

            // Failure while writing the envelope, after content and markers are in.
            Writer w2 = t.queue.create(ec);
            if (ec || w2.write("small")) ::_exit(16);
            Envelope big = make_envelope({"b@b.example"});
            big.last_error = std::string(2 * 1024 * 1024, 'e');
            if (w2.commit(big) != std::errc::file_too_large) ::_exit(17);
            if (!big.id.empty() || w2.valid()) ::_exit(18);
            if (t.files() != before) ::_exit(19);
            std::vector<std::string> ids;
            if (t.queue.list_domain("b.example", ids) || !ids.empty()) ::_exit(20);
            ::_exit(0);
        }
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        REQUIRE(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
        CHECK(t.files() == before);
        std::vector<std::string> ids;
        REQUIRE(!t.queue.list(ids));
        CHECK(ids == std::vector<std::string>{kept});
    }

    TEST_CASE("is_resource_error is true for ENOSPC, EDQUOT and EFBIG only") {
        CHECK(is_resource_error({ENOSPC, std::system_category()}));
        CHECK(is_resource_error({EDQUOT, std::system_category()}));
        CHECK(is_resource_error({EFBIG, std::system_category()}));
        CHECK(is_resource_error(std::make_error_code(std::errc::no_space_on_device)));
        CHECK(!is_resource_error({EIO, std::system_category()}));
        CHECK(!is_resource_error({EACCES, std::system_category()}));
        CHECK(!is_resource_error({}));
    }

    TEST_CASE("summary shows id, size, age, sender, recipients, next attempt and errors") {
        TempQueue t;
        Envelope e = make_envelope({"a@a.example", "b\x1b@b.example"}, 1000);
        e.sender = "";
        e.next_attempt = 1300;
        e.attempts = 2;
        e.last_error = "451 4.4.1 no answer\r\n";
        e.recipients[0].state = RecipientState::delivered;
        e.recipients[0].attempts = 1;
        e.recipients[1].attempts = 2;
        e.recipients[1].last_error = "connection refused";
        const std::string id = queue_message(t.queue, e, "12345");
        std::string listing;
        REQUIRE(!t.queue.summary(1090, listing));
        CHECK(listing == id + " " + short_id(id) +
                             " 5 1m <> next=+3m attempts=2 error=451 4.4.1 no answer+0D+0A\n"
                             "    <a@a.example> delivered attempts=1\n"
                             "    <b+1B@b.example> pending attempts=2 error=connection refused\n");
        listing.clear();
        REQUIRE(!t.queue.summary(90000, listing));
        CHECK(listing.find(" 5 1d0h <> next=due ") != std::string::npos);
    }

    TEST_CASE("domains that are no plain names are indexed under safe directory names") {
        TempQueue t;
        const std::string long_a = std::string(250, 'a') + ".example";
        const std::string long_b = std::string(250, 'a') + ".exampla";
        Envelope e = make_envelope({"x@[192.0.2.1]", "y@" + long_a, "z@" + long_b, "w@..", "v@a/b"});
        const std::string id = queue_message(t.queue, e);
        for (const auto& d :
             {std::string("[192.0.2.1]"), long_a, long_b, std::string(".."), std::string("a/b")}) {
            std::vector<std::string> ids;
            REQUIRE(!t.queue.list_domain(d, ids));
            CHECK(ids == std::vector<std::string>{id});
        }
        std::vector<std::string> dirs;
        for (const auto& d : fs::directory_iterator(t.path("domain")))
            dirs.push_back(d.path().filename().string());
        std::sort(dirs.begin(), dirs.end());
        REQUIRE(dirs.size() == 5);
        CHECK(dirs[0] == "+2E.");
        CHECK(dirs[1] == "+5B192.0.2.1+5D");
        CHECK(dirs[2] == "a+2Fb");
        CHECK(dirs[3].size() == 197);  // 180 + "~" + 16 hex digits
        CHECK(dirs[4].size() == 197);
        CHECK(dirs[3].substr(0, 180) == dirs[4].substr(0, 180));
        CHECK(dirs[3] != dirs[4]);
    }
}
