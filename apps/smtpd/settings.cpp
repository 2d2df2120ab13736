// apps/smtpd/settings.cpp: the table of smtpd's settings, and their checked forms.
#include "settings.hpp"

#include "common/maildir.hpp"
#include "common/startup.hpp"

#include <smtp/command.hpp>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <sys/select.h>

#include <fmt/format.h>

namespace smtp::smtpd {
namespace {

std::optional<std::string> check_address(std::string_view text) {
    if (auto parsed = parse_ip_address(text); !parsed) return parsed.error;
    return std::nullopt;
}

std::optional<std::string> check_network(std::string_view text) {
    if (auto parsed = parse_ip_network(text); !parsed) return parsed.error;
    return std::nullopt;
}

// A local domain: a domain name, or an address literal written as in a path.
std::optional<std::string> check_domain(std::string_view text) {
    if (is_valid_domain(text) || is_valid_address_literal(text)) return std::nullopt;
    return fmt::format("not a domain name or address literal: '{}'", text);
}

std::optional<std::string> check_user(std::string_view text) {
    if (mailbox_for(text)) return std::nullopt;
    return fmt::format("not a safe mailbox name: '{}'", text);
}

std::optional<std::string> check_endpoint(std::string_view text) {
    if (auto parsed = parse_ip_endpoint(text, 53); !parsed) return parsed.error;
    return std::nullopt;
}

}  // namespace

config::Table make_table(Settings& s) {
    config::Table t{"smtpd", "receives mail by SMTP into Maildirs and the outgoing queue"};
    t.add("port", &s.port, "TCP port to listen on").range(1, 65535);
    t.add("bind", &s.bind, "IP addresses to listen on (0.0.0.0 and :: for all)").validate(check_address);
    t.add("mail_root", &s.mail_root, "directory of the Maildirs: <mail_root>/<mailbox>/{tmp,new,cur}");
    t.add("queue_root", &s.queue_root, "directory of the outgoing queue, shared with smtpc");
    t.add("log_file", &s.log_file, "log file; every line also goes to stdout");
    t.add_choice("log_level", &s.log_level,
                 {{"debug", LogLevel::debug},
                  {"info", LogLevel::info},
                  {"warning", LogLevel::warning},
                  {"error", LogLevel::error}},
                 "lowest level logged");
    t.add("user", &s.user, "user to run as after binding; empty: stay who we are");
    t.add("group", &s.group, "group to run as; empty: the user's primary group");
    t.add("hostname", &s.hostname, "this server's name in the greeting and Received:")
        .shown_default("this machine's host name")
        .validate([](std::string_view text) -> std::optional<std::string> {
            if (text.empty() || is_valid_domain(text)) return std::nullopt;
            return fmt::format("not a domain name: '{}'", text);
        });
    t.add("local_domain", &s.local_domain, "domains delivered into the Maildirs")
        .shown_default("the host name and localhost")
        .validate(check_domain);
    t.add("local_user", &s.local_user, "the only local mailboxes (550 5.1.1 for others); empty: any")
        .validate(check_user);
    t.add("relay_net", &s.relay_net, "client networks that may send mail to other domains (CIDR)")
        .validate(check_network);
    t.add("workers", &s.workers, "worker processes").range(1, 256);
    t.add("max_connections", &s.max_connections, "connections per worker (at most FD_SETSIZE - 64)")
        .range(1, FD_SETSIZE - 64);
    t.add("timeout", &s.timeout, "how long to wait for a command (RFC 5321 4.5.3.2.7)").range(1, 86400);
    t.add("data_timeout", &s.data_timeout, "how long to wait for message data (RFC 5321 4.5.3.2.6)")
        .range(1, 86400);
    t.add("shutdown_grace", &s.shutdown_grace, "on SIGTERM, time sessions get before 421").range(0, 3600);
    t.add_size("max_message_size", &s.max_message_size, "largest message accepted (SIZE)")
        .range(1024, std::uint64_t{1} << 40);
    t.add("max_recipients", &s.max_recipients, "recipients per message (RFC 5321 4.5.3.1.8: 100 or more)")
        .range(1, 100000);
    t.add("max_errors", &s.max_errors, "error replies a session may earn before 421").range(1, 1000);
    t.add("rdns", &s.rdns, "look up each client's forward-confirmed reverse DNS name");
    t.add("dns_server", &s.dns_server, "DNS server IP[:PORT]; empty: the system's resolver")
        .validate([](std::string_view text) -> std::optional<std::string> {
            if (text.empty()) return std::nullopt;
            return check_endpoint(text);
        });
    t.add("dns_timeout", &s.dns_timeout, "time limit of one reverse DNS lookup").range(1, 600);
    t.add("reject_unknown_client", &s.reject_unknown_client,
          "450 4.7.25 for clients without a confirmed name (RFC 7372)");
    t.add("tls_cert", &s.tls_cert,
          "PEM certificate chain for STARTTLS, leaf first; STARTTLS is off without it");
    t.add("tls_key", &s.tls_key,
          "PEM key of tls_cert; read before privileges are dropped, on SIGHUP as user (unreadable: reload "
          "refused)");
    t.add("require_tls", &s.require_tls,
          "relay_net clients must STARTTLS before MAIL, RCPT, DATA (530 5.7.0; RFC 3207 4)");
    return t;
}

std::string resolve(const Settings& s, Resolved& out) {
    out = Resolved{};
    if (auto error = resolve_host_name(s.hostname, out.hostname); !error.empty()) return error;
    out.local_domain = resolve_local_domains(s.local_domain, out.hostname);
    for (const auto& u : s.local_user) out.local_user.push_back(*mailbox_for(u));
    for (const auto& n : s.relay_net) out.relay_net.add(*parse_ip_network(n).value);
    for (const auto& b : s.bind) out.bind.push_back(*parse_ip_address(b).value);
    if (out.bind.empty()) return "bind: no address to listen on";

    // Both or neither: one alone is a half-done configuration, not "TLS off".
    if (s.tls_cert.empty() != s.tls_key.empty())
        return s.tls_cert.empty() ? "tls_key: set without tls_cert (both or neither)"
                                  : "tls_cert: set without tls_key (both or neither)";
    // RFC 3207 §4: requiring TLS is only possible when it can be offered.
    if (s.require_tls && s.tls_cert.empty()) return "require_tls: needs tls_cert and tls_key";
    if (!s.tls_cert.empty()) {
        std::string error;
        out.tls = tls::Context::server(s.tls_cert, s.tls_key, error);
        if (!out.tls) return error.empty() ? fmt::format("tls_cert {}: cannot load", s.tls_cert) : error;
    }
    return {};
}

}  // namespace smtp::smtpd
