// tests/common/resolver_probe.cpp: smtp::Resolver in a select() loop, for the system
// test (tests/system/test_resolver.py, against dnsmasq) and for valgrind.
//
//   resolver_probe [--timeout-ms N] [--max-names N] [--cancel-first] [--cancel-in-callback]
//                  [--repeat N] [--drain] SERVER ADDRESS...
//   resolver_probe --mx [--raw-order] [OPTIONS] SERVER DOMAIN...
//   resolver_probe --addresses [OPTIONS] SERVER HOST...
//
// Starts a lookup for every argument at once on a Resolver that asks only SERVER
// ("IP", "IP:PORT", "[v6]:PORT"), runs the loop until no lookup is pending, then prints
// one line per argument in the order given:
//   reverse():   "ADDRESS STATUS NAME", NAME "-" when empty;
//   mx():        "DOMAIN STATUS [null] PREF:HOST...", the hosts in the order returned
//                but sorted by name within each preference, so lines are stable; with
//                --raw-order exactly as returned (shuffled; not with --repeat);
//   addresses(): "HOST STATUS ADDRESS...", in the order returned.
// A temporary mx() or addresses() result ends with its error: "temporary (timeout)".
//  --cancel-first        cancels the first lookup right after starting it; its line
//                        reads "ARGUMENT cancelled -".
//  --cancel-in-callback  the first callback to run cancels every lookup that has not
//                        reported yet (those finished in the same process() included);
//                        their lines read "cancelled".
//  --repeat N            each address is looked up N times in a row, each lookup
//                        started from the callback of the one before; all N results
//                        must agree, and the line shows the last.
//  --drain               after the last lookup, keeps processing until no DNS query is
//                        in flight, so answers for cancelled lookups arrive (and must be
//                        ignored); without it the Resolver is destroyed with them in
//                        flight.
// Exit status: 0 when every lookup not cancelled reported exactly once and no cancelled
// one did; 1 otherwise, on a select() error or when the loop runs past 60 s; 2 for a
// usage error or a server the Resolver does not take.
#include "common/network.hpp"
#include "common/resolver.hpp"

#include <smtp/command.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <sys/select.h>
#include <sys/time.h>

namespace {

using smtp::AddressResult;
using smtp::MxResult;
using smtp::Resolver;
using smtp::ReverseResult;
using std::chrono::milliseconds;

enum class Mode { reverse, mx, addresses };

struct Options {
    Mode mode = Mode::reverse;
    bool raw_order = false;
    milliseconds timeout{5000};
    unsigned max_names = 4;
    unsigned repeat = 1;
    bool cancel_first = false;
    bool cancel_in_callback = false;
    bool drain = false;
    std::string server;
    std::vector<std::string> arguments;
};

struct Slot {
    std::string text;
    smtp::IpAddress address;  // reverse only
    Resolver::LookupId id = 0;
    unsigned reports = 0;  // callbacks seen
    bool cancelled = false;
    std::optional<std::string> first;  // of the repeated lookups: the line after the argument
    std::optional<std::string> last;
};

std::optional<unsigned> parse_unsigned(std::string_view text) {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
    return value;
}

std::optional<Options> parse_args(int argc, char** argv) {
    Options o;
    int i = 1;
    for (; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg.substr(0, 2) != "--") break;
        const bool has_value = arg == "--timeout-ms" || arg == "--max-names" || arg == "--repeat";
        std::optional<unsigned> value;
        if (has_value) {
            if (i + 1 >= argc || !(value = parse_unsigned(argv[i + 1]))) return std::nullopt;
            ++i;
        }
        if (arg == "--timeout-ms")
            o.timeout = milliseconds(*value);
        else if (arg == "--max-names")
            o.max_names = *value;
        else if (arg == "--repeat" && *value > 0)
            o.repeat = *value;
        else if (arg == "--cancel-first")
            o.cancel_first = true;
        else if (arg == "--cancel-in-callback")
            o.cancel_in_callback = true;
        else if (arg == "--drain")
            o.drain = true;
        else if (arg == "--mx")
            o.mode = Mode::mx;
        else if (arg == "--addresses")
            o.mode = Mode::addresses;
        else if (arg == "--raw-order")
            o.raw_order = true;
        else
            return std::nullopt;
    }
    if (argc - i < 2) return std::nullopt;
    o.server = argv[i++];
    for (; i < argc; ++i) o.arguments.emplace_back(argv[i]);
    return o;
}

