// apps/common/queue.hpp: the outgoing mail queue, shared by smtpd (writes) and smtpc
// (delivers, retries, bounces). The on-disk format is documented in
// doc/queue-format.md; this is the only code that reads or writes it.
//
// A message is two files: its content (the bytes received, stored once and never
// modified) and its envelope (sender, recipients with their states, ESMTP parameters,
// retry schedule), a strict line-based text file. Plus one empty marker file per
// recipient domain that still has pending recipients, so smtpc finds the messages for
// one destination without reading every envelope.
//
// Invariants:
//  - Every file reaches its final name by rename(2) of a complete, fsync'ed temporary
//    file, followed by an fsync of the directory: a crash leaves the old or the new
//    file, never a torn one.
//  - A message exists once its envelope exists. Its content and its index markers are
//    durable before the envelope is renamed into place (commit), and the envelope's
//    unlink is durable (directory fsync) before they are removed (remove, also when
//    several messages are removed together): an envelope never refers to missing
//    content.
//  - A marker without a live envelope, or for a domain with nothing pending, is
//    stale: harmless to readers (smtpc loads the envelope anyway) and removed by
//    recover(). Leftover temporary files are never read, only removed by recover().
//  - Queue ids are unique across processes and restarts, safe as file names, and sort
//    by arrival (microseconds since the epoch, pid, counter; lower-case hex).
//  - Every value in an envelope file is xtext-escaped: no byte string stored in an
//    address, parameter or error text can add a line or a field.
//
// Errors are std::error_code in std::system_category() holding errno values, so the
// caller compares with std::errc (ENOSPC, EDQUOT, EFBIG: is_resource_error(); a
// malformed envelope: std::errc::bad_message; a malformed id: invalid_argument).
//
// Time values are seconds since the epoch, passed in by the caller; only new ids
// read the clock.
//
// Thread safety: Queue is immutable after construction; its functions may be called
// from several threads and processes at once, except that the updates of one message
// (update, remove) must be serialized by the caller (smtpc owns a message while it
// delivers it). A Writer belongs to one thread.
#ifndef SMTP_APPS_COMMON_QUEUE_HPP
#define SMTP_APPS_COMMON_QUEUE_HPP

#include "common/fd.hpp"

#include <smtp/command.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace smtp::queue {

// ---------------------------------------------------------------- envelope

enum class RecipientState : std::uint8_t { pending, delivered, bounced };

struct Recipient {
    std::string address;  // the forward-path as received, without angle brackets
    std::string domain;   // its domain, lower-cased (ASCII): what smtpc routes on
    RecipientState state = RecipientState::pending;
    std::uint32_t attempts = 0;
    std::string last_error;             // the last failure for this recipient; empty: none
    std::uint8_t notify = notify_none;  // NOTIFY bits (RFC 3461 §4.1); none: not given
    std::string orcpt_type;             // ORCPT addr-type ("rfc822"); empty: no ORCPT
    std::string orcpt;                  // ORCPT address, xtext-decoded

    friend bool operator==(const Recipient&, const Recipient&) = default;
};

struct Envelope {
    std::string id;                     // set by Writer::commit() and Queue::load()
    std::int64_t arrival = 0;           // when smtpd accepted the message
    std::uint64_t content_size = 0;     // bytes in the content file; set by commit()
    std::string sender;                 // reverse-path without brackets; empty: <>
    std::optional<std::uint64_t> size;  // the SIZE parameter (RFC 1870), if given
    Body body = Body::unspecified;      // BODY (RFC 6152)
    bool smtputf8 = false;              // SMTPUTF8 (RFC 6531)
    Ret ret = Ret::unspecified;         // RET (RFC 3461 §4.3)
    std::optional<std::string> envid;   // ENVID (RFC 3461 §4.4), xtext-decoded
    std::optional<std::string> client;  // who sent it, for the DSN: "helo (name [ip])"
    std::uint32_t attempts = 0;         // delivery attempts of the message
    std::int64_t next_attempt = 0;      // not before this time
    std::string last_error;             // the last failure of the message; empty: none
    std::vector<Recipient> recipients;  // at least one

