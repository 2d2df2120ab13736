// The outgoing queue: see queue.hpp for the contract and doc/queue-format.md for the
// files. Layout under the root:
//   tmp/<id>.content                 content being received (Writer)
//   tmp/<id>.envelope.<unique>       envelope being written (commit, update)
//   content/<id>                     the message, immutable
//   envelope/<id>                    the envelope; mtime = next attempt
//   domain/<encoded domain>/<id>     empty marker: a recipient there is pending
#include "common/queue.hpp"

#include "common/text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <type_traits>
#include <utility>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

namespace smtp::queue {
namespace {

constexpr std::string_view dir_tmp = "tmp";
constexpr std::string_view dir_content = "content";
constexpr std::string_view dir_envelope = "envelope";
constexpr std::string_view dir_domain = "domain";

constexpr std::string_view magic = "queue-envelope";
constexpr std::string_view version = "1";

// Writer's gathering buffer: smtpd hands over data in line-sized pieces; one write(2)
// per 64 KiB instead of one per line.
constexpr std::size_t writer_buffer = 64 * 1024;

// An envelope of 1000 recipients is about 200 KB; anything far larger is not ours.
constexpr std::size_t max_envelope = 64 * 1024 * 1024;

constexpr std::size_t id_length = 28;  // 14 µs + 8 pid + 6 counter, hex

std::error_code errno_code() noexcept { return {errno, std::system_category()}; }
std::error_code errno_code(int e) noexcept { return {e, std::system_category()}; }

// ---------------------------------------------------------------- file helpers

std::error_code fsync_dir(const std::string& path) {
    Fd fd{::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (!fd) return errno_code();
    if (::fsync(fd.get()) != 0) return errno_code();
    return fd.close();
}

// unlink(2) where a missing file is success: removal is idempotent.
std::error_code unlink_file(const std::string& path) noexcept {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errno_code();
    return {};
}

std::error_code make_dir(const std::string& path, bool* created = nullptr) {
    if (created) *created = false;
    if (::mkdir(path.c_str(), 0700) == 0) {
        if (created) *created = true;
        return {};
    }
    if (errno != EEXIST) return errno_code();
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return errno_code();
    if (!S_ISDIR(st.st_mode)) return errno_code(ENOTDIR);
    return {};
}

// The whole file in one buffer sized by fstat: no growing in small steps.
std::error_code read_file(const std::string& path, std::string& out, std::size_t max) {
    Fd fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (!fd) return errno_code();
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return errno_code();
    if (st.st_size < 0 || static_cast<std::uint64_t>(st.st_size) > max) return errno_code(EFBIG);
    out.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (got < out.size()) {
        const ssize_t r = ::read(fd.get(), out.data() + got, out.size() - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            return errno_code();
        }
        if (r == 0) break;  // shrank under us: the parser sees the truncation
        got += static_cast<std::size_t>(r);
    }
    out.resize(got);
    return fd.close();
}

// Writes `data` to the new file `tmp`, fsyncs it, renames it to `final_path` and
// fsyncs `dir` (the directory of final_path). `mtime` >= 0 sets the file's mtime.
// On an error before the rename, tmp is removed and the old final_path (if any) is
// untouched. An error after the rename (the directory fsync) leaves the new file in
// place, durability unknown: the caller decides.
std::error_code write_file_atomic(const std::string& tmp, const std::string& final_path,
                                  const std::string& dir, std::string_view data, std::int64_t mtime) {
    Fd fd{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)};
    if (!fd) return errno_code();
    std::error_code ec = write_all(fd.get(), data);
    if (!ec && mtime >= 0) {
        const timespec times[2] = {{0, UTIME_OMIT}, {static_cast<time_t>(mtime), 0}};
        if (::futimens(fd.get(), times) != 0) ec = errno_code();
    }
    if (!ec && ::fsync(fd.get()) != 0) ec = errno_code();
    if (const auto close_ec = fd.close(); !ec) ec = close_ec;
    if (!ec && ::rename(tmp.c_str(), final_path.c_str()) != 0) ec = errno_code();
    if (ec) {
        static_cast<void>(unlink_file(tmp));  // best effort; recover() removes it otherwise
        return ec;
    }
    return fsync_dir(dir);
}

// The names in a directory, without "." and "..". Missing directory: ENOENT.
std::error_code read_dir(const std::string& path, std::vector<std::string>& names) {
    names.clear();
    DIR* dir = ::opendir(path.c_str());
    if (dir == nullptr) return errno_code();
    std::error_code ec;
    for (;;) {
        errno = 0;
        const dirent* e = ::readdir(dir);
        if (e == nullptr) {
            if (errno != 0) ec = errno_code();
            break;
        }
        const std::string_view name = e->d_name;
        if (name != "." && name != "..") names.emplace_back(name);
    }
    if (::closedir(dir) != 0 && !ec) ec = errno_code();
    return ec;
}

// The mtime of `path` (lstat). ENOENT when it is gone.
std::error_code file_mtime(const std::string& path, std::int64_t& mtime, bool* regular = nullptr) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return errno_code();
    mtime = static_cast<std::int64_t>(st.st_mtim.tv_sec);
    if (regular) *regular = S_ISREG(st.st_mode);
    return {};
}

bool exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

// ---------------------------------------------------------------- index names

// A domain as a directory name: [a-z0-9_-] and non-leading '.' as they are, every
// other byte "+XX"; so no name is ".", "..", or holds '/'. Names are kept under
// NAME_MAX: a longer one is cut and tagged "~" + FNV-1a of the whole domain ('~'
// never appears otherwise). Two long domains could share a name; readers check the
// envelope anyway.
std::string domain_dir_name(std::string_view domain) {
    static constexpr char digits[] = "0123456789ABCDEF";
    std::string out;
    std::size_t cut = 0;  // the longest prefix within 180 bytes not ending inside +XX
    for (std::size_t i = 0; i < domain.size(); ++i) {
        const auto c = static_cast<unsigned char>(domain[i]);
        const bool plain =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || (c == '.' && i > 0);
        if (plain) {
            out += static_cast<char>(c);
        } else {
            out += '+';
            out += digits[c >> 4];
            out += digits[c & 15];
        }
        if (out.size() <= 180) cut = out.size();
    }
    if (out.size() <= 200) return out;
    std::uint64_t h = 14695981039346656037u;
    for (char c : domain) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211u;
    }
    out.resize(cut);
    out += fmt::format("~{:016x}", h);
    return out;
}

