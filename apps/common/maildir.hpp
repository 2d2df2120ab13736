// common/maildir.hpp: local delivery into Maildir (https://cr.yp.to/proto/maildir.html).
//
// smtpd delivers local mail here; smtpc puts bounces for local senders here. Layout:
//   <mail_root>/<mailbox>/{tmp,new,cur}
// The mail root must exist (a missing root is an error, ENOENT: a typo in the config
// must not silently create a second mail store). Mailbox directories and their tmp,
// new and cur are created on first delivery, mode 0700.
//
// A delivery streams: open() creates tmp/<unique> (O_CREAT|O_EXCL, mode 0600) and
// writes the caller's header prefix (Return-Path:, Received:), write() appends each
// chunk as it arrives from the SMTP session, commit() fsyncs and closes the file,
// renames it into new/ under the same name and fsyncs new/. Only when commit()
// returns success is the message safely stored: smtpd answers 250 only then.
//
// Invariants:
//  - Nothing partial ever appears in new/: a file gets there only by rename(2) after
//    fsync(2). abort(), any failed step and destruction without commit() unlink the
//    tmp file.
//  - Nothing is ever written outside the mail root: a mailbox is one path component
//    (see is_safe_mailbox), opened relative to the root's directory fd with
//    O_NOFOLLOW|O_DIRECTORY, as are tmp/ and new/, so a symlink planted in place of
//    any of them is refused (ELOOP), never followed.
//  - Unique names, per the maildir spec: <sec>.M<usec>P<pid>Q<n>.<host>, n from a
//    process-wide counter, '/' and ':' in the host written \057 and \072. O_EXCL in
//    tmp/ and RENAME_NOREPLACE into new/ make a collision an error, never an overwrite.
//  - Errors are std::error_code in std::system_category (errno values). No partial
//    state is kept after an error: the writer is closed and its tmp file gone.
//  - No buffering: every chunk goes straight to write(2) (looping over partial writes
//    and EINTR), so memory use does not grow with the message.
//
// Several recipients: MaildirDelivery writes one file per mailbox, all open at once
// (N files, not hard links: links would share one inode, so one recipient's MUA
// editing flags or content would touch the others', and they fail across file
// systems). It is all-or-nothing as far as POSIX allows, because SMTP has one reply
// after DATA for all recipients: see MaildirDelivery.
//
// Mailbox names: mailbox_for() turns an RCPT local part into a mailbox name or refuses
// it (smtpd answers bad_mailbox_reply, 550 5.1.3). Whether a mailbox is a known user
// (550 5.1.1 otherwise) is smtpd's policy, not decided here; MailRoot::has_mailbox()
// helps when "known" means "its Maildir exists".
//
// Thread safety: a MailRoot may be shared by threads once opened (its members are
// const and used only through *at() calls). Each MaildirWriter and MaildirDelivery
// belongs to one thread. The name counter is atomic.
#ifndef SMTP_APPS_COMMON_MAILDIR_HPP
#define SMTP_APPS_COMMON_MAILDIR_HPP

#include <common/fd.hpp>
#include <smtp/error.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace smtp {

// ---------------------------------------------------------------- mailbox names

// Longest mailbox name, in octets: the local-part limit of RFC 5321 §4.5.3.1.1.
inline constexpr std::size_t max_mailbox_name = 64;

// The mailbox name for an RCPT local part as written (Path::local_part: a dot-string,
// or a quoted-string with its quotes). Quoting is removed (unquote_local_part), then
// ASCII letters are lower-cased ("Alice" -> "alice"; RFC 5321 §2.4 lets the receiving
// host decide that local parts are case-insensitive, and every common MTA does).
// Returns nullopt, for 550 5.1.3, when the result
//  - is empty or longer than max_mailbox_name octets,
//  - contains '/', a control byte (0x00-0x1F, 0x7F), or ".." anywhere,
//  - starts with '.' (hidden files, and "." itself),
//  - has a byte >= 0x80 that is not well-formed UTF-8, or a C1 control (U+0080-U+009F).
// Well-formed UTF-8 (RFC 6531 local parts) is accepted as is: Linux file names are
// bytes, and refusing would make SMTPUTF8 users undeliverable. Only ASCII is
// case-folded, so "Ünï" and "ünï" are different mailboxes (Unicode case folding is
// locale-dependent and not ours to guess).
std::optional<std::string> mailbox_for(std::string_view local_part);

