// apps/common/fd.hpp: an owning file descriptor.
//
// Fd owns one open file descriptor (or none: -1) and closes it when destroyed.
// Move-only, so a descriptor has exactly one owner and is closed exactly once.
// close() reports close(2)'s error (a delayed write error on NFS, EIO), so callers
// for whom it matters (a file to be committed) can check it; the destructor cannot
// report and ignores it. close(2) is never retried: on Linux the descriptor is gone
// even when it fails with EINTR, and retrying could close another thread's new fd.
// Thread safety: none; one owner at a time.
#ifndef SMTP_APPS_COMMON_FD_HPP
#define SMTP_APPS_COMMON_FD_HPP

#include <cerrno>
#include <string_view>
#include <system_error>
#include <utility>

#include <unistd.h>

namespace smtp {

class Fd {
public:
    Fd() noexcept = default;
    explicit Fd(int fd) noexcept : fd_(fd) {}
    Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Fd& operator=(Fd&& other) noexcept {
        if (this != &other) {
            static_cast<void>(close());
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { static_cast<void>(close()); }

    int get() const noexcept { return fd_; }
    bool valid() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return valid(); }

    // Gives up ownership without closing; returns the descriptor.
    int release() noexcept { return std::exchange(fd_, -1); }

    // Closes the descriptor (if any). Returns close(2)'s error, or {} on success or
    // when there was nothing to close. The Fd is empty afterwards in every case.
    std::error_code close() noexcept {
        if (fd_ < 0) return {};
        const int fd = std::exchange(fd_, -1);
        if (::close(fd) != 0) return {errno, std::system_category()};
        return {};
    }

private:
    int fd_ = -1;
};

// write(2) until all of `data` is written, retrying EINTR: a regular file may take
// less than asked (a signal, RLIMIT_FSIZE, a nearly full disk: the next call then
// reports why). Returns {} or the errno of the failed write.
inline std::error_code write_all(int fd, std::string_view data) noexcept {
    while (!data.empty()) {
        const ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            return {errno, std::system_category()};
        }
        // A file never takes 0 bytes of a non-empty write; do not spin if one does.
        if (n == 0) return {EIO, std::system_category()};
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
}

}  // namespace smtp

#endif
