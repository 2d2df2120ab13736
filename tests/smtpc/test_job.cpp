// Tests of apps/smtpc/job.hpp: endpoints, their threads, session keys, and the Mailbox.
#include "job.hpp"

#include <doctest/doctest.h>

#include <sys/select.h>

#include <algorithm>
#include <set>
#include <thread>

namespace {

using smtp::smtpc::delivery_thread_for;
using smtp::smtpc::Endpoint;
using smtp::smtpc::Mailbox;
using smtp::smtpc::SessionKey;
using smtp::smtpc::TlsLevel;

Endpoint endpoint(const char* ip, std::uint16_t port, const char* host = "") {
    return Endpoint{*smtp::parse_ip_address(ip).value, port, host};
}

bool readable(int fd, long wait_us = 0) {
    fd_set set;
    FD_ZERO(&set);
    FD_SET(fd, &set);
    timeval wait{0, wait_us};
    return ::select(fd + 1, &set, nullptr, nullptr, &wait) == 1;
}

}  // namespace

TEST_SUITE("job") {
    TEST_CASE("an endpoint is shown as Postfix shows relay=") {
        CHECK(endpoint("192.0.2.1", 25, "mx.example").to_string() == "mx.example[192.0.2.1]:25");
        CHECK(endpoint("::1", 2525).to_string() == "::1[::1]:2525");
    }

    TEST_CASE("endpoints are equal by address and port, whatever their names") {
        CHECK(endpoint("192.0.2.1", 25, "a.example") == endpoint("192.0.2.1", 25, "b.example"));
        CHECK_FALSE(endpoint("192.0.2.1", 25) == endpoint("192.0.2.1", 26));
        CHECK_FALSE(endpoint("192.0.2.1", 25) == endpoint("192.0.2.2", 25));
    }

    TEST_CASE("one endpoint always maps to one thread, and endpoints spread over threads") {
        std::set<std::size_t> used;
        for (unsigned i = 1; i <= 64; ++i) {
            const std::string ip = "10.0.0." + std::to_string(i);
            const Endpoint e = endpoint(ip.c_str(), 25, "one.example");
            const std::size_t t = delivery_thread_for(e, 4);
            CHECK(t < 4);
            CHECK(delivery_thread_for(endpoint(ip.c_str(), 25, "other.example"), 4) == t);
            used.insert(t);
        }
        CHECK(used.size() == 4);
        CHECK(delivery_thread_for(endpoint("10.0.0.1", 25), 1) == 0);
        CHECK(delivery_thread_for(endpoint("10.0.0.1", 25), 0) == 0);
    }

    TEST_CASE("jobs share a session only at the same endpoint and TLS level") {
        const Endpoint mx = endpoint("192.0.2.1", 25, "mx.example");
        for (const TlsLevel level : {TlsLevel::none, TlsLevel::may, TlsLevel::encrypt, TlsLevel::verify}) {
            CAPTURE(smtp::smtpc::tls_level_name(level));
            CHECK(SessionKey{mx, level} == SessionKey{mx, level});
            CHECK_FALSE(SessionKey{mx, level} == SessionKey{endpoint("192.0.2.1", 26, "mx.example"), level});
            CHECK_FALSE(SessionKey{mx, level} == SessionKey{endpoint("192.0.2.2", 25, "mx.example"), level});
            for (const TlsLevel other : {TlsLevel::none, TlsLevel::may, TlsLevel::encrypt, TlsLevel::verify})
                if (other != level) CHECK_FALSE(SessionKey{mx, level} == SessionKey{mx, other});
        }
    }

    TEST_CASE("the host name splits sessions only at verify, where the certificate is checked against it") {
        const Endpoint a = endpoint("192.0.2.1", 25, "mx1.example");
        const Endpoint b = endpoint("192.0.2.1", 25, "mx2.example");
        CHECK(SessionKey{a, TlsLevel::may} == SessionKey{b, TlsLevel::may});
        CHECK(SessionKey{a, TlsLevel::encrypt} == SessionKey{b, TlsLevel::encrypt});
        CHECK_FALSE(SessionKey{a, TlsLevel::verify} == SessionKey{b, TlsLevel::verify});
        CHECK(SessionKey{a, TlsLevel::verify} ==
              SessionKey{endpoint("192.0.2.1", 25, "MX1.Example"), TlsLevel::verify});
    }

    TEST_CASE("a job's key carries its endpoint and level; its thread depends on the endpoint only") {
        smtp::smtpc::Job job;
        job.endpoint = endpoint("10.0.0.7", 25, "mx.example");
        job.tls = TlsLevel::verify;
        CHECK(job.session_key() == SessionKey{job.endpoint, TlsLevel::verify});
        smtp::smtpc::Job other = job;
        other.tls = TlsLevel::none;
        CHECK_FALSE(job.session_key() == other.session_key());
        CHECK(delivery_thread_for(job.endpoint, 8) == delivery_thread_for(other.endpoint, 8));
    }

    TEST_CASE("levels map to the session's STARTTLS policy: verify is encrypt there") {
        using smtp::TlsPolicy;
        using smtp::smtpc::session_policy;
        CHECK(session_policy(TlsLevel::none) == TlsPolicy::none);
        CHECK(session_policy(TlsLevel::may) == TlsPolicy::may);
        CHECK(session_policy(TlsLevel::encrypt) == TlsPolicy::encrypt);
        CHECK(session_policy(TlsLevel::verify) == TlsPolicy::encrypt);
        CHECK(smtp::smtpc::tls_level_name(TlsLevel::verify) == "verify");
        CHECK(smtp::smtpc::tls_level_name(TlsLevel::none) == "none");
    }

    TEST_CASE("a mailbox's pipe is readable exactly while values wait") {
        Mailbox<int> box;
        REQUIRE_FALSE(box.open());
        CHECK_FALSE(readable(box.wake_fd()));
        CHECK(box.post(1));
        CHECK(box.post(2));
        CHECK(readable(box.wake_fd()));
        const auto values = box.take_all();
        REQUIRE(values.size() == 2);
        CHECK(values[0] == 1);
        CHECK(values[1] == 2);
        CHECK_FALSE(readable(box.wake_fd()));
        CHECK(box.take_all().empty());
    }

    TEST_CASE("values posted from many threads all arrive once") {
        Mailbox<int> box;
        REQUIRE_FALSE(box.open());
        constexpr int per_thread = 10000;
        std::vector<std::thread> producers;
        for (int t = 0; t < 4; ++t)
            producers.emplace_back([&box, t] {
                for (int i = 0; i < per_thread; ++i) box.post(t * per_thread + i);
            });
        std::vector<int> seen;
        // The consumer's way: wait for the pipe, then take everything. Bounded: a lost
        // wake-up shows as a timeout here, not as a hang.
        for (int waits = 0; seen.size() < 4u * per_thread && waits < 1000; ++waits) {
            if (!readable(box.wake_fd(), 100'000)) continue;
            for (int v : box.take_all()) seen.push_back(v);
        }
        for (auto& p : producers) p.join();
        REQUIRE(seen.size() == 4u * per_thread);
        std::sort(seen.begin(), seen.end());
        for (int i = 0; i < 4 * per_thread; ++i) REQUIRE(seen[static_cast<std::size_t>(i)] == i);
    }
}
