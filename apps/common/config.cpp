// apps/common/config.cpp: see config.hpp. Every value, from the file or the command
// line, goes through the same converters and checks (from_text, check), so both
// accept the same values and give the same reasons.
#include "common/config.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <libconfig.h++>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <stdexcept>
#include <system_error>

namespace smtp::config {

std::string Error::message() const {
    std::string out = source;
    if (line != 0) out += fmt::format(":{}", line);
    if (!key.empty()) out += fmt::format(": {}", key);
    out += fmt::format(": {}", reason);
    return out;
}

// ---------------------------------------------------------------- rows

namespace {

// A string in config-file syntax, so a default shown in the docs can be pasted.
std::string config_string(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    out += '"';
    return out;
}

std::string config_list(const std::vector<std::string>& v) {
    std::string out = "[";
    for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + config_string(v[i]);
    return out + "]";
}

// libconfig's names: a letter or '*', then letters, digits, '-', '_', '*'. We allow
// only lower-case letters, digits and '_', so the option name is unambiguous.
bool is_good_name(std::string_view n) {
    if (n.empty() || n.front() < 'a' || n.front() > 'z') return false;
    return std::all_of(n.begin(), n.end(),
                       [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

}  // namespace

Setting::Setting(std::string name, Type type, std::string description) noexcept
    : name_(std::move(name)), type_(type), description_(std::move(description)) {}

Setting& Setting::range(std::uint64_t min, std::uint64_t max) {
    min_ = min;
    max_ = std::min(max, type_max_);
    return *this;
}

Setting& Setting::validate(Validator validator) {
    validator_ = std::move(validator);
    return *this;
}

Setting& Setting::shown_default(std::string text) {
    default_text_ = std::move(text);
    return *this;
}

std::string Setting::option() const {
    std::string o = "--" + name_;
    std::replace(o.begin(), o.end(), '_', '-');
    return o;
}

std::string Setting::type_text() const {
    switch (type_) {
        case Type::string:
            return "string";
        case Type::boolean:
            return "boolean";
        case Type::unsigned_integer:
            return fmt::format("integer {}..{}", min_, max_);
        // The full range of a 64-bit field is noise in the docs: shown only when narrowed.
        case Type::size:
            return min_ == 0 && max_ == type_max_
                       ? "size in bytes, suffix k, M, G"
                       : fmt::format("size in bytes {}..{}, suffix k, M, G", min_, max_);
        case Type::duration:
            return min_ == 0 && max_ == type_max_
                       ? "seconds, suffix s, m, h, d"
                       : fmt::format("seconds {}..{}, suffix s, m, h, d", min_, max_);
        case Type::string_list:
            return "list of strings";
        case Type::choice:
            return fmt::format("{}", fmt::join(choices_, "|"));
    }
    return "";
}

Table::Table(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {}

const Setting* Table::find(std::string_view name) const {
    for (const Setting& s : settings_)
        if (s.name_ == name) return &s;
    return nullptr;
}

Setting& Table::add_row(std::string name, Type type, std::string description) {
    // The options --config, --check-config and --help are ours; a setting must not
    // shadow them.
    if (!is_good_name(name) || find(name) != nullptr || name == "config" || name == "check_config" ||
        name == "help" || (type == Type::boolean && name.starts_with("no_")))
        throw std::logic_error("config::Table: bad or duplicate setting name: " + name);
    return settings_.emplace_back(Setting{std::move(name), type, std::move(description)});
}

Setting& Table::add(std::string name, std::string* field, std::string description) {
    Setting& s = add_row(std::move(name), Type::string, std::move(description));
    s.default_text_ = config_string(*field);
    s.assign_ = [field](const Setting::Value& v) { *field = std::get<std::string>(v); };
    return s;
}

Setting& Table::add(std::string name, bool* field, std::string description) {
    Setting& s = add_row(std::move(name), Type::boolean, std::move(description));
    s.default_text_ = *field ? "true" : "false";
    s.assign_ = [field](const Setting::Value& v) { *field = std::get<bool>(v); };
    return s;
}

Setting& Table::add(std::string name, std::vector<std::string>* field, std::string description) {
    Setting& s = add_row(std::move(name), Type::string_list, std::move(description));
    s.default_text_ = config_list(*field);
    s.assign_ = [field](const Setting::Value& v) { *field = std::get<std::vector<std::string>>(v); };
    return s;
}

Setting& Table::add(std::string name, std::chrono::seconds* field, std::string description) {
    using Rep = std::chrono::seconds::rep;
    const auto current = static_cast<std::uint64_t>(std::max<Rep>(field->count(), 0));
    return add_number(
        std::move(name), Type::duration, current, static_cast<std::uint64_t>(std::numeric_limits<Rep>::max()),
        [field](std::uint64_t v) { *field = std::chrono::seconds{static_cast<Rep>(v)}; },
        std::move(description));
}

Setting& Table::add_number(std::string name, Type type, std::uint64_t current, std::uint64_t type_max,
                           std::function<void(std::uint64_t)> set, std::string description) {
    Setting& s = add_row(std::move(name), type, std::move(description));
    s.default_text_ = std::to_string(current);
    s.type_max_ = type_max;
    s.max_ = type_max;
    s.assign_ = [set = std::move(set)](const Setting::Value& v) { set(std::get<std::uint64_t>(v)); };
    return s;
}

Setting& Table::add_choice_names(std::string name, std::vector<std::string> names, std::string current,
                                 std::function<void(std::string_view)> set, std::string description) {
    Setting& s = add_row(std::move(name), Type::choice, std::move(description));
    if (current.empty()) throw std::logic_error("config::Table: default not among the choices: " + s.name_);
    s.default_text_ = config_string(current);
    s.choices_ = std::move(names);
    s.assign_ = [set = std::move(set)](const Setting::Value& v) { set(std::get<std::string>(v)); };
    return s;
}

// ---------------------------------------------------------------- converting and checking

namespace detail {

// The reason a conversion or a check failed; empty means success.
using Reason = std::string;

struct Access {
    using Value = Setting::Value;

    // A whole decimal number, digits only: no sign, no blanks, no "0x".
    static std::optional<std::uint64_t> parse_digits(std::string_view text) {
        std::uint64_t n = 0;
        if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
        if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
        return n;
    }

    // N with an optional one-letter unit: the number times the unit's multiplier.
    static std::optional<std::uint64_t> parse_with_unit(
        std::string_view text, std::initializer_list<std::pair<char, std::uint64_t>> units) {
        std::uint64_t mult = 1;
        if (!text.empty()) {
            for (auto [c, m] : units)
                if (text.back() == c) {
                    mult = m;
                    text.remove_suffix(1);
                    break;
                }
        }
        auto n = parse_digits(text);
        if (!n || *n > std::numeric_limits<std::uint64_t>::max() / mult) return std::nullopt;
        return *n * mult;
    }

    static Reason range_reason(const Setting& s) {
        switch (s.type_) {
            case Type::size:
                return fmt::format("must be a size of {}..{} bytes", s.min_, s.max_);
            case Type::duration:
                return fmt::format("must be a duration of {}..{} seconds", s.min_, s.max_);
            default:
                return fmt::format("must be {}..{}", s.min_, s.max_);
        }
    }

    // Text (a command-line value, or a string in the file) to a value of s's type.
    static Reason from_text(const Setting& s, std::string_view text, Value& out) {
        std::optional<std::uint64_t> n;
        switch (s.type_) {
            case Type::string:
            case Type::choice:
                out = std::string{text};
                return {};
            case Type::boolean:
                return "must be true or false";  // not reached: see from_file, load
            case Type::unsigned_integer:
                n = parse_digits(text);
                break;
            case Type::size:
                n = parse_with_unit(
                    text, {{'k', 1024}, {'K', 1024}, {'M', 1024 * 1024}, {'G', 1024 * 1024 * 1024}});
                break;
            case Type::duration:
                n = parse_with_unit(text, {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}});
                break;
            case Type::string_list:
                out = std::vector<std::string>{std::string{text}};
                return {};
        }
        if (!n) return range_reason(s);
        out = *n;
        return {};
    }

    // The checks every value passes, whatever its source: range, choices, validator.
    static Reason check(const Setting& s, const Value& v) {
        if (const auto* n = std::get_if<std::uint64_t>(&v)) {
            if (*n < s.min_ || *n > s.max_) return range_reason(s);
        } else if (s.type_ == Type::choice) {
            const auto& name = std::get<std::string>(v);
            if (std::find(s.choices_.begin(), s.choices_.end(), name) == s.choices_.end())
                return fmt::format("must be one of {}, not {}", fmt::join(s.choices_, ", "),
                                   config_string(name));
        } else if (s.validator_) {
            if (const auto* str = std::get_if<std::string>(&v)) {
                if (auto r = s.validator_(*str)) return *r;
            } else if (const auto* list = std::get_if<std::vector<std::string>>(&v)) {
                for (const auto& e : *list)
                    if (auto r = s.validator_(e)) return *r;
            }
        }
        return {};
    }

    static void assign(const Setting& s, const Value& v) { s.assign_(v); }
};

}  // namespace detail

namespace {

using detail::Access;
using detail::Reason;
using Value = Access::Value;

struct Pending {
    const Setting* setting;
    Value value;
};

const char* type_name(const libconfig::Setting& s) {
    switch (s.getType()) {
        case libconfig::Setting::TypeInt:
        case libconfig::Setting::TypeInt64:
            return "an integer";
        case libconfig::Setting::TypeFloat:
            return "a number with a fraction";
        case libconfig::Setting::TypeString:
            return "a string";
        case libconfig::Setting::TypeBoolean:
            return "a boolean";
        case libconfig::Setting::TypeGroup:
            return "a group";
        case libconfig::Setting::TypeArray:
            return "an array";
        case libconfig::Setting::TypeList:
            return "a list";
        default:
            return "no value";
    }
}

// Levenshtein distance, for "did you mean": a typo in a key is the likeliest mistake.
std::size_t distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diag = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            std::size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

Reason unknown_reason(const Table& table, std::string_view name) {
    std::string normal{name};
    std::replace(normal.begin(), normal.end(), '-', '_');
    const Setting* best = nullptr;
    std::size_t best_d = 3;  // suggest only close names
    for (const Setting& s : table.settings()) {
        std::size_t d = distance(normal, s.name());
        if (d < best_d) best = &s, best_d = d;
    }
    if (best) return fmt::format("unknown setting (did you mean {}?)", best->name());
    return "unknown setting";
}

// One setting of the file to a value of the row's type.
Reason from_file(const Setting& row, const libconfig::Setting& s, Value& out, unsigned& line) {
    const auto t = s.getType();
    auto wrong = [&](const char* expected) {
        return fmt::format("expected {}, not {}", expected, type_name(s));
    };
    switch (row.type()) {
        case Type::string:
        case Type::choice:
            if (t != libconfig::Setting::TypeString) return wrong("a string");
            out = std::string{s.c_str()};
            return {};
        case Type::boolean:
            if (t != libconfig::Setting::TypeBoolean) return wrong("true or false");
            out = static_cast<bool>(s);
            return {};
        case Type::unsigned_integer:
        case Type::size:
        case Type::duration: {
            if (t == libconfig::Setting::TypeString && row.type() != Type::unsigned_integer)
                return Access::from_text(row, s.c_str(), out);
            if (t != libconfig::Setting::TypeInt && t != libconfig::Setting::TypeInt64)
                return wrong(row.type() == Type::unsigned_integer ? "an integer" : "an integer or a string");
            // libconfig converts only to the exact C++ type of the stored integer.
            const long long n = t == libconfig::Setting::TypeInt ? static_cast<long long>(static_cast<int>(s))
                                                                 : static_cast<long long>(s);
            if (n < 0) return Access::range_reason(row);
            out = static_cast<std::uint64_t>(n);
            return {};
        }
        case Type::string_list: {
            if (t != libconfig::Setting::TypeList && t != libconfig::Setting::TypeArray)
                return wrong("a list of strings");
            std::vector<std::string> v;
            for (int i = 0; i < s.getLength(); ++i) {
                const libconfig::Setting& e = s[i];
                if (e.getType() != libconfig::Setting::TypeString) {
                    if (e.getSourceLine() != 0) line = e.getSourceLine();
                    return fmt::format("element {}: expected a string, not {}", i + 1, type_name(e));
                }
                v.emplace_back(e.c_str());
            }
            out = std::move(v);
            return {};
        }
    }
    return "unsupported type";
}

void check_settings(const Table& table, const std::string& path, const libconfig::Setting& root,
                    std::vector<Pending>& pending, std::vector<Error>& errors);

void read_file(const Table& table, const std::string& path, std::vector<Pending>& pending,
               std::vector<Error>& errors) {
    // libconfig's FileIOException says nothing of why; open it first to get errno.
    if (std::FILE* f = std::fopen(path.c_str(), "r")) {
        std::fclose(f);
    } else {
        errors.push_back({path, 0, "", "cannot read: " + std::generic_category().message(errno)});
        return;
    }
    libconfig::Config cfg;
    try {
        cfg.readFile(path.c_str());
    } catch (const libconfig::ParseException& e) {
        errors.push_back(
            {e.getFile() ? e.getFile() : path, static_cast<unsigned>(e.getLine()), "", e.getError()});
        return;
    } catch (const libconfig::FileIOException&) {
        errors.push_back({path, 0, "", "cannot read"});
        return;
    }
    try {
        check_settings(table, path, cfg.getRoot(), pending, errors);
    } catch (const libconfig::ConfigException& e) {
        // Not expected (types are checked before every conversion); a safety net so
        // that no exception leaves load().
        errors.push_back({path, 0, "", e.what()});
    }
}

void check_settings(const Table& table, const std::string& path, const libconfig::Setting& root,
                    std::vector<Pending>& pending, std::vector<Error>& errors) {
    for (int i = 0; i < root.getLength(); ++i) {
        const libconfig::Setting& s = root[i];
        const std::string name = s.getName() ? s.getName() : "";
        // An @include'd file's settings carry their own file name.
        const std::string file = s.getSourceFile() ? s.getSourceFile() : path;
        unsigned line = s.getSourceLine();
        const Setting* row = table.find(name);
        if (row == nullptr) {
            errors.push_back({file, line, name, unknown_reason(table, name)});
            continue;
        }
        Value v;
        Reason r = from_file(*row, s, v, line);
        if (r.empty()) r = Access::check(*row, v);
        if (!r.empty()) {
            errors.push_back({file, line, name, std::move(r)});
            continue;
        }
        pending.push_back({row, std::move(v)});
    }
}

// What CLI11 captured for one row.
struct Captured {
    std::string text;
    std::vector<std::string> list;
    bool flag = false;
    CLI::Option* option = nullptr;
};

}  // namespace

Outcome load(const Table& table, std::span<const std::string> args, std::string_view default_config) {
    Outcome out;
    CLI::App app{table.summary(), table.program()};
    std::string config_path;
    bool check_only = false;
    app.add_option("-c,--config", config_path,
                   default_config.empty()
                       ? std::string{"read the settings from FILE"}
                       : fmt::format("read the settings from FILE (default {})", default_config))
        ->type_name("FILE");
    app.add_flag("--check-config", check_only,
                 "check the settings, print the verdict and exit (status 0 or 78)");

    std::deque<Captured> captured;  // stable: CLI11 keeps pointers into it
    for (const Setting& s : table.settings()) {
        Captured& c = captured.emplace_back();
        const std::string desc = s.description();
        switch (s.type()) {
            case Type::boolean: {
                const std::string opt = s.option();
                c.option = app.add_flag(opt + ",!--no-" + opt.substr(2), c.flag, desc);
                break;
            }
            case Type::string_list:
                // One value per occurrence: "--bind a --bind b", never "--bind a b".
                c.option = app.add_option(s.option(), c.list, desc + " (repeat for more)")
                               ->type_name("TEXT")
                               ->allow_extra_args(false)
                               ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
                break;
            case Type::string:
            case Type::choice:
                c.option = app.add_option(s.option(), c.text, desc)
                               ->type_name(s.type() == Type::string ? "TEXT" : s.type_text());
                break;
            default:
                // The unit and range would crowd the option column: they go after the text.
                c.option = app.add_option(s.option(), c.text, fmt::format("{} ({})", desc, s.type_text()))
                               ->type_name(s.type() == Type::unsigned_integer ? "N"
                                           : s.type() == Type::size           ? "SIZE"
                                                                              : "DURATION");
                break;
        }
        c.option->default_str(s.default_text());
    }

    try {
        // CLI11 parses a vector from the back.
        std::vector<std::string> reversed(args.rbegin(), args.rend());
        app.parse(reversed);
    } catch (const CLI::CallForHelp&) {
        out.action = Action::help;
        out.output = app.help();
        return out;
    } catch (const CLI::ParseError& e) {
        out.errors.push_back({"command line", 0, "", e.what()});
        return out;
    }

    std::vector<Pending> pending;
    if (!config_path.empty()) {
        out.config_file = config_path;
    } else if (!default_config.empty()) {
        if (std::FILE* f = std::fopen(std::string{default_config}.c_str(), "r")) {
            std::fclose(f);
            out.config_file = default_config;
        }
    }
    if (!out.config_file.empty()) read_file(table, out.config_file, pending, out.errors);

    // After the file's values, so that they win when assigned in order.
    std::size_t i = 0;
    for (const Setting& s : table.settings()) {
        const Captured& c = captured[i++];
        if (c.option->count() == 0) continue;
        Value v;
        Reason r;
        if (s.type() == Type::boolean) {
            v = c.flag;
        } else if (s.type() == Type::string_list) {
            v = c.list;
        } else {
            r = Access::from_text(s, c.text, v);
        }
        if (r.empty()) r = Access::check(s, v);
        if (!r.empty()) {
            out.errors.push_back({"command line", 0, s.option(), std::move(r)});
            continue;
        }
        pending.push_back({&s, std::move(v)});
    }

    if (!out.errors.empty()) return out;
    for (const Pending& p : pending) Access::assign(*p.setting, p.value);
    if (check_only) {
        out.action = Action::check;
        out.output = out.config_file.empty() ? std::string{"configuration valid (no file read)\n"}
                                             : fmt::format("{}: configuration valid\n", out.config_file);
    }
    return out;
}

Outcome load(const Table& table, int argc, const char* const* argv, std::string_view default_config) {
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
    return load(table, args, default_config);
}

// ---------------------------------------------------------------- documentation

namespace {

// A table cell: '|' would end the cell, a newline the row.
std::string cell(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '|') out += '\\';
        out += c == '\n' ? ' ' : c;
    }
    return out;
}

}  // namespace

std::string markdown(const Table& table) {
    std::string out =
        "| Setting | Command line | Type | Default | Description |\n"
        "|---------|--------------|------|---------|-------------|\n";
    for (const Setting& s : table.settings()) {
        std::string cli = "`" + s.option() + "`";
        if (s.type() == Type::boolean) cli += ", `--no-" + s.option().substr(2) + "`";
        if (s.type() == Type::string_list) cli += " (repeatable)";
        fmt::format_to(std::back_inserter(out), "| `{}` | {} | {} | `{}` | {} |\n", s.name(), cell(cli),
                       cell(s.type_text()), cell(s.default_text()), cell(s.description()));
    }
    return out;
}

}  // namespace smtp::config
