// apps/smtpd/policy.cpp: see policy.hpp. Routing first (local domain or not), then,
// for local recipients, the relay-trick check before the mailbox check: a local part
// such as "user%remote" is refused as a route for what it is, whatever mailbox_for()
// would make of it.
//
// Thread safety: const member functions only; Resolved is read, never written.
#include "policy.hpp"

#include "common/text.hpp"

#include <algorithm>
#include <string_view>

namespace smtp::smtpd {
namespace {

// "example.org." and "example.org" are the same fully qualified name (RFC 1034
// §3.1); one trailing dot only, so "example.org.." stays different.
std::string_view without_trailing_dot(std::string_view domain) noexcept {
    if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
    return domain;
}

// '%' (the "percent hack", RFC 1123 §5.2.16), '!' (UUCP bang paths) and '@' (a
// quoted "user@remote") in a local part ask this host to forward the message: a
// route, never a mailbox here.
bool is_route(std::string_view local_part) noexcept {
    return local_part.find_first_of("%!@") != std::string_view::npos;
}

RecipientVerdict refused(const DeliveryReply& reply) {
    RecipientVerdict v;
    v.reply = reply;
    return v;
}

RecipientVerdict accepted_local(std::string mailbox) {
    RecipientVerdict v;
    v.accepted = true;
    v.route = Route::local;
    v.mailbox = std::move(mailbox);
    return v;
}

// RFC 5321 §4.5.1: every SMTP host must accept mail for its postmaster.
constexpr std::string_view postmaster = "postmaster";

}  // namespace

bool Policy::may_relay(const IpAddress& client) const noexcept {
    return resolved_->relay_net.contains(client);
}

bool Policy::is_local_domain(std::string_view domain) const noexcept {
    // An address literal ends in ']', so stripping a dot never changes one; it is
    // local only when listed as written (no normalisation of "[IPv6:...]" forms).
    domain = without_trailing_dot(domain);
    if (domain.empty()) return false;
    return std::any_of(
        resolved_->local_domain.begin(), resolved_->local_domain.end(),
        [&](const std::string& local) { return iequals(domain, without_trailing_dot(local)); });
}

RecipientVerdict Policy::classify(const Path& path, bool client_may_relay) const {
    if (path.postmaster) return accepted_local(std::string(postmaster));
    // The parser never gives a null or domain-less RCPT path; refuse one anyway
    // rather than route it somewhere.
    if (path.is_null() || path.domain.empty()) return refused(bad_mailbox_reply);

    if (!is_local_domain(path.domain)) {
        // RFC 5321 §3.6.2: relaying only for our own clients. A remote local part is
        // the remote host's business, tricks included.
        if (!client_may_relay) return refused(relay_denied_reply);
        RecipientVerdict v;
        v.accepted = true;
        v.route = Route::remote;
        return v;
    }

    // Checked on the unquoted form: "user@remote"@local and "user%remote"@local are
    // routes as much as user%remote@local is.
    if (is_route(unquote_local_part(path.local_part)))
        return refused(client_may_relay ? bad_mailbox_reply : relay_denied_reply);

    auto mailbox = mailbox_for(path.local_part);
    if (!mailbox) return refused(bad_mailbox_reply);
    if (*mailbox != postmaster && !resolved_->local_user.empty() &&
        std::find(resolved_->local_user.begin(), resolved_->local_user.end(), *mailbox) ==
            resolved_->local_user.end())
        return refused(unknown_mailbox_reply);
    return accepted_local(std::move(*mailbox));
}

}  // namespace smtp::smtpd
