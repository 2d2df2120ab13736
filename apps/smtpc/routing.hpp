// apps/smtpc/routing.hpp: where the mail for a domain goes: the ordered endpoints to
// try, from the static routes, the smarthost, or DNS.
//
// Order of decision, per recipient domain (lower-cased):
//  1. a static route for the domain (`route = ["example.org=mx.test:2525"]`);
//  2. the smarthost, when set: every domain goes there;
//  3. DNS (RFC 5321 §5.1): the MX records, sorted by preference, with hosts of equal
//     preference in random order; each MX host's addresses (A and AAAA) in turn. With
//     no MX record (NODATA), the domain's own A/AAAA as an implicit MX of preference 0.
//     A null MX (one MX record "." with preference 0, RFC 7505) is a permanent
//     failure, 556 5.1.10, as is a domain that does not exist (NXDOMAIN: 550 5.1.2).
//     Timeouts and server failures are temporary.
// A route or smarthost host that is a name is resolved by A/AAAA (not MX); one that is
// an IP address is used as is. Endpoints are the hosts' addresses with the route's port
// (or Settings::port for MX hosts), duplicates removed, at most max_endpoints.
//
// Replies when no endpoint results (RFC 3463 codes):
//  - null MX: "556 5.1.10 Recipient address has null MX" (RFC 7505 §4.3, RFC 7504);
//  - NXDOMAIN for the domain (MX or, with no MX, A/AAAA): "550 5.1.2 Host or domain
//    name not found";
//  - our own hostname among the MX hosts with nothing more preferred (RFC 5321 §5.1:
//    "returned as undeliverable"): "554 5.4.6 Mail for the domain loops back to myself";
//  - a timeout or server failure with nothing usable found: "451 4.4.3 DNS lookup
//    failed: MX of example.org: timeout" (or "A/AAAA of mx.example.org: ...");
//  - MX hosts (or the domain itself, with no MX) without any address: "451 4.4.4 No
//    address for the mail exchangers" (temporary: RFC 5321 §5.1 wants the others tried,
//    then the message queued; DNS may be fixed in time);
//  - a route or smarthost host without an address: "451 4.4.4 No address for relay
//    host HOST": our configuration, never the recipient's fault, so never permanent.
// An MX host that has no address, or whose lookup fails, is skipped when another has
// one. At most max_endpoints MX hosts (the most preferred) are looked up: each gives at
// least one endpoint, and a hostile domain cannot make one route cost hundreds of
// lookups. MX hosts are looked up all at once; the whole route takes up to two lookups'
// time (ResolverOptions::timeout each).
//
// Not done here: address literals as domains ("[192.0.2.1]" gets 550 5.1.2), IDNA
// (a UTF-8 domain is not a valid DNS name: 550 5.1.2), and RFC 5321 §5.1's check of our
// own addresses (not only our hostname) among the MX hosts' addresses.
//
// Thread safety: a Router and its Resolver belong to the scheduler's thread.
#ifndef SMTP_APPS_SMTPC_ROUTING_HPP
#define SMTP_APPS_SMTPC_ROUTING_HPP

#include "common/resolver.hpp"
#include "job.hpp"
#include "settings.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace smtp::smtpc {

inline constexpr std::size_t max_endpoints = 10;

struct RouteResult {
    enum class Status : std::uint8_t { ok, permanent, temporary };
    Status status = Status::temporary;
    std::vector<Endpoint> endpoints;  // ok: at least one, in the order to try
    std::string reply;                // not ok: a reply line for the recipients, e.g.
                                      // "556 5.1.10 Recipient address has null MX"
};

class Router {
public:
    using Callback = std::function<void(const RouteResult&)>;

    // All must outlive the Router. `port` is the port of MX hosts (Settings::port).
    Router(const Resolved& resolved, Resolver& resolver, std::uint16_t port) noexcept
        : resolved_(&resolved), resolver_(&resolver), port_(port) {}

    // Routes `domain` (lower-case; upper case is folded anyway). The callback is called
    // exactly once, from the Resolver's process(); but for a static route or smarthost
    // that is an IP address it is called at once, from inside route(), so the caller
    // must be ready for that (no lookup is then pending). Never after cancel_all(). A
    // callback may call route() or cancel_all(). An exception from Router code inside
    // process() (std::bad_alloc) leaves through process() and the lookup is forgotten.
    // Errors: std::bad_alloc, before anything is started.
    void route(const std::string& domain, Callback done);

    // Lookups in flight.
    std::size_t pending() const noexcept;
    // Forgets every lookup in flight; their callbacks are never called. Their
    // Resolver lookups are cancelled too.
    void cancel_all() noexcept;

private:
    // One route in flight. Owned by lookups_ only; the Resolver's callbacks hold a
    // weak_ptr, so destroying the Router (or cancel_all) ends a route without a
    // dangling pointer, and a Lookup cancels its Resolver lookups when destroyed.
    // A Lookup has no pointer back to the Router (which may have been moved), so a
    // finished one stays in lookups_ until the next route(); pending() skips it.
    struct Lookup;
    void prune() noexcept;  // drops finished Lookups

    const Resolved* resolved_;
    Resolver* resolver_;
    std::uint16_t port_;
    std::vector<std::shared_ptr<Lookup>> lookups_;
};

}  // namespace smtp::smtpc

#endif