// True if `name` is acceptable as a mailbox name as is: the checks of mailbox_for()
// without unquoting or lower-casing ("Alice" passes). MaildirWriter::open() checks
// this again before touching the file system.
bool is_safe_mailbox(std::string_view name) noexcept;

// ---------------------------------------------------------------- replies

// What smtpd answers when a delivery fails or a recipient is refused.
struct DeliveryReply {
    int code;
    EnhancedStatus status;
    std::string_view text;  // static storage
};

// The reply for a failed delivery: 452 4.3.1 "Insufficient system storage" for
// ENOSPC, EDQUOT and EFBIG (the disk or the quota is full: worth retrying later,
// RFC 3463 §3.4 X.3.1), 451 4.3.0 "Local error in processing" for anything else,
// including an `ec` that is not an error (a bug must never turn into 250).
DeliveryReply delivery_error_reply(std::error_code ec) noexcept;

// A local part mailbox_for() refused (RFC 3463 §3.2 X.1.3).
inline constexpr DeliveryReply bad_mailbox_reply{550, {5, 1, 3}, "Bad destination mailbox address syntax"};
// A well-formed mailbox that is no known user, for smtpd's policy (X.1.1).
inline constexpr DeliveryReply unknown_mailbox_reply{550, {5, 1, 1}, "No such user here"};

// ---------------------------------------------------------------- the mail root

// The open mail root: its directory fd, its path (for messages) and the host part of
// unique names. Move-only.
class MailRoot {
public:
    MailRoot() = default;

    // Opens the existing directory `path`. `hostname` is the host part of unique
    // names; empty means gethostname(2). Errors: those of open(2) (ENOENT when the
    // root does not exist, ENOTDIR, EACCES...) and gethostname(2). On error `ec` is
    // set and the returned MailRoot is not valid().
    static MailRoot open(const std::string& path, std::error_code& ec, std::string_view hostname = {});

    bool valid() const noexcept { return fd_.valid(); }
    int fd() const noexcept { return fd_.get(); }
    const std::string& path() const noexcept { return path_; }
    // The host name as it appears in unique names ('/' -> \057, ':' -> \072).
    const std::string& host_part() const noexcept { return host_part_; }

    // True if <root>/<mailbox> is a directory (not a symlink to one). False for an
    // unsafe name or any error.
    bool has_mailbox(std::string_view mailbox) const noexcept;

private:
    Fd fd_;
    std::string path_;
    std::string host_part_;
};

// A new unique Maildir file name (without directory), as described above. Reads the
// clock; `host_part` is MailRoot::host_part(). Throws only std::bad_alloc.
std::string maildir_unique_name(std::string_view host_part);

// ---------------------------------------------------------------- one delivery

// One message being delivered into one mailbox.
//
//   MaildirWriter w;
//   if (auto ec = w.open(root, *mailbox_for(path.local_part), prefix)) -> 4xx
//   for each chunk: if (auto ec = w.write(chunk)) -> 4xx (w is already cleaned up)
//   if (auto ec = w.commit()) -> 4xx;  else -> 250
//
// After any error the writer is closed and its tmp file unlinked; later write() and
// commit() calls return that same error again (sticky) until the next open().
// Destroying or re-opening a writer that was not committed aborts it.
class MaildirWriter {
public:
    MaildirWriter() = default;
    MaildirWriter(MaildirWriter&& other) noexcept;
    MaildirWriter& operator=(MaildirWriter&& other) noexcept;
    MaildirWriter(const MaildirWriter&) = delete;
    MaildirWriter& operator=(const MaildirWriter&) = delete;
    ~MaildirWriter() { abort(); }

    // Creates the mailbox's directories if needed (0700), creates tmp/<unique name>
    // (0600) and writes `prefix` (the header lines the caller adds, CRLF-terminated).
    // `root` is used only during this call. Errors: EINVAL if !is_safe_mailbox(mailbox)
    // or !root.valid(); ELOOP if the mailbox, tmp/ or new/ is a symlink; ENOTDIR if one
    // is not a directory; those of mkdirat/openat/write (EACCES, ENOSPC, EDQUOT, ...).
    std::error_code open(const MailRoot& root, std::string_view mailbox, std::string_view prefix = {});

