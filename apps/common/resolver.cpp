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
// An MX lookup is one ares_query() for type MX, parsed with ares_parse_mx_reply(); an
// address lookup is two ares_query() at once, A and AAAA, parsed with
// ares_parse_a_reply() and ares_parse_aaaa_reply(). ares_query() keeps NXDOMAIN
// (ARES_ENOTFOUND) apart from NODATA (ARES_ENODATA) and from failures, which mail
// routing needs: the first bounces, the second falls back to A/AAAA (RFC 5321 §5.1),
// the last defers.
//
// Each lookup's kind-specific state (callback, result, progress) is one alternative of
// a std::variant in its Lookup; the deadline, the finished flag and delivery order are
// shared, so every invariant of resolver.hpp holds for every kind alike.
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
#include <random>
#include <string_view>
#include <utility>
#include <variant>
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

constexpr int dns_class_in = 1;    // RFC 1035 §3.2.4
constexpr int dns_type_a = 1;      // RFC 1035 §3.2.2
constexpr int dns_type_ptr = 12;   // RFC 1035 §3.2.2
constexpr int dns_type_mx = 15;    // RFC 1035 §3.2.2
constexpr int dns_type_aaaa = 28;  // RFC 3596 §2.1
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

// The absolute form of a checked name: the trailing dot (RFC 1034 §3.1) means no
// search domain is ever appended.
std::string absolute(const std::string& name) { return name + '.'; }

// Why a query failed, short, for logs and reply texts.
std::string failure_text(int status) {
    switch (status) {
        case ARES_ETIMEOUT:
            return "timeout";
        case ARES_ESERVFAIL:
            return "server failure";
        case ARES_EREFUSED:
            return "refused";
        case ARES_ECONNREFUSED:
            // Also what c-ares 1.18 reports for SERVFAIL, REFUSED and NOTIMP: it tries
            // the next server (or the same again), and ends with this when none helps.
            return "server failure or refused";
        case ARES_EFORMERR:
            return "format error";
        case ARES_ENOTIMP:
            return "not implemented";
        case ARES_EBADRESP:
            return "bad response";
        case ARES_ENOMEM:
            return "out of memory";
        default:
            return ares_strerror(status);
    }
}

// The status of a finished ares_query() before its answer is parsed.
DnsStatus query_status(int status) noexcept {
    switch (status) {
        case ARES_SUCCESS:
            return DnsStatus::ok;
        case ARES_ENOTFOUND:  // NXDOMAIN
            return DnsStatus::no_domain;
        case ARES_ENODATA:  // NOERROR without an answer
            return DnsStatus::no_records;
        default:  // ETIMEOUT, ESERVFAIL, EREFUSED, ECONNREFUSED, EFORMERR, ENOMEM, ...
            return DnsStatus::temporary;
    }
}

milliseconds ceil_ms(Clock::duration d) noexcept {
    if (d <= Clock::duration::zero()) return milliseconds::zero();
    return std::chrono::ceil<milliseconds>(d);
}

struct HostentDeleter {
    void operator()(hostent* host) const noexcept { ares_free_hostent(host); }
};
using HostentPtr = std::unique_ptr<hostent, HostentDeleter>;

struct AresDataDeleter {
    void operator()(void* data) const noexcept { ares_free_data(data); }
};
using MxReplyPtr = std::unique_ptr<ares_mx_reply, AresDataDeleter>;

constexpr std::string_view timeout_text = "timeout";

// For error texts where nothing may throw: on std::bad_alloc the text stays empty.
void assign_text(std::string& out, std::string_view text) noexcept {
    try {
        out.assign(text);
    } catch (...) {
        out.clear();
    }
}

// Addresses kept from one A or AAAA answer; more would not be tried anyway.
constexpr int max_answer_addresses = 32;

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

std::string_view dns_status_name(DnsStatus status) noexcept {
    switch (status) {
        case DnsStatus::ok:
            return "ok";
        case DnsStatus::no_records:
            return "no_records";
        case DnsStatus::no_domain:
            return "no_domain";
        case DnsStatus::temporary:
            return "temporary";
    }
    return "temporary";
}

struct Resolver::Impl {
    using Status = ReverseResult::Status;

    // The forward check of one PTR name.
    enum class Check : std::uint8_t { pending, matched, no_match, failed };