// The index directory names of the pending (or, with `all`, every) recipients' domains.
std::set<std::string> index_names(const Envelope& envelope, bool pending_only) {
    std::set<std::string> names;
    for (const auto& r : envelope.recipients)
        if (!pending_only || r.state == RecipientState::pending)
            names.insert(domain_dir_name(ascii_lower(r.domain)));
    return names;
}

// ---------------------------------------------------------------- envelope text

// For messages and listings: control bytes as +XX, so no terminal escape gets through.
std::string printable(std::string_view s) {
    static constexpr char digits[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        const auto b = static_cast<unsigned char>(c);
        if (b < 0x20 || b == 0x7f) {
            out += '+';
            out += digits[b >> 4];
            out += digits[b & 15];
        } else {
            out += c;
        }
    }
    return out;
}

std::string_view state_name(RecipientState s) noexcept {
    switch (s) {
        case RecipientState::pending:
            return "pending";
        case RecipientState::delivered:
            return "delivered";
        case RecipientState::bounced:
            return "bounced";
    }
    return "pending";
}

std::string_view body_name(Body b) noexcept {
    switch (b) {
        case Body::unspecified:
            return "unspecified";
        case Body::seven_bit:
            return "7bit";
        case Body::eight_bit_mime:
            return "8bitmime";
    }
    return "unspecified";
}

std::string_view ret_name(Ret r) noexcept {
    switch (r) {
        case Ret::unspecified:
            return "unspecified";
        case Ret::full:
            return "full";
        case Ret::hdrs:
            return "hdrs";
    }
    return "unspecified";
}

constexpr std::pair<std::string_view, std::uint8_t> notify_names[] = {{"never", notify_never},
                                                                      {"success", notify_success},
                                                                      {"failure", notify_failure},
                                                                      {"delay", notify_delay}};

std::string notify_text(std::uint8_t bits) {
    std::string out;
    for (const auto& [name, bit] : notify_names) {
        if ((bits & bit) == 0) continue;
        if (!out.empty()) out += ',';
        out += name;
    }
    return out;
}

// The singular keys of an envelope, in the order they are written.
enum Key : unsigned {
    k_id,
    k_arrival,
    k_content_size,
    k_sender,
    k_size,
    k_body,
    k_smtputf8,
    k_ret,
    k_envid,
    k_client,
    k_attempts,
    k_next_attempt,
    k_last_error,
    k_count
};
constexpr std::string_view key_names[k_count] = {
    "id",  "arrival", "content-size", "sender",   "size",         "body",      "smtputf8",
    "ret", "envid",   "client",       "attempts", "next-attempt", "last-error"};
constexpr unsigned optional_keys = (1u << k_size) | (1u << k_envid) | (1u << k_client);

// A parse failure: the message for `why`.
struct Bad {
    std::string reason;
};

// Strict decimal: digits only, no sign (unless Signed and '-'), no leading zeros,
// no overflow.
template <typename T>
std::optional<T> parse_number(std::string_view s) {
    if (s.empty()) return std::nullopt;
    const std::string_view digits = (s[0] == '-' && std::is_signed_v<T>) ? s.substr(1) : s;
    if (digits.empty() || (digits.size() > 1 && digits[0] == '0') || (digits[0] == '0' && s[0] == '-'))
        return std::nullopt;
    T value{};
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
    return value;
}

