// settings_reference: prints a daemon's configuration reference (Markdown), made from
// the same table of settings the daemon reads its file and command line with, so the
// documentation cannot drift from the code.
//   settings_reference smtpd > doc/smtpd-settings.md
//   settings_reference smtpc > doc/smtpc-settings.md
#include "../../apps/smtpc/settings.hpp"
#include "../../apps/smtpd/settings.hpp"

#include <cstdio>
#include <string_view>

namespace {

void print(const smtp::config::Table& table, std::string_view source) {
    std::printf(
        "# %s settings\n\n"
        "Generated from the code's table of settings (`apps/%s/settings.cpp`) by\n"
        "`build/doc/settings_reference %s`; a test fails when this file is out of date.\n"
        "Each setting is a key of the configuration file (libconfig syntax, see\n"
        "`apps/%s/%s.cfg.example`) and a command-line option; the command line wins.\n\n",
        table.program().c_str(), source.data(), source.data(), source.data(), source.data());
    std::fputs(smtp::config::markdown(table).c_str(), stdout);
}

}  // namespace

int main(int argc, char** argv) {
    const std::string_view daemon = argc == 2 ? argv[1] : "";
    if (daemon == "smtpd") {
        smtp::smtpd::Settings settings;
        print(smtp::smtpd::make_table(settings), "smtpd");
    } else if (daemon == "smtpc") {
        smtp::smtpc::Settings settings;
        print(smtp::smtpc::make_table(settings), "smtpc");
    } else {
        std::fputs("usage: settings_reference smtpd|smtpc\n", stderr);
        return 2;
    }
    return 0;
}
