// apps/common/network.hpp: IP addresses, CIDR networks and HOST[:PORT] endpoints for
// the configuration and logs of smtpd and smtpc.
//
// smtpd relays mail for other domains only for clients in its relay networks
// (NetworkList, default 127.0.0.0/8 and ::1/128); smtpc parses --smarthost,
// --route DOMAIN=HOST[:PORT] and --dns-server IP[:PORT] with parse_endpoint().
//
// Text is parsed with Boost.Asio (ip::make_address, make_network_v4/v6, error_code
// overloads) inside network.cpp only: this header holds plain value types
// (bytes + family + prefix), so files that include it compile fast and never see Asio.
//
// Invariants:
// - IpAddress holds 4 bytes (v4) or 16 bytes (v6), never a zone index: "fe80::1%eth0"
//   is rejected, since a zone means nothing in a relay list or a Received header.
// - IpNetwork has no host bits set (strict, unlike Postfix, which masks
//   "10.1.2.3/8" silently: a typo there would widen or narrow who may relay).
// - Parse functions never throw Boost exceptions; on failure they return an error
//   message that quotes the input ("bad port in 'mx.example:0'"), to which the caller
//   adds file, line and key.
// Thread safety: values; const member functions may be called from any thread.
#ifndef SMTP_APPS_COMMON_NETWORK_HPP
#define SMTP_APPS_COMMON_NETWORK_HPP

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

struct sockaddr;

namespace smtp {

// The outcome of a parse: a value, or a message saying what is wrong with the input.
template <class T>
struct Parsed {
    std::optional<T> value;  // set on success
    std::string error;       // set on failure: one line, quotes the input
    bool ok() const noexcept { return value.has_value(); }
    explicit operator bool() const noexcept { return ok(); }
};

// An IPv4 or IPv6 address (no zone index). Compares by family, then bytes, so the
// IPv4 address 127.0.0.1 and the IPv6 address ::ffff:127.0.0.1 are different values;
// unmapped() relates them.
class IpAddress {
public:
    enum class Family : std::uint8_t { v4, v6 };

    IpAddress() noexcept = default;  // 0.0.0.0
    static IpAddress v4(const std::array<std::uint8_t, 4>& bytes) noexcept;
    static IpAddress v6(const std::array<std::uint8_t, 16>& bytes) noexcept;

    Family family() const noexcept { return family_; }
    bool is_v4() const noexcept { return family_ == Family::v4; }
    bool is_v6() const noexcept { return family_ == Family::v6; }

    // The address in network byte order: 4 bytes for v4, 16 for v6. Valid while
    // *this lives.
    std::span<const std::uint8_t> bytes() const noexcept {
        return {bytes_.data(), is_v4() ? std::size_t{4} : std::size_t{16}};
    }

    // ::ffff:a.b.c.d (RFC 4291 §2.5.5.2), which a dual-stack socket reports for an
    // IPv4 client.
    bool is_v4_mapped() const noexcept;
    // a.b.c.d for an IPv4-mapped address, else the address itself.
    IpAddress unmapped() const noexcept;
    // ::ffff:a.b.c.d for an IPv4 address, else the address itself.
    IpAddress mapped() const noexcept;

    // For logs and Received headers: "192.0.2.1", IPv6 in the RFC 5952 canonical form
    // ("2001:db8::1", lower case, longest zero run compressed, mapped as
    // "::ffff:192.0.2.1").
    std::string to_string() const;
    // As an SMTP address literal (RFC 5321 §4.1.3): "[192.0.2.1]",
    // "[IPv6:2001:db8::1]".
    std::string to_literal() const;

    friend bool operator==(const IpAddress&, const IpAddress&) noexcept = default;

private:
    std::array<std::uint8_t, 16> bytes_{};  // v4 uses the first 4; the rest stay 0
    Family family_ = Family::v4;
};

// Parses "192.0.2.1" or "2001:db8::1" (also "::ffff:192.0.2.1"). Nothing else: no
// brackets, no zone index, no port, no surrounding space, no shortened or octal IPv4
// forms ("10.1", "010.0.0.1"), which inet_aton would take and a reader would misread.
// Errors: "bad IP address 'TEXT'", "zone index not allowed in 'TEXT'".
Parsed<IpAddress> parse_ip_address(std::string_view text);

// The address of a socket address (AF_INET or AF_INET6, as filled in by accept() or
// getpeername()); nullopt for another family or a length too short. An IPv6 scope id
// is dropped. IPv4-mapped addresses are kept as they are: call unmapped() for logs.
std::optional<IpAddress> address_from_sockaddr(const sockaddr* sa, std::size_t length) noexcept;

// A CIDR network: an address with no bits set after the first prefix_length bits.
class IpNetwork {
public:
    // No default constructor: a default would be 0.0.0.0/0, and one stray
    // default-constructed entry in a relay list would make an open relay.
    IpNetwork() = delete;
    // Nullopt if prefix_length exceeds 32 (v4) or 128 (v6), or host bits are set.
    static std::optional<IpNetwork> make(const IpAddress& address, unsigned prefix_length) noexcept;

