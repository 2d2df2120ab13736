// apps/smtpc/bounce.cpp: see bounce.hpp. Builds the DSN text (RFC 3464 inside an RFC
// 6522 multipart/report) and stores it in the sender's Maildir or the queue.
//
// Invariants of the text make_dsn() returns:
//  - Every line ends in CRLF and has at most 998 octets before it (RFC 5322 §2.1.1).
//    Generated lines are cut at that bound (never inside a UTF-8 sequence); lines of
//    the original message longer than that are broken (a header line as a folded
//    continuation).
//  - Nothing a remote server or the sender chose can add a line or a header field:
//    reply text, addresses, ENVID and client text lose CR, LF, NUL and every other
//    control byte; in message/delivery-status, which is 7bit text (RFC 3464 §2.1),
//    non-ASCII bytes too (addresses are encoded instead, RFC 6533 §3).
//  - The MIME boundary occurs in none of the parts: it is checked, and changed until
//    it does not, so an original message cannot end a part early.
//
// Thread safety: functions of their arguments (send_bounce: of the file system too).
#include "bounce.hpp"

#include "retry_policy.hpp"

#include <smtp/reply.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <iterator>
#include <optional>

namespace smtp::smtpc {
namespace {

using queue::Envelope;
using queue::Recipient;

// RFC 5322 §2.1.1: a line is at most 998 octets without its CRLF.
constexpr std::size_t max_line = 998;
// Reply text kept per recipient: an SMTP reply line is at most 512 octets (RFC 5321
// §4.5.3.1.5), and a joined multi-line reply is cut here so that "Diagnostic-Code:
// smtp; " plus it stays one line.
constexpr std::size_t max_reply_text = 900;
// RET=FULL returns the whole message only up to this size (as Postfix's
// bounce_size_limit, 50000 by default): a DSN should not carry a big attachment back
// through the net. Larger ones get their header, as RET=HDRS.
constexpr std::size_t max_original = 64 * 1024;
// The returned header is cut at a line boundary at this size: a hostile header of
// megabytes must not make the DSN as large.
constexpr std::size_t max_header = 64 * 1024;
// The boundary seed's share of the boundary: RFC 2046 §5.1.1 allows 70 characters,
// and a queue id has 28.
constexpr std::size_t max_seed = 28;

bool is_control(unsigned char c) noexcept { return c < 0x20 || c == 0x7f; }

// The largest cut of `text` at or below `limit` octets that does not split a UTF-8
// sequence (it backs up over continuation bytes).
std::size_t cut_point(std::string_view text, std::size_t limit) noexcept {
    if (text.size() <= limit) return text.size();
    std::size_t n = limit;
    while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xc0) == 0x80) --n;
    return n > 0 ? n : limit;
}

// Appends one line: `text` (already free of CR and LF) cut to max_line, then CRLF.
void line(std::string& out, std::string_view text) {
    out.append(text.substr(0, cut_point(text, max_line)));
    out.append("\r\n");
}

// Text for a header field or the human part: every control byte becomes a space, so
// nothing can end the line; UTF-8 stays (RFC 6532 headers, charset=utf-8 text).
// Cut to `limit` octets.
std::string clean(std::string_view text, std::size_t limit) {
    text = text.substr(0, cut_point(text, limit));
    std::string out(text);
    for (char& c : out)
        if (is_control(static_cast<unsigned char>(c))) c = ' ';
    return out;
}

// Text for message/delivery-status (7bit, RFC 3464 §2.1): as clean(), and every byte
// outside ASCII becomes '?'.
std::string clean_ascii(std::string_view text, std::size_t limit) {
    std::string out = clean(text, limit);
    for (char& c : out)
        if (static_cast<unsigned char>(c) >= 0x80) c = '?';
    return out;
}

bool is_ascii(std::string_view text) noexcept {
    return std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// The host name for From:, Message-ID: and Reporting-MTA: letters, digits, '.', '-'
// and '_' only (a configured name is that anyway); "localhost" when nothing is left.
std::string clean_host(std::string_view host) {
    std::string out;
    for (char c : host.substr(0, 255)) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                        c == '.' || c == '-' || c == '_';
        out.push_back(ok ? c : '-');
    }
    return out.empty() ? std::string("localhost") : out;
}