    // True when no recipient is pending: the message is done (bounce, then remove).
    bool finished() const noexcept;

    friend bool operator==(const Envelope&, const Envelope&) = default;
};

// The lower-cased (ASCII letters only) domain of an address: what follows its last
// '@'; empty when there is none.
std::string domain_of(std::string_view address);

// A pending recipient for `address`, with its domain filled in.
Recipient make_recipient(std::string_view address);

// The envelope as the text stored on disk. Total: any field values are encoded.
std::string format_envelope(const Envelope& envelope);

// Parses an envelope file. On success fills `out` (fully replaced) and returns {}.
// On any malformation returns std::errc::bad_message and, when `why` is given,
// "line N: reason" in it; `out` is then unspecified. Never throws on bad input
// (only std::bad_alloc).
std::error_code parse_envelope(std::string_view text, Envelope& out, std::string* why = nullptr);

// True for the errors smtpd answers with 452 4.3.1 (RFC 3463: mail system full):
// ENOSPC, EDQUOT, EFBIG. Everything else is 451 4.3.0.
bool is_resource_error(std::error_code ec) noexcept;

// ---------------------------------------------------------------- ids

// True if `id` has the form of a queue id (28 lower-case hex digits). Every Queue
// function checks this before using an id in a path.
bool is_valid_id(std::string_view id) noexcept;

// A new queue id (see the invariants above). Errors: those of clock_gettime(2).
// smtpd also names messages it delivers only locally with one, so every message has
// one id in the log.
std::error_code new_id(std::string& out);

// The Postfix-like short form for log lines: 12 hex digits (low microseconds, pid,
// counter). Not unique over time: log the full id once, when a message is queued.
std::string short_id(std::string_view id);

// ---------------------------------------------------------------- queue

class Queue;

// One message being received. Created by Queue::create(); content goes in by
// write(), then commit() makes the message visible, or abort() drops it. Destroying
// a Writer that was not committed aborts it. After an error (write, commit) the
// writer has already removed everything it made and is no longer valid().
class Writer {
public:
    Writer() = default;
    Writer(Writer&& other) noexcept;
    Writer& operator=(Writer&& other) noexcept;
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;
    ~Writer();

    bool valid() const noexcept { return fd_.valid(); }
    const std::string& id() const noexcept { return id_; }
    std::uint64_t size() const noexcept { return size_; }  // bytes written so far

    // Appends `chunk` to the content. Small chunks are gathered in a fixed buffer.
    // Errors: those of write(2) (ENOSPC, EDQUOT, EFBIG, EIO); EBADF if not valid().
    std::error_code write(std::string_view chunk);

    // Makes the message durable and visible: content, markers, envelope, in that
    // order, each fsync'ed. Sets envelope.id and envelope.content_size. Returns {}
    // only when all of it is on disk: only then may smtpd answer 250.
    // Errors: EINVAL (no recipient, a recipient without domain), those of the
    // system calls; EBADF if not valid(). On error nothing of the message remains.
    std::error_code commit(Envelope& envelope);

    // Drops the message: removes its temporary file. Safe to call at any time.
    void abort() noexcept;

private:
    friend class Queue;
    std::error_code flush();
    std::error_code fail(std::error_code ec) noexcept;  // abort(), return ec

    std::string root_;  // the queue's root: a Writer does not depend on its Queue's lifetime
    Fd fd_;
    std::string id_;
    std::string tmp_path_;
    std::uint64_t size_ = 0;
    std::unique_ptr<char[]> buffer_;
    std::size_t buffered_ = 0;
};

// What recover() found and did.
struct RecoverReport {
    std::size_t temps_removed = 0;     // stale temporary files
    std::size_t contents_removed = 0;  // content files without envelope
    std::size_t markers_removed = 0;   // stale index markers
    std::size_t markers_added = 0;     // missing index markers, recreated
    std::vector<std::string> corrupt;  // ids whose envelope does not parse, or
                                       // whose content is missing: left alone
};

