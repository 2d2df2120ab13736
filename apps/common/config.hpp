// apps/common/config.hpp: the settings of smtpd and smtpc, from a libconfig file and
// the command line (CLI11), described once in a table.
//
// Each daemon keeps its settings in a plain struct whose default member initializers
// are the defaults. It builds a Table binding every field to one row: the config-file
// key ("mail_root"), the command-line option derived from it ("--mail-root"), the type,
// a one-line description. The default shown in --help and in the generated reference
// (markdown()) is rendered from the field's value when the row is added, so the code,
// the help and the documentation cannot disagree.
//
//     smtp::config::Table t{"smtpd", "SMTP server"};
//     t.add("port", &s.port, "TCP port to listen on").range(1, 65535);
//     t.add("bind", &s.bind, "addresses to listen on").validate(check_address);
//     auto out = smtp::config::load(t, argc, argv, "/etc/smtpd.cfg");
//     if (!out.errors.empty()) { /* print each message() on stderr */ return exit_config; }
//     if (out.action != Action::run) { /* print out.output on stdout */ return 0; }
//
// Invariants:
//  - Strict: an unknown key, a value of the wrong type, out of range or refused by the
//    row's validator is an error naming file, line and key (DESIGN.md: "bad config: a
//    message with file, line and key, and exit status 78"). Nothing is guessed or
//    converted implicitly (no "1" for true, no float for an integer).
//  - All or nothing: the bound fields are written only when the file and the command
//    line are free of errors; on error they keep the values they had.
//  - The command line wins over the file; a list given on the command line replaces
//    the file's list, it does not append to it.
//  - No exceptions leave load() or markdown(). Table::add() throws std::logic_error
//    for a programming error (a duplicate or malformed name), found by any test run.
//
// Thread safety: a Table and the fields it is bound to belong to one thread; load()
// runs once at start-up, before the daemon forks or starts threads.
#ifndef SMTP_APPS_COMMON_CONFIG_HPP
#define SMTP_APPS_COMMON_CONFIG_HPP

#include <chrono>
#include <concepts>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace smtp::config {

// The exit status for a configuration error: EX_CONFIG of sysexits.h, which init
// systems and admins recognise ("configuration error", not a crash worth restarting).
inline constexpr int exit_config = 78;

// What a row holds. The command-line syntax and the accepted file values:
//  - string:           --key TEXT; a string.
//  - boolean:          --key / --no-key; true or false (not 0/1, not "yes").
//  - unsigned_integer: --key N; an integer, within the row's range.
//  - size:             --key N[k|M|G]; an integer (bytes) or a string with a binary
//                      suffix ("512k" = 524288, "10M" = 10485760), within the range.
//  - duration:         --key N[s|m|h|d]; an integer (seconds) or a string with a
//                      suffix ("5m" = 300), within the range.
//  - string_list:      --key TEXT, repeated; a list ( ... ) or an array [ ... ] of
//                      strings.
//  - choice:           --key NAME; a string, one of the row's names.
enum class Type { string, boolean, unsigned_integer, size, duration, string_list, choice };

// A check of one string value (of a string row, or of each element of a list row).
// Returns nullopt if the value is good, else the reason, which is reported after the
// file, line and key: "smtpd.cfg:7: relay_net: not a CIDR block: 10.0.0/8".
using Validator = std::function<std::optional<std::string>(std::string_view)>;

// One configuration error.
struct Error {
    std::string source;  // the config file's name, or "command line"
    unsigned line = 0;   // line in source; 0 when none applies (command line, unreadable file)
    std::string key;     // the setting ("port"), or its option ("--port"); empty if none applies
    std::string reason;  // "must be 1..65535"

    // "smtpd.cfg:12: port: must be 1..65535", "command line: --port: must be 1..65535",
    // "smtpd.cfg:3: syntax error", "smtpd.cfg: cannot read: No such file or directory".
    std::string message() const;
};

namespace detail {
struct Access;
}

// One row of a Table: one setting. Made by Table::add*(), refined by the modifiers,
// which return the row so that they chain.
class Setting {
public:
    // The accepted range, in the row's unit (bytes, seconds), for unsigned_integer,
    // size and duration rows; ignored by other types. The default range is all values
    // of the field's type; max is capped at that.
    Setting& range(std::uint64_t min, std::uint64_t max);
    // The check of each string value of a string or string_list row (addresses,
    // CIDR blocks); ignored by other types.
    Setting& validate(Validator validator);
    // Replaces the default shown in --help and markdown(), for a default the daemon
    // computes at run time (an empty hostname meaning "this machine's name").
    Setting& shown_default(std::string text);

    const std::string& name() const { return name_; }
    // "--mail-root": the name with '_' written '-'.
    std::string option() const;
    Type type() const { return type_; }
    // The type as documented: "integer 1..65535", "list of strings", "debug|info|...".
    std::string type_text() const;
    // The default in config-file syntax: 2525, "./var/mail", ["127.0.0.1", "::1"], true.
    const std::string& default_text() const { return default_text_; }
    const std::string& description() const { return description_; }

private:
    friend class Table;
    friend struct detail::Access;