// Letters and digits of the seed, for the boundary and the Message-ID's left part.
std::string clean_seed(std::string_view seed) {
    std::string out;
    for (char c : seed) {
        if (out.size() == max_seed) break;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) out.push_back(c);
    }
    return out.empty() ? std::string("dsn") : out;
}

// RFC 5322 §3.3 date-time in UTC: "Thu, 21 Nov 2024 10:00:00 +0000". Computed from
// the count of days (H. Hinnant's civil_from_days), so it is total: no gmtime_r
// failure path for out-of-range times.
void append_date(std::string& out, std::int64_t t) {
    static constexpr std::array<std::string_view, 7> weekdays{"Thu", "Fri", "Sat", "Sun",
                                                              "Mon", "Tue", "Wed"};
    static constexpr std::array<std::string_view, 12> months{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    // Far outside any real clock; clamping keeps the arithmetic below from overflowing.
    t = std::clamp<std::int64_t>(t, -(std::int64_t{1} << 50), std::int64_t{1} << 50);
    std::int64_t days = t / 86400;
    std::int64_t secs = t % 86400;
    if (secs < 0) {
        secs += 86400;
        --days;
    }
    const auto weekday = static_cast<std::size_t>(((days % 7) + 7) % 7);  // 1970-01-01 was a Thursday
    const std::int64_t z = days + 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const std::int64_t doe = z - era * 146097;
    const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const std::int64_t mp = (5 * doy + 2) / 153;
    const std::int64_t day = doy - (153 * mp + 2) / 5 + 1;
    const std::int64_t month = mp < 10 ? mp + 3 : mp - 9;
    const std::int64_t year = yoe + era * 400 + (month <= 2 ? 1 : 0);
    fmt::format_to(std::back_inserter(out), "{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000", weekdays[weekday],
                   day, months[static_cast<std::size_t>(month - 1)], year, secs / 3600, secs / 60 % 60,
                   secs % 60);
}

std::string date(std::int64_t t) {
    std::string out;
    append_date(out, t);
    return out;
}

// What a stored reply line says: its code (0: it does not start with one) and the
// DSN Status derived from it.
struct ReplyStatus {
    int code = 0;
    EnhancedStatus status;
};

ReplyStatus reply_status(std::string_view reply) noexcept {
    ReplyStatus out;
    // RFC 5321 §4.2: three digits, the first 2-5, the second 0-5, then SP, '-' or end.
    const bool has_code = reply.size() >= 3 && reply[0] >= '2' && reply[0] <= '5' && reply[1] >= '0' &&
                          reply[1] <= '5' && reply[2] >= '0' && reply[2] <= '9' &&
                          (reply.size() == 3 || reply[3] == ' ' || reply[3] == '-');
    if (has_code) out.code = (reply[0] - '0') * 100 + (reply[1] - '0') * 10 + (reply[2] - '0');
    const int klass = out.code / 100;
    if (klass == 4 || klass == 5) {
        // RFC 3464 §2.3.4: the enhanced code when the server gave one (its class must
        // be the reply's, RFC 2034 §4), else the class with "undefined" detail.
        if (reply.size() > 4) {
            const auto enhanced = parse_enhanced_status(reply.substr(4));
            if (enhanced && enhanced->klass == klass) {
                out.status = *enhanced;
                return out;
            }
        }
        out.status = {static_cast<std::uint8_t>(klass), 0, 0};
        return out;
    }
    // No failure code at all (a local text, or a 2xx for a failed recipient: a bug):
    // a permanent failure of unknown kind.
    out.status = {5, 0, 0};
    return out;
}

// RFC 6533 §3 utf-8-addr-xtext: ASCII printable stays except '+', '=', '\' and
// controls, which become "\x{HEX}" like every non-ASCII code point. Ill-formed UTF-8
// bytes become U+FFFD. Used only for addresses that are not ASCII.
std::string utf8_addr_xtext(std::string_view text) {
    std::string out;
    std::size_t i = 0;
    while (i < text.size()) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c < 0x80) {
            if (c > 0x20 && c < 0x7f && c != '+' && c != '=' && c != '\\')
                out.push_back(static_cast<char>(c));
            else
                fmt::format_to(std::back_inserter(out), "\\x{{{:X}}}", c);
            ++i;
            continue;
        }
        std::size_t len = 0;
        std::uint32_t cp = 0;
        std::uint32_t min = 0;
        if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1fu, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0fu, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07u, min = 0x10000;
        }
        bool ok = len != 0 && i + len <= text.size();
        for (std::size_t k = 1; ok && k < len; ++k) {
            const auto b = static_cast<unsigned char>(text[i + k]);
            ok = (b & 0xc0) == 0x80;
            cp = (cp << 6) | (b & 0x3fu);
        }
        ok = ok && cp >= min && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
        if (!ok) {
            cp = 0xfffd;
            len = 1;
        }
        fmt::format_to(std::back_inserter(out), "\\x{{{:X}}}", cp);
        i += len;
    }
    return out;
}

