// Unit tests of DataEncoder (RFC 5321 §4.5.2, §2.3.8) and of the round trip
// decode(encode(x)) == canonical(x) stated in smtp/data.hpp, over many strings and
// chunkings on both sides.
#include <smtp/data.hpp>

#include "canonical.hpp"
#include "chunking.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

using smtp::test::canonical;

using smtp::DataDecoder;
using smtp::DataEncoder;
using smtp::DataOptions;
using smtp::Errc;
using smtp::Limits;
using namespace std::string_literals;
using namespace std::string_view_literals;

std::string encode(const std::vector<std::string_view>& pieces) {
    DataEncoder encoder;
    std::string out;
    for (std::string_view piece : pieces) encoder.encode(piece, out);
    encoder.finish(out);
    return out;
}

// Pieces of 1..max_piece octets, at random.
std::vector<std::string_view> random_pieces(std::string_view s, std::mt19937& rng, std::size_t max_piece) {
    std::vector<std::string_view> pieces;
    std::uniform_int_distribution<std::size_t> length(1, max_piece);
    for (std::size_t at = 0; at < s.size();) {
        const std::size_t n = std::min(length(rng), s.size() - at);
        pieces.push_back(s.substr(at, n));
        at += n;
    }
    return pieces;
}

struct Decoded {
    std::string content;
    std::size_t consumed = 0;
    bool finished = false;
    Errc error = Errc::ok;
};

Decoded decode(const std::vector<std::string_view>& pieces, const Limits& limits,
               const DataOptions& options) {
    DataDecoder decoder(limits, options);
    Decoded d;
    for (std::string_view in : pieces) {
        while (!in.empty() && !d.finished) {
            const DataDecoder::Result r = decoder.decode(in);
            REQUIRE((r.consumed > 0 || !r.content.empty() || r.finished));
            d.content += r.content;
            d.consumed += r.consumed;
            d.finished = r.finished;
            in.remove_prefix(r.consumed);
        }
    }
    d.error = decoder.error();
    return d;
}

// Limits and options under which any x round-trips: no size or line limit.
Limits unlimited() {
    Limits limits;
    limits.message_size = static_cast<std::uint64_t>(-1);
    return limits;
}

DataOptions long_lines_accepted() {
    DataOptions options;
    options.long_lines = DataOptions::LongLines::accept;
    return options;
}

// x, weighted to the octets that matter: CR, LF, ".", and some others.
std::string random_content(std::mt19937& rng, std::size_t max_length) {
    static constexpr std::string_view alphabet = "\r\r\r\n\n\n...aaab\0\xff"sv;
    std::uniform_int_distribution<std::size_t> length(0, max_length);
    std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
    std::string x(length(rng), 'a');
    for (char& c : x) c = alphabet[pick(rng)];
    return x;
}

}  // namespace