    using Value = std::variant<std::string, bool, std::uint64_t, std::vector<std::string>>;

    Setting(std::string name, Type type, std::string description) noexcept;

    std::string name_;
    Type type_;
    std::string description_;
    std::string default_text_;
    std::uint64_t min_ = 0;
    std::uint64_t max_ = 0;
    std::uint64_t type_max_ = 0;  // the largest value the field's type holds
    std::vector<std::string> choices_;
    Validator validator_;
    // Writes a checked value into the bound field; the alternative matches type_:
    // string (string, choice), bool, uint64_t (unsigned, size, duration), vector.
    std::function<void(const Value&)> assign_;
};

// The settings of one daemon. Rows keep the order of add(), which is the order of
// --help and of the generated reference. Each row points at its field: the Table must
// not outlive the struct it is bound to.
class Table {
public:
    // program: the daemon's name, shown in --help; summary: one line saying what it is.
    Table(std::string program, std::string summary);

    Setting& add(std::string name, std::string* field, std::string description);
    Setting& add(std::string name, bool* field, std::string description);
    Setting& add(std::string name, std::vector<std::string>* field, std::string description);
    Setting& add(std::string name, std::chrono::seconds* field, std::string description);

    template <std::unsigned_integral T>
    requires(!std::same_as<T, bool>) Setting& add(std::string name, T* field, std::string description) {
        return add_number(
            std::move(name), Type::unsigned_integer, *field, std::numeric_limits<T>::max(),
            [field](std::uint64_t v) { *field = static_cast<T>(v); }, std::move(description));
    }

    // A size in bytes; a separate name because the field is an ordinary integer.
    template <std::unsigned_integral T>
    requires(!std::same_as<T, bool>) Setting& add_size(std::string name, T* field, std::string description) {
        return add_number(
            std::move(name), Type::size, *field, std::numeric_limits<T>::max(),
            [field](std::uint64_t v) { *field = static_cast<T>(v); }, std::move(description));
    }

    // An enum-like choice: the field takes the value paired with the name given.
    // The field's current value must be one of the pairs (it is the default).
    template <typename E>
    Setting& add_choice(std::string name, E* field, std::vector<std::pair<std::string, E>> choices,
                        std::string description) {
        std::vector<std::string> names;
        std::string current;
        for (const auto& [n, v] : choices) {
            names.push_back(n);
            if (v == *field) current = n;
        }
        return add_choice_names(
            std::move(name), std::move(names), std::move(current),
            [field, choices = std::move(choices)](std::string_view n) {
                for (const auto& [cn, cv] : choices)
                    if (cn == n) *field = cv;
            },
            std::move(description));
    }

    const std::string& program() const { return program_; }
    const std::string& summary() const { return summary_; }
    const std::deque<Setting>& settings() const { return settings_; }
    // The row named name ("port"), or nullptr.
    const Setting* find(std::string_view name) const;

private:
    Setting& add_row(std::string name, Type type, std::string description);
    Setting& add_number(std::string name, Type type, std::uint64_t current, std::uint64_t type_max,
                        std::function<void(std::uint64_t)> set, std::string description);
    Setting& add_choice_names(std::string name, std::vector<std::string> names, std::string current,
                              std::function<void(std::string_view)> set, std::string description);

    std::string program_;
    std::string summary_;
    std::deque<Setting> settings_;  // a deque: add() returns references that must stay valid
};

// What the daemon does after load().
enum class Action {
    run,    // start
    help,   // --help: print output on stdout, exit 0
    check,  // --check-config, and the configuration is valid: print output, exit 0
};

struct Outcome {
    Action action = Action::run;
    std::string output;         // the help text, or the --check-config verdict
    std::string config_file;    // the file read; empty if none
    std::vector<Error> errors;  // not empty: print each message() on stderr, exit exit_config

    bool ok() const { return errors.empty(); }
};

// Reads the settings: the file named by --config FILE (or -c FILE), else default_config
// if it is not empty and exists (a missing default file is no error, so a daemon runs
// from a build tree with defaults and options; a missing --config file is), then the
// command-line options on top. On success writes every setting given into its field;
// fields not given keep their values (the defaults). args excludes the program name.
// Errors (all of them, in file then command-line order): file unreadable, syntax error,
// unknown key, wrong type, out of range, refused by a validator, bad option. With
// errors, no field is written and action is run (the caller exits exit_config).
Outcome load(const Table& table, std::span<const std::string> args, std::string_view default_config = {});
// The same with main()'s arguments; argv[0] is skipped.
Outcome load(const Table& table, int argc, const char* const* argv, std::string_view default_config = {});

// The table as a Markdown table, one row per setting, in table order, with columns
// Setting, Command line, Type, Default, Description: the configuration reference in
// doc/ is generated from it.
std::string markdown(const Table& table);

}  // namespace smtp::config

#endif  // SMTP_APPS_COMMON_CONFIG_HPP
