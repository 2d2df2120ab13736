// apps/smtpc/job.cpp: endpoints and their delivery threads.
#include "job.hpp"

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

}  // namespace smtp::smtpc
