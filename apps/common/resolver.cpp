// apps/common/resolver.cpp: the Resolver on c-ares 1.18 (see resolver.hpp).
//
// A reverse lookup runs in two steps on the one channel:
//  1. ares_query() for the PTR records of the address (RFC 1035 §3.5, RFC 3596 §2.5),
//     parsed with ares_parse_ptr_reply(). Not ares_gethostbyaddr(): it turns a timeout
//     or SERVFAIL into ARES_ENOTFOUND, and "no name" must not be told from "unknown
//     for now" by guesswork.
//  2. ares_gethostbyname() with the address's family for each of the first max_names
//     names, all at once, with a trailing dot so no search domain is ever appended.
//     The first name in PTR order whose records hold the address is the answer.
//
// Invariants:
//  - Each c-ares query carries a heap Tag {impl, id, index}. c-ares calls every
//    callback exactly once (from ares_destroy() with ARES_EDESTRUCTION at the
//    latest), and the callback frees the Tag: no Tag leaks or outlives the Impl.
//  - c-ares callbacks never erase a Lookup; they only mark it finished. Lookups are
//    erased outside c-ares only (delivery in process(), cancel(), the destructor), so
//    a Lookup& held across a c-ares call that may call back synchronously stays valid.
//  - A finished or erased lookup ignores answers that still arrive for it: ids are
//    never reused, so a late answer cannot reach another lookup.
//  - Nothing thrown crosses a c-ares (C) frame: callbacks are noexcept and turn
//    std::bad_alloc into a temporary result.
// Thread safety: as the Resolver: one thread.
#include "common/resolver.hpp"

#include <smtp/command.hpp>

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <map>
#include <new>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include <ares.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

namespace smtp {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int dns_class_in = 1;   // RFC 1035 §3.2.4
constexpr int dns_type_ptr = 12;  // RFC 1035 §3.2.2
constexpr std::uint16_t dns_port = 53;

// c-ares doubles the wait after each round over the servers (1.18: timeout <<
// (try / nservers)), so with one server a step may take t + 2t + 4t = 7t. With
// t = timeout / 4 a lost datagram is sent again twice within the budget, and the
// Resolver's own deadline, not c-ares, ends a lookup whose server stays silent.
constexpr int ares_tries = 3;
constexpr long long ares_try_divisor = 4;

// ares_library_init() must run once per process before any channel and is not
// thread-safe; a function-local static is initialized exactly once, thread-safely.
// Never cleaned up: other channels may live until exit, and on Linux it holds nothing.
int library_status() noexcept {
    static const int status = ares_library_init(ARES_LIB_INIT_ALL);
    return status;
}

std::error_code error_from_ares(int status) noexcept {
    if (status == ARES_ENOMEM) return std::make_error_code(std::errc::not_enough_memory);
    return std::make_error_code(std::errc::io_error);
}

// The PTR owner name: "4.3.2.1.in-addr.arpa" (RFC 1035 §3.5), or 32 nibbles
// least significant first under "ip6.arpa" (RFC 3596 §2.5).
std::string ptr_owner(const IpAddress& address) {
    std::string out;
    const auto b = address.bytes();
    if (address.is_v4()) {
        fmt::format_to(std::back_inserter(out), "{}.{}.{}.{}.in-addr.arpa", b[3], b[2], b[1], b[0]);
        return out;
    }
    out.reserve(72);
    for (std::size_t i = b.size(); i-- > 0;)
        fmt::format_to(std::back_inserter(out), "{:x}.{:x}.", b[i] & 0xfu, b[i] >> 4u);
    out += "ip6.arpa";
    return out;
}

// Names compare case-insensitively (RFC 4343); logs want one spelling.
std::string normalized(std::string_view name) {
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    std::string out(name);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

// A name worth a forward lookup: a valid domain whose last label is not all digits
// (RFC 3696 §2). A PTR of "192.0.2.1" would otherwise "resolve" to itself without
// DNS (c-ares, like getaddrinfo, takes address text as an address), and a client could
// confirm any name it likes; Postfix refuses such names for the same reason.
bool worth_checking(std::string_view name) noexcept {
    if (!is_valid_domain(name)) return false;
    const std::size_t dot = name.rfind('.');
    const std::string_view last = dot == std::string_view::npos ? name : name.substr(dot + 1);
    return !std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; });
}

