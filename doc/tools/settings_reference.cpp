// settings_reference: prints a daemon's configuration reference (Markdown), made from
// the same table of settings the daemon reads its file and command line with, so the
// documentation cannot drift from the code.
//   settings_reference smtpd > doc/smtpd-settings.md
#include "settings.hpp"

#include <cstdio>
#include <string_view>

int main(int argc, char** argv) {
    if (argc != 2 || std::string_view(argv[1]) != "smtpd") {
        std::fputs("usage: settings_reference smtpd\n", stderr);
        return 2;
    }
    smtp::smtpd::Settings settings;
    const auto table = smtp::smtpd::make_table(settings);
    std::printf(
        "# smtpd settings\n\n"
        "Generated from the code's table of settings (`apps/smtpd/settings.cpp`) by\n"
        "`build/doc/settings_reference smtpd`; a test fails when this file is out of date.\n"
        "Each setting is a key of the configuration file (libconfig syntax, see\n"
        "`apps/smtpd/smtpd.cfg.example`) and a command-line option; the command line wins.\n\n");
    std::fputs(smtp::config::markdown(table).c_str(), stdout);
    return 0;
}
