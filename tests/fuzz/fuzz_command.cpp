// Fuzz target for the command side: CommandLineReader framing and parse_command().
//
// Invariant: no crash, no hang (every non-need_more result consumes input); consumed
// never exceeds the input; the reader never leaves the caller holding a line over
// the limit; the input fed whole and fed in data-derived chunks gives the same
// sequence of lines and errors; every view in a parsed Command and in the error
// detail lies inside the line; on success the verb is known; every error has a
// reply code from 500 to 555; parsing into a used Command gives the same result
// as parsing into a fresh one (nothing leaks from the previous line).
//
// The first byte picks the options: bit 0 smtputf8, 1 space_after_colon,
// 2 missing_brackets, 3 helo_address_literal, 4 small limits; bits 5-7 seed the
// chunk sizes.
#include <smtp/command.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

void require(bool condition) {
    if (!condition) std::abort();
}

bool inside(std::string_view part, std::string_view line) {
    return part.empty() ||
           (part.data() >= line.data() && part.data() + part.size() <= line.data() + line.size());
}

bool same(const smtp::Command& a, const smtp::Command& b) {
    if (a.parameter_count != b.parameter_count) return false;
    for (std::size_t i = 0; i < smtp::Command::max_parameters; ++i)
        if (a.parameters[i].keyword != b.parameters[i].keyword ||
            a.parameters[i].value != b.parameters[i].value ||
            a.parameters[i].has_value != b.parameters[i].has_value)
            return false;
    return a.verb == b.verb && a.verb_text == b.verb_text && a.argument == b.argument &&
           a.domain == b.domain && a.path.local_part == b.path.local_part && a.path.domain == b.path.domain &&
           a.path.mailbox == b.path.mailbox && a.path.postmaster == b.path.postmaster && a.size == b.size &&
           a.body == b.body && a.smtputf8 == b.smtputf8 && a.ret == b.ret && a.envid == b.envid &&
           a.notify == b.notify && a.orcpt_type == b.orcpt_type && a.orcpt == b.orcpt &&
           a.chunk_size == b.chunk_size && a.last == b.last && a.mechanism == b.mechanism &&
           a.initial_response == b.initial_response && a.text == b.text;
}

void check_parse(std::string_view line, smtp::Command& reused, const smtp::ParseOptions& options,
                 const smtp::Limits& limits) {
    const smtp::ParseResult r = smtp::parse_command(line, reused, options, limits);
    smtp::Command fresh;
    const smtp::ParseResult again = smtp::parse_command(line, fresh, options, limits);
    require(r.error == again.error && r.detail == again.detail && same(reused, fresh));

    const smtp::Command& c = reused;
    require(inside(r.detail, line));
    if (r.ok()) {
        require(c.verb != smtp::Verb::unknown);
    } else {
        const int code = smtp::error_info(r.error).reply_code;
        require(code >= 500 && code <= 555);
    }
    for (std::string_view v :
         {c.verb_text, c.argument, c.domain, c.path.local_part, c.path.domain, c.path.mailbox, c.envid,
          c.orcpt_type, c.orcpt, c.mechanism, c.initial_response, c.text})
        require(inside(v, line));
    require(c.parameter_count <= smtp::Command::max_parameters);
    for (std::size_t i = 0; i < c.parameter_count; ++i)
        require(inside(c.parameters[i].keyword, line) && inside(c.parameters[i].value, line));
}

// Feeds `input` in pieces of the given sizes (cycled; empty means whole) and
// returns what came out: "+text" for a line, "!name" for an error.
std::vector<std::string> read_lines(std::string_view input, const std::vector<std::size_t>& sizes,
                                    const smtp::Limits& limits, const smtp::ParseOptions& options,
                                    bool parse) {
    smtp::CommandLineReader reader(limits);
    smtp::Command reused;
    std::string buffer;
    std::vector<std::string> out;
    std::size_t at = 0, k = 0;
    while (at < input.size()) {
        const std::size_t n = sizes.empty() ? input.size() : sizes[k++ % sizes.size()];
        buffer.append(input.substr(at, n));
        at += n;
        for (;;) {
            const auto line = reader.next(buffer);
            require(line.consumed <= buffer.size());
            if (line.status == smtp::CommandLineReader::Status::need_more) {
                buffer.erase(0, line.consumed);
                require(buffer.size() < limits.command_line || limits.command_line == 0);
                break;
            }
            require(line.consumed > 0);
            if (line.status == smtp::CommandLineReader::Status::ok) {
                require(line.error == smtp::Errc::ok && inside(line.text, buffer));
                if (parse) check_parse(line.text, reused, options, limits);
                out.push_back("+" + std::string(line.text));
            } else {
                require(line.error == smtp::Errc::line_too_long || line.error == smtp::Errc::bare_lf ||
                        line.error == smtp::Errc::bare_cr || line.error == smtp::Errc::nul_byte);
                out.push_back("!" + std::string(smtp::error_info(line.error).name));
            }
            buffer.erase(0, line.consumed);
        }
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t flags = data[0];
    const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

    smtp::ParseOptions options;
    options.smtputf8 = flags & 1;
    options.space_after_colon = flags & 2;
    options.missing_brackets = flags & 4;
    options.helo_address_literal = flags & 8;
    smtp::Limits limits;
    if (flags & 16) {
        // Small limits, so the fuzzer reaches every limit with short inputs.
        limits.command_line = 40;
        limits.local_part = 8;
        limits.domain = 20;
        limits.domain_label = 5;
        limits.path = 24;
        limits.envid = 6;
        limits.orcpt = 10;
    }

    // Chunk sizes from the data itself, 1 to 8 times the seed.
    std::vector<std::size_t> sizes;
    const std::size_t scale = (flags >> 5) + 1u;
    for (std::size_t i = 0; i < input.size() && sizes.size() < 64; i += 7)
        sizes.push_back(static_cast<unsigned char>(input[i]) % (scale * 8) + 1);

    const auto whole = read_lines(input, {}, limits, options, true);
    const auto chunked = read_lines(input, sizes, limits, options, false);
    const auto bytes = read_lines(input, {1}, limits, options, false);
    require(whole == chunked && whole == bytes);
    return 0;
}
