// apps/common/resolver.hpp: DNS lookups inside a select()/pselect() loop, on c-ares.
//
// The loop owns the clock and the waiting; the Resolver owns a c-ares channel and its
// sockets. Each turn of the loop:
//
//   int max_fd = resolver.add_fds(read_set, write_set, max_fd);  // its sockets
//   timeout = min(timeout, resolver.timeout());                   // its next deadline
//   select(...);
//   resolver.process(read_set, write_set);                        // may call callbacks
//
// Lookups:
//  - reverse(address): the client's forward-confirmed name ("FCrDNS", as Postfix's
//    reject_unknown_client_hostname): the PTR names of the address, then the A or AAAA
//    records (the address's family) of each name, at most max_names of them; the first
//    name (in PTR order) with a record equal to the address is confirmed. An
//    IPv4-mapped address (::ffff:a.b.c.d) is looked up as a.b.c.d. The PTR step asks
//    DNS only (ares_query: /etc/hosts has no say, even with the system's resolver),
//    since ares_gethostbyaddr() reports a timeout as "not found". A PTR name that is
//    not a valid domain, or whose last label is all digits (RFC 3696 §2), is never
//    looked up forward: it cannot confirm.
//  - mx(domain): the MX records of a domain (RFC 5321 §5.1), sorted by preference,
//    hosts of equal preference in random order (a generator seeded once per Resolver),
//    and whether the domain has a null MX (RFC 7505).
//  - addresses(host): the A and AAAA records of a host, both asked at once; IPv4
//    first, then IPv6, each in answer order. No RFC 6724 destination ordering: that
//    needs the machine's source addresses, and a sending MTA tries every address anyway.
// mx() and addresses() ask DNS only (ares_query, never /etc/hosts), for the name with
// a trailing dot, so no search domain is ever appended; they tell "no such domain"
// (NXDOMAIN) from "no record of this type" (NODATA) from "unknown for now", which
// ares_gethostbyname() does not always do.
//
// The name server: ResolverOptions::server ("IP" or "IP:PORT", IPv6 as "[::1]:5353"),
// else the system's (/etc/resolv.conf). With a server set, /etc/hosts is not read and
// nothing but that server is ever asked, so tests point at a local dnsmasq and never
// reach the machine's resolver.
//
// Invariants:
//  - A callback is called exactly once per lookup, unless the lookup was cancelled
//    first, and only from process() (never from inside reverse(), mx(), addresses()
//    or cancel()). It may start or cancel lookups (a lookup it starts is reported by a later process(),
//    which timeout() then asks for at once); it must not destroy the Resolver.
//  - add_fds() never puts a descriptor >= FD_SETSIZE in a set (a lookup whose socket
//    is that high times out instead: memory safety over an answer). It uses
//    ares_getsock(), not ares_fds(), which would write past the fd_set.
//  - Every lookup ends by ResolverOptions::timeout at the latest (status temporary):
//    the Resolver keeps a deadline per lookup, checked by process(); c-ares's own
//    retries (a quarter of the timeout, three tries) only resend lost datagrams.
//  - The destructor ends lookups in flight without calling their callbacks.
//
// Thread safety: a Resolver belongs to one thread (its loop's).
#ifndef SMTP_APPS_COMMON_RESOLVER_HPP
#define SMTP_APPS_COMMON_RESOLVER_HPP

#include "common/network.hpp"

#include <sys/select.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace smtp {

struct ResolverOptions {
    std::string server;                       // "IP[:PORT]"; empty: the system's resolver
    std::chrono::milliseconds timeout{5000};  // a whole lookup, every step included
    unsigned max_names = 4;                   // PTR names checked forward, at most
};

struct ReverseResult {
    enum class Status : std::uint8_t {
        confirmed,    // `name` has a PTR for the address and an A/AAAA back to it
        unconfirmed,  // PTR names exist, none resolves back to the address; `name`: the first
        no_name,      // no PTR record (NXDOMAIN or no data)
        temporary,    // timeout, SERVFAIL, refused, network error, an unreadable answer,
                      // or no name confirmed while a forward lookup failed so: unknown for now
    };
    Status status = Status::temporary;
    std::string name;  // lower-case, no trailing dot; empty for no_name and temporary
};

// "confirmed", "unconfirmed", "no_name", "temporary": for log lines.
std::string_view reverse_status_name(ReverseResult::Status status) noexcept;