    struct Reverse {
        IpAddress address;
        ReverseCallback done;
        std::vector<std::string> names;  // PTR names: normalized, distinct, in answer order
        std::vector<Check> checks;       // the first min(names, max_names) names
        ReverseResult result;
    };

    struct Mx {
        MxCallback done;
        MxResult result;
    };

    // One query of an address lookup.
    struct Part {
        bool answered = false;
        DnsStatus status = DnsStatus::temporary;
        std::string error;
        std::vector<IpAddress> addresses;  // ok: in answer order
    };

    struct Addresses {
        static constexpr std::size_t a = 0;
        static constexpr std::size_t aaaa = 1;
        AddressCallback done;
        std::array<Part, 2> parts;  // [a], [aaaa]
        AddressResult result;
    };

    struct Lookup {
        Clock::time_point deadline;
        bool finished = false;  // result set; waiting for delivery in process()
        std::variant<Reverse, Mx, Addresses> state;
    };

    // The argument of one c-ares query; freed by its callback.
    struct Tag {
        Impl* impl;
        LookupId id;
        std::size_t index;  // the name a forward query checks; the part of an address lookup
    };

    ResolverOptions options_;
    ares_channel channel_ = nullptr;
    std::map<LookupId, Lookup> lookups_;  // ordered by id, so by start: delivery order
    std::size_t finished_count_ = 0;      // lookups_ entries with finished set
    LookupId last_id_ = 0;
    std::mt19937 random_;  // shuffles MX hosts of equal preference; seeded by create()

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

    // The lookup `id` if it is still waiting for answers and of kind T, with its state.
    template <class T>
    std::pair<Lookup*, T*> live(LookupId id) noexcept {
        const auto it = lookups_.find(id);
        if (it == lookups_.end() || it->second.finished) return {nullptr, nullptr};
        T* state = std::get_if<T>(&it->second.state);
        if (state == nullptr) return {nullptr, nullptr};
        return {&it->second, state};
    }

    void mark_finished(Lookup& lookup) noexcept {
        lookup.finished = true;
        ++finished_count_;
    }

    void finish(Lookup& lookup, Reverse& reverse, Status status, std::string&& name = {}) noexcept {
        reverse.result.status = status;
        reverse.result.name = std::move(name);
        reverse.names.clear();
        mark_finished(lookup);
    }

    void finish(Lookup& lookup, Mx& mx, DnsStatus status, std::string&& error = {}) noexcept {
        mx.result.status = status;
        mx.result.error = std::move(error);
        if (status != DnsStatus::ok) {
            mx.result.null_mx = false;
            mx.result.hosts.clear();
        }
        mark_finished(lookup);
    }

    // Starts a lookup: a new id and its Lookup, with the deadline set.
    std::pair<LookupId, Lookup*> add(std::variant<Reverse, Mx, Addresses>&& state) {
        const LookupId id = last_id_ + 1;
        Lookup& lookup = lookups_[id];
        last_id_ = id;
        lookup.deadline = Clock::now() + options_.timeout;
        lookup.state = std::move(state);
        return {id, &lookup};
    }

    static void on_ptr(void* arg, int status, int timeouts, unsigned char* answer, int length) noexcept;
    static void on_forward(void* arg, int status, int timeouts, hostent* host) noexcept;
    static void on_mx(void* arg, int status, int timeouts, unsigned char* answer, int length) noexcept;
    static void on_address(void* arg, int status, int timeouts, unsigned char* answer, int length) noexcept;

    void take_ptr_answer(LookupId id, Lookup& lookup, Reverse& reverse, const unsigned char* answer,
                         int length);
    void start_forward(LookupId id, Lookup& lookup, Reverse& reverse);
    void decide(Lookup& lookup, Reverse& reverse) noexcept;
    void take_mx_answer(Mx& mx, const unsigned char* answer, int length);
    static void take_address_answer(Part& part, std::size_t index, const unsigned char* answer, int length);
    void combine(Lookup& lookup, Addresses& addresses) noexcept;
    void expire(Clock::time_point now) noexcept;
    void deliver();
};

