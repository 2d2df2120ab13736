// apps/smtpc/routing.cpp: the Router (see routing.hpp).
//
// A route is a Lookup in one of three kinds:
//  - relay: a static route's or the smarthost's host name, resolved by addresses();
//  - mx: the domain's MX hosts (mx(), then addresses() of each host, all at once);
//  - implicit: the domain had no MX (NODATA), so it is its own mail exchanger of
//    preference 0 (RFC 5321 §5.1): addresses() of the domain.
// The endpoints are assembled when every address lookup has answered, in host order,
// so the order never depends on which answer came first.
//
// Invariants:
//  - Resolver callbacks hold a weak_ptr to their Lookup and lock it while they run, so
//    a callback that calls cancel_all() (or route()) cannot destroy the Lookup under
//    itself; a destroyed Lookup cancels its Resolver lookups, so no callback comes late.
//  - A Lookup calls its user callback once, as its last act (finished is set and
//    `done` moved out first), and touches nothing after it.
// Thread safety: as the Router: the scheduler's thread.
#include "routing.hpp"

#include "common/text.hpp"

#include <algorithm>
#include <optional>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace smtp::smtpc {

namespace {

std::string_view or_unknown(const std::string& error) {
    return error.empty() ? std::string_view("temporary failure") : std::string_view(error);
}

RouteResult failure(RouteResult::Status status, std::string reply) {
    RouteResult result;
    result.status = status;
    result.reply = std::move(reply);
    return result;
}

}  // namespace

struct Router::Lookup : std::enable_shared_from_this<Router::Lookup> {
    enum class Kind : std::uint8_t { relay, mx, implicit };

    Resolver* resolver = nullptr;
    Kind kind = Kind::mx;
    std::string domain;    // lower-case
    std::string hostname;  // ours, lower-case: the MX loop check
    std::uint16_t port = 25;
    Callback done;
    std::vector<std::string> hosts;                     // looked up by addresses(), in order
    std::vector<std::optional<AddressResult>> answers;  // one per host
    std::size_t waiting = 0;                            // answers still due
    std::vector<Resolver::LookupId> ids;                // started; cancel() of a finished one is a no-op
    bool finished = false;

    Lookup() = default;
    Lookup(const Lookup&) = delete;
    Lookup& operator=(const Lookup&) = delete;
    ~Lookup() { forget(); }

    void forget() noexcept {
        for (const Resolver::LookupId id : ids) resolver->cancel(id);
        ids.clear();
    }

    void finish(const RouteResult& result) {
        finished = true;
        forget();
        const Callback callback = std::move(done);
        if (callback) callback(result);
    }

    // Runs `body` as a Resolver callback: an exception leaves through process(), and
    // the Lookup is then finished without a report (routing.hpp).
    template <class Body>
    static void guarded(const std::weak_ptr<Lookup>& weak, Body&& body) {
        const std::shared_ptr<Lookup> self = weak.lock();
        if (!self || self->finished) return;
        try {
            body(*self);
        } catch (...) {
            self->finished = true;
            self->forget();
            self->done = nullptr;
            throw;
        }
    }

    void start_mx() {
        ids.reserve(1);
        ids.push_back(resolver->mx(domain, [weak = weak_from_this()](const MxResult& result) {
            guarded(weak, [&result](Lookup& self) { self.on_mx(result); });
        }));
    }

    void on_mx(const MxResult& result) {
        switch (result.status) {
            case DnsStatus::temporary:
                return finish(failure(RouteResult::Status::temporary,
                                      fmt::format("451 4.4.3 DNS lookup failed: MX of {}: {}", domain,
                                                  or_unknown(result.error))));
            case DnsStatus::no_domain:
                return finish(
                    failure(RouteResult::Status::permanent, "550 5.1.2 Host or domain name not found"));
            case DnsStatus::no_records:
                // RFC 5321 §5.1: no MX, so the domain is an implicit MX of preference 0.
                kind = Kind::implicit;
                return resolve({domain});
            case DnsStatus::ok:
                break;
        }
        if (result.null_mx)  // RFC 7505 §3, §4.3: the domain accepts no mail
            return finish(
                failure(RouteResult::Status::permanent, "556 5.1.10 Recipient address has null MX"));
        // RFC 5321 §5.1: if our own name is among the MX hosts, every host of its
        // preference or a higher number goes; none left is an error, and the message
        // "MUST be returned as undeliverable".
        std::size_t usable = result.hosts.size();
        for (std::size_t i = 0; i < result.hosts.size(); ++i) {
            if (result.hosts[i].name != hostname) continue;
            const std::uint16_t ours = result.hosts[i].preference;
            usable = static_cast<std::size_t>(
                std::find_if(result.hosts.begin(), result.hosts.end(),
                             [ours](const MxHost& host) { return host.preference >= ours; }) -
                result.hosts.begin());
            if (usable == 0)
                return finish(failure(RouteResult::Status::permanent,
                                      "554 5.4.6 Mail for the domain loops back to myself"));
            break;
        }
        if (usable == 0)  // every record was "." or an address: nothing to connect to
            return finish(
                failure(RouteResult::Status::temporary, "451 4.4.4 No address for the mail exchangers"));
        std::vector<std::string> names;
        names.reserve(std::min(usable, max_endpoints));
        for (std::size_t i = 0; i < usable && names.size() < max_endpoints; ++i)
            names.push_back(result.hosts[i].name);
        resolve(std::move(names));
    }

