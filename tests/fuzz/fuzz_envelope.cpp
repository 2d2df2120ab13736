// Fuzz target: the queue's envelope parser (apps/common/queue.hpp).
//
// Invariant: no crash, no hang, no leak on any bytes; parse_envelope() either
// refuses the text with an error, or accepts it and then format_envelope() of what it
// read parses again to an equal Envelope (the format round-trips, so a stored
// envelope means exactly one thing). An envelope file is written by smtpd and read by
// smtpc; this is what stands between a damaged or hostile file and smtpc.
#include "common/queue.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    smtp::queue::Envelope first;
    if (smtp::queue::parse_envelope(text, first)) return 0;  // refused: fine

    const std::string again = smtp::queue::format_envelope(first);
    smtp::queue::Envelope second;
    if (smtp::queue::parse_envelope(again, second)) std::abort();  // its own output refused
    if (!(first == second)) std::abort();                          // and read differently
    if (smtp::queue::format_envelope(second) != again) std::abort();
    return 0;
}