milliseconds ceil_ms(Clock::duration d) noexcept {
    if (d <= Clock::duration::zero()) return milliseconds::zero();
    return std::chrono::ceil<milliseconds>(d);
}

struct HostentDeleter {
    void operator()(hostent* host) const noexcept { ares_free_hostent(host); }
};
using HostentPtr = std::unique_ptr<hostent, HostentDeleter>;

}  // namespace

std::string_view reverse_status_name(ReverseResult::Status status) noexcept {
    switch (status) {
        case ReverseResult::Status::confirmed:
            return "confirmed";
        case ReverseResult::Status::unconfirmed:
            return "unconfirmed";
        case ReverseResult::Status::no_name:
            return "no_name";
        case ReverseResult::Status::temporary:
            return "temporary";
    }
    return "temporary";
}

struct Resolver::Impl {
    using Status = ReverseResult::Status;

    // The forward check of one PTR name.
    enum class Check : std::uint8_t { pending, matched, no_match, failed };

    struct Lookup {
        IpAddress address;
        ReverseCallback done;
        Clock::time_point deadline;
        std::vector<std::string> names;  // PTR names: normalized, distinct, in answer order
        std::vector<Check> checks;       // the first min(names, max_names) names
        bool finished = false;           // result set; waiting for delivery in process()
        ReverseResult result;
    };

    // The argument of one c-ares query; freed by its callback.
    struct Tag {
        Impl* impl;
        LookupId id;
        std::size_t index;  // the name a forward query checks
    };

    ResolverOptions options_;
    ares_channel channel_ = nullptr;
    std::map<LookupId, Lookup> lookups_;  // ordered by id, so by start: delivery order
    std::size_t finished_count_ = 0;      // lookups_ entries with finished set
    LookupId last_id_ = 0;

    Impl() = default;
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;

    ~Impl() {
        // Forget the lookups first: ares_destroy() calls every query's callback with
        // ARES_EDESTRUCTION, which then finds no lookup and only frees its Tag.
        lookups_.clear();
        finished_count_ = 0;
        if (channel_ != nullptr) ares_destroy(channel_);
    }

    Lookup* live(LookupId id) noexcept {
        const auto it = lookups_.find(id);
        if (it == lookups_.end() || it->second.finished) return nullptr;
        return &it->second;
    }

    void finish(Lookup& lookup, Status status, std::string&& name = {}) noexcept {
        lookup.finished = true;
        lookup.result.status = status;
        lookup.result.name = std::move(name);
        lookup.names.clear();
        ++finished_count_;
    }

    static void on_ptr(void* arg, int status, int timeouts, unsigned char* answer, int length) noexcept;
    static void on_forward(void* arg, int status, int timeouts, hostent* host) noexcept;

    void take_ptr_answer(LookupId id, Lookup& lookup, const unsigned char* answer, int length);
    void start_forward(LookupId id, Lookup& lookup);
    void decide(Lookup& lookup) noexcept;
    void expire(Clock::time_point now) noexcept;
    void deliver();
};

void Resolver::Impl::on_ptr(void* arg, int status, int /*timeouts*/, unsigned char* answer,
                            int length) noexcept {
    const std::unique_ptr<Tag> tag(static_cast<Tag*>(arg));
    Impl& self = *tag->impl;
    Lookup* lookup = self.live(tag->id);
    if (lookup == nullptr) return;  // cancelled, timed out, or the channel is going away
    switch (status) {
        case ARES_SUCCESS:
            break;
        case ARES_ENOTFOUND:  // NXDOMAIN
        case ARES_ENODATA:    // the name exists, no PTR
            self.finish(*lookup, Status::no_name);
            return;
        default:  // ETIMEOUT, ESERVFAIL, EREFUSED, ECONNREFUSED, EFORMERR, ENOMEM, ...
            self.finish(*lookup, Status::temporary);
            return;
    }
    try {
        self.take_ptr_answer(tag->id, *lookup, answer, length);
    } catch (...) {  // std::bad_alloc: nothing may unwind through c-ares
        if (!lookup->finished) self.finish(*lookup, Status::temporary);
    }
}

