// bench_session: whole SMTP conversations in memory, ClientSession talking to
// ServerSession on one core with no sockets: how many messages per second the
// protocol layer itself can carry, which bounds what any daemon built on it can do.
//
// One iteration is one conversation: greeting, EHLO, then N messages of the given
// size (one recipient each, MAIL/RCPT/DATA pipelined), QUIT. items_processed counts
// messages and bytes_processed message content; connection setup is amortized over
// N (100 messages of 1 KB, 10 of 100 KB). A 1 KB run without pipelining is there
// for comparison.
// Run: build/bench/bench_session --benchmark_min_time=1. Figures are reported,
// never asserted; a conversation that goes wrong stops the benchmark with an error.
#include <smtp/client_session.hpp>
#include <smtp/server_session.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

// About `size` octets (whole lines) of 76-octet CRLF lines, every 20th starting
// with a dot, so dot-stuffing is part of the work.
std::string make_body(std::size_t size) {
    std::string body;
    for (std::size_t line = 0; body.size() < size; ++line) {
        if (line % 20 == 7) body += '.';
        body.append(74, static_cast<char>('a' + line % 26));
        body += "\r\n";
    }
    return body;
}

struct Totals {
    std::size_t delivered = 0;  // recipients the client saw delivered
    std::uint64_t content = 0;  // content octets the server application received
    bool clean = false;         // both sides closed after QUIT
};

// One conversation carrying `messages` copies of `body`.
Totals converse(const std::string& body, std::size_t messages, bool pipelining) {
    smtp::ServerConfig server_config;
    server_config.extensions.pipelining = pipelining;
    smtp::ServerSession server{server_config};
    smtp::ClientConfig client_config;
    client_config.use_pipelining = pipelining;
    smtp::ClientSession client{client_config};

    smtp::OutgoingMessage message;
    message.sender = "sender@example.org";
    message.recipients = {"recipient@example.net"};
    message.size = body.size();
    for (std::size_t i = 0; i < messages; ++i) client.submit(message);
    client.quit();

    Totals totals;
    std::string to_server;  // what the client sent that the server has not taken yet
    std::size_t body_at = 0;
    bool writing = false;
    // Every round moves something; a bound keeps a broken session from hanging the run.
    for (std::size_t round = 0; round < 100 * messages * (body.size() / 1024 + 10); ++round) {
        while (auto ev = client.next_event()) {
            if (ev->kind == smtp::ClientEvent::Kind::need_body) writing = true;
            if (ev->kind == smtp::ClientEvent::Kind::recipient_result &&
                ev->outcome == smtp::Outcome::delivered)
                ++totals.delivered;
        }
        if (writing) {  // 16 KB at a time, as a program writing to a socket would
            const std::size_t n = std::min<std::size_t>(16 * 1024, body.size() - body_at);
            client.write_body(std::string_view(body).substr(body_at, n));
            body_at += n;
            if (body_at == body.size()) {
                client.end_body();
                writing = false;
                body_at = 0;
            }
        }
        to_server.append(client.pending_output());
        client.consume_output(client.pending_output().size());

        std::size_t fed = 0;
        for (;;) {  // feed what fits, let the server work, repeat while it takes more
            const std::size_t taken = server.feed(std::string_view(to_server).substr(fed));
            fed += taken;
            bool events = false;
            while (auto ev = server.next_event()) {
                events = true;
                if (ev->kind == smtp::ServerEvent::Kind::data_chunk) totals.content += ev->data.size();
                if (ev->needs_verdict) server.accept();
            }
            client.feed(server.pending_output());
            server.consume_output(server.pending_output().size());
            if (taken == 0 && !events) break;
        }
        to_server.erase(0, fed);

        if (client.should_close() && server.should_close()) {
            totals.clean = to_server.empty();
            return totals;
        }
    }
    return totals;
}

void conversation(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    const bool pipelining = state.range(1) != 0;
    const std::size_t messages = std::clamp<std::size_t>(1'000'000 / size, 10, 100);
    const std::string body = make_body(size);
    for (auto _ : state) {
        const Totals t = converse(body, messages, pipelining);
        if (!t.clean || t.delivered != messages || t.content != messages * body.size()) {
            state.SkipWithError("the conversation did not deliver every message byte-exact");
            break;
        }
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * messages));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * messages * body.size()));
    state.SetLabel(std::to_string(messages) + " messages/conversation" + (pipelining ? ", pipelined" : ""));
}
BENCHMARK(conversation)
    ->ArgNames({"size", "pipelining"})
    ->Args({1024, 1})
    ->Args({100 * 1024, 1})
    ->Args({1024, 0})
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
