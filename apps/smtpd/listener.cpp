// apps/smtpd/listener.cpp: binding the listening sockets.
#include "listener.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace smtp::smtpd {
namespace {

// Room for connections arriving faster than workers accept; the kernel caps it at
// net.core.somaxconn.
constexpr int listen_backlog = 1024;

std::string endpoint_name(const IpAddress& address, std::uint16_t port) {
    return address.is_v6() ? fmt::format("[{}]:{}", address.to_string(), port)
                           : fmt::format("{}:{}", address.to_string(), port);
}

// Fills `storage` with address:port; returns the length used.
socklen_t make_sockaddr(const IpAddress& address, std::uint16_t port, sockaddr_storage& storage) {
    std::memset(&storage, 0, sizeof storage);
    if (address.is_v4()) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&storage);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        std::memcpy(&sin->sin_addr, address.bytes().data(), 4);
        return sizeof(sockaddr_in);
    }
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&storage);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    std::memcpy(&sin6->sin6_addr, address.bytes().data(), 16);
    return sizeof(sockaddr_in6);
}

}  // namespace

std::vector<Listener> open_listeners(const std::vector<IpAddress>& addresses, std::uint16_t port,
                                     std::string& error) {
    std::vector<Listener> out;
    for (const auto& address : addresses) {
        Listener l;
        l.name = endpoint_name(address, port);
        const int family = address.is_v4() ? AF_INET : AF_INET6;
        l.fd = Fd{::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
        const auto fail = [&](const char* what) {
            error = fmt::format("cannot {} {}: {}", what, l.name, std::strerror(errno));
            return std::vector<Listener>{};
        };
        if (!l.fd) return fail("open a socket for");
        const int on = 1;
        if (::setsockopt(l.fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0)
            return fail("set SO_REUSEADDR on");
        // "::" must not take the IPv4 port too, so that "0.0.0.0" can be bound beside it.
        if (family == AF_INET6 && ::setsockopt(l.fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) != 0)
            return fail("set IPV6_V6ONLY on");
        sockaddr_storage storage;
        const socklen_t length = make_sockaddr(address, port, storage);
        if (::bind(l.fd.get(), reinterpret_cast<const sockaddr*>(&storage), length) != 0) return fail("bind");
        if (::listen(l.fd.get(), listen_backlog) != 0) return fail("listen on");
        out.push_back(std::move(l));
    }
    return out;
}

}  // namespace smtp::smtpd