TEST_SUITE("data") {
    TEST_CASE("the encoder stuffs dots, turns bare CR and LF into CRLF and ends with CRLF.CRLF") {
        struct Case {
            std::string content;
            std::string encoded;
        };
        const std::vector<Case> cases{
            {"", ".\r\n"},
            {"a", "a\r\n.\r\n"},
            {"a\r\n", "a\r\n.\r\n"},
            {"a\r\nb", "a\r\nb\r\n.\r\n"},
            {".", "..\r\n.\r\n"},
            {".\r\n", "..\r\n.\r\n"},
            {"..\r\n", "...\r\n.\r\n"},
            {"a\r\n.b\r\n.\r\n", "a\r\n..b\r\n..\r\n.\r\n"},
            {"a.b\r\n a.\r\n", "a.b\r\n a.\r\n.\r\n"},
            {"\n", "\r\n.\r\n"},
            {"\r", "\r\n.\r\n"},
            {"\r\r\n", "\r\n\r\n.\r\n"},
            {"\n\r", "\r\n\r\n.\r\n"},
            {"a\n.b", "a\r\n..b\r\n.\r\n"},
            {"a\r.b", "a\r\n..b\r\n.\r\n"},
            {"a\r\n.\r\nb", "a\r\n..\r\nb\r\n.\r\n"},
            {"a\0b\r\n"s, "a\0b\r\n.\r\n"s},
        };
        for (const Case& c : cases) {
            CAPTURE(c.content);
            smtp::test::for_each_chunking(
                c.content, [&](const std::vector<std::string_view>& pieces, const std::string& way) {
                    CAPTURE(way);
                    CHECK(encode(pieces) == c.encoded);
                });
        }
    }

    TEST_CASE("empty chunks change nothing") {
        DataEncoder encoder;
        std::string out;
        encoder.encode("", out);
        encoder.encode("a\r", out);
        encoder.encode("", out);
        encoder.encode("\n.", out);
        encoder.encode("", out);
        encoder.finish(out);
        CHECK(out == "a\r\n..\r\n.\r\n");
    }

    TEST_CASE("the encoder is ready for the next message after finish") {
        DataEncoder encoder;
        std::string out;
        encoder.encode("one\r", out);
        encoder.finish(out);
        encoder.encode(".two", out);
        encoder.finish(out);
        CHECK(out == "one\r\n.\r\n..two\r\n.\r\n");
    }

    TEST_CASE("the encoder appends to what the caller's string holds") {
        DataEncoder encoder;
        std::string out = "DATA\r\n";
        encoder.encode("x", out);
        encoder.finish(out);
        CHECK(out == "DATA\r\nx\r\n.\r\n");
    }

    TEST_CASE("canonical content of CRLF lines is the content itself") {
        for (std::string_view x : {""sv, "a\r\n"sv, "\r\n\r\n"sv, ".\r\n..\r\n"sv}) {
            CHECK(canonical(x) == x);
            CHECK(decode({encode({x})}, {}, {}).content == x);
        }
        CHECK(canonical("a") == "a\r\n");
        CHECK(canonical("a\rb\n") == "a\r\nb\r\n");
    }

    TEST_CASE("decode(encode(x)) is canonical(x) for any x and any chunking on both sides") {
        std::mt19937 rng(20240601);
        for (int i = 0; i < 400; ++i) {
            const std::string x = random_content(rng, i < 200 ? 12 : 300);
            const std::string want = canonical(x);
            const std::string encoded = encode(random_pieces(x, rng, 1 + i % 17));
            CAPTURE(i);
            for (std::size_t max_piece : {std::size_t{1}, std::size_t{3}, std::size_t{64}, encoded.size()}) {
                CAPTURE(max_piece);
                const Decoded d =
                    decode(random_pieces(encoded, rng, max_piece), unlimited(), long_lines_accepted());
                CHECK(d.content == want);
                CHECK(d.finished);
                CHECK(d.consumed == encoded.size());
                CHECK(d.error == Errc::ok);
            }
        }
    }

    TEST_CASE("every split of short strings round-trips") {
        // Every x of up to 5 octets over CR, LF, "." and "a", split at every offset.
        std::vector<std::string> xs{""};
        for (std::size_t n = 0; n < xs.size(); ++n)
            if (xs[n].size() < 5)
                for (char c : {'\r', '\n', '.', 'a'}) xs.push_back(xs[n] + c);
        for (const std::string& x : xs) {
            CAPTURE(x);
            const std::string want = canonical(x);
            smtp::test::for_each_chunking(
                x,
                [&](const std::vector<std::string_view>& pieces, const std::string&) {
                    const std::string encoded = encode(pieces);
                    const Decoded d = decode({encoded}, {}, {});
                    CHECK(d.content == want);
                    CHECK(d.finished);
                    CHECK(d.error == Errc::ok);
                },
                0);
        }
    }

    TEST_CASE("streaming: each call's output is at most twice its chunk plus two octets") {
        // 8 MB in 64 KB chunks (enough to show the bound, quick under valgrind).
        constexpr std::size_t chunk = 64 * 1024;
        constexpr std::size_t total = 8 * 1024 * 1024;
        std::mt19937 rng(7);
        std::string x;
        x.reserve(total);
        while (x.size() < total) {
            // Mostly text lines, with stretches of the worst case: "\n." doubles.
            if (rng() % 8 == 0)
                for (int i = 0; i < 500; ++i) x += "\n.";
            else
                x += std::string(60 + rng() % 40, 'm') + (rng() % 2 ? "\r\n" : ".\r");
        }
        x.resize(total);

        DataEncoder encoder;
        DataDecoder decoder(unlimited(), long_lines_accepted());
        std::string out;
        std::string content;
        std::size_t largest = 0;
        bool finished = false;
        const auto drain = [&] {
            std::string_view in = out;
            while (!in.empty() && !finished) {
                const DataDecoder::Result r = decoder.decode(in);
                content += r.content;
                finished = r.finished;
                in.remove_prefix(r.consumed);
            }
            out.clear();
        };
        for (std::size_t at = 0; at < x.size(); at += chunk) {
            encoder.encode(std::string_view(x).substr(at, chunk), out);
            largest = std::max(largest, out.size());
            CHECK(out.size() <= 2 * chunk + 2);
            drain();
        }
        encoder.finish(out);
        drain();
        CHECK(largest > chunk);  // the worst-case stretches did grow some chunks
        CHECK(finished);
        CHECK(decoder.error() == Errc::ok);
        CHECK(content.size() == canonical(x).size());
        CHECK(content == canonical(x));
    }
}
