// apps/smtpd/connection.hpp: one client connection of an smtpd worker: its socket, its
// smtp::ServerSession, its mail Transaction, and the verdicts (Policy, storage) that
// the worker's select() loop drives through the on_*() calls.
//
// The loop owns the waiting; a Connection owns what happens on its socket:
//  - on_readable() reads at most input_room() octets (the session takes all of them,
//    so nothing is buffered outside it), feeds them and runs the events;
//  - every event is answered at once, except the connect verdict when the reverse
//    DNS lookup runs (the worker starts it and hands the result to on_reverse());
//  - output is sent with MSG_NOSIGNAL|MSG_DONTWAIT until the socket would block.
//
// Invariants:
//  - 250 after the final dot only when Transaction::commit() succeeded; a peer that
//    vanishes, a timeout, a shutdown: the transaction is aborted, nothing delivered.
//  - Once closed() the socket is closed, the transaction aborted and the disconnect
//    line logged; nothing else happens to the Connection (the worker drops it).
//  - No event view is kept past its lifetime: what is needed later is copied.
//
// Thread safety: a Connection belongs to its worker's one thread.
#ifndef SMTP_APPS_SMTPD_CONNECTION_HPP
#define SMTP_APPS_SMTPD_CONNECTION_HPP

#include "common/fd.hpp"
#include "common/log.hpp"
#include "common/maildir.hpp"
#include "common/network.hpp"
#include "common/queue.hpp"
#include "common/resolver.hpp"
#include "policy.hpp"
#include "settings.hpp"
#include "transaction.hpp"

#include <smtp/server_session.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace smtp::smtpd {

using Clock = std::chrono::steady_clock;

// What every connection of a worker shares. All of it outlives the connections.
struct ConnectionContext {
    const Settings* settings = nullptr;
    const Resolved* resolved = nullptr;
    const Policy* policy = nullptr;
    const MailRoot* mail_root = nullptr;
    const queue::Queue* queue = nullptr;
    Logger* log = nullptr;
};

// The ServerSession configuration smtpd's settings call for.
ServerConfig make_server_config(const Settings& settings, const Resolved& resolved);

class Connection {
public:
    // Takes the accepted, non-blocking socket; `peer` is the client's address as
    // accept() reported it. `context` must outlive the Connection. Nothing is sent
    // before start().
    Connection(std::uint64_t id, Fd socket, const IpAddress& peer, const ConnectionContext& context);
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection();

    // Begins the conversation. With wait_for_rdns the connect verdict (and the
    // "connect from" line) waits for on_reverse(); otherwise it is given now.
    void start(bool wait_for_rdns, Clock::time_point now);
    // The reverse lookup's result: logs the connect line, gives the connect verdict
    // (450 4.7.25 for a name that is not confirmed when reject_unknown_client is set).
    void on_reverse(const ReverseResult& result, Clock::time_point now);

    // The socket is readable / writable (select() said so).
    void on_readable(std::span<char> buffer, Clock::time_point now);
    void on_writable(Clock::time_point now);
    // Acts on a passed deadline() (421 4.4.2, or close); nothing otherwise.
    void on_timer(Clock::time_point now);
    // The server is stopping: 421 4.3.2, what can be sent now is sent, closed.
    void shutdown(Clock::time_point now);

    std::uint64_t id() const noexcept { return id_; }
    int fd() const noexcept { return socket_.get(); }
    bool closed() const noexcept { return closed_; }
    // What to select() for.
    bool wants_read() const noexcept { return !closed_ && session_.want_read(); }
    bool wants_write() const noexcept { return !closed_ && session_.want_write(); }
    // The earliest deadline on this connection, if any.
    std::optional<Clock::time_point> deadline() const noexcept;

    // The reverse lookup in flight for this connection (0: none), for the worker to
    // cancel when the connection closes first.
    Resolver::LookupId lookup() const noexcept { return lookup_; }
    void set_lookup(Resolver::LookupId id) noexcept { lookup_ = id; }

private:
    // Commands counted for the disconnect line, in the order it lists them.
    enum Counted : std::size_t { helo, ehlo, mail, rcpt, data, rset, quit, error, counted_kinds };

    // An accepted recipient of the transaction in progress, for the log lines.
    struct Recipient {
        std::string address;
        Route route;
        std::string mailbox;  // local only
    };

    // The conversation: events, verdicts, output.
    void advance(Clock::time_point now);
    bool run_events();
    void on_event(const ServerEvent& event);
    void give_connect_verdict();
    void on_hello(const ServerEvent& event);
    void on_mail_from(const ServerEvent& event);
    void on_rcpt_to(const ServerEvent& event);
    void on_data_begin();
    void on_message_end(const ServerEvent& event);
    void commit_message();
    void defer_message(std::error_code ec, std::string_view sid);
    void end_transaction() noexcept;
    void forget_envelope() noexcept;
    void check(Usage usage, std::string_view verdict);

    // The socket.
    bool flush(Clock::time_point now);
    void lose(int error_number);
    void close_now();
    void time_out(Clock::time_point now);
    void log_connect();

    std::optional<Clock::time_point> read_deadline() const noexcept;
    std::optional<Clock::time_point> write_deadline() const noexcept;
    std::string_view client_name() const noexcept;
    std::string counts_text() const;

    std::uint64_t id_;
    Fd socket_;
    IpAddress peer_;
    const ConnectionContext* context_;
    ServerSession session_;
    Transaction transaction_;

    std::string address_;                        // the peer as text (IPv4-mapped shown as IPv4)
    std::string name_;                           // forward-confirmed reverse name, or empty
    std::optional<ReverseResult::Status> rdns_;  // none: no lookup made (yet)
    bool may_relay_ = false;
    Resolver::LookupId lookup_ = 0;

    bool connect_pending_ = false;  // the connect event waits for its verdict
    bool rdns_pending_ = false;     // ... and for on_reverse()
    bool ending_ = false;           // we called timeout() or shutdown()
    bool closed_ = false;
    bool last_was_hello_ = false;         // a reset event right after hello is the new HELO's
    std::string_view stage_ = "CONNECT";  // the last command, for "timeout after"

    std::string sender_;  // the transaction's MAIL FROM, as written
    std::vector<Recipient> recipients_;
    bool in_data_ = false;
    std::error_code open_error_;  // Transaction::open() failed: answered after the dot

    std::array<unsigned, counted_kinds> counts_{};

    // Deadlines: the session's timeout from the last progress; the write timeout from
    // when output stopped draining; a last bound once we gave up on the client.
    Clock::time_point last_progress_;
    std::optional<Clock::time_point> stalled_since_;
    std::optional<Clock::time_point> linger_until_;
};

}  // namespace smtp::smtpd

#endif
