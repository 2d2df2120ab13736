// apps/smtpd/policy.hpp: where each recipient goes, and who may relay.
//
// A recipient whose domain is one of the local domains is delivered into a Maildir
// (its mailbox from mailbox_for(), common/maildir.hpp); any other domain goes to the
// outgoing queue, and only for clients in the relay networks (RFC 5321 §3.6.2: an
// open relay is not acceptable). Decisions are pure functions of the recipient, the
// settings and whether the client may relay.
//
// Relay tricks are refused, never interpreted: a local part holding '%', '!' or '@'
// ("user%remote"@local, remote!user@local, "user@remote"@local) names a route through
// this host, not a mailbox. For a client outside the relay networks that is a relay
// attempt (554 5.7.1 Relay access denied); for one inside, a bad mailbox (550 5.1.3).
// Source routes (<@local:user@remote>) were already dropped by the parser (RFC 5321
// §3.6.1), so routing sees the final mailbox and the relay check applies to it.
//
// Thread safety: immutable after construction.
#ifndef SMTP_APPS_SMTPD_POLICY_HPP
#define SMTP_APPS_SMTPD_POLICY_HPP

#include "common/maildir.hpp"
#include "common/network.hpp"
#include "settings.hpp"

#include <smtp/command.hpp>

#include <string>

namespace smtp::smtpd {

enum class Route { local, remote };

struct RecipientVerdict {
    bool accepted = false;
    Route route = Route::local;
    std::string mailbox;             // accepted local: the Maildir mailbox name
    DeliveryReply reply{0, {}, {}};  // refused: what to answer
};

// "Relay access denied" (RFC 3463 §3.8 X.7.1), as Postfix words it.
inline constexpr DeliveryReply relay_denied_reply{554, {5, 7, 1}, "Relay access denied"};

class Policy {
public:
    // `resolved` must outlive the Policy.
    explicit Policy(const Resolved& resolved) noexcept : resolved_(&resolved) {}

    // True if `client` is in the relay networks.
    bool may_relay(const IpAddress& client) const noexcept;

    // True if `domain` (as written in a path: a name, or an address literal with its
    // brackets) is one of the local domains; ASCII case-insensitive, a trailing dot
    // ignored.
    bool is_local_domain(std::string_view domain) const noexcept;

    // The verdict for RCPT TO:<path>. <Postmaster> (no domain) is the local mailbox
    // "postmaster" (RFC 5321 §4.5.1), whoever the client. Local: mailbox_for() of the
    // local part, refused with bad_mailbox_reply when unsafe, with
    // unknown_mailbox_reply when local_user is set and does not list it ("postmaster"
    // is always known). Remote: accepted when client_may_relay, else relay_denied_reply.
    RecipientVerdict classify(const Path& path, bool client_may_relay) const;

private:
    const Resolved* resolved_;
};

}  // namespace smtp::smtpd

#endif
