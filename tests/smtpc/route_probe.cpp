// tests/smtpc/route_probe.cpp: smtp::smtpc::Router on a real Resolver in a select()
// loop, for the system test (tests/system/test_routing.py, against dnsmasq) and for
// valgrind.
//
//   route_probe [--timeout-ms N] [--port N] [--hostname NAME]
//               [--static DOMAIN=HOST[:PORT]]... [--smarthost HOST[:PORT]]
//               [--cancel-all | --cancel-in-callback | --destroy-early] SERVER DOMAIN...
//
// Builds a Resolved from the options (static routes, smarthost, our hostname), routes
// every DOMAIN at once on a Resolver that asks only SERVER, runs the loop until nothing
// is pending, then prints one line per DOMAIN in the order given:
//   "DOMAIN ok ENDPOINT..."      ENDPOINT "host[address]:port", in the order to try
//   "DOMAIN permanent REPLY"     or "temporary REPLY"
//   "DOMAIN cancelled"
// A result delivered from inside route() (an IP route) ends with " (immediate)".
//  --port N              the port of MX hosts (Settings::port), default 25
//  --hostname NAME       our hostname, for the MX loop check; default probe.invalid
//  --cancel-all          cancel_all() right after routing every domain
//  --cancel-in-callback  the first callback from process() calls cancel_all()
//  --destroy-early       destroys the Router right after routing every domain, then
//                        runs the Resolver until its lookups are gone
// Exit status: 0 when every domain not cancelled reported exactly once, none cancelled
// did, and the Router and Resolver end with nothing pending; 1 otherwise, on a select()
// error or past 60 s; 2 for a usage error or a bad server.
#include "common/network.hpp"
#include "common/resolver.hpp"
#include "routing.hpp"
#include "settings.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <sys/select.h>
#include <sys/time.h>

namespace {

using smtp::Resolver;
using smtp::smtpc::Resolved;
using smtp::smtpc::Router;
using smtp::smtpc::RouteResult;
using std::chrono::milliseconds;

struct Options {
    milliseconds timeout{5000};
    std::uint16_t port = 25;
    enum class Cancel { none, all, in_callback, destroy } cancel = Cancel::none;
    std::string server;
    std::vector<std::string> domains;
};

struct Slot {
    std::string domain;
    unsigned reports = 0;
    bool immediate = false;  // reported from inside route()
    bool cancelled = false;
    std::string line;
};

std::optional<unsigned> parse_unsigned(std::string_view text) {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
    return value;
}

// "HOST[:PORT]" as smtpc's settings take it; the message on failure.
std::optional<std::string> parse_target(std::string_view text, smtp::smtpc::RouteTarget& out) {
    smtp::Parsed<smtp::Endpoint> parsed = smtp::parse_endpoint(text, 25);
    if (!parsed) return parsed.error;
    out.host = parsed.value->host;
    out.address = parsed.value->address;
    out.port = parsed.value->port;
    return std::nullopt;
}

std::optional<Options> parse_args(int argc, char** argv, Resolved& resolved) {
    Options o;
    resolved.hostname = "probe.invalid";
    int i = 1;
    for (; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg.substr(0, 2) != "--") break;
        const bool has_value = arg == "--timeout-ms" || arg == "--port" || arg == "--hostname" ||
                               arg == "--static" || arg == "--smarthost";
        std::string_view value;
        if (has_value) {
            if (i + 1 >= argc) return std::nullopt;
            value = argv[++i];
        }
        if (arg == "--timeout-ms" || arg == "--port") {
            const std::optional<unsigned> n = parse_unsigned(value);
            if (!n || (arg == "--port" && (*n == 0 || *n > 65535))) return std::nullopt;
            if (arg == "--port")
                o.port = static_cast<std::uint16_t>(*n);
            else
                o.timeout = milliseconds(*n);
        } else if (arg == "--hostname") {
            resolved.hostname = value;
        } else if (arg == "--static" || arg == "--smarthost") {
            const std::size_t eq = value.find('=');
            if (arg == "--static" && (eq == std::string_view::npos || eq == 0)) return std::nullopt;
            smtp::smtpc::RouteTarget target;
            const std::string_view host = arg == "--static" ? value.substr(eq + 1) : value;
            if (const auto error = parse_target(host, target)) {
                fmt::print(stderr, "route_probe: {}\n", *error);
                return std::nullopt;
            }
            if (arg == "--static")
                resolved.routes[std::string(value.substr(0, eq))] = target;
            else
                resolved.smarthost = target;
        } else if (arg == "--cancel-all") {
            o.cancel = Options::Cancel::all;
        } else if (arg == "--cancel-in-callback") {
            o.cancel = Options::Cancel::in_callback;
        } else if (arg == "--destroy-early") {
            o.cancel = Options::Cancel::destroy;
        } else {
            return std::nullopt;
        }
    }
    if (argc - i < 2) return std::nullopt;
    o.server = argv[i++];
    for (; i < argc; ++i) o.domains.emplace_back(argv[i]);
    return o;
}