std::string xtext_or_throw(std::string_view value, std::string_view what) {
    auto decoded = decode_xtext(value);
    if (!decoded) throw Bad{fmt::format("bad escape in {}", what)};
    return std::move(*decoded);
}

template <typename T>
T number_or_throw(std::string_view value, std::string_view what) {
    const auto n = parse_number<T>(value);
    if (!n) throw Bad{fmt::format("bad number in {}", what)};
    return *n;
}

// "to=<x> domain=<x> state=<s> attempts=<n> notify=<list> [orcpt-type=<x> orcpt=<x>] error=<x>"
Recipient parse_recipient(std::string_view value) {
    std::vector<std::pair<std::string_view, std::string_view>> fields;
    while (!value.empty()) {
        const auto space = value.find(' ');
        const std::string_view field = value.substr(0, space);
        const auto eq = field.find('=');
        if (eq == std::string_view::npos) throw Bad{"rcpt field without '='"};
        fields.emplace_back(field.substr(0, eq), field.substr(eq + 1));
        if (space == std::string_view::npos) break;
        value.remove_prefix(space + 1);
        if (value.empty()) throw Bad{"rcpt ends with a space"};
    }
    const bool has_orcpt = fields.size() == 8;
    static constexpr std::string_view plain[] = {"to", "domain", "state", "attempts", "notify", "error"};
    static constexpr std::string_view with_orcpt[] = {"to",     "domain",     "state", "attempts",
                                                      "notify", "orcpt-type", "orcpt", "error"};
    const std::string_view* expected = has_orcpt ? with_orcpt : plain;
    if (fields.size() != 6 && !has_orcpt)
        throw Bad{"rcpt needs fields to, domain, state, attempts, notify, error"};
    for (std::size_t i = 0; i < fields.size(); ++i)
        if (fields[i].first != expected[i])
            throw Bad{fmt::format("rcpt field {} must be {}", i + 1, expected[i])};

    Recipient r;
    r.address = xtext_or_throw(fields[0].second, "rcpt to");
    r.domain = xtext_or_throw(fields[1].second, "rcpt domain");
    if (r.domain.empty()) throw Bad{"rcpt domain is empty"};
    const std::string_view state = fields[2].second;
    if (state == "pending") {
        r.state = RecipientState::pending;
    } else if (state == "delivered") {
        r.state = RecipientState::delivered;
    } else if (state == "bounced") {
        r.state = RecipientState::bounced;
    } else {
        throw Bad{"bad rcpt state"};
    }
    r.attempts = number_or_throw<std::uint32_t>(fields[3].second, "rcpt attempts");
    std::string_view notify = fields[4].second;
    while (!notify.empty()) {
        const auto comma = notify.find(',');
        const std::string_view word = notify.substr(0, comma);
        const auto it = std::find_if(std::begin(notify_names), std::end(notify_names),
                                     [&](const auto& n) { return n.first == word; });
        if (it == std::end(notify_names) || (r.notify & it->second) != 0) throw Bad{"bad rcpt notify"};
        r.notify = static_cast<std::uint8_t>(r.notify | it->second);
        if (comma == std::string_view::npos) break;
        notify.remove_prefix(comma + 1);
        if (notify.empty()) throw Bad{"bad rcpt notify"};
    }
    if (has_orcpt) {
        r.orcpt_type = xtext_or_throw(fields[5].second, "rcpt orcpt-type");
        if (r.orcpt_type.empty()) throw Bad{"rcpt orcpt-type is empty"};
        r.orcpt = xtext_or_throw(fields[6].second, "rcpt orcpt");
    }
    r.last_error = xtext_or_throw(fields.back().second, "rcpt error");
    return r;
}

void parse_key(Envelope& e, Key key, std::string_view value) {
    const std::string_view name = key_names[key];
    switch (key) {
        case k_id:
            if (!is_valid_id(value)) throw Bad{"bad id"};
            e.id = value;
            break;
        case k_arrival:
            e.arrival = number_or_throw<std::int64_t>(value, name);
            break;
        case k_content_size:
            e.content_size = number_or_throw<std::uint64_t>(value, name);
            break;
        case k_sender:
            e.sender = xtext_or_throw(value, name);
            break;
        case k_size:
            e.size = number_or_throw<std::uint64_t>(value, name);
            break;
        case k_body:
            if (value == "unspecified") {
                e.body = Body::unspecified;
            } else if (value == "7bit") {
                e.body = Body::seven_bit;
            } else if (value == "8bitmime") {
                e.body = Body::eight_bit_mime;
            } else {
                throw Bad{"bad body"};
            }
            break;
        case k_smtputf8:
            if (value != "yes" && value != "no") throw Bad{"bad smtputf8"};
            e.smtputf8 = value == "yes";
            break;
        case k_ret:
            if (value == "unspecified") {
                e.ret = Ret::unspecified;
            } else if (value == "full") {
                e.ret = Ret::full;
            } else if (value == "hdrs") {
                e.ret = Ret::hdrs;
            } else {
                throw Bad{"bad ret"};
            }
            break;
        case k_envid:
            e.envid = xtext_or_throw(value, name);
            break;
        case k_client:
            e.client = xtext_or_throw(value, name);
            break;
        case k_attempts:
            e.attempts = number_or_throw<std::uint32_t>(value, name);
            break;
        case k_next_attempt:
            e.next_attempt = number_or_throw<std::int64_t>(value, name);
            break;
        case k_last_error:
            e.last_error = xtext_or_throw(value, name);
            break;
        case k_count:
            break;
    }
}