// "rfc822; bob@example.net", or for an address with non-ASCII bytes (SMTPUTF8) the
// RFC 6533 §3 form "utf-8; b\x{F6}b@example.net", which stays 7bit.
std::string dsn_address(std::string_view address) {
    const std::string_view cut = address.substr(0, cut_point(address, max_reply_text));
    if (is_ascii(cut)) return "rfc822; " + clean_ascii(cut, max_reply_text);
    return "utf-8; " + utf8_addr_xtext(cut);
}

// Appends `text` as lines: each LF (with a CR before it, or alone) ends a line; a CR
// or NUL elsewhere becomes a space; a line over max_line octets is broken, with a
// leading space on its continuations when `fold` (a header line stays one field).
// The last line gets a CRLF even without one.
void append_lines(std::string& out, std::string_view text, bool fold) {
    out.reserve(out.size() + text.size() + text.size() / 32 + 2);
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t lf = text.find('\n', pos);
        std::string_view l =
            text.substr(pos, lf == std::string_view::npos ? std::string_view::npos : lf - pos);
        pos = lf == std::string_view::npos ? text.size() : lf + 1;
        if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
        bool first = true;
        do {
            const std::size_t room = first || !fold ? max_line : max_line - 1;
            const std::size_t n = std::min(room, l.size());
            if (!first && fold) out.push_back(' ');
            for (char c : l.substr(0, n)) out.push_back(c == '\r' || c == '\0' ? ' ' : c);
            out.append("\r\n");
            l.remove_prefix(n);
            first = false;
        } while (!l.empty());
    }
}

// The header of `message`: everything before its first empty line (CRLF or LF
// endings); all of it when there is none.
std::string_view header_of(std::string_view message) noexcept {
    std::size_t pos = 0;
    while (pos < message.size()) {
        const std::size_t lf = message.find('\n', pos);
        const std::size_t end = lf == std::string_view::npos ? message.size() : lf;
        std::string_view l = message.substr(pos, end - pos);
        if (l.empty() || l == "\r") return message.substr(0, pos);
        if (lf == std::string_view::npos) break;
        pos = lf + 1;
    }
    return message;
}

enum class Returned : std::uint8_t { nothing, header, header_cut, whole, header_instead_of_whole };

}  // namespace

