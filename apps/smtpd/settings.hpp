// apps/smtpd/settings.hpp: every setting of smtpd, its default and its row in the
// configuration table (config file key, command-line option, help, reference).
//
// The defaults are the member initializers below and work with no config at all: port
// 2525 on the loopback addresses, mail root, queue and log under ./var/ of the working
// directory (created on first start when left at their defaults; configured paths
// must exist, so a typo never creates a second mail store).
//
// TLS (STARTTLS, RFC 3207) is off unless both tls_cert and tls_key are set; resolve()
// then loads them into a tls::Context, so a bad file is a configuration error at the
// start (--check-config too) and the master reads the key while still privileged. A
// reload (SIGHUP) loads them again as the unprivileged user: the key must be readable
// by `user` then, else the reload is refused like any invalid setting.
//
// Thread safety: plain data, read-only once the daemon runs.
#ifndef SMTP_APPS_SMTPD_SETTINGS_HPP
#define SMTP_APPS_SMTPD_SETTINGS_HPP

#include "common/config.hpp"
#include "common/log.hpp"
#include "common/network.hpp"
#include "common/tls.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace smtp::smtpd {

using namespace std::chrono_literals;

struct Settings {
    // Listening.
    std::uint16_t port = 2525;
    std::vector<std::string> bind = {"127.0.0.1", "::1"};  // IP addresses; "0.0.0.0", "::" for all

    // Storage and logging.
    std::string mail_root = "./var/mail";    // Maildirs: <mail_root>/<mailbox>/{tmp,new,cur}
    std::string queue_root = "./var/queue";  // the outgoing queue, shared with smtpc
    std::string log_file = "./var/log/smtpd.log";
    LogLevel log_level = LogLevel::info;

    // Privileges: after binding, the master and its workers become this user and group.
    std::string user;   // empty: stay who we are (a warning when that is root)
    std::string group;  // empty: the user's primary group

    // Identity and routing.
    std::string hostname;                   // empty: gethostname(2)
    std::vector<std::string> local_domain;  // empty: the hostname and localhost
    std::vector<std::string> local_user;    // empty: any safe local part is a mailbox
    std::vector<std::string> relay_net = {"127.0.0.0/8", "::1/128"};

    // Processes and connections.
    unsigned workers = 2;
    unsigned max_connections = 256;  // per worker; capped at what select() can watch

    // Limits and timeouts (RFC 5321 §4.5.3).
    std::chrono::seconds timeout = 300s;       // waiting for a command (§4.5.3.2.7)
    std::chrono::seconds data_timeout = 600s;  // waiting for message data (§4.5.3.2.6)
    std::chrono::seconds shutdown_grace = 5s;  // on SIGTERM, before 421 to every session
    std::uint64_t max_message_size = 20u << 20;
    unsigned max_recipients = 100;
    unsigned max_errors = 20;

    // Reverse DNS of clients.
    bool rdns = true;
    std::string dns_server;  // IP[:PORT]; empty: the system's resolver (/etc/resolv.conf)
    std::chrono::seconds dns_timeout = 5s;
    bool reject_unknown_client = false;  // 450 4.7.25 when the name is not confirmed (RFC 7372)

    // STARTTLS (RFC 3207): offered only when both are set.
    std::string tls_cert;      // PEM: the certificate, then any intermediates
    std::string tls_key;       // PEM: its private key
    bool require_tls = false;  // relay clients: 530 5.7.0 to MAIL/RCPT/DATA before STARTTLS
};

// The table binding every field of `s` (which must outlive it) to its row.
config::Table make_table(Settings& s);

// The configuration file read when no --config is given (it may be absent).
inline constexpr const char* default_config_file = "/etc/smtpd.cfg";

// What the settings mean once checked: the parsed forms the workers use.
struct Resolved {
    std::string hostname;                   // never empty
    std::vector<std::string> local_domain;  // lower-cased, never empty
    std::vector<std::string> local_user;    // lower-cased mailbox names
    NetworkList relay_net;
    std::vector<IpAddress> bind;
    // The certificate and key loaded; null when TLS is off. Shared: the workers of
    // one generation use it, and a reload makes a new one for the next.
    std::shared_ptr<const tls::Context> tls;
};

// Fills `out` from `s`: looks up the host name when none is set, lower-cases domains
// and users, parses networks and addresses, loads the TLS certificate and key.
// Returns an error message ("tls_key: ...", "tls_cert /path: No such file or
// directory"), or empty.
std::string resolve(const Settings& s, Resolved& out);

}  // namespace smtp::smtpd

#endif
