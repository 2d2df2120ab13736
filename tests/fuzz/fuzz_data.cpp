// libFuzzer target for the DATA codec (smtp/data.hpp).
//
// Invariants, each checked with abort():
// 1. DataDecoder on any bytes, any options: no crash, no hang; every call consumes
//    input or returns content; consumed <= input; content lies inside the input it
//    was given or is the static "\r\n"; fed whole or in chunks it gives the same
//    content, consumed, finished, error and size.
// 2. Round trip: decode(encode(x)) == canonical(x), finished, error ok, all consumed
//    (no size limit, long lines accepted), for any chunking on both sides.
// The first byte picks options: bit 0 bare line endings (reject, normalize), bit 1
// long lines (reject, accept), bits 2-3 the size limit, bits 4-5 the line limit,
// bits 6-7 how the input is chunked.
#include <smtp/data.hpp>

#include "../unit/canonical.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using smtp::test::canonical;

struct Decoded {
    std::string content;
    std::size_t consumed = 0;
    bool finished = false;
    smtp::Errc error = smtp::Errc::ok;
    std::uint64_t size = 0;
    bool operator==(const Decoded&) const = default;
};

void require(bool ok) {
    if (!ok) std::abort();
}

// The length of the next chunk: fixed, or varied by the input's own bytes.
std::size_t chunk_length(unsigned mode, std::string_view data, std::size_t at) {
    switch (mode) {
        case 0:
            return 1;
        case 1:
            return 1 + static_cast<unsigned char>(data[at]) % 7;
        case 2:
            return 13;
        default:
            return 64;
    }
}

Decoded decode(std::string_view data, unsigned mode, bool whole, const smtp::Limits& limits,
               const smtp::DataOptions& options) {
    smtp::DataDecoder decoder(limits, options);
    Decoded d;
    const char* static_crlf = nullptr;
    for (std::size_t at = 0; at < data.size() && !d.finished;) {
        const std::size_t n = whole ? data.size() : std::min(chunk_length(mode, data, at), data.size() - at);
        std::string_view in = data.substr(at, n);
        at += n;
        while (!in.empty() && !d.finished) {
            const smtp::DataDecoder::Result r = decoder.decode(in);
            require(r.consumed <= in.size());
            require(r.consumed > 0 || !r.content.empty() || r.finished);
            const bool inside =
                r.content.data() >= in.data() && r.content.data() + r.content.size() <= in.data() + in.size();
            if (!r.content.empty() && !inside) {
                require(r.content == "\r\n");
                if (static_crlf == nullptr) static_crlf = r.content.data();
                require(r.content.data() == static_crlf);
            }
            d.content += r.content;
            d.consumed += r.consumed;
            d.finished = r.finished;
            in.remove_prefix(r.consumed);
        }
    }
    require(decoder.finished() == d.finished);
    d.error = decoder.error();
    d.size = decoder.size();
    if (d.error == smtp::Errc::ok) require(d.size == d.content.size());
    return d;
}

void check_decoder(std::string_view data, unsigned options_byte) {
    static constexpr std::uint64_t sizes[] = {16, 64, 1000, static_cast<std::uint64_t>(-1)};
    static constexpr std::size_t lines[] = {3, 10, 80, 1000};
    smtp::Limits limits;
    limits.message_size = sizes[(options_byte >> 2) & 3];
    limits.text_line = lines[(options_byte >> 4) & 3];
    smtp::DataOptions options;
    if (options_byte & 1) options.bare_line_endings = smtp::DataOptions::BareLineEndings::normalize;
    if (options_byte & 2) options.long_lines = smtp::DataOptions::LongLines::accept;

    const Decoded whole = decode(data, 0, true, limits, options);
    const Decoded chunked = decode(data, options_byte >> 6, false, limits, options);
    require(whole == chunked);
    if (!whole.finished) require(whole.consumed == data.size());
}

void check_round_trip(std::string_view x, unsigned options_byte) {
    smtp::DataEncoder encoder;
    std::string encoded;
    for (std::size_t at = 0; at < x.size();) {
        const std::size_t n = std::min(chunk_length((options_byte >> 6) ^ 1, x, at), x.size() - at);
        const std::size_t before = encoded.size();
        encoder.encode(x.substr(at, n), encoded);
        require(encoded.size() - before <= 2 * n + 2);
        at += n;
    }
    encoder.finish(encoded);

    smtp::Limits limits;
    limits.message_size = static_cast<std::uint64_t>(-1);
    smtp::DataOptions options;
    options.long_lines = smtp::DataOptions::LongLines::accept;
    const Decoded d = decode(encoded, options_byte >> 6, false, limits, options);
    require(d.finished);
    require(d.error == smtp::Errc::ok);
    require(d.consumed == encoded.size());
    require(d.content == canonical(x));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
    if (size == 0) return 0;
    const unsigned options_byte = bytes[0];
    const std::string_view data(reinterpret_cast<const char*>(bytes) + 1, size - 1);
    check_decoder(data, options_byte);
    check_round_trip(data, options_byte);
    return 0;
}