void Resolver::Impl::on_ptr(void* arg, int status, int /*timeouts*/, unsigned char* answer,
                            int length) noexcept {
    const std::unique_ptr<Tag> tag(static_cast<Tag*>(arg));
    Impl& self = *tag->impl;
    const auto [lookup, reverse] = self.live<Reverse>(tag->id);
    if (lookup == nullptr) return;  // cancelled, timed out, or the channel is going away
    switch (status) {
        case ARES_SUCCESS:
            break;
        case ARES_ENOTFOUND:  // NXDOMAIN
        case ARES_ENODATA:    // the name exists, no PTR
            self.finish(*lookup, *reverse, Status::no_name);
            return;
        default:  // ETIMEOUT, ESERVFAIL, EREFUSED, ECONNREFUSED, EFORMERR, ENOMEM, ...
            self.finish(*lookup, *reverse, Status::temporary);
            return;
    }
    try {
        self.take_ptr_answer(tag->id, *lookup, *reverse, answer, length);
    } catch (...) {  // std::bad_alloc: nothing may unwind through c-ares
        if (!lookup->finished) self.finish(*lookup, *reverse, Status::temporary);
    }
}

void Resolver::Impl::take_ptr_answer(LookupId id, Lookup& lookup, Reverse& reverse,
                                     const unsigned char* answer, int length) {
    const auto bytes = reverse.address.bytes();
    const int family = reverse.address.is_v4() ? AF_INET : AF_INET6;
    hostent* raw = nullptr;
    const int parsed =
        ares_parse_ptr_reply(answer, length, bytes.data(), static_cast<int>(bytes.size()), family, &raw);
    const HostentPtr host(raw);
    if (parsed == ARES_ENODATA) return finish(lookup, reverse, Status::no_name);
    // EBADRESP too: c-ares (since 1.17.2) rejects a PTR name with characters no host
    // name has; an answer we cannot read says nothing for certain.
    if (parsed != ARES_SUCCESS || !host) return finish(lookup, reverse, Status::temporary);

    // c-ares 1.18 lists every PTR name, in answer order, in h_aliases (h_name holds
    // just one of them); h_name is the fallback for a version that only sets it.
    auto add = [&reverse](const char* text) {
        std::string name = normalized(text);
        if (name.empty()) return;  // the root: no name at all
        if (std::find(reverse.names.begin(), reverse.names.end(), name) == reverse.names.end())
            reverse.names.push_back(std::move(name));
    };
    if (host->h_aliases != nullptr)
        for (char** alias = host->h_aliases; *alias != nullptr; ++alias) add(*alias);
    if (reverse.names.empty() && host->h_name != nullptr) add(host->h_name);
    if (reverse.names.empty()) return finish(lookup, reverse, Status::no_name);
    start_forward(id, lookup, reverse);
}

void Resolver::Impl::start_forward(LookupId id, Lookup& lookup, Reverse& reverse) {
    const std::size_t n = std::min<std::size_t>(reverse.names.size(), options_.max_names);
    reverse.checks.assign(n, Check::pending);
    for (std::size_t i = 0; i < n; ++i)
        if (!worth_checking(reverse.names[i])) reverse.checks[i] = Check::no_match;
    // Every check is marked before the first query goes out, so an answer that comes
    // back synchronously (from /etc/hosts, or an error) cannot decide too early.
    const int family = reverse.address.is_v4() ? AF_INET : AF_INET6;
    for (std::size_t i = 0; i < n && !lookup.finished; ++i) {
        if (reverse.checks[i] != Check::pending) continue;
        const std::string name = absolute(reverse.names[i]);
        auto tag = std::make_unique<Tag>(Tag{this, id, i});
        ares_gethostbyname(channel_, name.c_str(), family, &Impl::on_forward, tag.release());
    }
    decide(lookup, reverse);
}

void Resolver::Impl::on_forward(void* arg, int status, int /*timeouts*/, hostent* host) noexcept {
    const std::unique_ptr<Tag> tag(static_cast<Tag*>(arg));
    Impl& self = *tag->impl;
    const auto [lookup, reverse] = self.live<Reverse>(tag->id);
    if (lookup == nullptr || tag->index >= reverse->checks.size()) return;
    Check& check = reverse->checks[tag->index];
    if (status == ARES_SUCCESS && host != nullptr) {
        check = Check::no_match;
        const auto bytes = reverse->address.bytes();
        if (host->h_addr_list != nullptr && host->h_length == static_cast<int>(bytes.size()))
            for (char** a = host->h_addr_list; *a != nullptr; ++a)
                if (std::memcmp(*a, bytes.data(), bytes.size()) == 0) check = Check::matched;
    } else if (status == ARES_ENOTFOUND || status == ARES_ENODATA) {
        check = Check::no_match;  // the name has no address of this family
    } else {
        check = Check::failed;
    }
    self.decide(*lookup, *reverse);
}