std::string render(const RouteResult& r) {
    std::string line;
    switch (r.status) {
        case RouteResult::Status::ok:
            line = "ok";
            // As Postfix's relay=; Endpoint::to_string() is job.cpp's, not needed here.
            for (const smtp::smtpc::Endpoint& e : r.endpoints)
                fmt::format_to(std::back_inserter(line), " {}[{}]:{}", e.host, e.address.to_string(), e.port);
            if (r.endpoints.empty()) line += " (no endpoint!)";
            return line;
        case RouteResult::Status::permanent:
            line = "permanent ";
            break;
        case RouteResult::Status::temporary:
            line = "temporary ";
            break;
    }
    return line + r.reply;
}

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
            fmt::print(stderr, "route_probe: select: {}\n", std::strerror(errno));
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
    Resolved resolved;
    const std::optional<Options> options = parse_args(argc, argv, resolved);
    if (!options) {
        fmt::print(stderr,
                   "usage: route_probe [--timeout-ms N] [--port N] [--hostname NAME] "
                   "[--static DOMAIN=HOST[:PORT]]... [--smarthost HOST[:PORT]] "
                   "[--cancel-all | --cancel-in-callback | --destroy-early] SERVER DOMAIN...\n");
        return 2;
    }

    std::error_code ec;
    smtp::ResolverOptions resolver_options;
    resolver_options.server = options->server;
    resolver_options.timeout = options->timeout;
    const std::unique_ptr<Resolver> resolver = Resolver::create(resolver_options, ec);
    if (!resolver) {
        fmt::print(stderr, "route_probe: server '{}': {}\n", options->server, ec.message());
        return 2;
    }

    std::vector<Slot> slots(options->domains.size());
    bool failed = false;
    bool cancelled_in_callback = false;
    auto router = std::make_unique<Router>(resolved, *resolver, options->port);
    bool routing = false;  // inside route(): a report now is immediate
    for (std::size_t i = 0; i < slots.size(); ++i) {
        slots[i].domain = options->domains[i];
        routing = true;
        router->route(slots[i].domain, [&, i](const RouteResult& result) {
            Slot& slot = slots[i];
            ++slot.reports;
            slot.immediate = routing;
            slot.line = render(result);
            if (slot.cancelled) {
                fmt::print(stderr, "route_probe: cancelled route of {} reported\n", slot.domain);
                failed = true;
            }
            if (options->cancel == Options::Cancel::in_callback && !routing && !cancelled_in_callback) {
                cancelled_in_callback = true;
                router->cancel_all();
                for (Slot& other : slots)
                    if (other.reports == 0) other.cancelled = true;
            }
        });
        routing = false;
    }
    auto cancel_unreported = [&slots] {
        for (Slot& slot : slots)
            if (slot.reports == 0) slot.cancelled = true;
    };
    if (options->cancel == Options::Cancel::all) {
        router->cancel_all();
        cancel_unreported();
        if (router->pending() != 0 || resolver->pending() != 0) {
            fmt::print(stderr, "route_probe: after cancel_all: {} routes, {} lookups pending\n",
                       router->pending(), resolver->pending());
            failed = true;
        }
    } else if (options->cancel == Options::Cancel::destroy) {
        router.reset();
        cancel_unreported();
        if (resolver->pending() != 0) {
            fmt::print(stderr, "route_probe: Router gone, {} lookups pending\n", resolver->pending());
            failed = true;
        }
    }

    const auto guard = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while ((router && router->pending() > 0) || resolver->pending() > 0) {
        if (!turn(*resolver)) return 1;
        if (std::chrono::steady_clock::now() > guard) {
            fmt::print(stderr, "route_probe: still pending after 60 s\n");
            return 1;
        }
    }

    for (const Slot& slot : slots) {
        if (slot.cancelled) {
            fmt::print("{} cancelled\n", slot.domain);
            continue;
        }
        if (slot.reports != 1) {
            fmt::print(stderr, "route_probe: {} reported {} times\n", slot.domain, slot.reports);
            failed = true;
            continue;
        }
        fmt::print("{} {}{}\n", slot.domain, slot.line, slot.immediate ? " (immediate)" : "");
    }
    return failed ? 1 : 0;
}
