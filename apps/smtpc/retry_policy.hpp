// apps/smtpc/retry_policy.hpp: all of smtpc's retry, defer and bounce policy, in one
// place (DESIGN.md), as pure functions of an envelope, results and the time.
//
//  - 2xx for a recipient: delivered.
//  - 5xx (or a permanent routing failure): bounced at once.
//  - 4xx, a connection failure, a temporary routing failure: still pending; the message's
//    next attempt is retry_min after the first failure, then doubles per attempt up to
//    retry_max (RFC 5321 §4.5.4.1: retries at least 30 minutes apart in production;
//    tests use seconds).
//  - A recipient still pending when the queue lifetime (since arrival) is spent, i.e.
//    now - arrival >= queue_lifetime, is bounced with its last error kept, or with
//    "451 4.4.7 Delivery time expired" if it never had one (RFC 3463 §3.5: X.4.7 is a
//    persistent transient status, so class 4 and a 4xx code to match, RFC 2034 §4; the
//    DSN says Action: failed, Status: 4.4.7, as sendmail's does).
// Errors are stored as the reply line given ("550 5.1.1 No such user"); a failure
// without text gets a placeholder reply, so last_error is never empty after a failure.
// A bounce is due for the recipients bounced in this step, unless the sender is the null
// path <> (RFC 5321 §4.5.5: never bounce a bounce), and only if one of them wants a
// failure notice: NOTIFY not given, or given with FAILURE (RFC 3461 §4.1; NEVER, or
// SUCCESS/DELAY without FAILURE, ask for none). make_dsn() applies the same rule to
// pick the recipients it lists.
//
// Thread safety: pure functions.
#ifndef SMTP_APPS_SMTPC_RETRY_POLICY_HPP
#define SMTP_APPS_SMTPC_RETRY_POLICY_HPP

#include "common/queue.hpp"
#include "job.hpp"

#include <chrono>
#include <cstdint>
#include <vector>

namespace smtp::smtpc {

struct RetryPolicy {
    std::chrono::seconds retry_min{300};
    std::chrono::seconds retry_max{14400};
    std::chrono::seconds queue_lifetime{432000};
};

// What applying results changed, for the log and the bounce.
struct Applied {
    std::vector<std::size_t> delivered;  // recipient indexes now delivered
    std::vector<std::size_t> deferred;   // now pending with a new error
    std::vector<std::size_t> bounced;    // now bounced (5xx or expired)
    bool bounce_due = false;             // a DSN must go to the sender for `bounced`
};

// Records the results of one delivery attempt in `envelope` (recipient states,
// attempts, last errors; the message's attempts, next_attempt and last_error), then
// expires what is too old. The message's attempts grow by one per call, a recipient's
// by one per result taken; next_attempt = now + retry_delay(attempts) + 1 (times are
// whole seconds: the retry never comes before the whole delay), saturating.
// Results for recipients that are not pending, out-of-range indexes and a second
// result for one index are ignored. Each index appears in at most one list of the
// result (a deferral that expired at once is only in `bounced`).
// `now`: seconds since the epoch.
Applied apply_results(queue::Envelope& envelope, const std::vector<RecipientResult>& results,
                      std::int64_t now, const RetryPolicy& policy);

// The same for a failure that reached no recipient (routing, every endpoint down):
// every listed pending recipient gets `outcome` and `reply` (Outcome::delivered is
// taken as temporary: a failure delivers nothing).
Applied apply_failure(queue::Envelope& envelope, const std::vector<std::size_t>& recipients, Outcome outcome,
                      const std::string& reply, std::int64_t now, const RetryPolicy& policy);

// Bounces every pending recipient of a message whose lifetime is spent (also run on
// messages found due before any attempt). Returns what it bounced.
Applied expire(queue::Envelope& envelope, std::int64_t now, const RetryPolicy& policy);

// RFC 3461 §4.1: NOTIFY=NEVER asks for no DSN at all; a NOTIFY list without FAILURE
// asks for none on failure. Without NOTIFY the MTA's default applies, which for
// failures is to send one (§6.1). A bounced recipient who does not want one is left
// out of the DSN, and alone causes none.
bool wants_failure_notice(const queue::Recipient& recipient) noexcept;

// The wait before attempt number `attempts` + 1: retry_min * 2^(attempts - 1), capped
// at retry_max, without overflow for any `attempts` (0 is taken as 1).
std::chrono::seconds retry_delay(std::uint32_t attempts, const RetryPolicy& policy) noexcept;

}  // namespace smtp::smtpc

#endif