void parse_lines(std::string_view text, Envelope& e, std::size_t& line_no) {
    if (text.empty()) throw Bad{"empty file"};
    if (text.back() != '\n') throw Bad{"truncated: no final newline"};
    unsigned seen = 0;
    bool ended = false;
    line_no = 0;
    while (!text.empty()) {
        ++line_no;
        const auto nl = text.find('\n');
        const std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl + 1);
        if (ended) throw Bad{"data after end"};
        const auto space = line.find(' ');
        const std::string_view key = line.substr(0, space);
        const std::string_view value =
            space == std::string_view::npos ? std::string_view{} : line.substr(space + 1);
        if (line_no == 1) {
            if (key != magic || space == std::string_view::npos) throw Bad{"not a queue envelope"};
            if (value != version) throw Bad{fmt::format("unsupported version \"{}\"", printable(value))};
            continue;
        }
        if (line == "end") {
            ended = true;
            continue;
        }
        if (space == std::string_view::npos) throw Bad{"line without a space"};
        if (key == "rcpt") {
            e.recipients.push_back(parse_recipient(value));
            continue;
        }
        const auto* it = std::find(std::begin(key_names), std::end(key_names), key);
        if (it == std::end(key_names)) throw Bad{fmt::format("unknown key \"{}\"", printable(key))};
        const auto k = static_cast<Key>(it - std::begin(key_names));
        if ((seen & (1u << k)) != 0) throw Bad{fmt::format("duplicate key {}", key)};
        seen |= 1u << k;
        // Only rcpt values hold spaces (between their fields).
        if (value.find(' ') != std::string_view::npos)
            throw Bad{fmt::format("space in the value of {}", key)};
        parse_key(e, k, value);
    }
    ++line_no;  // what follows concerns the whole file: reported past its end
    if (!ended) throw Bad{"truncated: no end line"};
    for (unsigned k = 0; k < k_count; ++k)
        if ((seen & (1u << k)) == 0 && (optional_keys & (1u << k)) == 0)
            throw Bad{fmt::format("missing key {}", key_names[k])};
    if (e.recipients.empty()) throw Bad{"no rcpt"};
}

std::string duration(std::int64_t seconds) {
    if (seconds < 0) seconds = 0;
    if (seconds < 60) return fmt::format("{}s", seconds);
    if (seconds < 3600) return fmt::format("{}m", seconds / 60);
    if (seconds < 86400) return fmt::format("{}h{}m", seconds / 3600, seconds % 3600 / 60);
    return fmt::format("{}d{}h", seconds / 86400, seconds % 86400 / 3600);
}

// mtime cannot hold every int64; out-of-range schedules are clamped (the envelope
// keeps the exact value).
std::int64_t mtime_for(std::int64_t next_attempt) noexcept {
    return std::clamp<std::int64_t>(next_attempt, 0, 0xffffffffLL);
}

}  // namespace

std::error_code new_id(std::string& out) {
    timespec ts{};
    if (::clock_gettime(CLOCK_REALTIME, &ts) != 0) return errno_code();
    // One counter per process; the pid separates processes, the microseconds
    // separate a pid reused after a restart.
    static std::atomic<std::uint32_t> counter{0};
    const auto us =
        static_cast<std::uint64_t>(ts.tv_sec) * 1000000u + static_cast<std::uint64_t>(ts.tv_nsec) / 1000u;
    const auto pid = static_cast<std::uint32_t>(::getpid());
    const std::uint32_t n = counter.fetch_add(1, std::memory_order_relaxed) & 0xffffffu;
    out = fmt::format("{:014x}{:08x}{:06x}", us & 0xffffffffffffffu, pid, n);
    return {};
}

// ---------------------------------------------------------------- free functions

bool Envelope::finished() const noexcept {
    return std::none_of(recipients.begin(), recipients.end(),
                        [](const Recipient& r) { return r.state == RecipientState::pending; });
}

std::string domain_of(std::string_view address) {
    const auto at = address.rfind('@');
    if (at == std::string_view::npos) return {};
    return ascii_lower(address.substr(at + 1));
}

Recipient make_recipient(std::string_view address) {
    Recipient r;
    r.address = address;
    r.domain = domain_of(address);
    return r;
}

