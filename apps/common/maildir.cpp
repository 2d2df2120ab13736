// common/maildir.cpp: see maildir.hpp. The order of system calls is what makes a
// delivery safe (the maildir spec, and D. J. Bernstein's qmail-local): write in tmp/,
// fsync, rename into new/, fsync new/. Every step is checked; every failure removes
// what this delivery created so far, and only that.
#include <common/maildir.hpp>

#include <smtp/command.hpp>

#include <fmt/format.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iterator>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace smtp {

namespace {

std::error_code errno_code(int e = errno) noexcept { return {e, std::system_category()}; }

// Opens the directory `name` under `dir_fd`, creating it (0700) first if missing.
// O_NOFOLLOW: a symlink in its place is ELOOP, never followed out of the mail root.
// A directory we created is made durable by fsyncing its parent: the message's
// durability needs the whole path, not only new/ itself.
Fd open_or_create_dir(int dir_fd, const char* name, std::error_code& ec) noexcept {
    bool created = false;
    if (::mkdirat(dir_fd, name, 0700) == 0) {
        created = true;
    } else if (errno != EEXIST) {
        ec = errno_code();
        return {};
    }
    Fd fd{::openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)};
    if (!fd) {
        ec = errno_code();
        // Linux says ENOTDIR for a symlink under O_DIRECTORY|O_NOFOLLOW; say ELOOP, the
        // usual O_NOFOLLOW error, so the log tells a planted symlink from a stray file.
        struct stat st {};
        if (errno == ENOTDIR && ::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
            ec = errno_code(ELOOP);
        return {};
    }
    if (created && ::fsync(dir_fd) != 0) {
        ec = errno_code();
        return {};
    }
    return fd;
}

// Belt and braces on top of is_safe_mailbox(): the lexical path <root>/<mailbox> must
// be exactly one component below the root. Cannot fail for a safe name; it is here so
// that a future change to is_safe_mailbox() cannot open a way out of the root.
bool lexically_inside(const std::string& root, std::string_view mailbox) {
    namespace fs = std::filesystem;
    const fs::path base = fs::path(root).lexically_normal();
    const fs::path full = (base / fs::path(mailbox)).lexically_normal();
    const fs::path rel = full.lexically_relative(base);
    return !rel.empty() && rel == fs::path(mailbox) && std::distance(rel.begin(), rel.end()) == 1;
}

// The maildir spec's escapes for the host part: '/' and ':' would break the path and
// the ":2,flags" info suffix.
std::string escape_host(std::string_view host) {
    std::string out;
    out.reserve(host.size());
    for (const char c : host) {
        if (c == '/')
            out += "\\057";
        else if (c == ':')
            out += "\\072";
        else
            out += c;
    }
    return out;
}

}  // namespace

// ---------------------------------------------------------------- mailbox names

bool is_safe_mailbox(std::string_view name) noexcept {
    if (name.empty() || name.size() > max_mailbox_name) return false;
    // A leading dot would hide the mailbox, and "." / ".." would leave it.
    if (name.front() == '.') return false;
    if (name.find("..") != std::string_view::npos) return false;
    bool non_ascii = false;
    for (std::size_t i = 0; i < name.size(); ++i) {
        const auto c = static_cast<unsigned char>(name[i]);
        if (c == '/' || c < 0x20 || c == 0x7F) return false;
        if (c >= 0x80) {
            non_ascii = true;
            // U+0080..U+009F (C1 controls) are C2 80..C2 9F in UTF-8: refused like C0.
            if (c == 0xC2 && i + 1 < name.size() && static_cast<unsigned char>(name[i + 1]) <= 0x9F)
                return false;
        }
    }
    return !non_ascii || is_valid_utf8(name);
}

std::optional<std::string> mailbox_for(std::string_view local_part) {
    // Cheap early refusal before allocating: quoting adds at most 2 + one backslash
    // per octet, so anything longer cannot unquote to max_mailbox_name octets.
    if (local_part.size() > 2 * max_mailbox_name + 2) return std::nullopt;
    std::string name = unquote_local_part(local_part);
    for (char& c : name)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (!is_safe_mailbox(name)) return std::nullopt;
    return name;
}

// ---------------------------------------------------------------- replies

DeliveryReply delivery_error_reply(std::error_code ec) noexcept {
    const bool is_errno = ec.category() == std::system_category() || ec.category() == std::generic_category();
    if (ec && is_errno) {
        switch (ec.value()) {
            case ENOSPC:
            case EDQUOT:
            case EFBIG:
                // RFC 5321 §4.2.2 452, RFC 3463 §3.4 X.3.1 "mail system full".
                return {452, {4, 3, 1}, "Insufficient system storage"};
            default:
                break;
        }
    }
    // RFC 5321 §4.2.2 451, RFC 3463 §3.4 X.3.0 "other or undefined mail system status".
    return {451, {4, 3, 0}, "Local error in processing"};
}

// ---------------------------------------------------------------- the mail root

