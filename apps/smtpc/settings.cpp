// apps/smtpc/settings.cpp: the table of smtpc's settings, and their checked forms.
#include "settings.hpp"

#include "common/startup.hpp"
#include "common/text.hpp"

#include <smtp/command.hpp>

#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include <fmt/format.h>

namespace smtp::smtpc {
namespace {

// HOST[:PORT] for a route or the smarthost: a name or an IP address; port 25 if absent.
Parsed<RouteTarget> parse_target(std::string_view text) {
    auto endpoint = parse_endpoint(text, 25);
    if (!endpoint) return {std::nullopt, endpoint.error};
    return {RouteTarget{endpoint.value->host, endpoint.value->address, endpoint.value->port}, {}};
}

// "DOMAIN=HOST[:PORT]" split and checked; the domain is lower-cased.
std::optional<std::pair<std::string, RouteTarget>> parse_route(std::string_view text, std::string& error) {
    const auto equals = text.find('=');
    if (equals == std::string_view::npos) {
        error = fmt::format("not DOMAIN=HOST[:PORT]: '{}'", text);
        return std::nullopt;
    }
    const std::string_view domain = text.substr(0, equals);
    if (!is_valid_domain(domain)) {
        error = fmt::format("bad domain in '{}'", text);
        return std::nullopt;
    }
    auto target = parse_target(text.substr(equals + 1));
    if (!target) {
        error = target.error;
        return std::nullopt;
    }
    return std::pair{ascii_lower(domain), *target.value};
}

// The names of tls_level and of the levels in tls_policy.
const std::vector<std::pair<std::string, TlsLevel>>& tls_levels() {
    static const std::vector<std::pair<std::string, TlsLevel>> levels{{"none", TlsLevel::none},
                                                                      {"may", TlsLevel::may},
                                                                      {"encrypt", TlsLevel::encrypt},
                                                                      {"verify", TlsLevel::verify}};
    return levels;
}

// "DOMAIN=LEVEL" split and checked; the domain is lower-cased.
std::optional<std::pair<std::string, TlsLevel>> parse_tls_policy(std::string_view text, std::string& error) {
    const auto equals = text.find('=');
    if (equals == std::string_view::npos) {
        error = fmt::format("not DOMAIN=LEVEL: '{}'", text);
        return std::nullopt;
    }
    const std::string_view domain = text.substr(0, equals);
    if (!is_valid_domain(domain)) {
        error = fmt::format("bad domain in '{}'", text);
        return std::nullopt;
    }
    const std::string_view level = text.substr(equals + 1);
    for (const auto& [name, value] : tls_levels())
        if (name == level) return std::pair{ascii_lower(domain), value};
    error = fmt::format("bad level in '{}' (none, may, encrypt or verify)", text);
    return std::nullopt;
}

}  // namespace

TlsLevel Resolved::tls_level_for(const std::string& domain) const {
    const auto it = tls_policy.find(domain);
    return it == tls_policy.end() ? tls_level : it->second;
}

config::Table make_table(Settings& s) {
    config::Table t{"smtpc", "delivers the outgoing queue by SMTP"};
    t.add("queue_root", &s.queue_root, "directory of the outgoing queue, filled by smtpd");
    t.add("mail_root", &s.mail_root, "directory of the Maildirs, for bounces to local senders");
    t.add("log_file", &s.log_file, "log file; every line also goes to stdout");
    t.add_choice("log_level", &s.log_level,
                 {{"debug", LogLevel::debug},
                  {"info", LogLevel::info},
                  {"warning", LogLevel::warning},
                  {"error", LogLevel::error}},
                 "lowest level logged");
    t.add("hostname", &s.hostname, "our name in EHLO and in bounces")
        .shown_default("this machine's host name")
        .validate([](std::string_view text) -> std::optional<std::string> {
            if (text.empty() || is_valid_domain(text)) return std::nullopt;
            return fmt::format("not a domain name: '{}'", text);
        });
    t.add("local_domain", &s.local_domain, "domains whose senders get bounces into their Maildir")
        .shown_default("the host name and localhost")
        .validate([](std::string_view text) -> std::optional<std::string> {
            if (is_valid_domain(text)) return std::nullopt;
            return fmt::format("not a domain name: '{}'", text);
        });
    t.add("threads", &s.threads, "delivery threads, each one pselect() loop").range(1, 64);
    t.add("max_connections", &s.max_connections, "open connections per thread").range(1, 900);
    t.add("scan_interval", &s.scan_interval, "queue scan for due retries (new mail is seen at once)")
        .range(1, 3600);
    t.add("idle_timeout", &s.idle_timeout, "how long an idle session waits for more mail before QUIT")
        .range(0, 300);
    t.add("retry_min", &s.retry_min, "first retry after a temporary failure").range(1, 86400);
    t.add("retry_max", &s.retry_max, "longest wait between retries (the delay doubles up to it)")
        .range(1, 86400 * 7);
    t.add("queue_lifetime", &s.queue_lifetime, "how long to retry before bouncing").range(1, 86400 * 30);
    t.add("connect_timeout", &s.connect_timeout, "time limit of a TCP connect").range(1, 3600);
    t.add("command_timeout", &s.command_timeout, "time limit for each server reply (RFC 5321 4.5.3.2)")
        .range(1, 3600);
    t.add("route", &s.route, "static route DOMAIN=HOST[:PORT], before the smarthost and DNS")
        .validate([](std::string_view text) -> std::optional<std::string> {
            std::string error;
            if (parse_route(text, error)) return std::nullopt;
            return error;
        });
    t.add("smarthost", &s.smarthost, "HOST[:PORT] that takes all mail without a static route")
        .validate([](std::string_view text) -> std::optional<std::string> {
            if (text.empty()) return std::nullopt;
            if (auto target = parse_target(text); !target) return target.error;
            return std::nullopt;
        });
    t.add("dns_server", &s.dns_server, "DNS server IP[:PORT]; empty: the system's resolver")
        .validate([](std::string_view text) -> std::optional<std::string> {
            if (text.empty()) return std::nullopt;
            if (auto parsed = parse_ip_endpoint(text, 53); !parsed) return parsed.error;
            return std::nullopt;
        });
    t.add("dns_timeout", &s.dns_timeout, "time limit of one DNS lookup").range(1, 600);
    t.add("port", &s.port, "SMTP port of mail exchangers found by DNS").range(1, 65535);
    t.add_choice("tls_level", &s.tls_level, tls_levels(),
                 "STARTTLS: none, may (when offered, unverified), encrypt (required), verify (required, "
                 "certificate checked against the MX or route host name)");
    t.add("tls_policy", &s.tls_policy,
          "DOMAIN=LEVEL: the TLS level for mail to that recipient domain, whatever its route, instead of "
          "tls_level")
        .validate([](std::string_view text) -> std::optional<std::string> {
            std::string error;
            if (parse_tls_policy(text, error)) return std::nullopt;
            return error;
        });
    t.add("tls_ca_file", &s.tls_ca_file,
          "CA certificates (PEM) that verify servers; empty: the system's store");
    t.add("once", &s.once, "deliver what is due, then exit");
    t.add("list", &s.list, "print the queue (like mailq) and exit");
    t.add("flush", &s.flush, "make every queued message due now, then run");
    return t;
}

std::string resolve(const Settings& s, Resolved& out) {
    out = Resolved{};
    if (auto error = resolve_host_name(s.hostname, out.hostname); !error.empty()) return error;
    out.local_domain = resolve_local_domains(s.local_domain, out.hostname);
    for (const auto& r : s.route) {
        std::string error;
        auto route = parse_route(r, error);
        if (!route) return fmt::format("route: {}", error);
        out.routes.insert_or_assign(route->first, route->second);
    }
    if (!s.smarthost.empty()) out.smarthost = *parse_target(s.smarthost).value;
    if (s.retry_max < s.retry_min) return "retry_max must not be less than retry_min";
    out.tls_level = s.tls_level;
    for (const auto& p : s.tls_policy) {
        std::string error;
        auto policy = parse_tls_policy(p, error);
        if (!policy) return fmt::format("tls_policy: {}", error);
        out.tls_policy.insert_or_assign(policy->first, policy->second);
    }
    // Made even when every level is none: the CA file is checked at start-up (and by
    // --check-config), not at the first handshake.
    std::string error;
    out.tls_context = tls::Context::client(s.tls_ca_file, error);
    if (!out.tls_context) return error.empty() ? "tls_ca_file: cannot make the TLS context" : error;
    return {};
}

}  // namespace smtp::smtpc
