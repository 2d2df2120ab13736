// Test helper: the ways one input can arrive from the network.
//
// DESIGN.md: every transcript and parser input is fed whole, byte by byte, and
// split at every offset; all must give the same result. for_each_chunking() calls
// `feed(pieces)` once per way, with the pieces in order, and a label for messages.
#ifndef SMTP_TESTS_CHUNKING_HPP
#define SMTP_TESTS_CHUNKING_HPP

#include <cstddef>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace smtp::test {

struct Chunking {
    std::string label;
    std::vector<std::string_view> pieces;
};

// Whole; byte by byte; split in two at every offset; and `random_ways` random
// chunkings (fixed seed, so failures repeat).
inline std::vector<Chunking> chunkings(std::string_view input, int random_ways = 8) {
    std::vector<Chunking> ways;
    ways.push_back({"whole", {input}});

    Chunking bytes{"byte by byte", {}};
    for (std::size_t i = 0; i < input.size(); ++i) bytes.pieces.push_back(input.substr(i, 1));
    ways.push_back(std::move(bytes));

    for (std::size_t at = 1; at < input.size(); ++at)
        ways.push_back({"split at " + std::to_string(at), {input.substr(0, at), input.substr(at)}});

    std::mt19937 rng(12345);
    for (int w = 0; w < random_ways && input.size() > 2; ++w) {
        Chunking random{"random " + std::to_string(w), {}};
        std::uniform_int_distribution<std::size_t> length(1, input.size() / 2 + 1);
        for (std::size_t at = 0; at < input.size();) {
            const std::size_t n = length(rng);
            random.pieces.push_back(input.substr(at, n));
            at += n;
        }
        ways.push_back(std::move(random));
    }
    return ways;
}

template <class Feed>
void for_each_chunking(std::string_view input, Feed feed, int random_ways = 8) {
    for (const Chunking& way : chunkings(input, random_ways)) feed(way.pieces, way.label);
}

}  // namespace smtp::test

#endif
