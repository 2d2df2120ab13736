// tests/common/test_config.cpp: the settings table, the config file and the command
// line (apps/common/config.hpp), on a settings struct shaped like smtpd's.
#include <common/config.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

using namespace std::chrono_literals;
using smtp::config::Action;
using smtp::config::Outcome;
using smtp::config::Table;

enum class LogLevel { debug, info, warning, error };

// Mirrors smtpd's options; the initializers are the defaults.
struct Settings {
    std::uint16_t port = 2525;
    std::vector<std::string> bind{"127.0.0.1", "::1"};
    std::string mail_root = "./var/mail";
    std::string queue_root = "./var/queue";
    std::string user;
    std::string group;
    std::string log_file;
    LogLevel log_level = LogLevel::info;
    std::vector<std::string> relay_net;
    std::vector<std::string> local_domain;
    std::string hostname;
    unsigned workers = 4;
    unsigned max_connections = 100;
    std::chrono::seconds timeout = 300s;
    std::uint64_t max_message_size = 10240000;
    unsigned max_recipients = 100;
    std::string dns_server;
    bool rdns = true;
};

// A stand-in for the daemon's CIDR check: enough to see the reason reported.
std::optional<std::string> check_cidr(std::string_view s) {
    if (s.find('/') == std::string_view::npos) return "not a CIDR block: " + std::string{s};
    return std::nullopt;
}

Table table_for(Settings& s) {
    Table t{"smtpd", "SMTP server"};
    t.add("port", &s.port, "TCP port to listen on").range(1, 65535);
    t.add("bind", &s.bind, "address to listen on");
    t.add("mail_root", &s.mail_root, "directory of the local Maildirs");
    t.add("queue_root", &s.queue_root, "directory of the outgoing queue");
    t.add("user", &s.user, "user to run as after binding; empty: stay");
    t.add("group", &s.group, "group to run as after binding; empty: the user's");
    t.add("log_file", &s.log_file, "log file; empty: standard error");
    t.add_choice("log_level", &s.log_level,
                 {{"debug", LogLevel::debug},
                  {"info", LogLevel::info},
                  {"warning", LogLevel::warning},
                  {"error", LogLevel::error}},
                 "least severe event logged");
    t.add("relay_net", &s.relay_net, "client network allowed to relay (CIDR)").validate(check_cidr);
    t.add("local_domain", &s.local_domain, "domain delivered locally");
    t.add("hostname", &s.hostname, "name in the greeting and Received:").shown_default("(this host's name)");
    t.add("workers", &s.workers, "worker processes").range(1, 256);
    t.add("max_connections", &s.max_connections, "connections per worker").range(1, 100000);
    t.add("timeout", &s.timeout, "idle timeout of a session").range(1, 86400);
    t.add_size("max_message_size", &s.max_message_size, "largest message accepted (SIZE)");
    t.add("max_recipients", &s.max_recipients, "recipients per message").range(1, 100000);
    t.add("dns_server", &s.dns_server, "DNS server; empty: /etc/resolv.conf");
    t.add("rdns", &s.rdns, "look up the client's reverse DNS name");
    return t;
}

// A temporary directory for config files, removed with its files at the end.
class TempDir {
public:
    TempDir() {
        char tmpl[] = "/tmp/test_config.XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path_ = tmpl;
    }
    ~TempDir() {
        for (const auto& f : files_) std::remove(f.c_str());
        ::rmdir(path_.c_str());
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    // Writes name with text; returns its path.
    std::string write(const std::string& name, const std::string& text) {
        std::string p = path_ + "/" + name;
        std::ofstream{p} << text;
        files_.push_back(p);
        return p;
    }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    std::vector<std::string> files_;
};

Outcome load(Settings& s, std::vector<std::string> args) {
    Table t = table_for(s);
    return smtp::config::load(t, args);
}

std::string messages(const Outcome& o) {
    std::string out;
    for (const auto& e : o.errors) out += e.message() + "\n";
    return out;
}

}  // namespace

