// apps/common/network.cpp: addresses, networks and endpoints (see network.hpp).
//
// The only file that includes Boost.Asio's ip headers: they are heavy, and the
// header's plain value types keep them out of every other translation unit. Only the
// error_code overloads are called, so nothing Boost throws can escape.
#include "common/network.hpp"

#include <smtp/command.hpp>

#include <algorithm>
#include <cstring>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>

namespace smtp {

namespace asio_ip = boost::asio::ip;

namespace {

constexpr std::array<std::uint8_t, 12> v4_mapped_prefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// The longest address text inet_pton takes without a zone:
// "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" (INET6_ADDRSTRLEN - 1).
constexpr std::size_t max_address_text = 45;

enum class AddressError { none, bad, zone };

template <class T>
Parsed<T> failure(std::string_view what, std::string_view text) {
    Parsed<T> result;
    result.error = fmt::format("{} '{}'", what, text);
    return result;
}

template <class T>
Parsed<T> success(T value) {
    Parsed<T> result;
    result.value = std::move(value);
    return result;
}

bool is_hex_digit(char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// Only hex digits, dots and colons go to Boost: it copies the text into a C string
// for inet_pton, so an embedded NUL would cut "1.2.3.4\0junk" to a valid address,
// and make_address_v6 would take "%zone".
AddressError parse_address(std::string_view text, IpAddress& out) {
    if (text.find('%') != std::string_view::npos) return AddressError::zone;
    if (text.empty() || text.size() > max_address_text) return AddressError::bad;
    for (char c : text)
        if (!is_hex_digit(c) && c != '.' && c != ':') return AddressError::bad;
    boost::system::error_code ec;
    const asio_ip::address address = asio_ip::make_address(std::string(text), ec);
    if (ec) return AddressError::bad;
    if (address.is_v4()) {
        out = IpAddress::v4(address.to_v4().to_bytes());
    } else {
        const asio_ip::address_v6 v6 = address.to_v6();
        if (v6.scope_id() != 0) return AddressError::zone;
        out = IpAddress::v6(v6.to_bytes());
    }
    return AddressError::none;
}

// Decimal 1..65535. Leading zeros are harmless and taken; signs, space and hex are not.
std::optional<std::uint16_t> parse_port(std::string_view text) noexcept {
    if (text.empty() || text.size() > 5) return std::nullopt;
    unsigned value = 0;
    for (char c : text) {
        if (!is_digit(c)) return std::nullopt;
        value = value * 10 + unsigned(c - '0');
    }
    if (value == 0 || value > 65535) return std::nullopt;
    return static_cast<std::uint16_t>(value);
}

// Whether the first `prefix` bits of a and b agree.
bool prefix_matches(const std::uint8_t* a, const std::uint8_t* b, unsigned prefix) noexcept {
    const unsigned whole = prefix / 8;
    const unsigned rest = prefix % 8;
    if (std::memcmp(a, b, whole) != 0) return false;
    if (rest == 0) return true;
    const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

// RFC 3696 §2: a top-level domain is never all-numeric, so such a "name" is a
// mistyped IPv4 address ("192.0.2.256") and is reported as one.
bool last_label_is_numeric(std::string_view host) noexcept {
    if (!host.empty() && host.back() == '.') host.remove_suffix(1);
    const std::size_t dot = host.rfind('.');
    const std::string_view label = dot == std::string_view::npos ? host : host.substr(dot + 1);
    return !label.empty() && std::all_of(label.begin(), label.end(), is_digit);
}

}  // namespace

// ---------------------------------------------------------------- IpAddress

IpAddress IpAddress::v4(const std::array<std::uint8_t, 4>& bytes) noexcept {
    IpAddress a;
    std::copy(bytes.begin(), bytes.end(), a.bytes_.begin());
    a.family_ = Family::v4;
    return a;
}

IpAddress IpAddress::v6(const std::array<std::uint8_t, 16>& bytes) noexcept {
    IpAddress a;
    a.bytes_ = bytes;
    a.family_ = Family::v6;
    return a;
}

bool IpAddress::is_v4_mapped() const noexcept {
    return is_v6() && std::equal(v4_mapped_prefix.begin(), v4_mapped_prefix.end(), bytes_.begin());
}

IpAddress IpAddress::unmapped() const noexcept {
    if (!is_v4_mapped()) return *this;
    return v4({bytes_[12], bytes_[13], bytes_[14], bytes_[15]});
}

IpAddress IpAddress::mapped() const noexcept {
    if (!is_v4()) return *this;
    std::array<std::uint8_t, 16> b{};
    std::copy(v4_mapped_prefix.begin(), v4_mapped_prefix.end(), b.begin());
    std::copy(bytes_.begin(), bytes_.begin() + 4, b.begin() + 12);
    return v6(b);
}

std::string IpAddress::to_string() const {
    // inet_ntop (glibc) writes RFC 5952 form: lower case, no leading zeros, the
    // longest run of two or more zero groups as "::" (the first on a tie), and
    // ::ffff:a.b.c.d for mapped addresses.
    if (is_v4()) return asio_ip::address_v4({bytes_[0], bytes_[1], bytes_[2], bytes_[3]}).to_string();
    return asio_ip::address_v6(bytes_).to_string();
}

std::string IpAddress::to_literal() const {
    // RFC 5321 §4.1.3: IPv4-address-literal / "IPv6:" IPv6-addr, in brackets.
    return is_v4() ? fmt::format("[{}]", to_string()) : fmt::format("[IPv6:{}]", to_string());
}

Parsed<IpAddress> parse_ip_address(std::string_view text) {
    IpAddress address;
    switch (parse_address(text, address)) {
        case AddressError::none:
            return success(address);
        case AddressError::zone:
            return failure<IpAddress>("zone index not allowed in", text);
        case AddressError::bad:
            break;
    }
    return failure<IpAddress>("bad IP address", text);
}

std::optional<IpAddress> address_from_sockaddr(const sockaddr* sa, std::size_t length) noexcept {
    if (sa == nullptr || length < sizeof(sa_family_t)) return std::nullopt;
    // memcpy, not a cast: the caller's storage may be a sockaddr_storage or bytes.
    sa_family_t family;
    std::memcpy(&family, reinterpret_cast<const char*>(sa) + offsetof(sockaddr, sa_family), sizeof family);
    if (family == AF_INET && length >= sizeof(sockaddr_in)) {
        sockaddr_in in;
        std::memcpy(&in, sa, sizeof in);
        std::array<std::uint8_t, 4> b;
        std::memcpy(b.data(), &in.sin_addr, 4);
        return IpAddress::v4(b);
    }
    if (family == AF_INET6 && length >= sizeof(sockaddr_in6)) {
        sockaddr_in6 in6;
        std::memcpy(&in6, sa, sizeof in6);
        std::array<std::uint8_t, 16> b;
        std::memcpy(b.data(), &in6.sin6_addr, 16);
        return IpAddress::v6(b);
    }
    return std::nullopt;
}

// ---------------------------------------------------------------- IpNetwork

std::optional<IpNetwork> IpNetwork::make(const IpAddress& address, unsigned prefix_length) noexcept {
    const unsigned bits = address.is_v4() ? 32 : 128;
    if (prefix_length > bits) return std::nullopt;
    const auto b = address.bytes();
    for (unsigned bit = prefix_length; bit < bits; ++bit)
        if (b[bit / 8] & (0x80 >> (bit % 8))) return std::nullopt;
    return IpNetwork(address, static_cast<std::uint8_t>(prefix_length));
}

IpAddress IpNetwork::last() const noexcept {
    if (address_.is_v4()) {
        std::array<std::uint8_t, 4> b;
        std::copy_n(address_.bytes().begin(), 4, b.begin());
        for (unsigned bit = prefix_; bit < 32; ++bit) b[bit / 8] |= std::uint8_t(0x80 >> (bit % 8));
        return IpAddress::v4(b);
    }
    std::array<std::uint8_t, 16> b;
    std::copy_n(address_.bytes().begin(), 16, b.begin());
    for (unsigned bit = prefix_; bit < 128; ++bit) b[bit / 8] |= std::uint8_t(0x80 >> (bit % 8));
    return IpAddress::v6(b);
}

bool IpNetwork::contains(const IpAddress& address) const noexcept {
    // A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d; an admin writes
    // 127.0.0.0/8. Compare in the network's family.
    const IpAddress a = address_.is_v4() ? address.unmapped() : address.mapped();
    if (a.family() != address_.family()) return false;
    return prefix_matches(a.bytes().data(), address_.bytes().data(), prefix_);
}

std::string IpNetwork::to_string() const { return fmt::format("{}/{}", address_.to_string(), prefix_); }

Parsed<IpNetwork> parse_ip_network(std::string_view text) {
    const std::size_t slash = text.find('/');
    const std::string_view address_text = text.substr(0, slash);
    if (address_text.empty()) return failure<IpNetwork>("missing address in", text);

    IpAddress address;
    switch (parse_address(address_text, address)) {
        case AddressError::none:
            break;
        case AddressError::zone:
            return failure<IpNetwork>("zone index not allowed in", text);
        case AddressError::bad:
            return failure<IpNetwork>("bad IP address in", text);
    }

    const unsigned bits = address.is_v4() ? 32 : 128;
    unsigned prefix = bits;
    if (slash != std::string_view::npos) {
        const std::string_view digits = text.substr(slash + 1);
        if (digits.empty()) return failure<IpNetwork>("missing prefix length in", text);
        // At most 3 digits: Boost reads the length with atoi, which overflows on
        // long input; "/33" and "/129" are caught here too, with a clear message.
        if (digits.size() > 3 || !std::all_of(digits.begin(), digits.end(), is_digit))
            return failure<IpNetwork>("bad prefix length in", text);
        prefix = 0;
        for (char c : digits) prefix = prefix * 10 + unsigned(c - '0');
        if (prefix > bits) return failure<IpNetwork>("bad prefix length in", text);
    }

    // Boost builds the network; its network() masks the host bits, so a difference
    // from the address as written means host bits were set.
    const std::string canonical = fmt::format("{}/{}", address.to_string(), prefix);
    boost::system::error_code ec;
    IpAddress first;
    if (address.is_v4()) {
        const asio_ip::network_v4 n = asio_ip::make_network_v4(canonical, ec);
        if (ec) return failure<IpNetwork>("bad IP address in", text);
        first = IpAddress::v4(n.network().to_bytes());
    } else {
        const asio_ip::network_v6 n = asio_ip::make_network_v6(canonical, ec);
        if (ec) return failure<IpNetwork>("bad IP address in", text);
        first = IpAddress::v6(n.network().to_bytes());
    }
    if (first != address) {
        Parsed<IpNetwork> result;
        result.error =
            fmt::format("host bits set in '{}' (the network is {}/{})", text, first.to_string(), prefix);
        return result;
    }
    return success(*IpNetwork::make(address, prefix));
}

// ---------------------------------------------------------------- NetworkList

NetworkList NetworkList::default_relay() {
    NetworkList list;
    list.add(*IpNetwork::make(IpAddress::v4({127, 0, 0, 0}), 8));
    list.add(*IpNetwork::make(IpAddress::v6({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}), 128));
    return list;
}

bool NetworkList::contains(const IpAddress& address) const noexcept {
    return std::any_of(networks_.begin(), networks_.end(),
                       [&](const IpNetwork& n) { return n.contains(address); });
}

std::string NetworkList::to_string() const {
    std::string out;
    for (const IpNetwork& n : networks_) {
        if (!out.empty()) out += ", ";
        out += n.to_string();
    }
    return out;
}

Parsed<NetworkList> parse_network_list(std::string_view text) {
    constexpr std::string_view space = " \t\r\n";
    NetworkList list;
    if (text.find_first_not_of(space) == std::string_view::npos) return success(list);
    std::string_view rest = text;
    for (;;) {
        const std::size_t comma = rest.find(',');
        std::string_view piece = rest.substr(0, comma);
        if (piece.find_first_not_of(space) == std::string_view::npos)
            return failure<NetworkList>("empty entry in", text);
        // Within a comma-separated piece, white space separates entries too.
        while (!piece.empty()) {
            const std::size_t start = piece.find_first_not_of(space);
            if (start == std::string_view::npos) break;
            piece.remove_prefix(start);
            const std::size_t end = std::min(piece.find_first_of(space), piece.size());
            Parsed<IpNetwork> n = parse_ip_network(piece.substr(0, end));
            if (!n) {
                Parsed<NetworkList> result;
                result.error = std::move(n.error);
                return result;
            }
            list.add(*n.value);
            piece.remove_prefix(end);
        }
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
    }
    return success(std::move(list));
}

// ---------------------------------------------------------------- Endpoint

std::string Endpoint::to_string() const {
    if (address && address->is_v6()) return fmt::format("[{}]:{}", host, port);
    return fmt::format("{}:{}", host, port);
}

Parsed<Endpoint> parse_endpoint(std::string_view text, std::uint16_t default_port) {
    Endpoint e;
    e.port = default_port;
    std::string_view host;
    std::string_view port;
    bool has_port = false;

    if (!text.empty() && text.front() == '[') {
        const std::size_t close = text.find(']');
        if (close == std::string_view::npos) return failure<Endpoint>("missing ']' in", text);
        host = text.substr(1, close - 1);
        if (host.empty()) return failure<Endpoint>("empty host in", text);
        IpAddress address;
        switch (parse_address(host, address)) {
            case AddressError::none:
                break;
            case AddressError::zone:
                return failure<Endpoint>("zone index not allowed in", text);
            case AddressError::bad:
                if (is_valid_domain(host))
                    return failure<Endpoint>("brackets are for IP addresses only in", text);
                return failure<Endpoint>("bad IP address in", text);
        }
        e.address = address;
        const std::string_view after = text.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') return failure<Endpoint>("unexpected text after ']' in", text);
            has_port = true;
            port = after.substr(1);
        }
    } else if (std::count(text.begin(), text.end(), ':') >= 2) {
        // A bare IPv6 address: its last group cannot be told from a port, so there
        // is none; "[::1]:25" gives one.
        IpAddress address;
        switch (parse_address(text, address)) {
            case AddressError::none:
                break;
            case AddressError::zone:
                return failure<Endpoint>("zone index not allowed in", text);
            case AddressError::bad:
                return failure<Endpoint>("bad IP address in", text);
        }
        host = text;
        e.address = address;
    } else {
        const std::size_t colon = text.find(':');
        host = text.substr(0, colon);
        if (colon != std::string_view::npos) {
            has_port = true;
            port = text.substr(colon + 1);
        }
        if (host.empty()) return failure<Endpoint>("empty host in", text);
        IpAddress address;
        if (parse_address(host, address) == AddressError::none) {
            e.address = address;
        } else if (last_label_is_numeric(host)) {
            return failure<Endpoint>("bad IP address in", text);
        } else if (!is_valid_domain(host)) {
            return failure<Endpoint>("bad host name in", text);
        }
    }

    if (has_port) {
        const std::optional<std::uint16_t> p = parse_port(port);
        if (!p) return failure<Endpoint>("bad port in", text);
        e.port = *p;
    }
    // An address is kept in its canonical form, so logs show one spelling of it.
    e.host = e.address ? e.address->to_string() : std::string(host);
    return success(std::move(e));
}

Parsed<Endpoint> parse_ip_endpoint(std::string_view text, std::uint16_t default_port) {
    Parsed<Endpoint> e = parse_endpoint(text, default_port);
    if (e && !e.value->address) return failure<Endpoint>("not an IP address in", text);
    return e;
}

}  // namespace smtp