MailRoot MailRoot::open(const std::string& path, std::error_code& ec, std::string_view hostname) {
    ec.clear();
    MailRoot root;
    // The root itself may be a symlink (the admin's choice, e.g. /var/mail -> /srv/mail);
    // what is below it may not.
    Fd fd{::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (!fd) {
        ec = errno_code();
        return root;
    }
    std::string host;
    if (hostname.empty()) {
        std::array<char, HOST_NAME_MAX + 1> buf{};
        if (::gethostname(buf.data(), buf.size() - 1) != 0) {
            ec = errno_code();
            return root;
        }
        host = buf.data();  // buf's last byte stays NUL even if the name was truncated
        if (host.empty()) host = "localhost";
    } else {
        host = hostname;
    }
    root.host_part_ = escape_host(host);
    root.path_ = path;
    root.fd_ = std::move(fd);
    return root;
}

bool MailRoot::has_mailbox(std::string_view mailbox) const noexcept {
    if (!valid() || !is_safe_mailbox(mailbox)) return false;
    const std::string name(mailbox);  // bounded by max_mailbox_name: no real allocation risk
    struct stat st {};
    if (::fstatat(fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return false;
    return S_ISDIR(st.st_mode);
}

std::string maildir_unique_name(std::string_view host_part) {
    // Process-wide, so two MailRoots in one process never hand out the same Q<n>. The
    // pid in the name separates processes (forked workers get new pids).
    static std::atomic<std::uint64_t> counter{0};
    const std::uint64_t n = counter.fetch_add(1, std::memory_order_relaxed);
    timespec now{};
    // CLOCK_REALTIME cannot fail on Linux; if it did, P<pid>Q<n> still keeps names
    // unique within this boot, and O_EXCL catches the rest.
    if (::clock_gettime(CLOCK_REALTIME, &now) != 0) now = timespec{};
    return fmt::format("{}.M{}P{}Q{}.{}", static_cast<long long>(now.tv_sec), now.tv_nsec / 1000,
                       static_cast<long>(::getpid()), n, host_part);
}

// ---------------------------------------------------------------- MaildirWriter

MaildirWriter::MaildirWriter(MaildirWriter&& other) noexcept
    : tmp_dir_(std::move(other.tmp_dir_)),
      new_dir_(std::move(other.new_dir_)),
      file_(std::move(other.file_)),
      mailbox_(std::move(other.mailbox_)),
      name_(std::move(other.name_)),
      size_(std::exchange(other.size_, 0)),
      in_tmp_(std::exchange(other.in_tmp_, false)),
      in_new_(std::exchange(other.in_new_, false)),
      committed_(std::exchange(other.committed_, false)),
      error_(std::exchange(other.error_, {})) {}

MaildirWriter& MaildirWriter::operator=(MaildirWriter&& other) noexcept {
    if (this != &other) {
        abort();
        tmp_dir_ = std::move(other.tmp_dir_);
        new_dir_ = std::move(other.new_dir_);
        file_ = std::move(other.file_);
        mailbox_ = std::move(other.mailbox_);
        name_ = std::move(other.name_);
        size_ = std::exchange(other.size_, 0);
        in_tmp_ = std::exchange(other.in_tmp_, false);
        in_new_ = std::exchange(other.in_new_, false);
        committed_ = std::exchange(other.committed_, false);
        error_ = std::exchange(other.error_, {});
    }
    return *this;
}

std::error_code MaildirWriter::open(const MailRoot& root, std::string_view mailbox, std::string_view prefix) {
    abort();
    mailbox_.clear();
    name_.clear();
    size_ = 0;
    committed_ = false;
    error_.clear();

    if (!root.valid() || !is_safe_mailbox(mailbox) || !lexically_inside(root.path(), mailbox))
        return fail(errno_code(EINVAL));
    mailbox_ = mailbox;

    std::error_code ec;
    Fd box = open_or_create_dir(root.fd(), mailbox_.c_str(), ec);
    if (ec) return fail(ec);
    tmp_dir_ = open_or_create_dir(box.get(), "tmp", ec);
    if (ec) return fail(ec);
    new_dir_ = open_or_create_dir(box.get(), "new", ec);
    if (ec) return fail(ec);
    // cur/ is never written here, but a Maildir without it is not a Maildir to MUAs.
    Fd cur = open_or_create_dir(box.get(), "cur", ec);
    if (ec) return fail(ec);
    // Read-only directory fds: close(2) has nothing to report for them.
    static_cast<void>(cur.close());
    static_cast<void>(box.close());

    // A name collision needs the same pid, counter and microsecond (a clock stepped
    // back, a pid reused): take a fresh name a few times before giving up.
    constexpr int max_attempts = 8;
    for (int attempt = 0; attempt < max_attempts; ++attempt) {
        name_ = maildir_unique_name(root.host_part());
        file_ = Fd{::openat(tmp_dir_.get(), name_.c_str(),
                            O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)};
        if (file_ || errno != EEXIST) break;
    }
    if (!file_) return fail(errno_code());
    in_tmp_ = true;
    return write(prefix);
}

std::error_code MaildirWriter::write(std::string_view data) {
    if (error_) return error_;
    if (!file_) return errno_code(EBADF);
    if (auto ec = write_all(file_.get(), data)) return fail(ec);
    size_ += data.size();
    return {};
}

std::error_code MaildirWriter::prepare() {
    if (error_) return error_;
    if (!file_) return errno_code(EBADF);
    // fsync is not retried after a failure: the kernel may have dropped the dirty
    // pages already, and a second fsync would wrongly report success.
    if (::fsync(file_.get()) != 0) return fail(errno_code());
    if (auto ec = file_.close()) return fail(ec);
    return {};
}

std::error_code MaildirWriter::publish() {
    if (error_) return error_;
    if (!in_tmp_ || file_) return errno_code(EBADF);  // not prepared
    // RENAME_NOREPLACE: an existing new/<name> (a clock stepped back) is EEXIST, never
    // silently replaced. File systems without the flag say EINVAL; link(2) + unlink(2)
    // is the classic equivalent that also never replaces.
    if (::renameat2(tmp_dir_.get(), name_.c_str(), new_dir_.get(), name_.c_str(), RENAME_NOREPLACE) != 0) {
        if (errno != EINVAL) return fail(errno_code());
        if (::linkat(tmp_dir_.get(), name_.c_str(), new_dir_.get(), name_.c_str(), 0) != 0)
            return fail(errno_code());
        in_new_ = true;
        if (::unlinkat(tmp_dir_.get(), name_.c_str(), 0) != 0) return fail(errno_code());
    }
    in_tmp_ = false;
    in_new_ = true;
    if (::fsync(new_dir_.get()) != 0) return fail(errno_code());
    return {};
}

void MaildirWriter::unpublish() noexcept {
    if (!in_new_) return;
    in_new_ = false;
    // Best effort: ENOENT means a MUA has already moved it to cur/ (then it is
    // delivered); nothing else can be done about any other error here.
    static_cast<void>(::unlinkat(new_dir_.get(), name_.c_str(), 0));
}

std::error_code MaildirWriter::commit() {
    if (auto ec = prepare()) return ec;
    if (auto ec = publish()) return ec;
    finish();
    return {};
}

void MaildirWriter::finish() noexcept {
    in_new_ = false;
    committed_ = true;
    // Read-only directory fds: close(2) has nothing to report for them.
    static_cast<void>(tmp_dir_.close());
    static_cast<void>(new_dir_.close());
}

void MaildirWriter::abort() noexcept {
    // The error of close(2) is irrelevant: the file is being thrown away.
    static_cast<void>(file_.close());
    if (in_tmp_) {
        in_tmp_ = false;
        // Best effort: if unlink fails, the tmp file is left for the usual 36-hour tmp/
        // cleanup of the maildir spec; it is never visible in new/.
        static_cast<void>(::unlinkat(tmp_dir_.get(), name_.c_str(), 0));
    }
    if (!committed_) unpublish();
    static_cast<void>(tmp_dir_.close());
    static_cast<void>(new_dir_.close());
}

std::error_code MaildirWriter::fail(std::error_code ec) noexcept {
    error_ = ec;
    abort();
    return ec;
}

// ---------------------------------------------------------------- MaildirDelivery

std::error_code MaildirDelivery::add(std::string_view mailbox, std::string_view prefix) {
    if (error_) return error_;
    if (committed_) return errno_code(EBADF);
    for (const auto& w : writers_)
        if (w.mailbox() == mailbox) return {};
    MaildirWriter writer;
    if (auto ec = writer.open(*root_, mailbox, prefix)) return fail(ec);
    writers_.push_back(std::move(writer));
    return {};
}

std::error_code MaildirDelivery::write(std::string_view data) {
    if (error_) return error_;
    if (committed_) return errno_code(EBADF);
    for (auto& w : writers_)
        if (auto ec = w.write(data)) return fail(ec);
    return {};
}

std::error_code MaildirDelivery::commit() {
    if (error_) return error_;
    if (committed_) return errno_code(EBADF);
    if (writers_.empty()) return errno_code(EINVAL);
    // Everything that can fail slowly (fsync of the data) first, while nothing is
    // visible yet; then the renames, which are quick and rarely fail.
    for (auto& w : writers_)
        if (auto ec = w.prepare()) return fail(ec);
    for (auto& w : writers_)
        if (auto ec = w.publish()) return fail(ec);  // fail() unpublishes the others
    for (auto& w : writers_) w.finish();
    committed_ = true;
    return {};
}

void MaildirDelivery::abort() noexcept {
    for (auto& w : writers_) w.abort();
}

std::error_code MaildirDelivery::fail(std::error_code ec) noexcept {
    error_ = ec;
    abort();
    return ec;
}

}  // namespace smtp