    // Appends `data` to the file. Errors: those of write(2) (ENOSPC, EDQUOT, EFBIG,
    // EIO); EBADF if the writer is not open. On error the tmp file is removed.
    std::error_code write(std::string_view data);

    // fsync, close, rename tmp/<name> -> new/<name> (never replacing a file), fsync
    // new/. Success means the message is on stable storage in new/. Errors: those of
    // fsync/close/renameat2 (EEXIST if new/<name> exists, ENOENT if new/ was removed,
    // EACCES); EBADF if not open. On error nothing is left in tmp/ or new/ — except
    // when only the final fsync of new/ fails: the rename already happened, so the file
    // is removed from new/ again, best effort (a MUA may have taken it meanwhile: then
    // it is delivered, and a retry by the client makes a duplicate, never a loss).
    std::error_code commit();

    // Closes and unlinks the tmp file of a delivery in progress; nothing otherwise.
    void abort() noexcept;

    bool is_open() const noexcept { return file_.valid(); }
    bool committed() const noexcept { return committed_; }
    // The unique file name (valid after a successful open(), also after commit()).
    const std::string& file_name() const noexcept { return name_; }
    const std::string& mailbox() const noexcept { return mailbox_; }
    // Bytes written so far, the prefix included.
    std::uint64_t size() const noexcept { return size_; }

private:
    friend class MaildirDelivery;

    // commit() in two halves, so MaildirDelivery can make N deliveries all-or-nothing:
    // prepare() fsyncs and closes the file (still in tmp/), publish() renames it into
    // new/ and fsyncs new/; unpublish() removes a published file from new/ again.
    std::error_code prepare();
    std::error_code publish();
    void unpublish() noexcept;
    // Marks a published writer delivered and releases its directory fds.
    void finish() noexcept;
    // Records `ec` as the sticky error, cleans up, returns `ec`.
    std::error_code fail(std::error_code ec) noexcept;

    Fd tmp_dir_;
    Fd new_dir_;
    Fd file_;
    std::string mailbox_;
    std::string name_;
    std::uint64_t size_ = 0;
    bool in_tmp_ = false;     // tmp/<name_> exists and is ours to unlink
    bool in_new_ = false;     // new/<name_> is ours, not yet confirmed: unlink on failure
    bool committed_ = false;  // new/<name_> is ours, delivered
    std::error_code error_;   // sticky
};

// The same message delivered into several mailboxes at once, all-or-nothing: smtpd
// has one reply after DATA for all recipients, so either every mailbox gets the
// message (250) or, as far as POSIX allows, none does (4xx, and the client retries).
//
// add() opens one MaildirWriter per distinct mailbox (a mailbox added twice, e.g. from
// RCPT <Alice> and <alice>, gets one copy). write() writes each chunk to every file.
// commit() first fsyncs and closes every file, then renames each into its new/ and
// fsyncs that; if any step fails, every file is removed again: from tmp/, or from new/
// if it already got there (best effort, as for MaildirWriter::commit). The first
// error is sticky: after it, every writer is aborted and later calls return it.
// `root` must outlive the MaildirDelivery.
class MaildirDelivery {
public:
    explicit MaildirDelivery(const MailRoot& root) noexcept : root_(&root) {}
    MaildirDelivery(MaildirDelivery&&) noexcept = default;
    MaildirDelivery& operator=(MaildirDelivery&&) noexcept = default;
    ~MaildirDelivery() { abort(); }

    // Errors: those of MaildirWriter::open, after which the whole delivery is aborted.
    std::error_code add(std::string_view mailbox, std::string_view prefix = {});
    std::error_code write(std::string_view data);
    // Errors: EINVAL when no mailbox was added; those of MaildirWriter::commit.
    std::error_code commit();
    void abort() noexcept;

    std::size_t size() const noexcept { return writers_.size(); }
    const std::vector<MaildirWriter>& writers() const noexcept { return writers_; }

private:
    std::error_code fail(std::error_code ec) noexcept;

    const MailRoot* root_;
    std::vector<MaildirWriter> writers_;
    std::error_code error_;
    bool committed_ = false;
};

}  // namespace smtp

#endif