std::string make_dsn(const Envelope& envelope, const std::vector<std::size_t>& failed,
                     std::string_view original, const BounceContext& context) {
    const std::string host = clean_host(context.hostname);
    const std::string seed = clean_seed(context.boundary_seed);
    const std::string now = date(context.now);

    // The recipients reported: valid indexes, once each, that want a failure notice.
    std::vector<std::size_t> listed;
    for (std::size_t i : failed) {
        if (i >= envelope.recipients.size() || !wants_failure_notice(envelope.recipients[i])) continue;
        if (std::find(listed.begin(), listed.end(), i) == listed.end()) listed.push_back(i);
    }

    // Part 3 first: the text of part 1 says what it holds.
    Returned returned = Returned::nothing;
    std::string returned_text;
    if (!original.empty()) {
        if (envelope.ret == Ret::full && original.size() <= max_original) {
            append_lines(returned_text, original, false);
            returned = Returned::whole;
        } else {
            std::string_view header = header_of(original);
            returned = envelope.ret == Ret::full ? Returned::header_instead_of_whole : Returned::header;
            if (header.size() > max_header) {
                const std::size_t lf = header.rfind('\n', max_header - 1);
                header = header.substr(0, lf == std::string_view::npos ? max_header : lf + 1);
                returned = Returned::header_cut;
            }
            append_lines(returned_text, header, true);
        }
    }

    // Part 1: for people.
    std::string human;
    line(human, fmt::format("This is the mail system at host {}.", host));
    line(human, "");
    line(human, "Your message could not be delivered to one or more recipients.");
    switch (returned) {
        case Returned::nothing:
            break;
        case Returned::header:
            line(human, "Its header is attached below.");
            break;
        case Returned::header_cut:
            line(human, fmt::format("Its header is attached below, cut to its first {} bytes.", max_header));
            break;
        case Returned::whole:
            line(human, "It is attached below.");
            break;
        case Returned::header_instead_of_whole:
            line(human, fmt::format("It was larger than {} bytes, so only its header is attached below.",
                                    max_original));
            break;
    }
    line(human, "");
    line(human, fmt::format("For further assistance, please contact the postmaster of {}", host));
    line(human, "and include this report.");
    line(human, "");
    for (std::size_t i : listed) {
        const Recipient& r = envelope.recipients[i];
        const ReplyStatus rs = reply_status(r.last_error);
        // Server text is ASCII-cleaned here too: it is the peer's, not the user's.
        line(human,
             fmt::format("<{}>: {}", clean(r.address, max_line), clean_ascii(r.last_error, max_reply_text)));
        // A bounced recipient with a transient status failed only by running out of
        // time (retry_policy.hpp).
        if (rs.status.klass == 4)
            line(human, "    (the delivery time expired while this kept failing temporarily)");
    }

    // Part 2: for programs (RFC 3464 §2.2, §2.3), in the RFC's field order.
    std::string report;
    if (envelope.envid) line(report, "Original-Envelope-Id: " + clean_ascii(*envelope.envid, max_reply_text));
    line(report, "Reporting-MTA: dns; " + host);
    if (envelope.client)
        line(report, "Received-From-MTA: dns; " + clean_ascii(*envelope.client, max_reply_text));
    line(report, "Arrival-Date: " + date(envelope.arrival));
    for (std::size_t i : listed) {
        const Recipient& r = envelope.recipients[i];
        const ReplyStatus rs = reply_status(r.last_error);
        line(report, "");
        // RFC 3461 §4.2 / RFC 3464 §2.3.1: the ORCPT as given, decoded.
        if (!r.orcpt_type.empty()) {
            const std::string type = clean_ascii(r.orcpt_type, 64);
            std::string lower_type = type;
            for (char& c : lower_type)
                if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
            if (lower_type == "rfc822")  // RFC 3461 §4.2: addr-type is case-insensitive
                line(report, "Original-Recipient: " + dsn_address(r.orcpt));
            else
                line(report,
                     fmt::format("Original-Recipient: {}; {}", type, clean_ascii(r.orcpt, max_reply_text)));
        }
        line(report, "Final-Recipient: " + dsn_address(r.address));
        line(report, "Action: failed");
        line(report, fmt::format("Status: {}.{}.{}", rs.status.klass, rs.status.subject, rs.status.detail));
        // RFC 3464 §2.3.6: "smtp" for an SMTP reply; our own texts without a code
        // get a private type.
        line(report, fmt::format("Diagnostic-Code: {}; {}", rs.code != 0 ? "smtp" : "X-Smtpc",
                                 clean_ascii(r.last_error, max_reply_text)));
        line(report, "Last-Attempt-Date: " + now);
    }

    // A boundary found in no part, so no content can end a part early (RFC 2046 §5.1).
    std::string boundary;
    for (std::uint64_t n = 0;; ++n) {
        boundary = n == 0 ? fmt::format("=_smtpc_{}_{}", seed, context.now)
                          : fmt::format("=_smtpc_{}_{}_{}", seed, context.now, n);
        const std::string delimiter = "--" + boundary;
        if (human.find(delimiter) == std::string::npos && report.find(delimiter) == std::string::npos &&
            returned_text.find(delimiter) == std::string::npos)
            break;
    }

    const bool human_8bit = !is_ascii(human);
    const bool returned_8bit = !is_ascii(returned_text);

    std::string out;
    out.reserve(human.size() + report.size() + returned_text.size() + 2048);
    line(out, "Date: " + now);
    line(out, fmt::format("From: MAILER-DAEMON@{} (Mail Delivery System)", host));
    line(out, fmt::format("To: <{}>", clean(envelope.sender, max_line)));
    line(out, "Subject: Undelivered Mail Returned to Sender");
    line(out, fmt::format("Message-ID: <{}.{}@{}>", seed, context.now, host));
    line(out, "Auto-Submitted: auto-replied");  // RFC 3834 §5: no auto-reply to this
    line(out, "MIME-Version: 1.0");
    line(out, fmt::format("Content-Type: multipart/report; report-type=delivery-status; boundary=\"{}\"",
                          boundary));
    if (human_8bit || returned_8bit) line(out, "Content-Transfer-Encoding: 8bit");  // RFC 2045 §6.4
    line(out, "");
    line(out, "This is a MIME-encapsulated message.");

    // Each part's text ends in CRLF; the CRLF before the next delimiter belongs to the
    // delimiter (RFC 2046 §5.1.1), so a part keeps its last line ending.
    line(out, "");
    line(out, "--" + boundary);
    line(out, "Content-Description: Notification");
    line(out, fmt::format("Content-Type: text/plain; charset={}", human_8bit ? "utf-8" : "us-ascii"));
    if (human_8bit) line(out, "Content-Transfer-Encoding: 8bit");
    line(out, "");
    out.append(human);

    line(out, "");
    line(out, "--" + boundary);
    line(out, "Content-Description: Delivery report");
    line(out, "Content-Type: message/delivery-status");
    line(out, "");
    out.append(report);

    if (returned != Returned::nothing) {
        line(out, "");
        line(out, "--" + boundary);
        if (returned == Returned::whole) {
            line(out, "Content-Description: Undelivered Message");
            line(out, "Content-Type: message/rfc822");
        } else {
            line(out, "Content-Description: Undelivered Message Headers");
            line(out, "Content-Type: text/rfc822-headers");
        }
        if (returned_8bit) line(out, "Content-Transfer-Encoding: 8bit");
        line(out, "");
        out.append(returned_text);
    }

    line(out, "");
    line(out, "--" + boundary + "--");
    return out;
}