    // Looks up the addresses of every host at once.
    void resolve(std::vector<std::string> names) {
        hosts = std::move(names);
        answers.assign(hosts.size(), std::nullopt);
        waiting = hosts.size();
        ids.reserve(ids.size() + hosts.size());
        for (std::size_t i = 0; i < hosts.size(); ++i)
            ids.push_back(
                resolver->addresses(hosts[i], [weak = weak_from_this(), i](const AddressResult& result) {
                    guarded(weak, [&result, i](Lookup& self) { self.on_addresses(i, result); });
                }));
    }

    void on_addresses(std::size_t index, const AddressResult& result) {
        if (index >= answers.size() || answers[index]) return;
        answers[index] = result;
        if (--waiting == 0) assemble();
    }

    void assemble() {
        RouteResult result;
        for (std::size_t i = 0; i < hosts.size() && result.endpoints.size() < max_endpoints; ++i) {
            if (answers[i]->status != DnsStatus::ok) continue;
            for (const IpAddress& address : answers[i]->addresses) {
                Endpoint endpoint{address, port, hosts[i]};
                if (std::find(result.endpoints.begin(), result.endpoints.end(), endpoint) !=
                    result.endpoints.end())
                    continue;
                result.endpoints.push_back(std::move(endpoint));
                if (result.endpoints.size() == max_endpoints) break;
            }
        }
        if (!result.endpoints.empty()) {
            result.status = RouteResult::Status::ok;
            return finish(result);
        }
        // Nothing to connect to: a lookup that failed may yet find something, so it
        // decides the reply before "no address".
        for (std::size_t i = 0; i < hosts.size(); ++i)
            if (answers[i]->status == DnsStatus::temporary)
                return finish(failure(RouteResult::Status::temporary,
                                      fmt::format("451 4.4.3 DNS lookup failed: A/AAAA of {}: {}", hosts[i],
                                                  or_unknown(answers[i]->error))));
        switch (kind) {
            case Kind::relay:
                return finish(failure(RouteResult::Status::temporary,
                                      fmt::format("451 4.4.4 No address for relay host {}", hosts.front())));
            case Kind::implicit:
                // NODATA for MX, then NXDOMAIN: the domain went away in between.
                if (answers.front()->status == DnsStatus::no_domain)
                    return finish(
                        failure(RouteResult::Status::permanent, "550 5.1.2 Host or domain name not found"));
                break;
            case Kind::mx:
                break;
        }
        finish(failure(RouteResult::Status::temporary, "451 4.4.4 No address for the mail exchangers"));
    }
};

void Router::prune() noexcept {
    std::erase_if(lookups_, [](const std::shared_ptr<Lookup>& lookup) { return lookup->finished; });
}

void Router::route(const std::string& domain, Callback done) {
    prune();
    const std::string name = ascii_lower(domain);
    const RouteTarget* target = nullptr;
    if (const auto it = resolved_->routes.find(name); it != resolved_->routes.end())
        target = &it->second;
    else if (resolved_->smarthost)
        target = &*resolved_->smarthost;

    if (target != nullptr && target->address) {
        RouteResult result;
        result.status = RouteResult::Status::ok;
        result.endpoints.push_back(Endpoint{*target->address, target->port, target->host});
        if (done) done(result);
        return;
    }

    auto lookup = std::make_shared<Lookup>();
    lookup->resolver = resolver_;
    lookup->domain = name;
    lookup->hostname = ascii_lower(resolved_->hostname);
    lookup->port = port_;
    lookup->done = std::move(done);
    // Room first, so nothing throws once lookups have started; doubling, not one more.
    if (lookups_.size() == lookups_.capacity())
        lookups_.reserve(std::max<std::size_t>(8, 2 * lookups_.size()));
    if (target != nullptr) {
        lookup->kind = Lookup::Kind::relay;
        lookup->port = target->port;
        lookup->resolve({target->host});
    } else {
        lookup->kind = Lookup::Kind::mx;
        lookup->start_mx();
    }
    // Had a start thrown, `lookup` would have cancelled what it started on its way out.
    lookups_.push_back(std::move(lookup));
}

std::size_t Router::pending() const noexcept {
    return static_cast<std::size_t>(std::count_if(
        lookups_.begin(), lookups_.end(), [](const std::shared_ptr<Lookup>& l) { return !l->finished; }));
}

void Router::cancel_all() noexcept {
    // A Lookup whose callback is running is kept alive by that callback's shared_ptr;
    // it is finished already, so nothing of it reports.
    for (const std::shared_ptr<Lookup>& lookup : lookups_) {
        lookup->finished = true;
        lookup->forget();
        lookup->done = nullptr;
    }
    lookups_.clear();
}

}  // namespace smtp::smtpc
