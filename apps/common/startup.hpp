// apps/common/startup.hpp: the start-up steps smtpd and smtpc share: who we are (host
// name, local domains) and the built-in ./var/ tree.
//
// Thread safety: call at start-up, before threads or workers exist.
#ifndef SMTP_APPS_COMMON_STARTUP_HPP
#define SMTP_APPS_COMMON_STARTUP_HPP

#include <filesystem>
#include <string>
#include <vector>

namespace smtp {

// The host name: `configured` when not empty, else gethostname(2); lower-cased into
// `out`. Returns an error message (gethostname failed, or its name is no domain name:
// then the admin must set one), or empty.
std::string resolve_host_name(const std::string& configured, std::string& out);

// The local domains: `configured` lower-cased; when empty, as Postfix's mydestination,
// this host by its name and "localhost".
std::vector<std::string> resolve_local_domains(const std::vector<std::string>& configured,
                                               const std::string& hostname);

// Creates each directory with its parents (mode 0777 & ~umask). The daemons pass only
// the paths still at their built-in ./var/ defaults: configured paths must exist, so a
// typo never creates a second mail store. Returns an error message, or empty.
std::string create_default_directories(const std::vector<std::string>& directories);

// The directories of a daemon's settings (mail_root, queue_root, the log file's) that
// are still at their built-in defaults.
template <class Settings>
std::vector<std::string> default_directories(const Settings& s) {
    const Settings defaults;
    std::vector<std::string> dirs;
    if (s.mail_root == defaults.mail_root) dirs.push_back(s.mail_root);
    if (s.queue_root == defaults.queue_root) dirs.push_back(s.queue_root);
    if (s.log_file == defaults.log_file) dirs.push_back(std::filesystem::path(s.log_file).parent_path());
    return dirs;
}

}  // namespace smtp

#endif
