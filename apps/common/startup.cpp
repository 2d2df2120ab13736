// apps/common/startup.cpp: host name, local domains, default directories.
#include "common/startup.hpp"

#include "common/text.hpp"

#include <smtp/command.hpp>

#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <system_error>

#include <fmt/format.h>

namespace smtp {

std::string resolve_host_name(const std::string& configured, std::string& out) {
    if (configured.empty()) {
        char name[HOST_NAME_MAX + 1] = {};
        if (::gethostname(name, sizeof name) != 0)
            return fmt::format("cannot get the host name: {}", std::strerror(errno));
        if (!is_valid_domain(name))
            return fmt::format("the host name '{}' is not a domain name: set hostname", name);
        out = ascii_lower(name);
    } else {
        out = ascii_lower(configured);
    }
    return {};
}

std::vector<std::string> resolve_local_domains(const std::vector<std::string>& configured,
                                               const std::string& hostname) {
    std::vector<std::string> out;
    for (const auto& d : configured) out.push_back(ascii_lower(d));
    if (out.empty()) {
        out.push_back(hostname);
        if (hostname != "localhost") out.emplace_back("localhost");
    }
    return out;
}

std::string create_default_directories(const std::vector<std::string>& directories) {
    for (const auto& dir : directories) {
        std::error_code ec;
        std::filesystem::create_directories(dir, ec);
        if (ec) return fmt::format("cannot create {}: {}", dir, ec.message());
    }
    return {};
}

}  // namespace smtp
