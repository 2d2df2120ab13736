// apps/smtpd/privileges.cpp: dropping root for good.
#include "privileges.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

namespace smtp::smtpd {
namespace {

// getpwnam_r/getgrnam_r want a caller's buffer; sysconf gives a hint, ERANGE a retry.
template <class Entry, class Lookup>
bool lookup_entry(const std::string& name, Entry& entry, std::vector<char>& buffer, Lookup lookup) {
    long hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
    buffer.assign(hint > 0 ? static_cast<std::size_t>(hint) : 4096, '\0');
    for (;;) {
        Entry* result = nullptr;
        const int rc = lookup(name.c_str(), &entry, buffer.data(), buffer.size(), &result);
        if (rc == ERANGE && buffer.size() < (1u << 20)) {
            buffer.assign(buffer.size() * 4, '\0');
            continue;
        }
        errno = rc;
        return rc == 0 && result != nullptr;
    }
}

}  // namespace

std::string drop_privileges(const std::string& user, const std::string& group) {
    passwd pw{};
    std::vector<char> pw_buffer;
    if (!lookup_entry(user, pw, pw_buffer, ::getpwnam_r))
        return errno ? fmt::format("cannot look up user '{}': {}", user, std::strerror(errno))
                     : fmt::format("unknown user '{}'", user);
    gid_t gid = pw.pw_gid;
    if (!group.empty()) {
        struct group gr {};
        std::vector<char> gr_buffer;
        if (!lookup_entry(group, gr, gr_buffer, ::getgrnam_r))
            return errno ? fmt::format("cannot look up group '{}': {}", group, std::strerror(errno))
                         : fmt::format("unknown group '{}'", group);
        gid = gr.gr_gid;
    }
    const uid_t uid = pw.pw_uid;
    // Order matters: groups while still root, then the gid, then the uid.
    if (::setgroups(1, &gid) != 0) return fmt::format("setgroups({}): {}", gid, std::strerror(errno));
    if (::setgid(gid) != 0) return fmt::format("setgid({}): {}", gid, std::strerror(errno));
    if (::setuid(uid) != 0) return fmt::format("setuid({}): {}", uid, std::strerror(errno));
    // The proof: none of it can be undone (a saved set-user-ID of 0 would allow it).
    if (uid != 0 && (::setuid(0) == 0 || ::seteuid(0) == 0))
        return fmt::format("still able to become root after setuid({})", uid);
    if (gid != 0 && uid != 0 && (::setgid(0) == 0 || ::setegid(0) == 0))
        return fmt::format("still able to regain group 0 after setgid({})", gid);
    return {};
}

}  // namespace smtp::smtpd