std::string render(const ReverseResult& r) {
    return fmt::format("{} {}", smtp::reverse_status_name(r.status), r.name.empty() ? "-" : r.name);
}

void append_error(std::string& line, smtp::DnsStatus status, const std::string& error) {
    if (status == smtp::DnsStatus::temporary) fmt::format_to(std::back_inserter(line), " ({})", error);
}

std::string render(MxResult r, bool raw_order) {
    if (!raw_order)
        std::stable_sort(r.hosts.begin(), r.hosts.end(), [](const smtp::MxHost& a, const smtp::MxHost& b) {
            return a.preference != b.preference ? a.preference < b.preference : a.name < b.name;
        });
    std::string line(smtp::dns_status_name(r.status));
    if (r.null_mx) line += " null";
    for (const smtp::MxHost& host : r.hosts)
        fmt::format_to(std::back_inserter(line), " {}:{}", host.preference, host.name);
    append_error(line, r.status, r.error);
    return line;
}

std::string render(const AddressResult& r) {
    std::string line(smtp::dns_status_name(r.status));
    for (const smtp::IpAddress& address : r.addresses)
        fmt::format_to(std::back_inserter(line), " {}", address.to_string());
    append_error(line, r.status, r.error);
    return line;
}

// What the lookups must never break, whatever the server says.
bool sane(const MxResult& r) {
    if (r.status != smtp::DnsStatus::ok && (r.null_mx || !r.hosts.empty())) return false;
    if (r.null_mx && !r.hosts.empty()) return false;
    for (std::size_t i = 0; i < r.hosts.size(); ++i) {
        if (i > 0 && r.hosts[i - 1].preference > r.hosts[i].preference) return false;
        if (!smtp::is_valid_domain(r.hosts[i].name)) return false;
        for (char c : r.hosts[i].name)
            if (c >= 'A' && c <= 'Z') return false;
    }
    return true;
}

bool sane(const AddressResult& r) {
    if ((r.status == smtp::DnsStatus::ok) == r.addresses.empty()) return false;
    bool seen_v6 = false;
    for (std::size_t i = 0; i < r.addresses.size(); ++i) {
        if (r.addresses[i].is_v6()) seen_v6 = true;
        if (seen_v6 && r.addresses[i].is_v4()) return false;  // IPv4 first
        for (std::size_t j = 0; j < i; ++j)
            if (r.addresses[j] == r.addresses[i]) return false;
    }
    return true;
}

class Probe {
public:
    Probe(Resolver& resolver, const Options& options, std::vector<Slot>& slots)
        : resolver_(resolver), options_(options), slots_(slots) {}

    void start(std::size_t index, unsigned round) {
        Slot& slot = slots_[index];
        switch (options_.mode) {
            case Mode::reverse:
                slot.id = resolver_.reverse(slot.address, [this, index, round](const ReverseResult& r) {
                    on_done(index, round, render(r), true);
                });
                break;
            case Mode::mx:
                slot.id = resolver_.mx(slot.text, [this, index, round](const MxResult& r) {
                    on_done(index, round, render(r, options_.raw_order), sane(r));
                });
                break;
            case Mode::addresses:
                slot.id = resolver_.addresses(slot.text, [this, index, round](const AddressResult& r) {
                    on_done(index, round, render(r), sane(r));
                });
                break;
        }
    }

