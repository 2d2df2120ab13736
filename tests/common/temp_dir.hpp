// tests/common/temp_dir.hpp: a fresh directory for one test, removed with everything
// in it when the test ends. Shared by the unit tests of apps/common and apps/smtpd.
//
// Thread safety: one TempDir per test; nothing shared.
#ifndef SMTP_TESTS_COMMON_TEMP_DIR_HPP
#define SMTP_TESTS_COMMON_TEMP_DIR_HPP

#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace smtp::test {

class TempDir {
public:
    // Under $TMPDIR (else /tmp), named <prefix>-XXXXXX.
    explicit TempDir(std::string_view prefix) {
        const char* base = std::getenv("TMPDIR");
        std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/" +
                              std::string(prefix) + "-XXXXXX";
        std::vector<char> buf(pattern.begin(), pattern.end());
        buf.push_back('\0');
        REQUIRE(::mkdtemp(buf.data()) != nullptr);
        path_ = buf.data();
    }
    ~TempDir() {
        // Give back any permission a test took away, then remove everything.
        namespace fs = std::filesystem;
        std::error_code ec;
        for (auto it = fs::recursive_directory_iterator(path_, ec);
             !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
            if (it->is_directory(ec) && !it->is_symlink(ec)) ::chmod(it->path().c_str(), 0700);
        fs::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }
    std::string operator/(std::string_view rest) const { return path_ + "/" + std::string(rest); }

private:
    std::string path_;
};

}  // namespace smtp::test

#endif
