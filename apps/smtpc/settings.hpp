// apps/smtpc/settings.hpp: every setting of smtpc, its default and its row in the
// configuration table (config file key, command-line option, help, reference).
//
// The defaults work with no config at all, beside a default smtpd: the queue under
// ./var/queue, local bounces into ./var/mail, the log in ./var/log/smtpc.log.
//
// Thread safety: plain data, read-only once the daemon runs.
#ifndef SMTP_APPS_SMTPC_SETTINGS_HPP
#define SMTP_APPS_SMTPC_SETTINGS_HPP

#include "common/config.hpp"
#include "common/log.hpp"
#include "common/network.hpp"
#include "common/tls.hpp"
#include "job.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace smtp::smtpc {

using namespace std::chrono_literals;

struct Settings {
    // Storage and logging.
    std::string queue_root = "./var/queue";  // the queue smtpd fills
    std::string mail_root = "./var/mail";    // bounces to local senders go here
    std::string log_file = "./var/log/smtpc.log";
    LogLevel log_level = LogLevel::info;

    // Identity: our name in EHLO and in bounces; local domains get bounces by Maildir.
    std::string hostname;                   // empty: gethostname(2)
    std::vector<std::string> local_domain;  // empty: the hostname and localhost

    // Engine.
    unsigned threads = 2;                     // delivery threads, each one pselect() loop
    unsigned max_connections = 64;            // open connections per thread
    std::chrono::seconds scan_interval = 5s;  // queue scan besides inotify
    std::chrono::seconds idle_timeout = 2s;   // keep an idle session this long for new mail

    // Retries (RFC 5321 §4.5.4.1: retry at least 30 minutes apart, give up after 4-5 days).
    std::chrono::seconds retry_min = 300s;
    std::chrono::seconds retry_max = 3600s * 4;
    std::chrono::seconds queue_lifetime = 3600s * 24 * 5;

    // Timeouts (RFC 5321 §4.5.3.2).
    std::chrono::seconds connect_timeout = 30s;
    std::chrono::seconds command_timeout = 300s;

    // Routing: static routes first, then the smarthost, then DNS (MX, else A/AAAA).
    std::vector<std::string> route;  // "DOMAIN=HOST[:PORT]"
    std::string smarthost;           // "HOST[:PORT]"; empty: none
    std::string dns_server;          // "IP[:PORT]"; empty: the system's resolver
    std::chrono::seconds dns_timeout = 10s;
    std::uint16_t port = 25;  // the SMTP port of MX hosts

    // STARTTLS (RFC 3207), as Postfix's smtp_tls_security_level and smtp_tls_policy_maps.
    TlsLevel tls_level = TlsLevel::may;
    std::vector<std::string> tls_policy;  // "DOMAIN=LEVEL": that recipient domain's level
    std::string tls_ca_file;              // PEM CA certificates; empty: the system's store

    // Modes (command line only in practice, but in the table like the rest).
    bool once = false;   // deliver what is due, then exit
    bool list = false;   // print the queue (like mailq) and exit
    bool flush = false;  // make everything due now, then run
};

// The table binding every field of `s` (which must outlive it) to its row.
config::Table make_table(Settings& s);

inline constexpr const char* default_config_file = "/etc/smtpc.cfg";

// A static route or the smarthost, parsed.
struct RouteTarget {
    std::string host;                  // a name to resolve (A/AAAA, not MX) or an IP address
    std::optional<IpAddress> address;  // set when host is an IP address
    std::uint16_t port = 25;
};

struct Resolved {
    std::string hostname;                       // never empty
    std::vector<std::string> local_domain;      // lower-cased, never empty
    std::map<std::string, RouteTarget> routes;  // lower-cased domain -> target
    std::optional<RouteTarget> smarthost;
    TlsLevel tls_level = TlsLevel::may;
    std::map<std::string, TlsLevel> tls_policy;  // lower-cased domain -> level
    // The trust store of every handshake (tls_ca_file, or the system's); shared by the
    // delivery threads, read-only. Made by resolve(); null only in a Resolved made by
    // hand (the probe): then `may` runs in plaintext and encrypt/verify fail.
    std::shared_ptr<const tls::Context> tls_context;

    // The level for mail to `domain` (lower-case): its tls_policy entry, else tls_level.
    TlsLevel tls_level_for(const std::string& domain) const;
};

// Fills `out` from `s`, the TLS context included (an unreadable or bad tls_ca_file is
// an error). Returns an error message, or empty.
std::string resolve(const Settings& s, Resolved& out);

}  // namespace smtp::smtpc

#endif