    bool failed() const { return failed_; }

private:
    void on_done(std::size_t index, unsigned round, std::string line, bool sane) {
        Slot& slot = slots_[index];
        ++slot.reports;
        if (slot.cancelled) {
            fmt::print(stderr, "resolver_probe: cancelled lookup of {} reported\n", slot.text);
            failed_ = true;
        }
        if (!sane) {
            fmt::print(stderr, "resolver_probe: {} gave an inconsistent result: {}\n", slot.text, line);
            failed_ = true;
        }
        if (!slot.first) slot.first = line;
        if (*slot.first != line) {
            fmt::print(stderr, "resolver_probe: {} gave {} and then {}\n", slot.text, *slot.first, line);
            failed_ = true;
        }
        slot.last = std::move(line);
        if (options_.cancel_in_callback && !cancelled_in_callback_) {
            cancelled_in_callback_ = true;
            for (Slot& other : slots_) {
                if (&other == &slot || other.cancelled || other.last) continue;
                resolver_.cancel(other.id);
                other.cancelled = true;
            }
        }
        if (round + 1 < options_.repeat) start(index, round + 1);  // re-entrant start
    }

    Resolver& resolver_;
    const Options& options_;
    std::vector<Slot>& slots_;
    bool failed_ = false;
    bool cancelled_in_callback_ = false;
};

// One turn of the loop: select() on the resolver's sockets for at most its timeout
// (and at most one second, so the caller's guard is checked), then process().
bool turn(Resolver& resolver) {
    fd_set read_set;
    fd_set write_set;
    FD_ZERO(&read_set);
    FD_ZERO(&write_set);
    const int max_fd = resolver.add_fds(read_set, write_set, -1);
    const milliseconds wait = std::min(resolver.timeout(), milliseconds(1000));
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(wait.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((wait.count() % 1000) * 1000);
    if (select(max_fd + 1, &read_set, &write_set, nullptr, &tv) < 0) {
        if (errno != EINTR) {
            fmt::print(stderr, "resolver_probe: select: {}\n", std::strerror(errno));
            return false;
        }
        FD_ZERO(&read_set);  // undefined after a failed select()
        FD_ZERO(&write_set);
    }
    resolver.process(read_set, write_set);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    const std::optional<Options> options = parse_args(argc, argv);
    if (!options) {
        fmt::print(
            stderr,
            "usage: resolver_probe [--mx [--raw-order] | --addresses] [--timeout-ms N] [--max-names N] "
            "[--cancel-first] [--cancel-in-callback] [--repeat N] [--drain] SERVER ARGUMENT...\n");
        return 2;
    }
    std::vector<Slot> slots;
    for (const std::string& text : options->arguments) {
        Slot slot;
        slot.text = text;
        if (options->mode == Mode::reverse) {
            const smtp::Parsed<smtp::IpAddress> parsed = smtp::parse_ip_address(text);
            if (!parsed) {
                fmt::print(stderr, "resolver_probe: {}\n", parsed.error);
                return 2;
            }
            slot.address = *parsed.value;
        }
        slots.push_back(std::move(slot));
    }

    std::error_code ec;
    smtp::ResolverOptions resolver_options;
    resolver_options.server = options->server;
    resolver_options.timeout = options->timeout;
    resolver_options.max_names = options->max_names;
    const std::unique_ptr<Resolver> resolver = Resolver::create(resolver_options, ec);
    if (!resolver) {
        fmt::print(stderr, "resolver_probe: server '{}': {}\n", options->server, ec.message());
        return 2;
    }

    Probe probe(*resolver, *options, slots);
    for (std::size_t i = 0; i < slots.size(); ++i) {
        probe.start(i, 0);
        if (i == 0 && options->cancel_first) {
            resolver->cancel(slots[0].id);
            slots[0].cancelled = true;
        }
    }

    const auto guard = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (resolver->pending() > 0 || (options->drain && resolver->timeout() != milliseconds::max())) {
        if (!turn(*resolver)) return 1;
        if (std::chrono::steady_clock::now() > guard) {
            fmt::print(stderr, "resolver_probe: still {} pending after 60 s\n", resolver->pending());
            return 1;
        }
    }

    bool ok = !probe.failed();
    for (const Slot& slot : slots) {
        if (slot.cancelled) {
            fmt::print("{} cancelled -\n", slot.text);
            continue;
        }
        if (slot.reports != options->repeat || !slot.last) {
            fmt::print(stderr, "resolver_probe: {} reported {} times, expected {}\n", slot.text, slot.reports,
                       options->repeat);
            ok = false;
            continue;
        }
        fmt::print("{} {}\n", slot.text, *slot.last);
    }
    return ok ? 0 : 1;
}