std::string format_envelope(const Envelope& e) {
    std::string out;
    out.reserve(512 + e.recipients.size() * 128);
    auto o = std::back_inserter(out);
    fmt::format_to(o, "{} {}\n", magic, version);
    fmt::format_to(o, "id {}\narrival {}\ncontent-size {}\nsender {}\n", encode_xtext(e.id), e.arrival,
                   e.content_size, encode_xtext(e.sender));
    if (e.size) fmt::format_to(o, "size {}\n", *e.size);
    fmt::format_to(o, "body {}\nsmtputf8 {}\nret {}\n", body_name(e.body), e.smtputf8 ? "yes" : "no",
                   ret_name(e.ret));
    if (e.envid) fmt::format_to(o, "envid {}\n", encode_xtext(*e.envid));
    if (e.client) fmt::format_to(o, "client {}\n", encode_xtext(*e.client));
    fmt::format_to(o, "attempts {}\nnext-attempt {}\nlast-error {}\n", e.attempts, e.next_attempt,
                   encode_xtext(e.last_error));
    for (const auto& r : e.recipients) {
        fmt::format_to(o, "rcpt to={} domain={} state={} attempts={} notify={}", encode_xtext(r.address),
                       encode_xtext(r.domain), state_name(r.state), r.attempts, notify_text(r.notify));
        if (!r.orcpt_type.empty())
            fmt::format_to(o, " orcpt-type={} orcpt={}", encode_xtext(r.orcpt_type), encode_xtext(r.orcpt));
        fmt::format_to(o, " error={}\n", encode_xtext(r.last_error));
    }
    out += "end\n";
    return out;
}

std::error_code parse_envelope(std::string_view text, Envelope& out, std::string* why) {
    out = Envelope{};
    std::size_t line_no = 0;
    try {
        parse_lines(text, out, line_no);
    } catch (const Bad& bad) {
        if (why) *why = fmt::format("line {}: {}", line_no, bad.reason);
        return errno_code(EBADMSG);
    }
    return {};
}

bool is_resource_error(std::error_code ec) noexcept {
    return ec == std::errc::no_space_on_device || ec == std::errc::file_too_large ||
           (ec.category() == std::system_category() && ec.value() == EDQUOT);
}

bool is_valid_id(std::string_view id) noexcept {
    return id.size() == id_length && std::all_of(id.begin(), id.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
           });
}

std::string short_id(std::string_view id) {
    if (!is_valid_id(id)) return std::string(id);
    // Low 7 digits of the microseconds, low 3 of the pid, low 2 of the counter.
    return fmt::format("{}{}{}", id.substr(7, 7), id.substr(19, 3), id.substr(26, 2));
}

// ---------------------------------------------------------------- Writer

Writer::Writer(Writer&& other) noexcept
    : root_(std::move(other.root_)),
      fd_(std::move(other.fd_)),
      id_(std::move(other.id_)),
      tmp_path_(std::move(other.tmp_path_)),
      size_(other.size_),
      buffer_(std::move(other.buffer_)),
      buffered_(other.buffered_) {
    other.tmp_path_.clear();
    other.buffered_ = 0;
}

Writer& Writer::operator=(Writer&& other) noexcept {
    if (this != &other) {
        abort();
        root_ = std::move(other.root_);
        fd_ = std::move(other.fd_);
        id_ = std::move(other.id_);
        tmp_path_ = std::move(other.tmp_path_);
        other.tmp_path_.clear();
        size_ = other.size_;
        buffer_ = std::move(other.buffer_);
        buffered_ = std::exchange(other.buffered_, 0);
    }
    return *this;
}

Writer::~Writer() { abort(); }

void Writer::abort() noexcept {
    static_cast<void>(fd_.close());  // the file is being thrown away: its errors do not matter
    if (!tmp_path_.empty()) static_cast<void>(unlink_file(tmp_path_));  // else recover() removes it
    tmp_path_.clear();
    buffered_ = 0;
}

std::error_code Writer::fail(std::error_code ec) noexcept {
    abort();
    return ec;
}

std::error_code Writer::flush() {
    if (buffered_ == 0) return {};
    const std::size_t n = std::exchange(buffered_, 0);
    return write_all(fd_.get(), std::string_view(buffer_.get(), n));
}

std::error_code Writer::write(std::string_view chunk) {
    if (!valid()) return errno_code(EBADF);
    if (buffered_ + chunk.size() <= writer_buffer) {
        std::memcpy(buffer_.get() + buffered_, chunk.data(), chunk.size());
        buffered_ += chunk.size();
    } else {
        if (auto ec = flush()) return fail(ec);
        if (chunk.size() >= writer_buffer) {
            if (auto ec = write_all(fd_.get(), chunk)) return fail(ec);
        } else {
            std::memcpy(buffer_.get(), chunk.data(), chunk.size());
            buffered_ = chunk.size();
        }
    }
    size_ += chunk.size();
    return {};
}

