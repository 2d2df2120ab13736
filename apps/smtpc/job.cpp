// apps/smtpc/job.cpp: endpoints, their delivery threads, and the keys of sessions.
#include "job.hpp"

#include "common/text.hpp"

#include <fmt/format.h>

namespace smtp::smtpc {

std::string Endpoint::to_string() const {
    const std::string ip = address.to_string();
    const std::string_view name = host.empty() ? std::string_view(ip) : std::string_view(host);
    return fmt::format("{}[{}]:{}", name, ip, port);
}

std::size_t delivery_thread_for(const Endpoint& endpoint, std::size_t threads) noexcept {
    if (threads <= 1) return 0;
    // FNV-1a over the address bytes and the port: stable, so every job of one
    // endpoint reaches the one thread that may hold its connection.
    std::uint64_t hash = 1469598103934665603u;
    const auto mix = [&hash](std::uint8_t byte) {
        hash ^= byte;
        hash *= 1099511628211u;
    };
    for (const std::uint8_t b : endpoint.address.bytes()) mix(b);
    mix(static_cast<std::uint8_t>(endpoint.port >> 8));
    mix(static_cast<std::uint8_t>(endpoint.port & 0xff));
    return static_cast<std::size_t>(hash % threads);
}

std::string_view tls_level_name(TlsLevel level) noexcept {
    switch (level) {
        case TlsLevel::none:
            return "none";
        case TlsLevel::may:
            return "may";
        case TlsLevel::encrypt:
            return "encrypt";
        case TlsLevel::verify:
            return "verify";
    }
    return "may";
}

TlsPolicy session_policy(TlsLevel level) noexcept {
    switch (level) {
        case TlsLevel::none:
            return TlsPolicy::none;
        case TlsLevel::may:
            return TlsPolicy::may;
        case TlsLevel::encrypt:
        case TlsLevel::verify:
            return TlsPolicy::encrypt;
    }
    return TlsPolicy::encrypt;
}

bool operator==(const SessionKey& a, const SessionKey& b) noexcept {
    if (!(a.endpoint == b.endpoint) || a.tls != b.tls) return false;
    return a.tls != TlsLevel::verify || iequals(a.endpoint.host, b.endpoint.host);
}

}  // namespace smtp::smtpc