void Resolver::Impl::decide(Lookup& lookup, Reverse& reverse) noexcept {
    if (lookup.finished) return;
    bool failed = false;
    for (std::size_t i = 0; i < reverse.checks.size(); ++i) {
        switch (reverse.checks[i]) {
            case Check::pending:
                return;  // an earlier name may still confirm
            case Check::matched:
                return finish(lookup, reverse, Status::confirmed, std::move(reverse.names[i]));
            case Check::failed:
                failed = true;
                break;
            case Check::no_match:
                break;
        }
    }
    // None confirmed. If one check could not be made, a name might still confirm
    // later: unknown for now (Postfix defers reject_unknown_client_hostname likewise).
    if (failed) return finish(lookup, reverse, Status::temporary);
    finish(lookup, reverse, Status::unconfirmed, std::move(reverse.names.front()));
}

void Resolver::Impl::on_mx(void* arg, int status, int /*timeouts*/, unsigned char* answer,
                           int length) noexcept {
    const std::unique_ptr<Tag> tag(static_cast<Tag*>(arg));
    Impl& self = *tag->impl;
    const auto [lookup, mx] = self.live<Mx>(tag->id);
    if (lookup == nullptr) return;
    try {
        const DnsStatus first = query_status(status);
        if (first != DnsStatus::ok)
            return self.finish(*lookup, *mx, first,
                               first == DnsStatus::temporary ? failure_text(status) : "");
        self.take_mx_answer(*mx, answer, length);
        self.mark_finished(*lookup);
    } catch (...) {  // std::bad_alloc: nothing may unwind through c-ares
        if (lookup->finished) return;
        self.finish(*lookup, *mx, DnsStatus::temporary);
        assign_text(mx->result.error, "out of memory");
    }
}

void Resolver::Impl::take_mx_answer(Mx& mx, const unsigned char* answer, int length) {
    MxResult& result = mx.result;
    ares_mx_reply* raw = nullptr;
    const int parsed = ares_parse_mx_reply(answer, length, &raw);
    const MxReplyPtr replies(raw);
    if (parsed == ARES_ENODATA || (parsed == ARES_SUCCESS && !replies)) {
        result.status = DnsStatus::no_records;  // an answer of only a CNAME, say
        return;
    }
    if (parsed != ARES_SUCCESS) {  // EBADRESP: c-ares refuses names with odd characters
        result.status = DnsStatus::temporary;
        result.error = failure_text(parsed);
        return;
    }
    result.status = DnsStatus::ok;
    // RFC 7505 §3: a null MX is the one record of the domain, "." of preference 0.
    if (replies->next == nullptr && replies->priority == 0 && normalized(replies->host).empty()) {
        result.null_mx = true;
        return;
    }
    for (const ares_mx_reply* r = replies.get(); r != nullptr; r = r->next) {
        std::string name = normalized(r->host != nullptr ? r->host : "");
        // "." beside other records (RFC 7505 §3 forbids it) names no host; an address
        // is no host name (RFC 5321 §5.1). Neither can be looked up.
        if (!worth_checking(name)) continue;
        result.hosts.push_back(MxHost{r->priority, std::move(name)});
    }
    // RFC 5321 §5.1: by preference, and "randomize [equal preferences] to spread the
    // load across multiple mail exchangers". Then a name listed twice keeps its best.
    std::sort(result.hosts.begin(), result.hosts.end(),
              [](const MxHost& a, const MxHost& b) { return a.preference < b.preference; });
    for (auto first = result.hosts.begin(); first != result.hosts.end();) {
        const auto last = std::find_if(first, result.hosts.end(),
                                       [&](const MxHost& h) { return h.preference != first->preference; });
        std::shuffle(first, last, random_);
        first = last;
    }
    std::vector<MxHost> distinct;
    distinct.reserve(result.hosts.size());
    for (MxHost& host : result.hosts)
        if (std::none_of(distinct.begin(), distinct.end(),
                         [&](const MxHost& d) { return d.name == host.name; }))
            distinct.push_back(std::move(host));
    result.hosts = std::move(distinct);
}

