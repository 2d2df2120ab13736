// apps/smtpd/transaction.cpp: see transaction.hpp. The order of commit() is the
// point: the queued copy first, because a committed queue entry can be removed
// again (Queue::remove), while a Maildir copy in new/ may already be in a user's
// hands; so the step that cannot be undone comes last.
//
// Invariant: between open() and the end of the transaction, queued_ is open exactly
// when there are remote recipients and maildir_ holds a delivery exactly when there
// are local ones, unless error_ is set, in which case both are dropped already (the
// disk space is freed at once; commit() reports the error).
//
// Thread safety: one Transaction per connection, used by one thread.
#include "transaction.hpp"

#include "common/text.hpp"

#include <smtp/server_session.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <time.h>
#include <utility>

namespace smtp::smtpd {
namespace {

std::error_code errno_code(int e) noexcept { return {e, std::system_category()}; }

// The same remote recipient: local parts equal as written (they are the remote
// host's to interpret, RFC 5321 §2.4), domains equal in any case (§2.4: domains are
// case-insensitive).
bool same_address(std::string_view a, std::string_view b) noexcept {
    const std::size_t at_a = a.rfind('@'), at_b = b.rfind('@');
    if (at_a == std::string_view::npos || at_b == std::string_view::npos) return a == b;
    return a.substr(0, at_a) == b.substr(0, at_b) && iequals(a.substr(at_a), b.substr(at_b));
}

int hex_digit(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// An xtext value (RFC 3461 §4) decoded. The parser has checked it already, but with
// SMTPUTF8 an ORCPT may carry raw UTF-8 (RFC 6533 §3), which decode_xtext() refuses:
// then the "+XX" escapes are decoded and every other byte is kept as it is.
std::string xtext_value(std::string_view text) {
    if (auto decoded = decode_xtext(text)) return std::move(*decoded);
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '+' && i + 2 < text.size() && hex_digit(text[i + 1]) >= 0 &&
            hex_digit(text[i + 2]) >= 0) {
            out += static_cast<char>(hex_digit(text[i + 1]) * 16 + hex_digit(text[i + 2]));
            i += 2;
        } else {
            out += text[i];
        }
    }
    return out;
}

// For the DSN's Received-From-MTA and the queue listing: "helo (name [ip])", or
// "helo ([ip])" without a confirmed reverse name.
std::string client_text(const ClientInfo& c) {
    const std::string_view helo = c.helo.empty() ? std::string_view("unknown") : c.helo;
    if (c.reverse_name.empty()) return fmt::format("{} ([{}])", helo, c.address);
    return fmt::format("{} ({} [{}])", helo, c.reverse_name, c.address);
}

// The Received: field with Postfix's TLS comment on a line of its own before the By
// clause, which received_header() always starts on a new line ("\r\n\tby "); the From
// clause holds no such sequence (its words are cut to domain characters). The text
// comes from OpenSSL's names, but is kept to what a comment may hold anyway: no
// parentheses beyond the ones it is built with, no control characters.
std::string with_tls_comment(std::string received, std::string_view tls) {
    if (tls.empty()) return received;
    const std::size_t by = received.find("\r\n\tby ");
    if (by == std::string::npos) return received;
    std::string text;
    int depth = 0;
    for (const char c : tls.substr(0, 200)) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '(') ++depth;
        if (c == ')' && --depth < 0) {
            depth = 0;
            continue;
        }
        text += u < 0x20 || u >= 0x7F ? '_' : c;
    }
    text.append(static_cast<std::size_t>(depth), ')');
    received.insert(by, fmt::format("\r\n\t(using {})", text));
    return received;
}

}  // namespace

void Transaction::begin(const Command& mail, const ClientInfo& client) {
    abort();
    local_.clear();
    addresses_.clear();
    remote_ = queue::Envelope{};
    id_.clear();
    size_ = 0;
    error_.clear();
    delivered_.clear();

    helo_ = client.helo;
    reverse_name_ = client.reverse_name;
    address_ = client.address;
    protocol_ = client.protocol;
    tls_ = client.tls;

    remote_.sender = mail.path.mailbox;
    remote_.size = mail.size;
    remote_.body = mail.body;
    remote_.smtputf8 = mail.smtputf8;
    remote_.ret = mail.ret;
    if (!mail.envid.empty()) remote_.envid = xtext_value(mail.envid);
    remote_.client = client_text(client);
    active_ = true;
}

void Transaction::add_local(std::string mailbox, std::string_view address) {
    if (!active_ || opened_) return;
    addresses_.emplace_back(address);
    // MaildirDelivery would skip the duplicate too; keeping local_ distinct makes
    // local_count() the number of copies.
    if (std::find(local_.begin(), local_.end(), mailbox) == local_.end())
        local_.push_back(std::move(mailbox));
}