void Resolver::Impl::take_ptr_answer(LookupId id, Lookup& lookup, const unsigned char* answer, int length) {
    const auto bytes = lookup.address.bytes();
    const int family = lookup.address.is_v4() ? AF_INET : AF_INET6;
    hostent* raw = nullptr;
    const int parsed =
        ares_parse_ptr_reply(answer, length, bytes.data(), static_cast<int>(bytes.size()), family, &raw);
    const HostentPtr host(raw);
    if (parsed == ARES_ENODATA) return finish(lookup, Status::no_name);
    // EBADRESP too: c-ares (since 1.17.2) rejects a PTR name with characters no host
    // name has; an answer we cannot read says nothing for certain.
    if (parsed != ARES_SUCCESS || !host) return finish(lookup, Status::temporary);

    // c-ares 1.18 lists every PTR name, in answer order, in h_aliases (h_name holds
    // just one of them); h_name is the fallback for a version that only sets it.
    auto add = [&lookup](const char* text) {
        std::string name = normalized(text);
        if (name.empty()) return;  // the root: no name at all
        if (std::find(lookup.names.begin(), lookup.names.end(), name) == lookup.names.end())
            lookup.names.push_back(std::move(name));
    };
    if (host->h_aliases != nullptr)
        for (char** alias = host->h_aliases; *alias != nullptr; ++alias) add(*alias);
    if (lookup.names.empty() && host->h_name != nullptr) add(host->h_name);
    if (lookup.names.empty()) return finish(lookup, Status::no_name);
    start_forward(id, lookup);
}

void Resolver::Impl::start_forward(LookupId id, Lookup& lookup) {
    const std::size_t n = std::min<std::size_t>(lookup.names.size(), options_.max_names);
    lookup.checks.assign(n, Check::pending);
    for (std::size_t i = 0; i < n; ++i)
        if (!worth_checking(lookup.names[i])) lookup.checks[i] = Check::no_match;
    // Every check is marked before the first query goes out, so an answer that comes
    // back synchronously (from /etc/hosts, or an error) cannot decide too early.
    const int family = lookup.address.is_v4() ? AF_INET : AF_INET6;
    for (std::size_t i = 0; i < n && !lookup.finished; ++i) {
        if (lookup.checks[i] != Check::pending) continue;
        // The trailing dot makes the name absolute (RFC 1034 §3.1): never searched.
        const std::string absolute = lookup.names[i] + '.';
        auto tag = std::make_unique<Tag>(Tag{this, id, i});
        ares_gethostbyname(channel_, absolute.c_str(), family, &Impl::on_forward, tag.release());
    }
    decide(lookup);
}

void Resolver::Impl::on_forward(void* arg, int status, int /*timeouts*/, hostent* host) noexcept {
    const std::unique_ptr<Tag> tag(static_cast<Tag*>(arg));
    Impl& self = *tag->impl;
    Lookup* lookup = self.live(tag->id);
    if (lookup == nullptr || tag->index >= lookup->checks.size()) return;
    Check& check = lookup->checks[tag->index];
    if (status == ARES_SUCCESS && host != nullptr) {
        check = Check::no_match;
        const auto bytes = lookup->address.bytes();
        if (host->h_addr_list != nullptr && host->h_length == static_cast<int>(bytes.size()))
            for (char** a = host->h_addr_list; *a != nullptr; ++a)
                if (std::memcmp(*a, bytes.data(), bytes.size()) == 0) check = Check::matched;
    } else if (status == ARES_ENOTFOUND || status == ARES_ENODATA) {
        check = Check::no_match;  // the name has no address of this family
    } else {
        check = Check::failed;
    }
    self.decide(*lookup);
}

void Resolver::Impl::decide(Lookup& lookup) noexcept {
    if (lookup.finished) return;
    bool failed = false;
    for (std::size_t i = 0; i < lookup.checks.size(); ++i) {
        switch (lookup.checks[i]) {
            case Check::pending:
                return;  // an earlier name may still confirm
            case Check::matched:
                return finish(lookup, Status::confirmed, std::move(lookup.names[i]));
            case Check::failed:
                failed = true;
                break;
            case Check::no_match:
                break;
        }
    }
    // None confirmed. If one check could not be made, a name might still confirm
    // later: unknown for now (Postfix defers reject_unknown_client_hostname likewise).
    if (failed) return finish(lookup, Status::temporary);
    finish(lookup, Status::unconfirmed, std::move(lookup.names.front()));
}

void Resolver::Impl::expire(Clock::time_point now) noexcept {
    for (auto& [id, lookup] : lookups_)
        if (!lookup.finished && lookup.deadline <= now) finish(lookup, Status::temporary);
}