void Resolver::Impl::on_address(void* arg, int status, int /*timeouts*/, unsigned char* answer,
                                int length) noexcept {
    const std::unique_ptr<Tag> tag(static_cast<Tag*>(arg));
    Impl& self = *tag->impl;
    const auto [lookup, addresses] = self.live<Addresses>(tag->id);
    if (lookup == nullptr || tag->index >= addresses->parts.size()) return;
    Part& part = addresses->parts[tag->index];
    part.answered = true;
    try {
        part.status = query_status(status);
        if (part.status == DnsStatus::temporary) part.error = failure_text(status);
        if (part.status == DnsStatus::ok) take_address_answer(part, tag->index, answer, length);
    } catch (...) {  // std::bad_alloc: nothing may unwind through c-ares
        part.status = DnsStatus::temporary;
        part.addresses.clear();
        assign_text(part.error, "out of memory");
    }
    self.combine(*lookup, *addresses);
}

void Resolver::Impl::take_address_answer(Part& part, std::size_t index, const unsigned char* answer,
                                         int length) {
    int count = max_answer_addresses;
    int parsed = ARES_SUCCESS;
    if (index == Addresses::a) {
        std::array<ares_addrttl, max_answer_addresses> records{};
        parsed = ares_parse_a_reply(answer, length, nullptr, records.data(), &count);
        for (int i = 0; parsed == ARES_SUCCESS && i < count; ++i) {
            std::array<std::uint8_t, 4> bytes{};
            std::memcpy(bytes.data(), &records[static_cast<std::size_t>(i)].ipaddr, bytes.size());
            part.addresses.push_back(IpAddress::v4(bytes));
        }
    } else {
        std::array<ares_addr6ttl, max_answer_addresses> records{};
        parsed = ares_parse_aaaa_reply(answer, length, nullptr, records.data(), &count);
        for (int i = 0; parsed == ARES_SUCCESS && i < count; ++i) {
            std::array<std::uint8_t, 16> bytes{};
            std::memcpy(bytes.data(), &records[static_cast<std::size_t>(i)].ip6addr, bytes.size());
            part.addresses.push_back(IpAddress::v6(bytes));
        }
    }
    // A CNAME with no address behind it parses as success with none.
    if (parsed == ARES_ENODATA || (parsed == ARES_SUCCESS && part.addresses.empty())) {
        part.status = DnsStatus::no_records;
    } else if (parsed != ARES_SUCCESS) {
        part.status = DnsStatus::temporary;
        part.error = failure_text(parsed);
        part.addresses.clear();
    }
}

void Resolver::Impl::combine(Lookup& lookup, Addresses& addresses) noexcept {
    if (lookup.finished) return;
    auto any = [&addresses](DnsStatus status) {
        return std::any_of(addresses.parts.begin(), addresses.parts.end(),
                           [status](const Part& part) { return part.status == status; });
    };
    for (const Part& part : addresses.parts)
        if (!part.answered) return;
    AddressResult& result = addresses.result;
    if (any(DnsStatus::ok)) {
        result.status = DnsStatus::ok;
        try {
            // IPv4 first (the first part), each family in answer order, each address once.
            for (const Part& part : addresses.parts)
                for (const IpAddress& address : part.addresses)
                    if (std::find(result.addresses.begin(), result.addresses.end(), address) ==
                        result.addresses.end())
                        result.addresses.push_back(address);
        } catch (...) {  // std::bad_alloc
            result.status = DnsStatus::temporary;
            result.addresses.clear();
        }
    } else if (any(DnsStatus::temporary)) {
        result.status = DnsStatus::temporary;
        for (Part& part : addresses.parts)
            if (part.status == DnsStatus::temporary && result.error.empty())
                result.error = std::move(part.error);
    } else if (std::all_of(addresses.parts.begin(), addresses.parts.end(),
                           [](const Part& part) { return part.status == DnsStatus::no_domain; })) {
        result.status = DnsStatus::no_domain;  // both agree the name does not exist
    } else {
        result.status = DnsStatus::no_records;
    }
    mark_finished(lookup);
}

