// settings_reference: prints a daemon's configuration reference, made from the same
// table of settings the daemon reads its file and command line with, so the
// documentation cannot drift from the code. Two forms:
//  - Markdown, doc/<daemon>-settings.md:
//      settings_reference smtpd > doc/smtpd-settings.md
//  - man (roff), the generated part of the manual pages in doc/man/: the OPTIONS of
//    <daemon>(8) or the SETTINGS of <daemon>.cfg(5). Given a TEMPLATE, it prints the
//    template with its line `.\" @SETTINGS@` replaced by them, and its line
//    `.\" @EXAMPLE@` replaced by the EXAMPLE file (an example configuration) as a
//    literal display; each marker must be there exactly once when used:
//      settings_reference --man smtpd 8 doc/man/smtpd.8.in > doc/man/smtpd.8
//      settings_reference --man smtpd 5 doc/man/smtpd.cfg.5.in apps/smtpd/smtpd.cfg.example
//          > doc/man/smtpd.cfg.5
//    (doc/man/regenerate.sh writes all four pages.) Without a TEMPLATE it prints the
//    generated part alone.
// A test fails when a committed file differs from what this prints.
#include "../../apps/smtpc/settings.hpp"
#include "../../apps/smtpd/settings.hpp"

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <istream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace {

using smtp::config::Setting;
using smtp::config::Table;
using smtp::config::Type;

void print_markdown(const Table& table, std::string_view source) {
    std::printf(
        "# %s settings\n\n"
        "Generated from the code's table of settings (`apps/%s/settings.cpp`) by\n"
        "`build/doc/settings_reference %s`; a test fails when this file is out of date.\n"
        "Each setting is a key of the configuration file (libconfig syntax, see\n"
        "`apps/%s/%s.cfg.example`) and a command-line option; the command line wins.\n\n",
        table.program().c_str(), source.data(), source.data(), source.data(), source.data());
    std::fputs(smtp::config::markdown(table).c_str(), stdout);
}

// ---------------------------------------------------------------- roff

// Text for a roff text line: backslash escaped, non-ASCII as \[uXXXX] (so the page is
// plain ASCII whatever the locale of man), and '-' as a minus sign (\-) where it is
// part of something typed: everywhere when `literal`, else only in words that begin
// with '-' ("--no-rdns", a lone "-"), so that hyphenated words stay hyphens.
std::string roff(std::string_view text, bool literal) {
    std::string out;
    bool in_option = false;  // inside a word that began with '-'
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c == ' ' || c == '\t') in_option = false;
        if (c == '-' && (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\t')) in_option = true;
        if (c == '\\') {
            out += "\\e";
        } else if (c == '-' && (literal || in_option)) {
            out += "\\-";
        } else if (c >= 0x80) {
            // A UTF-8 sequence (the table's texts are UTF-8); a stray byte as U+FFFD.
            std::size_t length = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
            std::uint32_t code = c & (0x7F >> length);
            if (length == 0 || i + length > text.size()) length = 0;
            for (std::size_t k = 1; k < length; ++k) {
                const auto next = static_cast<unsigned char>(text[i + k]);
                if ((next & 0xC0) != 0x80) length = 0;
                code = (code << 6) | (next & 0x3F);
            }
            if (length == 0) {
                code = 0xFFFD;
                length = 1;
            }
            i += length - 1;
            fmt::format_to(std::back_inserter(out), "\\[u{:04X}]", code);
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

// A whole text line: a leading '.' or '\'' would make it a request.
std::string roff_line(std::string_view text, bool literal) {
    std::string line = roff(text, literal);
    if (!line.empty() && (line.front() == '.' || line.front() == '\'')) line.insert(0, "\\&");
    return line;
}

// \% keeps groff from hyphenating what is to be typed ("\-\-no\-reject\-un-known").
std::string bold(std::string_view text) { return "\\fB\\%" + roff(text, true) + "\\fR"; }
std::string italic(std::string_view text) { return "\\fI\\%" + roff(text, true) + "\\fR"; }

// The default: in bold when it is a value in file syntax; in italic when it says in
// words what the daemon computes at run time (Setting::shown_default), which for the
// string types is told by the missing quote or bracket.
std::string default_roff(const Setting& s) {
    const std::string& d = s.default_text();
    const bool words = (s.type() == Type::string && !d.starts_with('"')) ||
                       (s.type() == Type::string_list && !d.starts_with('['));
    return words ? italic(d) : bold(d);
}

// The value's name on the command line, as --help shows it (config.cpp, load()).
std::string option_value(const Setting& s) {
    switch (s.type()) {
        case Type::boolean:
            return "";
        case Type::string:
        case Type::string_list:
            return "TEXT";
        case Type::choice:
            return s.type_text();
        case Type::unsigned_integer:
            return "N";
        case Type::size:
            return "SIZE";
        case Type::duration:
            return "DURATION";
    }
    return "";
}

// "\fB\-\-port\fR \fIN\fR", "\fB\-\-rdns\fR, \fB\-\-no\-rdns\fR".
std::string option_roff(const Setting& s) {
    std::string out = bold(s.option());
    if (s.type() == Type::boolean) out += ", " + bold("--no-" + s.option().substr(2));
    if (const std::string value = option_value(s); !value.empty()) out += " " + italic(value);
    return out;
}

// What an entry says after the description: "(integer 1..65535; default 2525)". On the
// command line (section 8) the value's name already tells a string or a choice, and a
// list is the option repeated.
std::string details_roff(const Setting& s, bool command_line) {
    std::string type = roff(s.type_text(), false);
    if (command_line) {
        if (s.type() == Type::string || s.type() == Type::choice || s.type() == Type::boolean) type.clear();
        if (s.type() == Type::string_list) type = "repeat the option for more";
    }
    return "(" + (type.empty() ? "" : type + "; ") + "default " + default_roff(s) + ")";
}

// The OPTIONS of <daemon>(8): the options load() adds (config.cpp), then one per row.
// Their texts are those of --help; doc/man/check_help.py checks that both list the
// same options.
std::string man_options(const Table& table, std::string_view default_config) {
    std::string out;
    out += ".TP\n" + bold("-h") + ", " + bold("--help") + "\nprint this help message and exit\n";
    out += ".TP\n" + bold("-c") + ", " + bold("--config") + " " + italic("FILE") +
           "\nread the settings from " + italic("FILE") + " (default " + italic(default_config) + ")\n";
    out += ".TP\n" + bold("--check-config") +
           "\ncheck the settings, print the verdict and exit (status 0 or 78)\n";
    for (const Setting& s : table.settings()) {
        out += ".TP\n" + option_roff(s) + "\n";
        out += roff_line(s.description(), false) + "\n";
        out += ".br\n" + details_roff(s, true) + "\n";
    }
    return out;
}

// The SETTINGS of <daemon>.cfg(5): one entry per row, in table order.
std::string man_settings(const Table& table) {
    std::string out;
    for (const Setting& s : table.settings()) {
        out += ".TP\n" + bold(s.name()) + " (" + roff(s.type_text(), false) + ")\n";
        out += roff_line(s.description(), false) + "\n";
        out += ".br\nDefault: " + default_roff(s) + "\n";
        out += ".br\nCommand line: " + option_roff(s);
        out += s.type() == Type::string_list ? ", repeated for more\n" : "\n";
    }
    return out;
}

// A file as a literal display: no filling, no adjusting, every line kept as it is.
std::string man_example(std::istream& in) {
    std::string out = ".PP\n.RS 4\n.EX\n";
    std::string line;
    while (std::getline(in, line)) out += roff_line(line, true) + "\n";
    out += ".EE\n.RE\n";
    return out;
}

bool read_file(const char* path, std::string& out) {
    std::ifstream in{path, std::ios::binary};
    if (!in) return false;
    std::ostringstream text;
    text << in.rdbuf();
    out = text.str();
    return true;
}

// A marker line of a template and what replaces it. The template must hold it once
// when there is a replacement, else never (a marker left in a page is a silent gap).
struct Marker {
    std::string line;
    std::optional<std::string> replacement;
};

// Prints `page` (a template) with each marker line replaced. Returns false, after a
// message, when a marker is not there as often as it must be.
bool print_template(const std::string& page, const std::vector<Marker>& markers, const char* template_path) {
    std::vector<int> seen(markers.size(), 0);
    std::string out;
    std::istringstream in{page};
    std::string line;
    while (std::getline(in, line)) {
        bool replaced = false;
        for (std::size_t i = 0; i < markers.size(); ++i) {
            if (line != markers[i].line) continue;
            if (markers[i].replacement) out += *markers[i].replacement;
            ++seen[i];
            replaced = true;
        }
        if (!replaced) out += line + "\n";
    }
    bool good = true;
    for (std::size_t i = 0; i < markers.size(); ++i) {
        const int expected = markers[i].replacement ? 1 : 0;
        if (seen[i] == expected) continue;
        std::fprintf(stderr, "settings_reference: %s: the line %s is there %d times, not %d%s\n",
                     template_path, markers[i].line.c_str(), seen[i], expected,
                     expected == 0 ? " (give an EXAMPLE file for it)" : "");
        good = false;
    }
    if (good) std::fputs(out.c_str(), stdout);
    return good;
}

// --man DAEMON SECTION [TEMPLATE [EXAMPLE]]. Returns the exit status.
int print_man(const Table& table, std::string_view default_config, std::string_view section,
              const char* template_path, const char* example_path) {
    const std::string settings = section == "8" ? man_options(table, default_config) : man_settings(table);
    if (template_path == nullptr) {
        std::fputs(settings.c_str(), stdout);
        return 0;
    }
    std::string page;
    if (!read_file(template_path, page)) {
        std::fprintf(stderr, "settings_reference: cannot read %s\n", template_path);
        return 1;
    }
    std::vector<Marker> markers{{".\\\" @SETTINGS@", settings}, {".\\\" @EXAMPLE@", std::nullopt}};
    if (example_path != nullptr) {
        std::ifstream example{example_path};
        if (!example) {
            std::fprintf(stderr, "settings_reference: cannot read %s\n", example_path);
            return 1;
        }
        markers[1].replacement = man_example(example);
    }
    return print_template(page, markers, template_path) ? 0 : 1;
}

int usage() {
    std::fputs(
        "usage: settings_reference smtpd|smtpc\n"
        "       settings_reference --man smtpd|smtpc 8|5 [TEMPLATE [EXAMPLE]]\n",
        stderr);
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<std::string_view> args(argv + 1, argv + argc);
    smtp::smtpd::Settings smtpd_settings;
    smtp::smtpc::Settings smtpc_settings;
    if (args.size() == 1) {
        if (args[0] == "smtpd") {
            print_markdown(smtp::smtpd::make_table(smtpd_settings), "smtpd");
        } else if (args[0] == "smtpc") {
            print_markdown(smtp::smtpc::make_table(smtpc_settings), "smtpc");
        } else {
            return usage();
        }
        return 0;
    }
    if (args.size() < 3 || args.size() > 5 || args[0] != "--man" || (args[2] != "8" && args[2] != "5"))
        return usage();
    const char* template_path = args.size() >= 4 ? argv[4] : nullptr;
    const char* example_path = args.size() == 5 ? argv[5] : nullptr;
    if (args[1] == "smtpd")
        return print_man(smtp::smtpd::make_table(smtpd_settings), smtp::smtpd::default_config_file, args[2],
                         template_path, example_path);
    if (args[1] == "smtpc")
        return print_man(smtp::smtpc::make_table(smtpc_settings), smtp::smtpc::default_config_file, args[2],
                         template_path, example_path);
    return usage();
}
