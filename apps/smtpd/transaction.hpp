// apps/smtpd/transaction.hpp: one mail transaction's storage: local recipients into
// their Maildirs, remote ones into the outgoing queue, with the trace headers.
//
//   Transaction t{mail_root, queue, hostname};
//   t.begin(mail_command, client);           // MAIL accepted
//   t.add_local("alice", "Alice@local");     // RCPT accepted, per recipient
//   t.add_remote(rcpt_command);
//   if (auto ec = t.open(now)) -> remember, answer after the dot (nothing written)
//   t.write(chunk) ...                       // errors are sticky, checked at commit
//   if (auto ec = t.commit()) -> delivery_error_reply(ec); else 250 queued as t.short_id()
//
// Headers (RFC 5321 §4.4): each local copy starts with "Return-Path: <sender>" (added
// at final delivery) and a Received: line; the queued copy gets only the Received:
// line (Return-Path is for the final delivery, which smtpc's peer makes). Received
// names the client's HELO, its verified reverse name when there is one, its address,
// this host, the protocol, the message id, "for <rcpt>" when there is exactly one
// recipient, and the date (local time with its UTC offset). A message received over
// TLS also gets Postfix's comment "(using TLSv1.3 with cipher ... (256/256 bits))" on
// a line of its own between the From and By clauses.
//
// Durability: commit() returns {} only when every copy is fsync'ed in place: first the
// queued copy (Queue's Writer::commit), then every Maildir copy (MaildirDelivery, all
// or nothing). If the Maildir step fails after the queue commit, the queued message is
// removed again (best effort; logged by the caller from the returned error), so the
// client's retry after our 4xx makes at most a duplicate, never a loss.
// On any error nothing partial is left: no tmp file, no half-written queue entry.
//
// One id per message: the queue's id when there are remote recipients, else a new id
// of the same form (queue::new_id), so every message has one id in the log.
//
// Thread safety: one Transaction per connection, used by one thread.
#ifndef SMTP_APPS_SMTPD_TRANSACTION_HPP
#define SMTP_APPS_SMTPD_TRANSACTION_HPP

#include "common/maildir.hpp"
#include "common/queue.hpp"

#include <smtp/command.hpp>

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace smtp::smtpd {

// Who sent the message, for the Received: line; begin() copies it.
struct ClientInfo {
    std::string_view helo;          // accepted HELO/EHLO name
    std::string_view reverse_name;  // forward-confirmed reverse DNS name, or empty
    std::string_view address;       // IP address as text
    std::string_view protocol;      // ServerSession::protocol(): SMTP, ESMTP, UTF8SMTP, ESMTPS...
    // In TLS: "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", shown as
    // Postfix does, in a comment of its own after the From clause; empty: no TLS.
    std::string_view tls;
};

class Transaction {
public:
    // All three must outlive the Transaction.
    Transaction(const MailRoot& mail_root, const queue::Queue& queue, const std::string& hostname) noexcept
        : mail_root_(&mail_root), queue_(&queue), hostname_(&hostname) {}
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    ~Transaction() { abort(); }

    // A new transaction (any previous one is aborted): the sender and MAIL parameters
    // of `mail` are copied (SIZE, BODY, SMTPUTF8, RET, ENVID decoded from xtext).
    void begin(const Command& mail, const ClientInfo& client);

    // An accepted local recipient: its mailbox name and its address as written. A
    // mailbox already added gets no second copy. Between begin() and open() only;
    // ignored otherwise.
    void add_local(std::string mailbox, std::string_view address);
    // An accepted remote recipient, with its NOTIFY and ORCPT (decoded from xtext). An
    // address already added (same local part, domain in any case) is stored once.
    // Between begin() and open() only; ignored otherwise.
    void add_remote(const Command& rcpt);

    bool active() const noexcept { return active_; }
    // Distinct destinations: each local mailbox and each remote address counted once.
    std::size_t recipient_count() const noexcept { return local_.size() + remote_.recipients.size(); }
    std::size_t local_count() const noexcept { return local_.size(); }
    std::size_t remote_count() const noexcept { return remote_.recipients.size(); }
    const std::string& sender() const noexcept { return remote_.sender; }

    // DATA: assigns the id, builds the headers and opens every copy (Maildir files,
    // the queue's content). `now` dates the Received: line. Errors: those of
    // queue::new_id, Queue::create, MaildirDelivery::add; EINVAL without recipients.
    // On error everything opened is removed again and the error is kept: write() then
    // does nothing and commit() returns it. EINVAL also when not active or already open.
    std::error_code open(std::time_t now);
    // Appends message data to every copy. The first error is kept and returned by
    // commit(); after it, write() does nothing.
    void write(std::string_view chunk);
    // Stores every copy durably (see above). Errors: the first write error, those of
    // Writer::commit and MaildirDelivery::commit; EINVAL if open() was not called.
    // Ends the transaction either way.
    std::error_code commit();
    // Drops the transaction and anything it wrote. Safe at any time.
    void abort() noexcept;

    // After commit() and abort() the accessors still describe the transaction that
    // ended (sender, counts, id, size), for the log line, until the next begin().
    // The id is empty before open().
    // After a successful commit(), until the next begin(): the file name in new/ of
    // the copy delivered into `mailbox`; empty if none.
    std::string_view delivered_file(std::string_view mailbox) const noexcept;

    const std::string& id() const noexcept { return id_; }
    std::string short_id() const { return queue::short_id(id_); }
    // Message bytes received (headers we added not included).
    std::uint64_t size() const noexcept { return size_; }

private:
    const MailRoot* mail_root_;
    const queue::Queue* queue_;
    const std::string* hostname_;
    bool active_ = false;
    std::string helo_, reverse_name_, address_, protocol_, tls_;  // from ClientInfo
    std::vector<std::string> local_;                              // mailbox names, in RCPT order
    std::vector<std::string> addresses_;                          // every accepted recipient as written
    queue::Envelope remote_;                                      // sender, parameters, remote recipients
    std::optional<MaildirDelivery> maildir_;
    queue::Writer queued_;
    std::string id_;
    std::uint64_t size_ = 0;
    bool opened_ = false;  // open() was called in this transaction (even if it failed)
    std::error_code error_;
    std::vector<std::pair<std::string, std::string>>
        delivered_;  // mailbox, file name in new/  // the first error since open(); sticky

    // Closes and removes every copy not yet committed; the transaction's data stays.
    void drop_copies() noexcept;
    std::error_code open_copies(std::time_t now);
};

}  // namespace smtp::smtpd

#endif