void Resolver::Impl::expire(Clock::time_point now) noexcept {
    for (auto& [id, lookup] : lookups_) {
        if (lookup.finished || lookup.deadline > now) continue;
        if (auto* reverse = std::get_if<Reverse>(&lookup.state)) {
            finish(lookup, *reverse, Status::temporary);
        } else if (auto* mx = std::get_if<Mx>(&lookup.state)) {
            finish(lookup, *mx, DnsStatus::temporary);
            assign_text(mx->result.error, timeout_text);
        } else if (auto* addresses = std::get_if<Addresses>(&lookup.state)) {
            // A family that answered in time still counts: addresses of one family are
            // an answer, and a late AAAA must not hide a prompt A.
            for (Part& part : addresses->parts) {
                if (part.answered) continue;
                part.answered = true;
                part.status = DnsStatus::temporary;
                assign_text(part.error, timeout_text);
            }
            combine(lookup, *addresses);
        }
    }
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
        auto state = std::move(it->second.state);
        lookups_.erase(it);
        --finished_count_;
        std::visit(
            [](auto& finished) {
                if (finished.done) finished.done(finished.result);
            },
            state);
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
        // Only spreads load over equal MX hosts (RFC 5321 §5.1): no secret, but a
        // different order in each process, so every sender does not pick the same one.
        std::random_device device;
        std::seed_seq seed{device(), device(), device(), device()};
        impl->random_.seed(seed);

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
    } catch (const std::exception&) {  // std::random_device found no entropy source
        ec = std::make_error_code(std::errc::io_error);
        return nullptr;
    }
}

Resolver::LookupId Resolver::reverse(const IpAddress& address, ReverseCallback done) {
    Impl& self = *impl_;
    // A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d; its names are
    // under in-addr.arpa, not ip6.arpa.
    const IpAddress target = address.unmapped();
    const std::string owner = ptr_owner(target);
    auto tag = std::make_unique<Impl::Tag>(Impl::Tag{&self, self.last_id_ + 1, 0});
    Impl::Reverse state;
    state.address = target;
    state.done = std::move(done);
    const auto [id, lookup] = self.add(std::move(state));
    // May call back at once (out of memory, no server): on_ptr then only marks the
    // lookup finished, and process() delivers it.
    ares_query(self.channel_, owner.c_str(), dns_class_in, dns_type_ptr, &Impl::on_ptr, tag.release());
    return id;
}

Resolver::LookupId Resolver::mx(std::string_view domain, MxCallback done) {
    Impl& self = *impl_;
    const std::string name = normalized(domain);
    const std::string query = absolute(name);
    auto tag = std::make_unique<Impl::Tag>(Impl::Tag{&self, self.last_id_ + 1, 0});
    Impl::Mx state;
    state.done = std::move(done);
    const auto [id, lookup] = self.add(std::move(state));
    if (!worth_checking(name)) {
        // No such name can exist in DNS; the answer is certain without asking.
        // Reported by the next process(), which timeout() asks for at once.
        self.finish(*lookup, std::get<Impl::Mx>(lookup->state), DnsStatus::no_domain);
        return id;
    }
    ares_query(self.channel_, query.c_str(), dns_class_in, dns_type_mx, &Impl::on_mx, tag.release());
    return id;
}

Resolver::LookupId Resolver::addresses(std::string_view host, AddressCallback done) {
    Impl& self = *impl_;
    const std::string name = normalized(host);
    const std::string query = absolute(name);
    const LookupId next = self.last_id_ + 1;
    auto tag_a = std::make_unique<Impl::Tag>(Impl::Tag{&self, next, Impl::Addresses::a});
    auto tag_aaaa = std::make_unique<Impl::Tag>(Impl::Tag{&self, next, Impl::Addresses::aaaa});
    Impl::Addresses state;
    state.done = std::move(done);
    const auto [id, lookup] = self.add(std::move(state));
    auto& addresses = std::get<Impl::Addresses>(lookup->state);
    if (!worth_checking(name)) {
        for (Impl::Part& part : addresses.parts) {
            part.answered = true;
            part.status = DnsStatus::no_domain;
        }
        self.combine(*lookup, addresses);
        return id;
    }
    // Both parts are unanswered before the first query goes out, so one that fails at
    // once cannot finish the lookup without the other.
    ares_query(self.channel_, query.c_str(), dns_class_in, dns_type_a, &Impl::on_address, tag_a.release());
    ares_query(self.channel_, query.c_str(), dns_class_in, dns_type_aaaa, &Impl::on_address,
               tag_aaaa.release());
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
