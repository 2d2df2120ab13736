// apps/smtpc/retry_policy.cpp: see retry_policy.hpp. Every decision smtpc makes about
// delivered / deferred / bounced, the retry schedule and whether a DSN is owed is here
// and nowhere else (DESIGN.md; Postfix keeps the same rule in smtp_trouble.c/defer.c).
//
// Invariants kept on the envelope:
//  - A recipient leaves `pending` at most once; results for other states are ignored,
//    so a duplicated or late result can never turn a bounce into a delivery or back.
//  - A recipient's last_error and the message's last_error hold reply lines as given
//    ("550 5.1.1 No such user"); a failure never leaves them empty.
//  - Counters saturate instead of wrapping; times saturate at the int64 limits.
//
// Thread safety: pure functions of their arguments.
#include "retry_policy.hpp"

#include <algorithm>
#include <limits>

namespace smtp::smtpc {
namespace {

using queue::Envelope;
using queue::Recipient;
using queue::RecipientState;

// A recipient still pending when its message's lifetime is spent, and that never got
// an error, is bounced with this reply. RFC 3463 §3.5: X.4.7 "Delivery time expired"
// is "useful only as a persistent transient error", hence class 4 and, since an
// enhanced code's class must equal the reply code's first digit (RFC 2034 §4), a 4xx
// code; the DSN then says Action: failed with Status: 4.4.7, as sendmail's does.
constexpr std::string_view expired_reply = "451 4.4.7 Delivery time expired";

// What a failure without any reply text is recorded as, so that last_error and the
// DSN's Diagnostic-Code are never empty (the delivery side always gives one; this is
// a guard against a bug there, not a normal path).
constexpr std::string_view temporary_without_reply = "451 4.3.0 Temporary failure (no reply text)";
constexpr std::string_view permanent_without_reply = "554 5.3.0 Permanent failure (no reply text)";

void saturating_increment(std::uint32_t& n) noexcept {
    if (n != std::numeric_limits<std::uint32_t>::max()) ++n;
}

std::int64_t saturating_add(std::int64_t a, std::int64_t b) noexcept {
    std::int64_t sum = 0;
    if (__builtin_add_overflow(a, b, &sum))
        return b > 0 ? std::numeric_limits<std::int64_t>::max() : std::numeric_limits<std::int64_t>::min();
    return sum;
}

// True when the bounced recipients of this step owe the sender a DSN. RFC 5321
// §4.5.5: nothing is ever sent back to the null reverse-path (a bounce of a bounce).
bool bounce_owed(const Envelope& envelope, const std::vector<std::size_t>& bounced) {
    if (envelope.sender.empty()) return false;
    return std::any_of(bounced.begin(), bounced.end(),
                       [&](std::size_t i) { return wants_failure_notice(envelope.recipients[i]); });
}

bool lifetime_spent(const Envelope& envelope, std::int64_t now, const RetryPolicy& policy) noexcept {
    // arrival in the future (clock stepped back, or a hand-edited envelope): not old.
    if (now < envelope.arrival) return false;
    std::int64_t age = 0;
    if (__builtin_sub_overflow(now, envelope.arrival, &age)) return true;
    return age >= policy.queue_lifetime.count();
}

// Bounces what expire() must bounce, appending to `applied` (also used by
// apply_results after the results, so a recipient delivered in its last attempt is
// not bounced). An expired recipient leaves `deferred`: every index is in one list.
void expire_into(Envelope& envelope, std::int64_t now, const RetryPolicy& policy, Applied& applied) {
    if (!lifetime_spent(envelope, now, policy)) return;
    for (std::size_t i = 0; i < envelope.recipients.size(); ++i) {
        Recipient& r = envelope.recipients[i];
        if (r.state != RecipientState::pending) continue;
        r.state = RecipientState::bounced;
        // The last real error says more than "expired" (e.g. "451 4.4.1 connection
        // refused"): keep it, as Postfix and sendmail report the last deferral reason.
        if (r.last_error.empty()) {
            r.last_error = expired_reply;
            envelope.last_error = expired_reply;
        }
        applied.bounced.push_back(i);
        std::erase(applied.deferred, i);
    }
}

}  // namespace

std::chrono::seconds retry_delay(std::uint32_t attempts, const RetryPolicy& policy) noexcept {
    using Rep = std::chrono::seconds::rep;
    const Rep lo = std::max<Rep>(policy.retry_min.count(), 0);
    const Rep hi = std::max<Rep>(policy.retry_max.count(), 0);
    const std::uint32_t doublings = attempts > 0 ? attempts - 1 : 0;
    // lo * 2^doublings without overflow: once it would pass `hi` (or the type), the
    // cap applies anyway.
    Rep delay = lo;
    for (std::uint32_t i = 0; i < doublings && delay < hi; ++i) {
        if (delay == 0 || delay > std::numeric_limits<Rep>::max() / 2) break;
        delay *= 2;
    }
    return std::chrono::seconds{std::min(delay, hi)};
}

Applied apply_results(Envelope& envelope, const std::vector<RecipientResult>& results, std::int64_t now,
                      const RetryPolicy& policy) {
    Applied applied;
    saturating_increment(envelope.attempts);
    // One result per recipient and attempt: a duplicate (a bug upstream) must neither
    // count twice nor overrule the first.
    std::vector<bool> taken(envelope.recipients.size(), false);
    for (const RecipientResult& result : results) {
        if (result.index >= envelope.recipients.size() || taken[result.index]) continue;
        Recipient& r = envelope.recipients[result.index];
        if (r.state != RecipientState::pending) continue;
        taken[result.index] = true;
        saturating_increment(r.attempts);
        switch (result.outcome) {
            case Outcome::delivered:
                r.state = RecipientState::delivered;
                applied.delivered.push_back(result.index);
                break;
            case Outcome::temporary:
                r.last_error = result.reply.empty() ? std::string(temporary_without_reply) : result.reply;
                envelope.last_error = r.last_error;
                applied.deferred.push_back(result.index);
                break;
            case Outcome::permanent:
                r.state = RecipientState::bounced;
                r.last_error = result.reply.empty() ? std::string(permanent_without_reply) : result.reply;
                envelope.last_error = r.last_error;
                applied.bounced.push_back(result.index);
                break;
        }
    }
    // Times are whole seconds and `now` is rounded down: one second more, so that the
    // retry never comes before the whole delay has passed (RFC 5321 §4.5.4.1).
    envelope.next_attempt = saturating_add(now, retry_delay(envelope.attempts, policy).count() + 1);
    expire_into(envelope, now, policy, applied);
    applied.bounce_due = bounce_owed(envelope, applied.bounced);
    return applied;
}

Applied apply_failure(Envelope& envelope, const std::vector<std::size_t>& recipients, Outcome outcome,
                      const std::string& reply, std::int64_t now, const RetryPolicy& policy) {
    // A failure that reached no server cannot have delivered anything: `delivered`
    // here is a caller's bug, and counting it as delivered would lose mail.
    const Outcome effective = outcome == Outcome::delivered ? Outcome::temporary : outcome;
    std::vector<RecipientResult> results;
    results.reserve(recipients.size());
    for (std::size_t index : recipients) results.push_back(RecipientResult{index, effective, reply});
    return apply_results(envelope, results, now, policy);
}

Applied expire(Envelope& envelope, std::int64_t now, const RetryPolicy& policy) {
    Applied applied;
    expire_into(envelope, now, policy, applied);
    applied.bounce_due = bounce_owed(envelope, applied.bounced);
    return applied;
}

bool wants_failure_notice(const queue::Recipient& r) noexcept {
    if (r.notify == notify_none) return true;
    if ((r.notify & notify_never) != 0) return false;
    return (r.notify & notify_failure) != 0;
}

}  // namespace smtp::smtpc