std::error_code Writer::commit(Envelope& envelope) {
    if (!valid()) return errno_code(EBADF);
    if (envelope.recipients.empty()) return fail(errno_code(EINVAL));
    for (const auto& r : envelope.recipients)
        if (r.domain.empty()) return fail(errno_code(EINVAL));

    // 1. The content, durable under its final name.
    if (auto ec = flush()) return fail(ec);
    if (::fsync(fd_.get()) != 0) return fail(errno_code());
    if (auto ec = fd_.close()) return fail(ec);
    const Queue q(root_);
    const std::string content = q.path(dir_content, id_);
    if (::rename(tmp_path_.c_str(), content.c_str()) != 0) return fail(errno_code());
    tmp_path_.clear();  // from here on, cleaning up is ours, not abort()'s

    envelope.id = id_;
    envelope.content_size = size_;
    std::vector<std::string> markers;
    // 2. The markers, then 3. the envelope: the message exists from its rename on.
    std::error_code ec = fsync_dir(q.path(dir_content, ""));
    if (!ec) ec = q.add_markers(envelope, &markers);
    if (!ec) ec = q.write_envelope(envelope);
    if (!ec) return {};

    // Undo in the reverse order. The envelope may be in place if only the directory
    // fsync failed: without a durable envelope we must not have said 250, and the
    // client will send the message again, so no copy may stay.
    static_cast<void>(unlink_file(q.path(dir_envelope, id_)));
    for (const auto& m : markers) static_cast<void>(unlink_file(m));
    static_cast<void>(unlink_file(content));
    envelope.id.clear();
    envelope.content_size = 0;
    return ec;
}

// ---------------------------------------------------------------- Queue

Queue::Queue(std::string root) : root_(std::move(root)) {}

std::string Queue::path(std::string_view dir, std::string_view name) const {
    return fmt::format("{}/{}/{}", root_, dir, name);
}

std::error_code Queue::prepare() const {
    bool created = false;
    if (auto ec = make_dir(root_)) return ec;
    for (std::string_view d : {dir_tmp, dir_content, dir_envelope, dir_domain}) {
        bool c = false;
        if (auto ec = make_dir(fmt::format("{}/{}", root_, d), &c)) return ec;
        created = created || c;
    }
    return created ? fsync_dir(root_) : std::error_code{};
}

Writer Queue::create(std::error_code& ec) const {
    Writer w;
    // A clash is impossible unless the clock steps back within one pid; retry anyway.
    for (int attempt = 0; attempt < 3; ++attempt) {
        if ((ec = new_id(w.id_))) return Writer{};
        w.tmp_path_ = path(dir_tmp, w.id_ + ".content");
        w.fd_ = Fd{::open(w.tmp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)};
        if (w.fd_) break;
        ec = errno_code();
        w.tmp_path_.clear();
        if (ec != std::errc::file_exists) return Writer{};
    }
    if (!w.fd_) return Writer{};
    w.root_ = root_;
    w.buffer_ = std::make_unique_for_overwrite<char[]>(writer_buffer);
    ec.clear();
    return w;
}

std::error_code Queue::write_envelope(const Envelope& envelope) const {
    std::string unique;
    if (auto ec = new_id(unique)) return ec;
    return write_file_atomic(path(dir_tmp, fmt::format("{}.envelope.{}", envelope.id, unique)),
                             path(dir_envelope, envelope.id), path(dir_envelope, ""),
                             format_envelope(envelope), mtime_for(envelope.next_attempt));
}

