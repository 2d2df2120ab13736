// Tests of apps/smtpc/settings.hpp: the TLS settings (tls_level, tls_policy,
// tls_ca_file) through the table, and what resolve() makes of them.
//
// The CA files are written to a fresh temporary directory; nothing touches the network.
#include "settings.hpp"

#include <doctest/doctest.h>

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

using smtp::smtpc::Resolved;
using smtp::smtpc::Settings;
using smtp::smtpc::TlsLevel;

// load() on the command line `args` into `s`; the errors' messages.
std::vector<std::string> load(Settings& s, std::vector<std::string> args) {
    const auto table = smtp::smtpc::make_table(s);
    const auto out = smtp::config::load(table, args);
    std::vector<std::string> errors;
    for (const auto& e : out.errors) errors.push_back(e.message());
    return errors;
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// A temporary directory, removed with its files at the end of the test.
struct TempDir {
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "smtpc-settings-XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string file(const std::string& name, const std::string& text) const {
        const std::string p = (path / name).string();
        std::ofstream{p} << text;
        return p;
    }
    std::filesystem::path path;
};

}  // namespace

TEST_SUITE("settings") {
    TEST_CASE("tls_level defaults to may, Postfix's opportunistic level, and takes the four names") {
        Settings s;
        CHECK(s.tls_level == TlsLevel::may);
        CHECK(load(s, {"--tls-level", "verify"}).empty());
        CHECK(s.tls_level == TlsLevel::verify);
        CHECK(load(s, {"--tls-level", "none"}).empty());
        CHECK(s.tls_level == TlsLevel::none);
        const auto errors = load(s, {"--tls-level", "dane"});
        REQUIRE(errors.size() == 1);
        CHECK(contains(errors[0], "--tls-level"));
        CHECK(s.tls_level == TlsLevel::none);  // unchanged on error
    }

    TEST_CASE("tls_policy entries are DOMAIN=LEVEL with a valid domain and level") {
        Settings s;
        CHECK(load(s, {"--tls-policy", "example.org=encrypt", "--tls-policy", "Example.NET=verify"}).empty());
        for (const char* bad : {"example.org", "example.org=", "example.org=secure", "=may",
                                "bad..domain=may", "example.org=May"}) {
            CAPTURE(bad);
            Settings t;
            const auto errors = load(t, {"--tls-policy", bad});
            REQUIRE(errors.size() == 1);
            CHECK(contains(errors[0], "--tls-policy"));
        }
    }

    TEST_CASE("resolve gives each domain its policy level, case-insensitively, else tls_level") {
        Settings s;
        REQUIRE(load(s, {"--tls-level", "none", "--tls-policy", "Secure.Example=verify", "--tls-policy",
                         "legacy.example=may", "--tls-policy", "secure.example=encrypt"})
                    .empty());
        Resolved r;
        REQUIRE(smtp::smtpc::resolve(s, r).empty());
        CHECK(r.tls_level == TlsLevel::none);
        CHECK(r.tls_level_for("secure.example") == TlsLevel::encrypt);  // the last entry wins
        CHECK(r.tls_level_for("legacy.example") == TlsLevel::may);
        CHECK(r.tls_level_for("other.example") == TlsLevel::none);
        CHECK(r.tls_level_for("sub.secure.example") == TlsLevel::none);  // exact domains only
        CHECK(r.tls_context != nullptr);
    }

    TEST_CASE("resolve makes the client TLS context, and a bad CA file is an error naming tls_ca_file") {
        TempDir dir;
        Settings s;
        Resolved r;
        s.tls_ca_file = (dir.path / "missing.pem").string();
        std::string error = smtp::smtpc::resolve(s, r);
        CHECK(contains(error, "tls_ca_file"));
        CHECK(contains(error, "missing.pem"));
        CHECK(r.tls_context == nullptr);

        s.tls_ca_file = dir.file("garbage.pem", "no certificate in here\n");
        error = smtp::smtpc::resolve(s, r);
        CHECK(contains(error, "tls_ca_file"));
        CHECK(r.tls_context == nullptr);

        s.tls_ca_file.clear();  // the system's store
        CHECK(smtp::smtpc::resolve(s, r).empty());
        CHECK(r.tls_context != nullptr);
    }
}