class Queue {
public:
    // `root` is the queue directory; nothing is touched until a call.
    explicit Queue(std::string root);

    const std::string& root() const noexcept { return root_; }

    // Creates root and its subdirectories (mode 0700) where missing. Call at start.
    std::error_code prepare() const;

    // A new message with a new id. `ec` is {} on success; otherwise the returned
    // Writer is not valid(). Errors: those of open(2) in tmp/.
    Writer create(std::error_code& ec) const;

    // All queued ids, sorted (= by arrival). Temporary files are never listed.
    std::error_code list(std::vector<std::string>& ids) const;

    // The ids whose next attempt is at or before `now`, sorted. Cheap: it reads the
    // envelope files' mtime, which commit() and update() set to next_attempt; the
    // envelope stays authoritative (an admin may touch a file to make it due).
    std::error_code list_due(std::int64_t now, std::vector<std::string>& ids) const;

    // The ids with a marker for `domain` (lower-cased here), sorted: every message
    // with a pending recipient there, and possibly stale ones (load() then fails
    // with ENOENT or shows nothing pending for the domain: skip them).
    std::error_code list_domain(std::string_view domain, std::vector<std::string>& ids) const;

    // Reads and parses the envelope of `id`. Errors: EINVAL (bad id), ENOENT (no such
    // message), EBADMSG (malformed; `why` says where), those of open/read.
    std::error_code load(std::string_view id, Envelope& out, std::string* why = nullptr) const;

    // Opens the content of `id` for reading. Errors: EINVAL, ENOENT, those of open(2).
    std::error_code open_content(std::string_view id, Fd& out) const;

    // Replaces the envelope of envelope.id atomically (recipient states, attempts,
    // next attempt, errors), then drops the markers of domains with nothing pending
    // left. The recipients must be the same addresses as committed. Errors: EINVAL,
    // ENOENT (the message is gone), those of the system calls. On error the old
    // envelope is in place.
    std::error_code update(const Envelope& envelope) const;

    // Removes a finished message: envelope first, then content and markers. Errors:
    // EINVAL, ENOENT, those of the system calls; after the envelope is gone the rest
    // is best effort (recover() finishes it). remove(ids) for one id.
    std::error_code remove(std::string_view id) const;

    // Removes several finished messages for the price of one directory fsync: each
    // envelope is loaded (for its markers) and unlinked, then envelope/ is fsync'ed
    // once, then the contents and markers of those whose envelope went are removed.
    // Returns one error per id, in the order of `ids`, as remove(id) would give it: an
    // id's error (EINVAL, ENOENT, an unlink's) leaves the others unaffected; a failed
    // fsync is the error of every id whose envelope was unlinked (gone, durability
    // unknown; its content stays for recover()). An id given twice gets ENOENT the
    // second time. An empty `ids` touches nothing.
    std::vector<std::error_code> remove(std::span<const std::string> ids) const;

    // Repairs what a crash can leave: temporary files, contents without envelope and
    // stale markers older than `grace` seconds (younger ones may belong to a commit
    // in progress) are removed; missing markers are added. Run by smtpc at start and
    // now and then; safe while smtpd commits.
    std::error_code recover(std::int64_t now, std::int64_t grace, RecoverReport& report) const;

    // A `--list` style report, one block per message, oldest first:
    //   <id> <short> <size> <age> <sender> next=<when> attempts=<n> [error=...]
    //       <recipient> <state> [attempts=<n>] [error=...]
    // Control bytes are shown as +XX. Unreadable envelopes are listed as such.
    // The text is appended to `out`.
    std::error_code summary(std::int64_t now, std::string& out) const;

private:
    friend class Writer;
    std::string path(std::string_view dir, std::string_view name) const;
    std::error_code write_envelope(const Envelope& envelope) const;
    std::error_code add_markers(const Envelope& envelope, std::vector<std::string>* added) const;
    void remove_markers(const Envelope& envelope, bool only_finished) const noexcept;

    std::string root_;
};

}  // namespace smtp::queue

#endif
