// apps/smtpd/listener.hpp: the listening sockets, opened by the master before it drops
// privileges (port 25 needs root) and inherited by every worker.
//
// One socket per bind address: non-blocking, close-on-exec, SO_REUSEADDR; IPv6 ones
// with IPV6_V6ONLY so "0.0.0.0" and "::" can both be bound on one port.
#ifndef SMTP_APPS_SMTPD_LISTENER_HPP
#define SMTP_APPS_SMTPD_LISTENER_HPP

#include "common/fd.hpp"
#include "common/network.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace smtp::smtpd {

struct Listener {
    Fd fd;
    std::string name;  // "127.0.0.1:2525", "[::1]:2525"
};

// Binds and listens on every address. On error returns nothing bound and sets `error`
// to a message naming the address and the system error.
std::vector<Listener> open_listeners(const std::vector<IpAddress>& addresses, std::uint16_t port,
                                     std::string& error);

}  // namespace smtp::smtpd

#endif