    const IpAddress& address() const noexcept { return address_; }  // the first address
    unsigned prefix_length() const noexcept { return prefix_; }
    IpAddress last() const noexcept;  // the last address (the v4 broadcast address)

    // True if `address` is in this network. An IPv4 network also holds the
    // IPv4-mapped form of its addresses, and an IPv6 network that covers
    // ::ffff:0:0/96 (or part of it) holds the plain IPv4 addresses it maps, so one
    // list serves both single-stack and dual-stack sockets.
    bool contains(const IpAddress& address) const noexcept;

    std::string to_string() const;  // "10.0.0.0/8", "::1/128"

    friend bool operator==(const IpNetwork&, const IpNetwork&) noexcept = default;

private:
    IpNetwork(const IpAddress& address, std::uint8_t prefix) noexcept : address_(address), prefix_(prefix) {}

    IpAddress address_;
    std::uint8_t prefix_;
};

// Parses "10.0.0.0/8", "2001:db8::/32", or a bare address as /32 or /128. The prefix
// length is decimal, 0..32 or 0..128.
// Errors: "bad IP address in 'TEXT'", "missing address in 'TEXT'", "missing prefix
// length in 'TEXT'", "bad prefix length in 'TEXT'", "zone index not allowed in
// 'TEXT'", "host bits set in 'TEXT' (the network is N/P)".
Parsed<IpNetwork> parse_ip_network(std::string_view text);

// The relay networks of smtpd: a client whose address one of them contains may send
// mail to any domain. contains() is linear; lists are short.
class NetworkList {
public:
    NetworkList() = default;  // empty: contains nothing

    // 127.0.0.0/8 and ::1/128: the local host only.
    static NetworkList default_relay();

    void add(const IpNetwork& network) { networks_.push_back(network); }
    bool contains(const IpAddress& address) const noexcept;
    bool empty() const noexcept { return networks_.empty(); }
    const std::vector<IpNetwork>& networks() const noexcept { return networks_; }

    std::string to_string() const;  // "127.0.0.0/8, ::1/128"

private:
    std::vector<IpNetwork> networks_;
};

// Parses a list of networks separated by commas and/or white space ("127.0.0.0/8,
// ::1/128", as Postfix's mynetworks). An empty or blank list is an empty NetworkList.
// Errors: those of parse_ip_network() for the first bad entry; "empty entry in
// 'TEXT'" for ",,".
Parsed<NetworkList> parse_network_list(std::string_view text);

// A host to connect to: a domain name (to resolve) or an IP address, and a port.
struct Endpoint {
    std::string host;                  // the domain name as written, or the address (canonical)
    std::optional<IpAddress> address;  // set when host is an IP address
    std::uint16_t port = 0;            // 1..65535

    // "mx.example:25", "192.0.2.1:25", "[2001:db8::1]:25".
    std::string to_string() const;
    friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

// Parses HOST[:PORT]: "mx.example", "mx.example:2525", "192.0.2.1:25", "[::1]:2525",
// "[::1]", or a bare IPv6 address "::1" (no port: with two or more colons, the whole
// text is the address). Brackets are for IP addresses only. A host name must pass
// smtp::is_valid_domain and must not end in an all-numeric label (RFC 3696 §2), so
// "192.0.2.256" is a bad address, not a name. A missing port is default_port.
// Errors: "empty host in 'TEXT'", "bad host name in 'TEXT'", "bad IP address in
// 'TEXT'", "bad port in 'TEXT'" (empty, not decimal, 0 or over 65535), "missing ']'
// in 'TEXT'", "brackets are for IP addresses only in 'TEXT'".
Parsed<Endpoint> parse_endpoint(std::string_view text, std::uint16_t default_port);

// As parse_endpoint(), but the host must be an IP address (--dns-server IP[:PORT]).
// Additional error: "not an IP address in 'TEXT'".
Parsed<Endpoint> parse_ip_endpoint(std::string_view text, std::uint16_t default_port);

}  // namespace smtp

#endif
