// Tests of apps/smtpc/retry_policy: recipient states, attempts, the retry schedule,
// expiry and when a bounce is owed. Pure functions: no files, no clock.
#include "retry_policy.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace {

using smtp::Outcome;
using smtp::queue::Envelope;
using smtp::queue::make_recipient;
using smtp::queue::RecipientState;
using smtp::smtpc::Applied;
using smtp::smtpc::apply_failure;
using smtp::smtpc::apply_results;
using smtp::smtpc::expire;
using smtp::smtpc::RecipientResult;
using smtp::smtpc::retry_delay;
using smtp::smtpc::RetryPolicy;
using std::chrono::seconds;

constexpr std::int64_t arrival = 1'700'000'000;

// Short values, as tests and the system tests use; the schedule is the same shape.
RetryPolicy policy() {
    RetryPolicy p;
    p.retry_min = seconds{60};
    p.retry_max = seconds{3600};
    p.queue_lifetime = seconds{86400};
    return p;
}

Envelope envelope(std::vector<std::string> recipients, std::string sender = "alice@example.org") {
    Envelope e;
    e.id = "0660d83c08fd2d00005d51000215";
    e.arrival = arrival;
    e.next_attempt = arrival;
    e.sender = std::move(sender);
    for (const auto& r : recipients) e.recipients.push_back(make_recipient(r));
    return e;
}

using Indexes = std::vector<std::size_t>;

}  // namespace

