// bench_core: throughput of libsmtp's protocol core, each figure next to its
// reference measured in the same run.
//
//  - commands/s: CommandLineReader + parse_command over a realistic command mix;
//  - DATA decoding of a 10 MB message (76-octet lines, some dot-stuffed) in GB/s,
//    next to a plain memchr('\n') scan of the same buffer, the physical limit of
//    any line-oriented decoder; the ratio is printed at the end;
//  - DATA encoding and reply parsing, for completeness.
// Run: make bench (or build/bench/bench_core --benchmark_min_time=1).
// Figures are reported, never asserted.
#include <smtp/command.hpp>
#include <smtp/data.hpp>
#include <smtp/reply.hpp>

#include <benchmark/benchmark.h>

#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <string_view>

namespace {

// One SMTP transaction as a typical client sends it: 8 commands.
constexpr std::string_view command_mix =
    "EHLO client.example.org\r\n"
    "MAIL FROM:<sender.name@example.org> SIZE=12345 BODY=8BITMIME\r\n"
    "RCPT TO:<first.recipient@example.net>\r\n"
    "RCPT TO:<second@mail.example.com> NOTIFY=SUCCESS,FAILURE\r\n"
    "RCPT TO:<Postmaster>\r\n"
    "DATA\r\n"
    "RSET\r\n"
    "QUIT\r\n";
constexpr int commands_in_mix = 8;

// 10 MB of 76-octet lines; every 20th line starts with a dot, stuffed.
std::string make_message_data(std::size_t target = 10 * 1024 * 1024) {
    std::string data;
    data.reserve(target + 100);
    const std::string text(74, 'x');
    for (std::size_t line = 0; data.size() < target; ++line) {
        if (line % 20 == 7) data += "..";
        data += text;
        data += "\r\n";
    }
    data += ".\r\n";
    return data;
}

const std::string& message_data() {
    static const std::string data = make_message_data();
    return data;
}

void parse_commands(benchmark::State& state) {
    std::string input;
    for (int i = 0; i < 64; ++i) input += command_mix;
    smtp::Command command;
    std::size_t parsed = 0;
    for (auto _ : state) {
        smtp::CommandLineReader reader;
        std::string_view rest = input;
        for (;;) {
            const auto line = reader.next(rest);
            if (line.status == smtp::CommandLineReader::Status::need_more) break;
            rest.remove_prefix(line.consumed);
            const auto result = smtp::parse_command(line.text, command);
            benchmark::DoNotOptimize(result);
            ++parsed;
        }
    }
    if (parsed != static_cast<std::size_t>(state.iterations()) * 64 * commands_in_mix)
        state.SkipWithError("not every command was parsed");
    state.SetItemsProcessed(static_cast<std::int64_t>(parsed));
}
BENCHMARK(parse_commands);

void decode_data(benchmark::State& state) {
    const std::string& data = message_data();
    smtp::Limits limits;
    limits.message_size = data.size();
    std::uint64_t content = 0;
    for (auto _ : state) {
        smtp::DataDecoder decoder(limits);
        std::string_view rest = data;
        while (!rest.empty()) {
            const auto r = decoder.decode(rest);
            content += r.content.size();
            rest.remove_prefix(r.consumed);
            if (r.finished) break;
        }
        if (!decoder.finished() || decoder.error() != smtp::Errc::ok) state.SkipWithError("decoding failed");
    }
    benchmark::DoNotOptimize(content);
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size()));
}
BENCHMARK(decode_data)->Unit(benchmark::kMillisecond);

// The reference: find every line end with memchr, as fast as scanning lines gets.
void memchr_lines(benchmark::State& state) {
    const std::string& data = message_data();
    std::size_t lines = 0;
    for (auto _ : state) {
        const char* p = data.data();
        const char* end = p + data.size();
        while (const void* lf = std::memchr(p, '\n', static_cast<std::size_t>(end - p))) {
            p = static_cast<const char*>(lf) + 1;
            ++lines;
        }
    }
    benchmark::DoNotOptimize(lines);
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size()));
}
BENCHMARK(memchr_lines)->Unit(benchmark::kMillisecond);

void encode_data(benchmark::State& state) {
    const std::string& data = message_data();
    std::string out;
    out.reserve(70 * 1024);
    for (auto _ : state) {
        smtp::DataEncoder encoder;
        for (std::size_t at = 0; at < data.size(); at += 64 * 1024) {
            out.clear();
            encoder.encode(std::string_view(data).substr(at, 64 * 1024), out);
            benchmark::DoNotOptimize(out.data());
        }
        out.clear();
        encoder.finish(out);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size()));
}
BENCHMARK(encode_data)->Unit(benchmark::kMillisecond);

void parse_ehlo_reply(benchmark::State& state) {
    const std::string reply =
        "250-mail.example.net Hello client.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
        "250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";
    smtp::ReplyParser parser;
    for (auto _ : state) {
        const auto r = parser.parse(reply);
        if (r.status != smtp::ReplyParser::Status::complete) state.SkipWithError("reply not parsed");
        benchmark::DoNotOptimize(parser.reply().code);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(parse_ehlo_reply);

// Remembers bytes/s per benchmark so main() can print decode next to memchr.
class RatioReporter : public benchmark::ConsoleReporter {
public:
    std::map<std::string, double> bytes_per_second;
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const Run& run : runs) {
            const auto it = run.counters.find("bytes_per_second");
            if (it != run.counters.end()) bytes_per_second[run.benchmark_name()] = it->second;
        }
        ConsoleReporter::ReportRuns(runs);
    }
};

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    RatioReporter reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    const auto decode = reporter.bytes_per_second.find("decode_data");
    const auto memchr = reporter.bytes_per_second.find("memchr_lines");
    if (decode != reporter.bytes_per_second.end() && memchr != reporter.bytes_per_second.end()) {
        std::cout << "DATA decoding: " << decode->second / 1e9
                  << " GB/s; memchr line scan: " << memchr->second / 1e9 << " GB/s; ratio "
                  << decode->second / memchr->second << '\n';
    }
    benchmark::Shutdown();
    return 0;
}