void Transaction::add_remote(const Command& rcpt) {
    if (!active_ || opened_) return;
    const std::string_view address = rcpt.path.mailbox;
    addresses_.emplace_back(address);
    for (const auto& r : remote_.recipients)
        if (same_address(r.address, address)) return;
    queue::Recipient recipient = queue::make_recipient(address);
    recipient.notify = rcpt.notify;
    if (!rcpt.orcpt_type.empty()) {
        recipient.orcpt_type = rcpt.orcpt_type;
        recipient.orcpt = xtext_value(rcpt.orcpt);
    }
    remote_.recipients.push_back(std::move(recipient));
}

std::error_code Transaction::open(std::time_t now) {
    if (!active_ || opened_) return errno_code(EINVAL);
    opened_ = true;
    error_ = recipient_count() == 0 ? errno_code(EINVAL) : open_copies(now);
    if (error_) drop_copies();
    return error_;
}

std::error_code Transaction::open_copies(std::time_t now) {
    struct tm local {};
    errno = 0;  // glibc sets EOVERFLOW for a year out of range; be sure not to report a stale value
    if (::localtime_r(&now, &local) == nullptr) return errno_code(errno != 0 ? errno : EOVERFLOW);

    // One id per message: the queue's when there is a queued copy.
    if (!remote_.recipients.empty()) {
        std::error_code ec;
        queued_ = queue_->create(ec);
        if (ec) return ec;
        id_ = queued_.id();
    } else if (auto ec = queue::new_id(id_)) {
        return ec;
    }
    // Due at once: smtpc tries a new message on its next pass.
    remote_.arrival = now;
    remote_.next_attempt = now;

    // RFC 5321 §4.4: "for" only with a single recipient, so that the header
    // discloses no other (possibly blind) recipient.
    ReceivedFields fields{};
    fields.helo = helo_;
    fields.reverse_name = reverse_name_;
    fields.address = address_;
    fields.by = *hostname_;
    fields.protocol = protocol_;
    fields.id = id_;
    if (addresses_.size() == 1) fields.recipient = addresses_.front();
    fields.year = local.tm_year + 1900;
    fields.month = local.tm_mon + 1;
    fields.day = local.tm_mday;
    fields.hour = local.tm_hour;
    fields.minute = local.tm_min;
    fields.second = local.tm_sec;
    fields.weekday = local.tm_wday;
    fields.utc_offset_minutes = static_cast<int>(local.tm_gmtoff / 60);
    const std::string received = with_tls_comment(received_header(fields), tls_);

    if (!remote_.recipients.empty())
        if (auto ec = queued_.write(received)) return ec;
    if (!local_.empty()) {
        // RFC 5321 §4.4: the final delivery adds Return-Path, above the trace fields.
        std::string prefix = fmt::format("Return-Path: <{}>\r\n", remote_.sender);
        prefix += received;
        maildir_.emplace(*mail_root_);
        for (const auto& mailbox : local_)
            if (auto ec = maildir_->add(mailbox, prefix)) return ec;
    }
    return {};
}

void Transaction::write(std::string_view chunk) {
    if (!active_ || !opened_ || error_) return;
    size_ += chunk.size();
    if (!remote_.recipients.empty()) error_ = queued_.write(chunk);
    if (!error_ && maildir_) error_ = maildir_->write(chunk);
    // Free the disk space at once; commit() reports the error.
    if (error_) drop_copies();
}

std::string_view Transaction::delivered_file(std::string_view mailbox) const noexcept {
    for (const auto& [box, file] : delivered_)
        if (box == mailbox) return file;
    return {};
}

std::error_code Transaction::commit() {
    if (!active_ || !opened_) {
        abort();
        return errno_code(EINVAL);
    }
    std::error_code ec = error_;
    const bool queued = !ec && !remote_.recipients.empty();
    if (queued) ec = queued_.commit(remote_);
    if (!ec && maildir_) {
        ec = maildir_->commit();
        if (!ec)
            for (const auto& w : maildir_->writers()) delivered_.emplace_back(w.mailbox(), w.file_name());
        // Take the queued copy back: the client gets 4xx and sends the message again,
        // and the remote recipients must not get it twice. Best effort: if removal
        // fails, they do get a duplicate, which is still no loss.
        if (ec && queued) static_cast<void>(queue_->remove(id_));
    }
    abort();
    return ec;
}

void Transaction::abort() noexcept {
    drop_copies();
    active_ = false;
    opened_ = false;
}

void Transaction::drop_copies() noexcept {
    queued_.abort();            // a committed writer has nothing left to remove
    queued_ = queue::Writer{};  // frees its 64 KiB buffer between transactions
    maildir_.reset();           // ~MaildirDelivery aborts an uncommitted delivery
}

}  // namespace smtp::smtpd
