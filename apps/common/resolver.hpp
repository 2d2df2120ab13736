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
// Lookups (only this one so far; smtpc adds MX and address lookups):
//  - reverse(address): the client's forward-confirmed name ("FCrDNS", as Postfix's
//    reject_unknown_client_hostname): the PTR names of the address, then the A or AAAA
//    records (the address's family) of each name, at most max_names of them; the first
//    name (in PTR order) with a record equal to the address is confirmed. An
//    IPv4-mapped address (::ffff:a.b.c.d) is looked up as a.b.c.d. The PTR step asks
//    DNS only (ares_query: /etc/hosts has no say, even with the system's resolver),
//    since ares_gethostbyaddr() reports a timeout as "not found". A PTR name that is
//    not a valid domain, or whose last label is all digits (RFC 3696 §2), is never
//    looked up forward: it cannot confirm.
//
// The name server: ResolverOptions::server ("IP" or "IP:PORT", IPv6 as "[::1]:5353"),
// else the system's (/etc/resolv.conf). With a server set, /etc/hosts is not read and
// nothing but that server is ever asked, so tests point at a local dnsmasq and never
// reach the machine's resolver.
//
// Invariants:
//  - A callback is called exactly once per lookup, unless the lookup was cancelled
//    first, and only from process() (never from inside reverse() or cancel()). It may
//    start or cancel lookups (a lookup it starts is reported by a later process(),
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
#include <system_error>

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

class Resolver {
public:
    using LookupId = std::uint64_t;
    using ReverseCallback = std::function<void(const ReverseResult&)>;

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