TEST_SUITE("retry_policy") {
    TEST_CASE("250 delivers, 4xx defers and 5xx bounces, each recipient on its own") {
        Envelope e = envelope({"a@example.net", "b@example.net", "c@example.net"});
        const Applied a = apply_results(e,
                                        {{0, Outcome::delivered, "250 2.0.0 Ok"},
                                         {1, Outcome::temporary, "451 4.3.0 Try later"},
                                         {2, Outcome::permanent, "550 5.1.1 No such user"}},
                                        arrival + 10, policy());
        CHECK(e.recipients[0].state == RecipientState::delivered);
        CHECK(e.recipients[1].state == RecipientState::pending);
        CHECK(e.recipients[2].state == RecipientState::bounced);
        CHECK(e.recipients[0].last_error.empty());
        CHECK(e.recipients[1].last_error == "451 4.3.0 Try later");
        CHECK(e.recipients[2].last_error == "550 5.1.1 No such user");
        CHECK(a.delivered == Indexes{0});
        CHECK(a.deferred == Indexes{1});
        CHECK(a.bounced == Indexes{2});
        CHECK(a.bounce_due);
        CHECK_FALSE(e.finished());
    }

    TEST_CASE("all 250 finishes the message and owes no bounce") {
        Envelope e = envelope({"a@example.net", "b@example.net"});
        const Applied a = apply_results(
            e, {{0, Outcome::delivered, "250 ok"}, {1, Outcome::delivered, "250 ok"}}, arrival, policy());
        CHECK(e.finished());
        CHECK(a.delivered == Indexes{0, 1});
        CHECK(a.deferred.empty());
        CHECK(a.bounced.empty());
        CHECK_FALSE(a.bounce_due);
        CHECK(e.last_error.empty());
    }

    TEST_CASE("only 4xx defers everything and owes no bounce") {
        Envelope e = envelope({"a@example.net", "b@example.net"});
        const Applied a = apply_results(
            e, {{0, Outcome::temporary, "421 4.7.0 busy"}, {1, Outcome::temporary, "450 4.2.1 full"}},
            arrival, policy());
        CHECK(a.deferred == Indexes{0, 1});
        CHECK(a.bounced.empty());
        CHECK_FALSE(a.bounce_due);
        CHECK(e.recipients[0].state == RecipientState::pending);
        CHECK(e.recipients[1].state == RecipientState::pending);
    }

    TEST_CASE("the message's last error is the last failure's reply") {
        Envelope e = envelope({"a@example.net", "b@example.net", "c@example.net"});
        apply_results(e,
                      {{0, Outcome::permanent, "550 5.1.1 first"},
                       {1, Outcome::temporary, "451 4.3.0 second"},
                       {2, Outcome::delivered, "250 2.0.0 third"}},
                      arrival, policy());
        CHECK(e.last_error == "451 4.3.0 second");

        Envelope f = envelope({"a@example.net", "b@example.net"});
        apply_results(
            f, {{0, Outcome::temporary, "451 4.3.0 first"}, {1, Outcome::permanent, "554 5.7.1 second"}},
            arrival, policy());
        CHECK(f.last_error == "554 5.7.1 second");
    }

    TEST_CASE("a failure without reply text still records an error") {
        Envelope e = envelope({"a@example.net", "b@example.net"});
        apply_results(e, {{0, Outcome::temporary, ""}, {1, Outcome::permanent, ""}}, arrival, policy());
        CHECK(e.recipients[0].last_error.substr(0, 4) == "451 ");
        CHECK(e.recipients[1].last_error.substr(0, 4) == "554 ");
        CHECK_FALSE(e.last_error.empty());
    }

    TEST_CASE("attempts count once per call for the message and per result for a recipient") {
        Envelope e = envelope({"a@example.net", "b@example.net", "c@example.net"});
        apply_results(e, {{0, Outcome::delivered, "250 ok"}, {1, Outcome::temporary, "451 later"}}, arrival,
                      policy());
        CHECK(e.attempts == 1);
        CHECK(e.recipients[0].attempts == 1);
        CHECK(e.recipients[1].attempts == 1);
        CHECK(e.recipients[2].attempts == 0);  // no result: not tried

        apply_results(e, {{1, Outcome::temporary, "451 later"}, {2, Outcome::temporary, "451 later"}},
                      arrival, policy());
        CHECK(e.attempts == 2);
        CHECK(e.recipients[0].attempts == 1);
        CHECK(e.recipients[1].attempts == 2);
        CHECK(e.recipients[2].attempts == 1);

        apply_results(e, {}, arrival, policy());
        CHECK(e.attempts == 3);
        CHECK(e.recipients[1].attempts == 2);
    }

    TEST_CASE("results for recipients that are not pending are ignored") {
        Envelope e = envelope({"a@example.net", "b@example.net", "c@example.net"});
        e.recipients[0].state = RecipientState::delivered;
        e.recipients[0].attempts = 1;
        e.recipients[1].state = RecipientState::bounced;
        e.recipients[1].attempts = 1;
        e.recipients[1].last_error = "550 5.1.1 gone";
        e.last_error = "550 5.1.1 gone";
        const Applied a = apply_results(e,
                                        {{0, Outcome::permanent, "550 5.7.1 late"},
                                         {1, Outcome::delivered, "250 late"},
                                         {7, Outcome::permanent, "550 out of range"}},
                                        arrival, policy());
        CHECK(e.recipients[0].state == RecipientState::delivered);
        CHECK(e.recipients[0].attempts == 1);
        CHECK(e.recipients[0].last_error.empty());
        CHECK(e.recipients[1].state == RecipientState::bounced);
        CHECK(e.recipients[1].attempts == 1);
        CHECK(e.recipients[1].last_error == "550 5.1.1 gone");
        CHECK(e.last_error == "550 5.1.1 gone");
        CHECK(a.delivered.empty());
        CHECK(a.deferred.empty());
        CHECK(a.bounced.empty());
        CHECK_FALSE(a.bounce_due);
    }

    TEST_CASE("a second result for one recipient in one attempt is ignored") {
        Envelope e = envelope({"a@example.net"});
        const Applied a =
            apply_results(e, {{0, Outcome::temporary, "451 first"}, {0, Outcome::delivered, "250 second"}},
                          arrival, policy());
        CHECK(e.recipients[0].state == RecipientState::pending);
        CHECK(e.recipients[0].attempts == 1);
        CHECK(a.deferred == Indexes{0});
        CHECK(a.delivered.empty());
    }

    TEST_CASE(
        "the next attempt waits retry_min, then doubles per attempt up to retry_max, plus the second that "
        "whole-second times may have cut") {
        Envelope e = envelope({"a@example.net"});
        const std::int64_t expected[] = {60, 120, 240, 480, 960, 1920, 3600, 3600, 3600, 3600};
        std::int64_t now = arrival;
        for (std::int64_t wait : expected) {
            apply_results(e, {{0, Outcome::temporary, "451 4.4.1 timed out"}}, now, policy());
            CHECK(e.next_attempt == now + wait + 1);
            now = e.next_attempt;
        }
        CHECK(e.attempts == 10);
        CHECK(e.recipients[0].attempts == 10);
    }

    TEST_CASE("retry_delay: retry_min for the first attempts, capped at retry_max") {
        const RetryPolicy p = policy();
        CHECK(retry_delay(0, p) == seconds{60});
        CHECK(retry_delay(1, p) == seconds{60});
        CHECK(retry_delay(2, p) == seconds{120});
        CHECK(retry_delay(6, p) == seconds{1920});
        CHECK(retry_delay(7, p) == seconds{3600});  // 3840 capped
        CHECK(retry_delay(8, p) == seconds{3600});
    }

    TEST_CASE("retry_delay never overflows at large attempt counts") {
        const RetryPolicy p = policy();
        for (std::uint32_t n :
             {31u, 32u, 33u, 63u, 64u, 65u, 1000u, std::numeric_limits<std::uint32_t>::max()})
            CHECK(retry_delay(n, p) == seconds{3600});

        // No cap short of the type: the doubling stops before it overflows.
        RetryPolicy wide;
        wide.retry_min = seconds{1};
        wide.retry_max = seconds{std::numeric_limits<seconds::rep>::max()};
        CHECK(retry_delay(63, wide) == seconds{std::int64_t{1} << 62});
        for (std::uint32_t n : {64u, 65u, 200u, std::numeric_limits<std::uint32_t>::max()}) {
            const seconds d = retry_delay(n, wide);
            CHECK(d.count() > 0);
            CHECK(d.count() >= (std::int64_t{1} << 62));
        }

        // The time of the next attempt saturates instead of wrapping around.
        Envelope e = envelope({"a@example.net"});
        e.attempts = std::numeric_limits<std::uint32_t>::max() - 1;
        wide.queue_lifetime = seconds{std::numeric_limits<seconds::rep>::max()};
        const std::int64_t late = std::numeric_limits<std::int64_t>::max() - 10;
        apply_results(e, {{0, Outcome::temporary, "451 later"}}, late, wide);
        CHECK(e.attempts == std::numeric_limits<std::uint32_t>::max());
        CHECK(e.next_attempt == std::numeric_limits<std::int64_t>::max());
        apply_results(e, {{0, Outcome::temporary, "451 later"}}, arrival, wide);
        CHECK(e.attempts == std::numeric_limits<std::uint32_t>::max());  // saturated
    }

    TEST_CASE("retry_delay with retry_max below retry_min is retry_max") {
        RetryPolicy p;
        p.retry_min = seconds{600};
        p.retry_max = seconds{100};
        CHECK(retry_delay(1, p) == seconds{100});
        CHECK(retry_delay(5, p) == seconds{100});
    }

    TEST_CASE("expiry: pending at lifetime-1 stays, at lifetime and lifetime+1 is bounced") {
        const std::int64_t lifetime = policy().queue_lifetime.count();
        for (std::int64_t offset : {lifetime - 1, lifetime, lifetime + 1}) {
            CAPTURE(offset);
            Envelope e = envelope({"a@example.net", "b@example.net", "c@example.net"});
            e.recipients[0].last_error = "451 4.4.1 Connection refused";
            e.recipients[2].state = RecipientState::delivered;
            const Applied a = expire(e, arrival + offset, policy());
            if (offset < lifetime) {
                CHECK(a.bounced.empty());
                CHECK_FALSE(a.bounce_due);
                CHECK(e.recipients[0].state == RecipientState::pending);
                CHECK(e.recipients[1].state == RecipientState::pending);
            } else {
                CHECK(a.bounced == Indexes{0, 1});
                CHECK(a.bounce_due);
                CHECK(e.recipients[0].state == RecipientState::bounced);
                CHECK(e.recipients[1].state == RecipientState::bounced);
                // The last real error is kept; one that never had an error says why.
                CHECK(e.recipients[0].last_error == "451 4.4.1 Connection refused");
                CHECK(e.recipients[1].last_error == "451 4.4.7 Delivery time expired");
                CHECK(e.finished());
            }
            CHECK(e.recipients[2].state == RecipientState::delivered);
            CHECK(e.attempts == 0);  // expire() is no attempt
        }
    }

    TEST_CASE("an arrival in the future never expires") {
        Envelope e = envelope({"a@example.net"});
        e.arrival = std::numeric_limits<std::int64_t>::max();
        CHECK(expire(e, arrival, policy()).bounced.empty());
        e.arrival = arrival;
        CHECK(expire(e, std::numeric_limits<std::int64_t>::min(), policy()).bounced.empty());
        e.arrival = std::numeric_limits<std::int64_t>::min();  // age overflows: very old
        CHECK(expire(e, arrival, policy()).bounced == Indexes{0});
    }

    TEST_CASE("apply_results records the results first, then expires what is left") {
        const std::int64_t lifetime = policy().queue_lifetime.count();
        Envelope e = envelope({"a@example.net", "b@example.net", "c@example.net"});
        const Applied a = apply_results(
            e, {{0, Outcome::delivered, "250 ok"}, {1, Outcome::temporary, "451 4.2.2 Mailbox full"}},
            arrival + lifetime, policy());
        CHECK(e.recipients[0].state == RecipientState::delivered);
        CHECK(e.recipients[1].state == RecipientState::bounced);
        CHECK(e.recipients[1].last_error == "451 4.2.2 Mailbox full");
        CHECK(e.recipients[2].state == RecipientState::bounced);
        CHECK(e.recipients[2].last_error == "451 4.4.7 Delivery time expired");
        CHECK(a.delivered == Indexes{0});
        CHECK(a.deferred.empty());  // each index in one list only
        CHECK(a.bounced == Indexes{1, 2});
        CHECK(a.bounce_due);
        CHECK(e.finished());
    }

    TEST_CASE("the null sender is never owed a bounce") {
        Envelope e = envelope({"a@example.net", "b@example.net"}, "");
        Applied a = apply_results(e, {{0, Outcome::permanent, "550 5.1.1 No such user"}}, arrival, policy());
        CHECK(a.bounced == Indexes{0});
        CHECK_FALSE(a.bounce_due);
        a = expire(e, arrival + policy().queue_lifetime.count(), policy());
        CHECK(a.bounced == Indexes{1});
        CHECK_FALSE(a.bounce_due);
        a = apply_failure(e, {0, 1}, Outcome::permanent, "550 x", arrival, policy());
        CHECK_FALSE(a.bounce_due);
    }

    TEST_CASE("NOTIFY=NEVER or NOTIFY without FAILURE owes no bounce, NOTIFY=FAILURE does") {
        struct Case {
            std::uint8_t notify;
            bool due;
        };
        const Case cases[] = {
            {smtp::notify_none, true},  // not given: failure notices are the default
            {smtp::notify_never, false},
            {smtp::notify_success, false},
            {smtp::notify_delay, false},
            {smtp::notify_success | smtp::notify_delay, false},
            {smtp::notify_failure, true},
            {smtp::notify_failure | smtp::notify_success, true},
            {smtp::notify_failure | smtp::notify_delay, true},
        };
        for (const Case& c : cases) {
            CAPTURE(int{c.notify});
            Envelope e = envelope({"a@example.net"});
            e.recipients[0].notify = c.notify;
            const Applied a = apply_results(e, {{0, Outcome::permanent, "550 5.1.1 No"}}, arrival, policy());
            CHECK(a.bounced == Indexes{0});
            CHECK(a.bounce_due == c.due);

            Envelope old = envelope({"a@example.net"});
            old.recipients[0].notify = c.notify;
            CHECK(expire(old, arrival + policy().queue_lifetime.count(), policy()).bounce_due == c.due);
        }
    }

    TEST_CASE("one recipient wanting failure notices makes the bounce due") {
        Envelope e = envelope({"a@example.net", "b@example.net"});
        e.recipients[0].notify = smtp::notify_never;
        const Applied a = apply_results(
            e, {{0, Outcome::permanent, "550 5.1.1 No"}, {1, Outcome::permanent, "550 5.1.1 No"}}, arrival,
            policy());
        CHECK(a.bounced == Indexes{0, 1});
        CHECK(a.bounce_due);
    }

    TEST_CASE("apply_failure gives every listed pending recipient the outcome and reply") {
        Envelope e = envelope({"a@example.net", "b@example.net", "c@example.net"});
        e.recipients[2].state = RecipientState::delivered;
        Applied a = apply_failure(e, {0, 1, 2}, Outcome::temporary, "451 4.4.1 No route", arrival, policy());
        CHECK(a.deferred == Indexes{0, 1});
        CHECK(e.attempts == 1);
        CHECK(e.next_attempt == arrival + 61);
        CHECK(e.recipients[0].last_error == "451 4.4.1 No route");
        CHECK(e.recipients[1].attempts == 1);
        CHECK(e.recipients[2].attempts == 0);
        CHECK(e.last_error == "451 4.4.1 No route");

        a = apply_failure(e, {1}, Outcome::permanent, "550 5.4.4 Unroutable", arrival, policy());
        CHECK(a.bounced == Indexes{1});
        CHECK(a.bounce_due);
        CHECK(e.recipients[0].state == RecipientState::pending);
        CHECK(e.recipients[1].state == RecipientState::bounced);
        CHECK(e.attempts == 2);
    }

    TEST_CASE("apply_failure never counts a failure as delivered") {
        Envelope e = envelope({"a@example.net"});
        const Applied a = apply_failure(e, {0}, Outcome::delivered, "451 4.4.1 oops", arrival, policy());
        CHECK(a.delivered.empty());
        CHECK(a.deferred == Indexes{0});
        CHECK(e.recipients[0].state == RecipientState::pending);
    }
}