// Creates the marker of each pending domain that lacks one and makes it durable.
// The paths of the markers created go to `added`.
std::error_code Queue::add_markers(const Envelope& envelope, std::vector<std::string>* added) const {
    bool new_dir = false;
    for (const auto& name : index_names(envelope, true)) {
        const std::string dir = path(dir_domain, name);
        const std::string marker = fmt::format("{}/{}", dir, envelope.id);
        // recover() may remove an empty domain directory between our mkdir and open.
        int fd = -1;
        for (int attempt = 0; attempt < 3 && fd < 0; ++attempt) {
            bool created = false;
            if (auto ec = make_dir(dir, &created)) return ec;
            new_dir = new_dir || created;
            fd = ::open(marker.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (fd < 0 && errno != ENOENT) break;
        }
        if (fd < 0) {
            if (errno == EEXIST) continue;  // already indexed
            return errno_code();
        }
        if (added) added->push_back(marker);
        if (auto ec = Fd{fd}.close()) return ec;
        if (auto ec = fsync_dir(dir)) return ec;
    }
    return new_dir ? fsync_dir(path(dir_domain, "")) : std::error_code{};
}

// Best effort and without fsync: a marker that survives is stale, which readers
// tolerate and recover() removes.
void Queue::remove_markers(const Envelope& envelope, bool only_finished) const noexcept {
    try {
        const auto pending = index_names(envelope, true);
        for (const auto& name : index_names(envelope, false)) {
            if (only_finished && pending.count(name) != 0) continue;
            static_cast<void>(unlink_file(fmt::format("{}/{}", path(dir_domain, name), envelope.id)));
        }
    } catch (const std::bad_alloc&) {
        // Out of memory: the markers stay stale until recover().
    }
}

std::error_code Queue::list(std::vector<std::string>& ids) const {
    if (auto ec = read_dir(path(dir_envelope, ""), ids)) return ec;
    std::erase_if(ids, [](const std::string& id) { return !is_valid_id(id); });
    std::sort(ids.begin(), ids.end());
    return {};
}

std::error_code Queue::list_due(std::int64_t now, std::vector<std::string>& ids) const {
    if (auto ec = list(ids)) return ec;
    std::vector<std::string> due;
    for (auto& id : ids) {
        std::int64_t mtime = 0;
        if (auto ec = file_mtime(path(dir_envelope, id), mtime)) {
            if (ec == std::errc::no_such_file_or_directory) continue;  // removed meanwhile
            return ec;
        }
        if (mtime <= now) due.push_back(std::move(id));
    }
    ids = std::move(due);
    return {};
}

std::error_code Queue::list_domain(std::string_view domain, std::vector<std::string>& ids) const {
    ids.clear();
    if (domain.empty()) return errno_code(EINVAL);
    if (auto ec = read_dir(path(dir_domain, domain_dir_name(ascii_lower(domain))), ids)) {
        if (ec == std::errc::no_such_file_or_directory) return {};  // never indexed
        return ec;
    }
    std::erase_if(ids, [](const std::string& id) { return !is_valid_id(id); });
    std::sort(ids.begin(), ids.end());
    return {};
}

std::error_code Queue::load(std::string_view id, Envelope& out, std::string* why) const {
    if (!is_valid_id(id)) return errno_code(EINVAL);
    std::string text;
    if (auto ec = read_file(path(dir_envelope, id), text, max_envelope)) return ec;
    if (auto ec = parse_envelope(text, out, why)) return ec;
    if (out.id != id) {
        if (why) *why = "line 2: id does not match the file name";
        return errno_code(EBADMSG);
    }
    return {};
}

std::error_code Queue::open_content(std::string_view id, Fd& out) const {
    if (!is_valid_id(id)) return errno_code(EINVAL);
    Fd fd{::open(path(dir_content, id).c_str(), O_RDONLY | O_CLOEXEC)};
    if (!fd) return errno_code();
    out = std::move(fd);
    return {};
}

std::error_code Queue::update(const Envelope& envelope) const {
    if (!is_valid_id(envelope.id) || envelope.recipients.empty()) return errno_code(EINVAL);
    for (const auto& r : envelope.recipients)
        if (r.domain.empty()) return errno_code(EINVAL);
    // rename() would bring a removed message back, without content.
    if (!exists(path(dir_envelope, envelope.id))) return errno_code(ENOENT);
    // A recipient made pending again needs its marker before the envelope says so.
    if (auto ec = add_markers(envelope, nullptr)) return ec;
    if (auto ec = write_envelope(envelope)) return ec;
    remove_markers(envelope, true);
    return {};
}

std::error_code Queue::remove(std::string_view id) const {
    const std::string one(id);
    return remove(std::span<const std::string>(&one, 1)).front();
}

std::vector<std::error_code> Queue::remove(std::span<const std::string> ids) const {
    std::vector<std::error_code> errors(ids.size());
    // 1. The envelopes: from here on, errors[i] is {} for those unlinked. A malformed
    // envelope is removed too; its markers, unknown, then wait for recover().
    std::vector<std::optional<Envelope>> envelopes(ids.size());
    std::size_t gone = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (!is_valid_id(ids[i])) {
            errors[i] = errno_code(EINVAL);
            continue;
        }
        Envelope envelope;
        const std::error_code load_ec = load(ids[i], envelope);
        if (load_ec && load_ec != std::errc::bad_message) {
            errors[i] = load_ec;
            continue;
        }
        if (auto ec = unlink_file(path(dir_envelope, ids[i]))) {
            errors[i] = ec;
            continue;
        }
        if (!load_ec) envelopes[i] = std::move(envelope);
        ++gone;
    }
    if (gone == 0) return errors;
    // 2. One fsync makes every unlink durable: only then may the contents go.
    if (auto ec = fsync_dir(path(dir_envelope, ""))) {
        for (std::size_t i = 0; i < ids.size(); ++i)
            if (!errors[i]) errors[i] = ec;
        return errors;
    }
    // 3. The messages are gone; what follows is tidying (recover() finishes it).
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (errors[i]) continue;
        errors[i] = unlink_file(path(dir_content, ids[i]));
        if (envelopes[i]) remove_markers(*envelopes[i], false);
    }
    return errors;
}