TEST_SUITE("config") {
    TEST_CASE("with no file and no options every setting keeps its default") {
        Settings s;
        Outcome o = load(s, {});
        CHECK(o.ok());
        CHECK(o.action == Action::run);
        CHECK(o.config_file.empty());
        CHECK(s.port == 2525);
        CHECK(s.bind == std::vector<std::string>{"127.0.0.1", "::1"});
        CHECK(s.mail_root == "./var/mail");
        CHECK(s.log_level == LogLevel::info);
        CHECK(s.timeout == 300s);
        CHECK(s.max_message_size == 10240000);
        CHECK(s.rdns);
    }

    TEST_CASE("a file sets values of every type") {
        TempDir d;
        const auto f = d.write("smtpd.cfg",
                               "port = 25;\n"
                               "bind = [\"0.0.0.0\"];\n"
                               "mail_root = \"/srv/mail\";\n"
                               "log_level = \"debug\";\n"
                               "relay_net = (\"10.0.0.0/8\", \"192.168.0.0/16\");\n"
                               "workers = 8;\n"
                               "timeout = \"5m\";\n"
                               "max_message_size = \"20M\";\n"
                               "rdns = false;\n");
        Settings s;
        Outcome o = load(s, {"--config", f});
        REQUIRE_MESSAGE(o.ok(), messages(o));
        CHECK(o.config_file == f);
        CHECK(s.port == 25);
        CHECK(s.bind == std::vector<std::string>{"0.0.0.0"});
        CHECK(s.mail_root == "/srv/mail");
        CHECK(s.log_level == LogLevel::debug);
        CHECK(s.relay_net == std::vector<std::string>{"10.0.0.0/8", "192.168.0.0/16"});
        CHECK(s.workers == 8);
        CHECK(s.timeout == 300s);
        CHECK(s.max_message_size == 20u * 1024 * 1024);
        CHECK_FALSE(s.rdns);
        CHECK(s.queue_root == "./var/queue");  // not in the file: the default
    }

    TEST_CASE("the command line wins over the file") {
        TempDir d;
        const auto f = d.write("smtpd.cfg", "port = 25;\nbind = [\"0.0.0.0\"];\nlog_level = \"error\";\n");
        Settings s;
        Outcome o =
            load(s, {"-c", f, "--port", "2626", "--bind", "::", "--log-level=warning", "--timeout", "60"});
        REQUIRE_MESSAGE(o.ok(), messages(o));
        CHECK(s.port == 2626);
        CHECK(s.bind == std::vector<std::string>{"::"});  // replaced, not appended to
        CHECK(s.log_level == LogLevel::warning);
        CHECK(s.timeout == 60s);
    }

    TEST_CASE("a list option is repeated, one value each time") {
        Settings s;
        Outcome o = load(s, {"--local-domain", "example.org", "--local-domain", "example.net"});
        REQUIRE_MESSAGE(o.ok(), messages(o));
        CHECK(s.local_domain == std::vector<std::string>{"example.org", "example.net"});
        CHECK_FALSE(load(s, {"--local-domain", "example.org", "example.net"}).ok());  // one value each
    }

    TEST_CASE("--no-rdns and --rdns set the boolean, the last one wins") {
        Settings s;
        REQUIRE(load(s, {"--no-rdns"}).ok());
        CHECK_FALSE(s.rdns);
        REQUIRE(load(s, {"--rdns"}).ok());
        CHECK(s.rdns);
        REQUIRE(load(s, {"--rdns", "--no-rdns"}).ok());
        CHECK_FALSE(s.rdns);
    }

    TEST_CASE("an unknown key is an error with file, line and key") {
        TempDir d;
        const auto f = d.write("smtpd.cfg", "port = 25;\n\nprot = 26;\n");
        Settings s;
        Outcome o = load(s, {"--config", f});
        REQUIRE(o.errors.size() == 1);
        CHECK(o.errors[0].line == 3);
        CHECK(o.errors[0].key == "prot");
        CHECK(o.errors[0].message() == f + ":3: prot: unknown setting (did you mean port?)");
        CHECK(s.port == 2525);  // nothing written on error
    }

    TEST_CASE("a value of the wrong type is an error with its line") {
        TempDir d;
        const auto f = d.write("smtpd.cfg", "workers = 2;\nport = \"abc\";\nrdns = 1;\nbind = [1, 2];\n");
        Settings s;
        Outcome o = load(s, {"--config", f});
        REQUIRE(o.errors.size() == 3);
        CHECK(o.errors[0].message() == f + ":2: port: expected an integer, not a string");
        CHECK(o.errors[1].message() == f + ":3: rdns: expected true or false, not an integer");
        CHECK(o.errors[2].message() == f + ":4: bind: element 1: expected a string, not an integer");
        CHECK(s.workers == 4);
    }

    TEST_CASE("port is checked at 0, 1, 65535 and 65536 in the file and on the command line") {
        TempDir d;
        Settings s;
        for (int port : {0, 70000, 65536, -1}) {
            const auto f = d.write("p.cfg", "port = " + std::to_string(port) + ";\n");
            Outcome o = load(s, {"--config", f});
            REQUIRE(o.errors.size() == 1);
            CHECK(o.errors[0].message() == f + ":1: port: must be 1..65535");
        }
        for (int port : {1, 65535}) {
            const auto f = d.write("p.cfg", "port = " + std::to_string(port) + ";\n");
            REQUIRE(load(s, {"--config", f}).ok());
            CHECK(s.port == port);
        }
        Outcome o = load(s, {"--port", "65536"});
        REQUIRE(o.errors.size() == 1);
        CHECK(o.errors[0].message() == "command line: --port: must be 1..65535");
        CHECK(load(s, {"--port", "abc"}).errors.size() == 1);
        CHECK(load(s, {"--port", "-5"}).errors.size() == 1);
    }

    TEST_CASE("sizes and durations take a unit suffix and reject others") {
        Settings s;
        REQUIRE(load(s, {"--max-message-size", "512k", "--timeout", "2h"}).ok());
        CHECK(s.max_message_size == 512u * 1024);
        CHECK(s.timeout == 7200s);
        REQUIRE(load(s, {"--max-message-size", "1000"}).ok());
        CHECK(s.max_message_size == 1000);
        CHECK_FALSE(load(s, {"--max-message-size", "10X"}).ok());
        CHECK_FALSE(load(s, {"--max-message-size", "99999999999999999999"}).ok());
        CHECK_FALSE(load(s, {"--timeout", "2d"}).ok());  // 172800 > 86400
        CHECK_FALSE(load(s, {"--timeout", "0"}).ok());
    }

    TEST_CASE("a choice takes only its names") {
        Settings s;
        Outcome o = load(s, {"--log-level", "verbose"});
        REQUIRE(o.errors.size() == 1);
        CHECK(o.errors[0].message() ==
              "command line: --log-level: must be one of debug, info, warning, error, not \"verbose\"");
    }

    TEST_CASE("a syntax error in the file is reported with its line") {
        TempDir d;
        const auto f = d.write("smtpd.cfg", "port = 25;\nmail_root = ;\nworkers = 2;\n");
        Settings s;
        Outcome o = load(s, {"--config", f});
        REQUIRE(o.errors.size() == 1);
        CHECK(o.errors[0].source == f);
        CHECK(o.errors[0].line == 2);
        CHECK(o.errors[0].message().starts_with(f + ":2: "));
    }

    TEST_CASE("a missing file is an error naming the file and the cause") {
        TempDir d;
        Settings s;
        const auto f = d.path() + "/none.cfg";
        Outcome o = load(s, {"--config", f});
        REQUIRE(o.errors.size() == 1);
        CHECK(o.errors[0].message() == f + ": cannot read: No such file or directory");
    }

    TEST_CASE("a missing default file is no error, an existing one is read") {
        TempDir d;
        Settings s;
        Table t = table_for(s);
        CHECK(smtp::config::load(t, std::vector<std::string>{}, d.path() + "/none.cfg").ok());
        const auto f = d.write("smtpd.cfg", "port = 26;\n");
        Outcome o = smtp::config::load(t, std::vector<std::string>{}, f);
        REQUIRE(o.ok());
        CHECK(o.config_file == f);
        CHECK(s.port == 26);
    }

    TEST_CASE("--check-config validates and says valid without running") {
        TempDir d;
        const auto f = d.write("smtpd.cfg", "port = 25;\n");
        Settings s;
        Outcome o = load(s, {"--check-config", "--config", f});
        REQUIRE(o.ok());
        CHECK(o.action == Action::check);
        CHECK(o.output == f + ": configuration valid\n");

        const auto bad = d.write("bad.cfg", "port = 0;\n");
        o = load(s, {"--check-config", "--config", bad});
        CHECK(o.errors.size() == 1);
    }

    TEST_CASE("--help lists every setting with its default") {
        Settings s;
        Table t = table_for(s);
        Outcome o = smtp::config::load(t, std::vector<std::string>{"--help"});
        REQUIRE(o.ok());
        CHECK(o.action == Action::help);
        for (const auto& row : t.settings()) {
            INFO(row.name());
            CHECK(o.output.find(row.option()) != std::string::npos);
            CHECK(o.output.find(row.default_text()) != std::string::npos);
        }
        CHECK(o.output.find("--no-rdns") != std::string::npos);
        CHECK(o.output.find("--check-config") != std::string::npos);
    }

    TEST_CASE("an unknown option is an error") {
        Settings s;
        Outcome o = load(s, {"--prot", "25"});
        REQUIRE(o.errors.size() == 1);
        CHECK(o.errors[0].source == "command line");
    }

    TEST_CASE("the Markdown table has a row for every setting") {
        Settings s;
        Table t = table_for(s);
        const std::string md = smtp::config::markdown(t);
        CHECK(md.starts_with("| Setting | Command line | Type | Default | Description |\n"));
        for (const auto& row : t.settings()) {
            INFO(row.name());
            CHECK(md.find("| `" + row.name() + "` | `" + row.option() + "`") != std::string::npos);
        }
        CHECK(md.find("| `port` | `--port` | integer 1..65535 | `2525` | TCP port to listen on |") !=
              std::string::npos);
        CHECK(md.find("`[\"127.0.0.1\", \"::1\"]`") != std::string::npos);
        CHECK(md.find("debug\\|info\\|warning\\|error") != std::string::npos);
        CHECK(md.find("`--rdns`, `--no-rdns`") != std::string::npos);
        CHECK(std::count(md.begin(), md.end(), '\n') == static_cast<long>(t.settings().size()) + 2);
    }

    TEST_CASE("a validator's reason is reported with the key, from the file and the command line") {
        TempDir d;
        const auto f = d.write("smtpd.cfg", "relay_net = [\"10.0.0.0/8\",\n  \"192.168.1.1\"];\n");
        Settings s;
        Outcome o = load(s, {"--config", f});
        REQUIRE(o.errors.size() == 1);
        CHECK(o.errors[0].message() == f + ":1: relay_net: not a CIDR block: 192.168.1.1");
        o = load(s, {"--relay-net", "10.0.0.1"});
        REQUIRE(o.errors.size() == 1);
        CHECK(o.errors[0].message() == "command line: --relay-net: not a CIDR block: 10.0.0.1");
    }

    TEST_CASE("a duplicate setting name is a programming error") {
        Settings s;
        Table t = table_for(s);
        CHECK_THROWS_AS(t.add("port", &s.port, "again"), std::logic_error);
        CHECK_THROWS_AS(t.add("Mail-Root", &s.mail_root, "bad name"), std::logic_error);
    }
}