void Resolver::Impl::deliver() {
    // Only lookups that exist now: one finished by a callback (a new lookup failing at
    // once) waits for the next process(), so a callback that always starts another
    // lookup cannot keep this loop going. Each round looks the next one up again: the
    // callback before may have cancelled it.
    const LookupId last = last_id_;
    LookupId after = 0;
    while (finished_count_ > 0) {
        auto it = lookups_.upper_bound(after);
        while (it != lookups_.end() && it->first <= last && !it->second.finished) ++it;
        if (it == lookups_.end() || it->first > last) return;
        after = it->first;
        ReverseCallback done = std::move(it->second.done);
        const ReverseResult result = std::move(it->second.result);
        lookups_.erase(it);
        --finished_count_;
        if (done) done(result);
    }
}

Resolver::Resolver(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}

Resolver::~Resolver() = default;

std::unique_ptr<Resolver> Resolver::create(const ResolverOptions& options, std::error_code& ec) {
    ec.clear();
    if (options.timeout <= milliseconds::zero()) {
        ec = std::make_error_code(std::errc::invalid_argument);
        return nullptr;
    }
    std::optional<Endpoint> server;
    if (!options.server.empty()) {
        Parsed<Endpoint> parsed = parse_ip_endpoint(options.server, dns_port);
        if (!parsed) {
            ec = std::make_error_code(std::errc::invalid_argument);
            return nullptr;
        }
        server = std::move(*parsed.value);
    }
    if (const int status = library_status(); status != ARES_SUCCESS) {
        ec = error_from_ares(status);
        return nullptr;
    }
    try {
        auto impl = std::make_unique<Impl>();
        impl->options_ = options;

        ares_options opts{};
        int mask = 0;
        const long long per_try =
            std::clamp<long long>(options.timeout.count() / ares_try_divisor, 1, INT_MAX);
        opts.timeout = static_cast<int>(per_try);
        mask |= ARES_OPT_TIMEOUTMS;
        opts.tries = ares_tries;
        mask |= ARES_OPT_TRIES;
        // No search list: every name asked is absolute, and resolv.conf's "search"
        // must not send variants of it anywhere.
        opts.domains = nullptr;
        opts.ndomains = 0;
        mask |= ARES_OPT_DOMAINS;
        char dns_only[] = "b";  // c-ares copies it
        if (server) {
            opts.lookups = dns_only;  // DNS only: /etc/hosts is not read
            mask |= ARES_OPT_LOOKUPS;
        }
        ares_channel channel = nullptr;
        if (const int status = ares_init_options(&channel, &opts, mask); status != ARES_SUCCESS) {
            ec = error_from_ares(status);
            return nullptr;
        }
        impl->channel_ = channel;

        if (server) {
            // Replaces the servers from resolv.conf before any query is sent.
            ares_addr_port_node node{};
            node.next = nullptr;
            const auto bytes = server->address->bytes();
            if (server->address->is_v4()) {
                node.family = AF_INET;
                std::memcpy(&node.addr.addr4, bytes.data(), bytes.size());
            } else {
                node.family = AF_INET6;
                std::memcpy(&node.addr.addr6, bytes.data(), bytes.size());
            }
            node.udp_port = server->port;  // host byte order
            node.tcp_port = server->port;
            if (const int status = ares_set_servers_ports(channel, &node); status != ARES_SUCCESS) {
                ec = error_from_ares(status);
                return nullptr;  // ~Impl destroys the channel
            }
        }
        return std::unique_ptr<Resolver>(new Resolver(std::move(impl)));
    } catch (const std::bad_alloc&) {
        ec = std::make_error_code(std::errc::not_enough_memory);
        return nullptr;
    }
}

Resolver::LookupId Resolver::reverse(const IpAddress& address, ReverseCallback done) {
    Impl& self = *impl_;
    // A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d; its names are
    // under in-addr.arpa, not ip6.arpa.
    const IpAddress target = address.unmapped();
    const std::string owner = ptr_owner(target);
    const LookupId id = self.last_id_ + 1;
    auto tag = std::make_unique<Impl::Tag>(Impl::Tag{&self, id, 0});
    Impl::Lookup& lookup = self.lookups_[id];
    self.last_id_ = id;
    lookup.address = target;
    lookup.done = std::move(done);
    lookup.deadline = Clock::now() + self.options_.timeout;
    // May call back at once (out of memory, no server): on_ptr then only marks the
    // lookup finished, and process() delivers it.
    ares_query(self.channel_, owner.c_str(), dns_class_in, dns_type_ptr, &Impl::on_ptr, tag.release());
    return id;
}

