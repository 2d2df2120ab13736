// libsmtp/line_scan.hpp (private): find the next CR or LF, 16 bytes at a time.
//
// The DATA codec spends nearly all its time looking for line breaks, so this is
// its hot loop: with SSE2 (every x86-64) it tests 32 bytes per iteration with two
// compares and one movemask per 16; elsewhere it falls back to a plain byte loop.
// Pure function of its arguments; safe from any thread.
#ifndef SMTP_LINE_SCAN_HPP
#define SMTP_LINE_SCAN_HPP

#include <bit>
#include <cstddef>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace smtp::detail {

// Returns the index of the first '\r' or '\n' in data[from, size), or `size`.
inline std::size_t find_line_break(const char* data, std::size_t from, std::size_t size) noexcept {
    std::size_t p = from;
#if defined(__SSE2__)
    const __m128i cr = _mm_set1_epi8('\r');
    const __m128i lf = _mm_set1_epi8('\n');
    const auto mask = [&](std::size_t at) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + at));
        return static_cast<unsigned>(
            _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf))));
    };
    // Two blocks per iteration: a text line of ~76 octets is then mostly 2-3 rounds.
    for (; p + 32 <= size; p += 32) {
        const unsigned low = mask(p);
        const unsigned high = mask(p + 16);
        if ((low | high) != 0) return p + static_cast<std::size_t>(std::countr_zero(low | (high << 16)));
    }
    if (p + 16 <= size) {
        if (const unsigned m = mask(p); m != 0) return p + static_cast<std::size_t>(std::countr_zero(m));
        p += 16;
    }
#endif
    for (; p < size; ++p)
        if (data[p] == '\r' || data[p] == '\n') return p;
    return size;
}

}  // namespace smtp::detail

#endif