// The outcome of an mx() or addresses() lookup.
enum class DnsStatus : std::uint8_t {
    ok,          // records found
    no_records,  // the name exists, but has no record of the type asked (NODATA)
    no_domain,   // the name does not exist (NXDOMAIN, RFC 8020), or is not a valid domain
    temporary,   // timeout, SERVFAIL, refused, network error, an unreadable answer
};

// "ok", "no_records", "no_domain", "temporary": for log lines.
std::string_view dns_status_name(DnsStatus status) noexcept;

struct MxHost {
    std::uint16_t preference = 0;
    std::string name;  // lower-case, no trailing dot, a valid domain name
};

struct MxResult {
    DnsStatus status = DnsStatus::temporary;
    // ok only: the answer is one MX record "." of preference 0 (RFC 7505 §3): the
    // domain accepts no mail. `hosts` is then empty.
    bool null_mx = false;
    // ok only, unless null_mx: by preference, equal preferences shuffled (RFC 5321 §5.1).
    // Records whose host is "." (a null MX among others, which RFC 7505 §3 forbids) or
    // not a domain name (an IP address, RFC 5321 §5.1 wants names) are left out, so
    // it may be empty with status ok. A name listed twice keeps its best preference.
    std::vector<MxHost> hosts;
    std::string error;  // temporary: why, for logs and replies ("timeout", "server failure or refused")
};

struct AddressResult {
    // ok if either query found records; temporary if either failed and none found any;
    // no_domain if both said NXDOMAIN; else no_records.
    DnsStatus status = DnsStatus::temporary;
    // ok: IPv4 then IPv6, each in answer order, distinct; at most 32 of each family.
    std::vector<IpAddress> addresses;
    std::string error;  // temporary: why, as MxResult::error
};

class Resolver {
public:
    using LookupId = std::uint64_t;
    using ReverseCallback = std::function<void(const ReverseResult&)>;
    using MxCallback = std::function<void(const MxResult&)>;
    using AddressCallback = std::function<void(const AddressResult&)>;

    // A resolver with its own c-ares channel. Errors: EINVAL for a malformed server or
    // a timeout not above zero; ENOMEM; EIO for other c-ares failures (reading
    // resolv.conf, ares_library_init).
    static std::unique_ptr<Resolver> create(const ResolverOptions& options, std::error_code& ec);
    ~Resolver();
    Resolver(const Resolver&) = delete;
    Resolver& operator=(const Resolver&) = delete;

    // Starts the forward-confirmed reverse lookup of `address`. The id is for
    // cancel(); never 0.
    LookupId reverse(const IpAddress& address, ReverseCallback done);
    // Starts the lookup of the MX records of `domain` (any case; one trailing dot is
    // allowed). A name that is not a valid domain, or whose last label is all digits
    // (an IP address, RFC 3696 §2), gets no_domain without a query (from process()).
    LookupId mx(std::string_view domain, MxCallback done);
    // Starts the lookup of the A and AAAA records of `host`; names as for mx(). An IP
    // address is not looked up: the caller uses it as it is.
    LookupId addresses(std::string_view host, AddressCallback done);
    // Forgets a lookup: its callback is never called. Unknown or finished ids: nothing.
    void cancel(LookupId id) noexcept;
    // Lookups started and not yet finished or cancelled.
    std::size_t pending() const noexcept;

    // Adds the channel's sockets to the sets; returns the larger of max_fd and the
    // largest descriptor added.
    int add_fds(fd_set& read_set, fd_set& write_set, int max_fd) const noexcept;
    // How long until the resolver needs process() even without socket activity
    // (rounded up); zero when callbacks are due; std::chrono::milliseconds::max() when
    // nothing is pending and no DNS query is in flight (a cancelled lookup's query stays
    // with c-ares until it is answered or times out).
    std::chrono::milliseconds timeout() const noexcept;
    // Reads and writes the ready sockets, handles expired timeouts, calls callbacks.
    // The sets are those select() returned (sockets not in them are not touched).
    void process(const fd_set& read_set, const fd_set& write_set);

private:
    struct Impl;
    explicit Resolver(std::unique_ptr<Impl> impl) noexcept;
    std::unique_ptr<Impl> impl_;
};

}  // namespace smtp

#endif