std::error_code Queue::recover(std::int64_t now, std::int64_t grace, RecoverReport& report) const {
    report = RecoverReport{};
    const auto stale = [&](const std::string& p, bool& is_stale) -> std::error_code {
        std::int64_t mtime = 0;
        is_stale = false;
        if (auto ec = file_mtime(p, mtime))
            return ec == std::errc::no_such_file_or_directory ? std::error_code{} : ec;
        is_stale = mtime <= now - grace;
        return {};
    };
    std::vector<std::string> names;

    // 1. Temporary files of writers and updates that died.
    if (auto ec = read_dir(path(dir_tmp, ""), names)) return ec;
    for (const auto& name : names) {
        const std::string p = path(dir_tmp, name);
        bool old = false;
        if (auto ec = stale(p, old)) return ec;
        if (!old) continue;
        if (auto ec = unlink_file(p)) return ec;
        ++report.temps_removed;
    }

    // 2. Every envelope: which domains it has pending; missing markers back.
    std::map<std::string, std::set<std::string>> pending;  // id -> index names
    std::vector<std::string> ids;
    if (auto ec = list(ids)) return ec;
    for (const auto& id : ids) {
        Envelope e;
        if (auto ec = load(id, e)) {
            if (ec == std::errc::no_such_file_or_directory) continue;  // removed meanwhile
            if (ec != std::errc::bad_message) return ec;
            report.corrupt.push_back(id);
            continue;
        }
        if (!exists(path(dir_content, id))) report.corrupt.push_back(id);
        std::vector<std::string> added;
        if (auto ec = add_markers(e, &added)) return ec;
        report.markers_added += added.size();
        pending.emplace(id, index_names(e, true));
    }

    // 3. Content without envelope: a crash in commit after the content's rename, or
    // in remove after the envelope's unlink. Young ones may be a commit in progress.
    if (auto ec = read_dir(path(dir_content, ""), names)) return ec;
    for (const auto& id : names) {
        if (!is_valid_id(id) || pending.count(id) != 0 || exists(path(dir_envelope, id))) continue;
        const std::string p = path(dir_content, id);
        bool old = false;
        if (auto ec = stale(p, old)) return ec;
        if (!old) continue;
        if (auto ec = unlink_file(p)) return ec;
        ++report.contents_removed;
    }

    // 4. Markers of messages gone, or of domains with nothing pending.
    std::vector<std::string> domains;
    if (auto ec = read_dir(path(dir_domain, ""), domains)) return ec;
    for (const auto& domain : domains) {
        const std::string dir = path(dir_domain, domain);
        // Its age before our unlinks touch it: old means no commit added to it lately.
        bool old_dir = false;
        if (auto ec = stale(dir, old_dir)) return ec;
        if (auto ec = read_dir(dir, names)) {
            if (ec == std::errc::no_such_file_or_directory || ec == std::errc::not_a_directory) continue;
            return ec;
        }
        std::size_t kept = 0;
        for (const auto& id : names) {
            const auto it = pending.find(id);
            const bool live = it != pending.end() ? it->second.count(domain) != 0
                                                  : !is_valid_id(id) || exists(path(dir_envelope, id));
            const std::string p = fmt::format("{}/{}", dir, id);
            bool old = false;
            if (!live) {
                if (auto ec = stale(p, old)) return ec;
            }
            if (live || !old) {
                ++kept;
                continue;
            }
            if (auto ec = unlink_file(p)) return ec;
            ++report.markers_removed;
        }
        // A commit may be creating a marker right now: it retries if the directory
        // goes, and ENOTEMPTY / EEXIST here mean it won.
        if (kept == 0 && old_dir && ::rmdir(dir.c_str()) != 0 && errno != ENOTEMPTY && errno != EEXIST &&
            errno != ENOENT)
            return errno_code();
    }
    return {};
}

std::error_code Queue::summary(std::int64_t now, std::string& out) const {
    std::vector<std::string> ids;
    if (auto ec = list(ids)) return ec;
    auto o = std::back_inserter(out);
    for (const auto& id : ids) {
        Envelope e;
        std::string why;
        if (auto ec = load(id, e, &why)) {
            if (ec == std::errc::no_such_file_or_directory) continue;
            fmt::format_to(o, "{} {} unreadable: {}\n", id, short_id(id), why.empty() ? ec.message() : why);
            continue;
        }
        const std::string next =
            e.next_attempt <= now ? std::string("due") : "+" + duration(e.next_attempt - now);
        fmt::format_to(o, "{} {} {} {} <{}> next={} attempts={}", id, short_id(id), e.content_size,
                       duration(now - e.arrival), printable(e.sender), next, e.attempts);
        if (!e.last_error.empty()) fmt::format_to(o, " error={}", printable(e.last_error));
        out += '\n';
        for (const auto& r : e.recipients) {
            fmt::format_to(o, "    <{}> {}", printable(r.address), state_name(r.state));
            if (r.attempts != 0) fmt::format_to(o, " attempts={}", r.attempts);
            if (!r.last_error.empty()) fmt::format_to(o, " error={}", printable(r.last_error));
            out += '\n';
        }
    }
    return {};
}

}  // namespace smtp::queue