void Resolver::cancel(LookupId id) noexcept {
    const auto it = impl_->lookups_.find(id);
    if (it == impl_->lookups_.end()) return;
    // Its queries stay with c-ares until answered or timed out (c-ares cancels only
    // whole channels); their callbacks find no lookup and free their Tags.
    if (it->second.finished) --impl_->finished_count_;
    impl_->lookups_.erase(it);
}

std::size_t Resolver::pending() const noexcept { return impl_->lookups_.size(); }

int Resolver::add_fds(fd_set& read_set, fd_set& write_set, int max_fd) const noexcept {
    std::array<ares_socket_t, ARES_GETSOCK_MAXNUM> socks{};
    const int bits = ares_getsock(impl_->channel_, socks.data(), ARES_GETSOCK_MAXNUM);
    for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
        const bool read = ARES_GETSOCK_READABLE(bits, i) != 0;
        const bool write = ARES_GETSOCK_WRITABLE(bits, i) != 0;
        if (!read && !write) break;  // ares_getsock() fills the array from the front
        const ares_socket_t fd = socks[static_cast<std::size_t>(i)];
        if (fd < 0 || fd >= FD_SETSIZE) continue;  // FD_SET would write past the set
        if (read) FD_SET(fd, &read_set);
        if (write) FD_SET(fd, &write_set);
        max_fd = std::max(max_fd, fd);
    }
    return max_fd;
}

milliseconds Resolver::timeout() const noexcept {
    const Impl& self = *impl_;
    if (self.finished_count_ > 0) return milliseconds::zero();  // callbacks to call
    milliseconds wait = milliseconds::max();
    const Clock::time_point now = Clock::now();
    for (const auto& [id, lookup] : self.lookups_) wait = std::min(wait, ceil_ms(lookup.deadline - now));
    // Also for queries of cancelled or expired lookups: c-ares must see them time out
    // to close their sockets and free them.
    timeval tv{};
    if (const timeval* next = ares_timeout(self.channel_, nullptr, &tv); next != nullptr) {
        const auto ares_wait = std::chrono::seconds(next->tv_sec) + std::chrono::microseconds(next->tv_usec);
        wait = std::min(wait, std::chrono::ceil<milliseconds>(ares_wait));
    }
    return wait;
}

void Resolver::process(const fd_set& read_set, const fd_set& write_set) {
    Impl& self = *impl_;
    // Which of the channel's sockets are ready, decided before any is processed:
    // processing one may open or close others (and a new socket may get a closed
    // one's number; c-ares's sockets are non-blocking, so a read then finds nothing).
    // ares_process() with the sets is not used: it tests FD_ISSET on every socket,
    // past the end of the set for one >= FD_SETSIZE.
    struct Ready {
        ares_socket_t fd;
        bool read;
        bool write;
    };
    std::array<ares_socket_t, ARES_GETSOCK_MAXNUM> socks{};
    std::array<Ready, ARES_GETSOCK_MAXNUM> ready{};
    std::size_t n = 0;
    const int bits = ares_getsock(self.channel_, socks.data(), ARES_GETSOCK_MAXNUM);
    for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
        const bool want_read = ARES_GETSOCK_READABLE(bits, i) != 0;
        const bool want_write = ARES_GETSOCK_WRITABLE(bits, i) != 0;
        if (!want_read && !want_write) break;
        const ares_socket_t fd = socks[static_cast<std::size_t>(i)];
        if (fd < 0 || fd >= FD_SETSIZE) continue;
        const bool read = want_read && FD_ISSET(fd, &read_set);
        const bool write = want_write && FD_ISSET(fd, &write_set);
        if (read || write) ready[n++] = Ready{fd, read, write};
    }
    for (std::size_t i = 0; i < n; ++i)
        ares_process_fd(self.channel_, ready[i].read ? ready[i].fd : ARES_SOCKET_BAD,
                        ready[i].write ? ready[i].fd : ARES_SOCKET_BAD);
    // Each ares_process_fd() also handles c-ares's expired timeouts; with no socket
    // ready, one call with none does just that.
    if (n == 0) ares_process_fd(self.channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    self.expire(Clock::now());
    self.deliver();
}

}  // namespace smtp
