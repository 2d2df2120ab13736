// apps/smtpd/privileges.hpp: dropping root after binding (DESIGN.md: setgroups,
// setgid, setuid, then a check that getting root back fails).
#ifndef SMTP_APPS_SMTPD_PRIVILEGES_HPP
#define SMTP_APPS_SMTPD_PRIVILEGES_HPP

#include <string>

namespace smtp::smtpd {

// Becomes `user` (and `group`, or the user's primary group when empty): supplementary
// groups cleared (setgroups to the one group), then setgid, then setuid, then a check
// that setuid(0) and setgid(0) fail. Returns an error message, or empty on success.
// Errors: unknown user or group, a failing call, root still obtainable.
std::string drop_privileges(const std::string& user, const std::string& group);

}  // namespace smtp::smtpd

#endif
