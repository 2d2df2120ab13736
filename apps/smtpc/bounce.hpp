// apps/smtpc/bounce.hpp: delivery status notifications (RFC 3464) for recipients
// that failed, and their delivery to the sender.
//
// The DSN is a multipart/report; report-type=delivery-status message (RFC 6522) from
// MAILER-DAEMON@<hostname>, sent with the null reverse path <> (RFC 5321 §4.5.5), to
// the original sender:
//   1. text/plain: a human explanation, each failed recipient with the reply;
//   2. message/delivery-status: [Original-Envelope-Id], Reporting-MTA: dns; <hostname>,
//      [Received-From-MTA: dns; <client>], Arrival-Date, then per recipient
//      [Original-Recipient], Final-Recipient: rfc822; <addr> (RFC 6533 "utf-8; " form
//      for a non-ASCII address), Action: failed, Status: <x.y.z>, Diagnostic-Code: smtp;
//      <reply>, Last-Attempt-Date. Status is the reply's enhanced code when it has one
//      of its class, else 5.0.0 / 4.0.0 from the basic code (5.0.0 without a code).
//      Remote-MTA is left out: the stored reply line does not say which host gave it;
//   3. text/rfc822-headers: the original message's header (RET=HDRS, the default; cut
//      at a line boundary at 64 KiB), or message/rfc822 with the whole message for
//      RET=FULL when it is at most 64 KiB; a larger one gets its header, and part 1
//      says so. No third part when `original` is empty.
// Header: Date (RFC 5322, UTC, +0000), From: MAILER-DAEMON@<hostname> (Mail Delivery
// System), To: <sender>, Subject: Undelivered Mail Returned to Sender, Message-ID:
// <boundary_seed.now@hostname>, Auto-Submitted: auto-replied (RFC 3834).
// Lines are CRLF and at most 998 octets; text from servers is cut and stripped of
// control bytes so it cannot break the structure; the boundary is checked against
// every part's content.
//
// Delivery of the DSN: when the sender's domain is local (Resolved::local_domain), into
// its Maildir (mailbox_for of the local part, MaildirWriter, with Return-Path: <>); else
// a new queue entry with the null sender and the sender as its one recipient (smtpc
// delivers it like any message; if it fails, it is never bounced again: null sender).
//
// Thread safety: functions of their arguments; the scheduler's thread calls them.
#ifndef SMTP_APPS_SMTPC_BOUNCE_HPP
#define SMTP_APPS_SMTPC_BOUNCE_HPP

#include "common/maildir.hpp"
#include "common/queue.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace smtp::smtpc {

struct BounceContext {
    std::string_view hostname;       // Reporting-MTA and the From: domain
    std::int64_t now = 0;            // Date:, Last-Attempt-Date (seconds since the epoch)
    std::string_view boundary_seed;  // makes the MIME boundary unique (e.g. the queue id)
};

// The DSN for the `failed` recipients (indexes) of `envelope`, in that order, each
// once; invalid indexes and recipients whose NOTIFY asks for no failure notice (the
// rule of retry_policy.hpp) are left out, so call it only when bounce_due. `original`
// is the original content (or at least its header, up to the blank line; for RET=FULL
// its first 64 KiB + 1 bytes are enough to decide); it is cut as the RET rule above
// says. The text ends in CRLF.
std::string make_dsn(const queue::Envelope& envelope, const std::vector<std::size_t>& failed,
                     std::string_view original, const BounceContext& context);

// Where a bounce goes, and sends it there: Maildir when `local_domain` holds the
// sender's domain, else the queue. Returns {} when the DSN is durably stored; errors of
// MaildirWriter and queue::Writer; EINVAL for a null sender (never bounced) or a local
// sender whose mailbox name is unsafe. `delivered_to` receives the Maildir path or the
// new queue id, for the log. The Maildir copy starts with "Return-Path: <>"; the
// queue copy has sender <>, the sender as its one recipient, arrival = next attempt =
// `now`, SMTPUTF8 for a non-ASCII sender and BODY=8BITMIME for a DSN with 8-bit bytes.
std::error_code send_bounce(const queue::Envelope& envelope, std::string_view dsn,
                            const std::vector<std::string>& local_domain, const MailRoot& mail_root,
                            const queue::Queue& queue, std::int64_t now, std::string& delivered_to);

}  // namespace smtp::smtpc

#endif
