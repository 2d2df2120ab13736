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

}  // namespace smtp

#endif