std::error_code send_bounce(const Envelope& envelope, std::string_view dsn,
                            const std::vector<std::string>& local_domain, const MailRoot& mail_root,
                            const queue::Queue& queue, std::int64_t now, std::string& delivered_to) {
    // RFC 5321 §4.5.5: nothing goes back to the null reverse-path.
    if (envelope.sender.empty()) return std::make_error_code(std::errc::invalid_argument);

    const std::string domain = queue::domain_of(envelope.sender);
    const bool local =
        !domain.empty() && std::any_of(local_domain.begin(), local_domain.end(), [&](const std::string& d) {
            return queue::domain_of("@" + d) == domain;  // the same lower-casing as the queue's
        });

    if (local) {
        // The local part may be quoted and contain '@'; the domain cannot: split at the last.
        const std::string_view local_part =
            std::string_view(envelope.sender).substr(0, envelope.sender.rfind('@'));
        const std::optional<std::string> mailbox = mailbox_for(local_part);
        if (!mailbox) return std::make_error_code(std::errc::invalid_argument);
        MaildirWriter writer;
        // RFC 5321 §4.4: the final delivery records the (null) reverse-path.
        if (auto ec = writer.open(mail_root, *mailbox, "Return-Path: <>\r\n")) return ec;
        if (auto ec = writer.write(dsn)) return ec;
        if (auto ec = writer.commit()) return ec;
        delivered_to = fmt::format("{}/{}/new/{}", mail_root.path(), *mailbox, writer.file_name());
        return {};
    }

    queue::Envelope bounce;
    bounce.arrival = now;
    bounce.next_attempt = now;
    bounce.sender.clear();  // <>: if this bounce fails, it is dropped, never bounced
    bounce.recipients.push_back(queue::make_recipient(envelope.sender));
    // A UTF-8 sender can only be reached with SMTPUTF8 (RFC 6531); 8-bit text in the
    // DSN (a UTF-8 address, an original with 8-bit bytes) needs 8BITMIME (RFC 6152).
    bounce.smtputf8 = !is_ascii(envelope.sender);
    bounce.body = is_ascii(dsn) ? Body::unspecified : Body::eight_bit_mime;
    std::error_code ec;
    queue::Writer writer = queue.create(ec);
    if (ec) return ec;
    if ((ec = writer.write(dsn))) return ec;
    if ((ec = writer.commit(bounce))) return ec;
    delivered_to = bounce.id;
    return {};
}

}  // namespace smtp::smtpc
