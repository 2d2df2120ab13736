// Tests of apps/common/network: addresses, CIDR networks, relay lists, endpoints.
// Table-driven: each row is an input and the expected value or error message, so a
// new case is one line. Error messages are compared whole: they reach the admin.
#include "common/network.hpp"

#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

namespace {

using smtp::Endpoint;
using smtp::IpAddress;
using smtp::IpNetwork;

IpAddress addr(std::string_view text) {
    auto a = smtp::parse_ip_address(text);
    REQUIRE_MESSAGE(a.ok(), a.error);
    return *a.value;
}

IpNetwork net(std::string_view text) {
    auto n = smtp::parse_ip_network(text);
    REQUIRE_MESSAGE(n.ok(), n.error);
    return *n.value;
}

}  // namespace

TEST_SUITE("network") {
    TEST_CASE("valid addresses parse and print in canonical form") {
        struct Row {
            std::string_view text;
            bool v4;
            std::string_view canonical;
            std::string_view literal;
        };
        const Row rows[] = {
            {"192.0.2.1", true, "192.0.2.1", "[192.0.2.1]"},
            {"0.0.0.0", true, "0.0.0.0", "[0.0.0.0]"},
            {"255.255.255.255", true, "255.255.255.255", "[255.255.255.255]"},
            {"::1", false, "::1", "[IPv6:::1]"},
            {"::", false, "::", "[IPv6:::]"},
            {"2001:db8::1", false, "2001:db8::1", "[IPv6:2001:db8::1]"},
            // RFC 5952: lower case, no leading zeros, longest zero run compressed
            {"2001:0DB8:0000:0000:0000:0000:0000:0001", false, "2001:db8::1", "[IPv6:2001:db8::1]"},
            // §4.2.2: a single zero group is not compressed
            {"2001:db8:0:1:1:1:1:1", false, "2001:db8:0:1:1:1:1:1", "[IPv6:2001:db8:0:1:1:1:1:1]"},
            // §4.2.3: the first of two equal runs
            {"2001:db8:0:0:1:0:0:1", false, "2001:db8::1:0:0:1", "[IPv6:2001:db8::1:0:0:1]"},
            {"::ffff:192.0.2.1", false, "::ffff:192.0.2.1", "[IPv6:::ffff:192.0.2.1]"},
            {"fe80::1", false, "fe80::1", "[IPv6:fe80::1]"},
        };
        for (const Row& row : rows) {
            CAPTURE(row.text);
            const auto a = smtp::parse_ip_address(row.text);
            REQUIRE_MESSAGE(a.ok(), a.error);
            CHECK(a.value->is_v4() == row.v4);
            CHECK(a.value->bytes().size() == (row.v4 ? 4u : 16u));
            CHECK(a.value->to_string() == row.canonical);
            CHECK(a.value->to_literal() == row.literal);
            // What to_string() writes parses back to the same address.
            CHECK(addr(a.value->to_string()) == *a.value);
        }
    }

    TEST_CASE("invalid addresses are rejected with a message") {
        struct Row {
            std::string_view text;
            std::string_view error;
        };
        using namespace std::string_view_literals;
        const Row rows[] = {
            {"", "bad IP address ''"},
            {"192.0.2", "bad IP address '192.0.2'"},
            {"10.1", "bad IP address '10.1'"},
            {"192.0.2.256", "bad IP address '192.0.2.256'"},
            {"010.0.0.1", "bad IP address '010.0.0.1'"},  // octal to inet_aton
            {"0x7f.0.0.1", "bad IP address '0x7f.0.0.1'"},
            {"1.2.3.4.5", "bad IP address '1.2.3.4.5'"},
            {" 1.2.3.4", "bad IP address ' 1.2.3.4'"},
            {"1.2.3.4 ", "bad IP address '1.2.3.4 '"},
            {"[::1]", "bad IP address '[::1]'"},
            {"1.2.3.4:25", "bad IP address '1.2.3.4:25'"},
            {":::1", "bad IP address ':::1'"},
            {"1::2::3", "bad IP address '1::2::3'"},
            {"12345::1", "bad IP address '12345::1'"},
            {"2001:db8:0:0:0:0:0:0:1", "bad IP address '2001:db8:0:0:0:0:0:0:1'"},
            {"localhost", "bad IP address 'localhost'"},
            {"fe80::1%eth0", "zone index not allowed in 'fe80::1%eth0'"},
            {"fe80::1%1", "zone index not allowed in 'fe80::1%1'"},
            {"1.2.3.4\0junk"sv, "bad IP address '1.2.3.4\0junk'"sv},
        };
        for (const Row& row : rows) {
            CAPTURE(row.text);
            const auto a = smtp::parse_ip_address(row.text);
            CHECK_FALSE(a.ok());
            CHECK(a.error == row.error);
        }
    }

    TEST_CASE("mapped() and unmapped() convert between IPv4 and IPv4-mapped IPv6") {
        CHECK(addr("::ffff:127.0.0.1").is_v4_mapped());
        CHECK_FALSE(addr("::1").is_v4_mapped());
        CHECK_FALSE(addr("127.0.0.1").is_v4_mapped());
        CHECK_FALSE(addr("::127.0.0.1").is_v4_mapped());  // the deprecated v4-compatible form
        CHECK(addr("::ffff:127.0.0.1").unmapped() == addr("127.0.0.1"));
        CHECK(addr("127.0.0.1").mapped() == addr("::ffff:127.0.0.1"));
        CHECK(addr("::1").unmapped() == addr("::1"));
        CHECK(addr("::1").mapped() == addr("::1"));
        CHECK(addr("127.0.0.1") != addr("::ffff:127.0.0.1"));
        CHECK(IpAddress{} == addr("0.0.0.0"));
    }

    TEST_CASE("address_from_sockaddr reads AF_INET and AF_INET6") {
        sockaddr_in in{};
        in.sin_family = AF_INET;
        const std::uint8_t v4[4] = {192, 0, 2, 1};
        std::memcpy(&in.sin_addr, v4, 4);
        auto a = smtp::address_from_sockaddr(reinterpret_cast<const sockaddr*>(&in), sizeof in);
        REQUIRE(a);
        CHECK(*a == addr("192.0.2.1"));
        CHECK_FALSE(smtp::address_from_sockaddr(reinterpret_cast<const sockaddr*>(&in), sizeof in - 1));

        sockaddr_in6 in6{};
        in6.sin6_family = AF_INET6;
        in6.sin6_scope_id = 2;
        const std::uint8_t v6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
        std::memcpy(&in6.sin6_addr, v6, 16);
        a = smtp::address_from_sockaddr(reinterpret_cast<const sockaddr*>(&in6), sizeof in6);
        REQUIRE(a);
        CHECK(*a == addr("::ffff:127.0.0.1"));
        CHECK(a->unmapped().to_string() == "127.0.0.1");

        sockaddr un{};
        un.sa_family = AF_UNIX;
        CHECK_FALSE(smtp::address_from_sockaddr(&un, sizeof un));
        CHECK_FALSE(smtp::address_from_sockaddr(nullptr, 0));
    }

    TEST_CASE("valid networks parse; a bare address is /32 or /128") {
        struct Row {
            std::string_view text;
            std::string_view canonical;
            std::string_view first;
            std::string_view last;
        };
        const Row rows[] = {
            {"10.0.0.0/8", "10.0.0.0/8", "10.0.0.0", "10.255.255.255"},
            {"127.0.0.0/8", "127.0.0.0/8", "127.0.0.0", "127.255.255.255"},
            {"192.0.2.0/24", "192.0.2.0/24", "192.0.2.0", "192.0.2.255"},
            {"192.0.2.128/25", "192.0.2.128/25", "192.0.2.128", "192.0.2.255"},
            {"198.51.100.7/32", "198.51.100.7/32", "198.51.100.7", "198.51.100.7"},
            {"198.51.100.7", "198.51.100.7/32", "198.51.100.7", "198.51.100.7"},
            {"0.0.0.0/0", "0.0.0.0/0", "0.0.0.0", "255.255.255.255"},
            {"10.0.0.0/08", "10.0.0.0/8", "10.0.0.0", "10.255.255.255"},
            {"::1/128", "::1/128", "::1", "::1"},
            {"::1", "::1/128", "::1", "::1"},
            {"::/0", "::/0", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
            {"2001:db8::/32", "2001:db8::/32", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"},
            {"2001:DB8:0::/48", "2001:db8::/48", "2001:db8::", "2001:db8:0:ffff:ffff:ffff:ffff:ffff"},
            {"fe80::/10", "fe80::/10", "fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
            {"::ffff:10.0.0.0/104", "::ffff:10.0.0.0/104", "::ffff:10.0.0.0", "::ffff:10.255.255.255"},
        };
        for (const Row& row : rows) {
            CAPTURE(row.text);
            const auto n = smtp::parse_ip_network(row.text);
            REQUIRE_MESSAGE(n.ok(), n.error);
            CHECK(n.value->to_string() == row.canonical);
            CHECK(n.value->address().to_string() == row.first);
            CHECK(n.value->last().to_string() == row.last);
            CHECK(net(n.value->to_string()) == *n.value);
        }
    }

    TEST_CASE("invalid networks are rejected with a message") {
        struct Row {
            std::string_view text;
            std::string_view error;
        };
        const Row rows[] = {
            {"", "missing address in ''"},
            {"/8", "missing address in '/8'"},
            {"1.2.3.4/", "missing prefix length in '1.2.3.4/'"},
            {"10.0.0.0/33", "bad prefix length in '10.0.0.0/33'"},
            {"::/129", "bad prefix length in '::/129'"},
            {"10.0.0.0/-1", "bad prefix length in '10.0.0.0/-1'"},
            {"10.0.0.0/+8", "bad prefix length in '10.0.0.0/+8'"},
            {"10.0.0.0/8 ", "bad prefix length in '10.0.0.0/8 '"},
            {"10.0.0.0/8/8", "bad prefix length in '10.0.0.0/8/8'"},
            {"10.0.0.0/0008", "bad prefix length in '10.0.0.0/0008'"},
            {"10.0.0.0/99999999999999999999", "bad prefix length in '10.0.0.0/99999999999999999999'"},
            {"10.0.0.0/x", "bad prefix length in '10.0.0.0/x'"},
            {"10.0.0/8", "bad IP address in '10.0.0/8'"},
            {"garbage", "bad IP address in 'garbage'"},
            {"mx.example/24", "bad IP address in 'mx.example/24'"},
            {"fe80::%eth0/64", "zone index not allowed in 'fe80::%eth0/64'"},
            {"10.1.2.3/8", "host bits set in '10.1.2.3/8' (the network is 10.0.0.0/8)"},
            {"192.0.2.1/24", "host bits set in '192.0.2.1/24' (the network is 192.0.2.0/24)"},
            {"1.0.0.0/0", "host bits set in '1.0.0.0/0' (the network is 0.0.0.0/0)"},
            {"::1/64", "host bits set in '::1/64' (the network is ::/64)"},
            {"2001:db8::1/32", "host bits set in '2001:db8::1/32' (the network is 2001:db8::/32)"},
        };
        for (const Row& row : rows) {
            CAPTURE(row.text);
            const auto n = smtp::parse_ip_network(row.text);
            CHECK_FALSE(n.ok());
            CHECK(n.error == row.error);
        }
    }

    TEST_CASE("IpNetwork::make checks the prefix length and host bits") {
        CHECK(smtp::IpNetwork::make(addr("10.0.0.0"), 8));
        CHECK_FALSE(smtp::IpNetwork::make(addr("10.0.0.0"), 33));
        CHECK_FALSE(smtp::IpNetwork::make(addr("10.0.0.1"), 8));
        CHECK(smtp::IpNetwork::make(addr("::"), 128));
        CHECK_FALSE(smtp::IpNetwork::make(addr("::"), 129));
        CHECK(smtp::IpNetwork::make(addr("0.0.0.0"), 0)->to_string() == "0.0.0.0/0");
        CHECK_FALSE(std::is_default_constructible_v<IpNetwork>);
    }

    TEST_CASE("contains() holds the first and last address and not their neighbours") {
        struct Row {
            std::string_view network;
            std::string_view before;  // one below the first address ("" if none)
            std::string_view first;
            std::string_view last;
            std::string_view after;  // one above the last address ("" if none)
        };
        const Row rows[] = {
            {"10.0.0.0/8", "9.255.255.255", "10.0.0.0", "10.255.255.255", "11.0.0.0"},
            {"192.0.2.128/25", "192.0.2.127", "192.0.2.128", "192.0.2.255", "192.0.3.0"},
            {"192.0.2.64/27", "192.0.2.63", "192.0.2.64", "192.0.2.95", "192.0.2.96"},
            {"198.51.100.7/32", "198.51.100.6", "198.51.100.7", "198.51.100.7", "198.51.100.8"},
            {"0.0.0.0/0", "", "0.0.0.0", "255.255.255.255", ""},
            {"::1/128", "::", "::1", "::1", "::2"},
            {"2001:db8::/32", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
             "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::"},
            {"fe80::/10", "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
             "fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fec0::"},
            {"::/0", "", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ""},
        };
        for (const Row& row : rows) {
            CAPTURE(row.network);
            const IpNetwork n = net(row.network);
            CHECK(n.contains(addr(row.first)));
            CHECK(n.contains(addr(row.last)));
            if (!row.before.empty()) CHECK_FALSE(n.contains(addr(row.before)));
            if (!row.after.empty()) CHECK_FALSE(n.contains(addr(row.after)));
        }
    }

    TEST_CASE(
        "an IPv4 network holds IPv4-mapped addresses; an IPv6 network not plain IPv4 outside ::ffff:0:0/96") {
        const IpNetwork loopback = net("127.0.0.0/8");
        CHECK(loopback.contains(addr("::ffff:127.0.0.1")));
        CHECK(loopback.contains(addr("::ffff:127.255.255.255")));
        CHECK_FALSE(loopback.contains(addr("::ffff:128.0.0.0")));
        CHECK_FALSE(loopback.contains(addr("::127.0.0.1")));  // v4-compatible, not mapped
        CHECK_FALSE(loopback.contains(addr("::1")));
        CHECK_FALSE(net("::1/128").contains(addr("127.0.0.1")));
        CHECK_FALSE(net("2001:db8::/32").contains(addr("10.0.0.1")));
        // A network written in mapped form holds the plain IPv4 addresses too.
        CHECK(net("::ffff:10.0.0.0/104").contains(addr("10.1.2.3")));
        CHECK(net("::ffff:10.0.0.0/104").contains(addr("::ffff:10.1.2.3")));
        CHECK_FALSE(net("::ffff:10.0.0.0/104").contains(addr("11.0.0.0")));
    }

    TEST_CASE("the default relay list is the local host only") {
        const smtp::NetworkList list = smtp::NetworkList::default_relay();
        CHECK(list.to_string() == "127.0.0.0/8, ::1/128");
        CHECK(list.contains(addr("127.0.0.1")));
        CHECK(list.contains(addr("127.1.2.3")));
        CHECK(list.contains(addr("::ffff:127.0.0.1")));
        CHECK(list.contains(addr("::1")));
        CHECK_FALSE(list.contains(addr("192.0.2.1")));
        CHECK_FALSE(list.contains(addr("::ffff:192.0.2.1")));
        CHECK_FALSE(list.contains(addr("::2")));
        CHECK_FALSE(list.contains(addr("::")));
        CHECK_FALSE(smtp::NetworkList{}.contains(addr("127.0.0.1")));
    }

    TEST_CASE("network lists are separated by commas and white space") {
        struct Row {
            std::string_view text;
            std::string_view parsed;  // to_string(), or the error
            bool ok;
        };
        const Row rows[] = {
            {"127.0.0.0/8, ::1/128", "127.0.0.0/8, ::1/128", true},
            {"127.0.0.0/8,::1/128", "127.0.0.0/8, ::1/128", true},
            {"127.0.0.0/8 ::1/128\t10.0.0.0/8\n", "127.0.0.0/8, ::1/128, 10.0.0.0/8", true},
            {" 192.0.2.1 ", "192.0.2.1/32", true},
            {"", "", true},
            {"  \t", "", true},
            {"10.0.0.0/8,,::1", "empty entry in '10.0.0.0/8,,::1'", false},
            {"10.0.0.0/8,", "empty entry in '10.0.0.0/8,'", false},
            {",10.0.0.0/8", "empty entry in ',10.0.0.0/8'", false},
            {"10.0.0.0/8, 10.1.2.3/16", "host bits set in '10.1.2.3/16' (the network is 10.1.0.0/16)", false},
            {"10.0.0.0/8 garbage", "bad IP address in 'garbage'", false},
            {"10.0.0.0 /8", "missing address in '/8'", false},
        };
        for (const Row& row : rows) {
            CAPTURE(row.text);
            const auto list = smtp::parse_network_list(row.text);
            CHECK(list.ok() == row.ok);
            if (list.ok()) {
                CHECK(list.value->to_string() == row.parsed);
                CHECK(list.value->empty() == row.parsed.empty());
            } else {
                CHECK(list.error == row.parsed);
            }
        }
        const auto list = smtp::parse_network_list("10.0.0.0/8, 2001:db8::/32");
        REQUIRE(list.ok());
        CHECK(list.value->networks().size() == 2);
        CHECK(list.value->contains(addr("10.9.9.9")));
        CHECK(list.value->contains(addr("::ffff:10.9.9.9")));
        CHECK(list.value->contains(addr("2001:db8::25")));
        CHECK_FALSE(list.value->contains(addr("127.0.0.1")));
    }

    TEST_CASE("valid endpoints parse with or without a port") {
        struct Row {
            std::string_view text;
            std::string_view host;
            bool is_address;
            std::uint16_t port;
            std::string_view printed;
        };
        const Row rows[] = {
            {"mx.example", "mx.example", false, 25, "mx.example:25"},
            {"mx.example:25", "mx.example", false, 25, "mx.example:25"},
            {"mx.example:2525", "mx.example", false, 2525, "mx.example:2525"},
            {"MX.Example:587", "MX.Example", false, 587, "MX.Example:587"},
            {"localhost", "localhost", false, 25, "localhost:25"},
            {"localhost:1", "localhost", false, 1, "localhost:1"},
            {"localhost:65535", "localhost", false, 65535, "localhost:65535"},
            {"localhost:00025", "localhost", false, 25, "localhost:25"},
            {"192.0.2.1", "192.0.2.1", true, 25, "192.0.2.1:25"},
            {"192.0.2.1:53", "192.0.2.1", true, 53, "192.0.2.1:53"},
            {"[192.0.2.1]:53", "192.0.2.1", true, 53, "192.0.2.1:53"},
            {"::1", "::1", true, 25, "[::1]:25"},
            {"2001:DB8::1", "2001:db8::1", true, 25, "[2001:db8::1]:25"},
            {"[::1]", "::1", true, 25, "[::1]:25"},
            {"[::1]:2525", "::1", true, 2525, "[::1]:2525"},
            {"[2001:db8::25]:25", "2001:db8::25", true, 25, "[2001:db8::25]:25"},
        };
        for (const Row& row : rows) {
            CAPTURE(row.text);
            const auto e = smtp::parse_endpoint(row.text, 25);
            REQUIRE_MESSAGE(e.ok(), e.error);
            CHECK(e.value->host == row.host);
            CHECK(e.value->address.has_value() == row.is_address);
            CHECK(e.value->port == row.port);
            CHECK(e.value->to_string() == row.printed);
        }
    }

    TEST_CASE("invalid endpoints are rejected with a message") {
        struct Row {
            std::string_view text;
            std::string_view error;
        };
        const Row rows[] = {
            {"", "empty host in ''"},
            {":25", "empty host in ':25'"},
            {"[]:25", "empty host in '[]:25'"},
            {"mx.example:0", "bad port in 'mx.example:0'"},
            {"mx.example:65536", "bad port in 'mx.example:65536'"},
            {"mx.example:100000", "bad port in 'mx.example:100000'"},
            {"mx.example:abc", "bad port in 'mx.example:abc'"},
            {"mx.example:", "bad port in 'mx.example:'"},
            {"mx.example:-25", "bad port in 'mx.example:-25'"},
            {"mx.example:+25", "bad port in 'mx.example:+25'"},
            {"mx.example: 25", "bad port in 'mx.example: 25'"},
            {"mx.example:0x19", "bad port in 'mx.example:0x19'"},
            {"[::1]:0", "bad port in '[::1]:0'"},
            {"[::1]:", "bad port in '[::1]:'"},
            {"192.0.2.1:65536", "bad port in '192.0.2.1:65536'"},
            {"mx_example", "bad host name in 'mx_example'"},
            {"mx..example", "bad host name in 'mx..example'"},
            {"-mx.example", "bad host name in '-mx.example'"},
            {"mx.example ", "bad host name in 'mx.example '"},
            {"192.0.2.256", "bad IP address in '192.0.2.256'"},
            {"192.0.2", "bad IP address in '192.0.2'"},
            {"192.0.2.256:25", "bad IP address in '192.0.2.256:25'"},
            {"1::2::3", "bad IP address in '1::2::3'"},
            {"[1::2::3]:25", "bad IP address in '[1::2::3]:25'"},
            {"[mx.example]:25", "brackets are for IP addresses only in '[mx.example]:25'"},
            {"[::1", "missing ']' in '[::1'"},
            {"[::1]25", "unexpected text after ']' in '[::1]25'"},
            {"[fe80::1%eth0]:25", "zone index not allowed in '[fe80::1%eth0]:25'"},
            {"fe80::1%eth0", "zone index not allowed in 'fe80::1%eth0'"},
        };
        for (const Row& row : rows) {
            CAPTURE(row.text);
            const auto e = smtp::parse_endpoint(row.text, 25);
            CHECK_FALSE(e.ok());
            CHECK(e.error == row.error);
        }
    }

    TEST_CASE("parse_ip_endpoint takes IP addresses only") {
        auto e = smtp::parse_ip_endpoint("192.0.2.53", 53);
        REQUIRE(e.ok());
        CHECK(e.value->to_string() == "192.0.2.53:53");
        e = smtp::parse_ip_endpoint("[2001:db8::53]:5353", 53);
        REQUIRE(e.ok());
        CHECK(e.value->to_string() == "[2001:db8::53]:5353");
        e = smtp::parse_ip_endpoint("dns.example:53", 53);
        CHECK_FALSE(e.ok());
        CHECK(e.error == "not an IP address in 'dns.example:53'");
        e = smtp::parse_ip_endpoint("192.0.2.53:0", 53);
        CHECK(e.error == "bad port in '192.0.2.53:0'");
    }
}
