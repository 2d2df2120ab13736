#include <smtp/error.hpp>

#include <doctest/doctest.h>

#include <ostream>
#include <set>
#include <string>
#include <system_error>

TEST_SUITE("error") {
    TEST_CASE("every Errc has a distinct name and a reason") {
        std::set<std::string> names;
        for (int i = 0; i <= static_cast<int>(smtp::Errc::reply_nul_byte); ++i) {
            const auto& info = smtp::error_info(static_cast<smtp::Errc>(i));
            CHECK_FALSE(info.name.empty());
            CHECK_FALSE(info.reason.empty());
            CHECK(names.insert(std::string(info.name)).second);
        }
    }

    TEST_CASE("server errors carry a 4xx or 5xx code whose class matches the enhanced status") {
        for (int i = 1; i <= static_cast<int>(smtp::Errc::shutting_down); ++i) {
            const auto& info = smtp::error_info(static_cast<smtp::Errc>(i));
            CAPTURE(info.name);
            CHECK(info.reply_code >= 400);
            CHECK(info.reply_code < 600);
            CHECK(info.status.klass == info.reply_code / 100);
        }
    }

    TEST_CASE("reply errors have no reply to send") {
        CHECK(smtp::error_info(smtp::Errc::reply_syntax).reply_code == 0);
        CHECK(smtp::error_info(smtp::Errc::reply_nul_byte).reply_code == 0);
    }

    TEST_CASE("Errc converts to std::error_code with the reason as message") {
        std::error_code ec = smtp::Errc::bare_lf;
        CHECK(ec.category().name() == std::string("smtp"));
        CHECK(ec.message() == "Bare LF in command line");
        CHECK(ec == smtp::Errc::bare_lf);
        CHECK(ec != smtp::Errc::bare_cr);
    }

    TEST_CASE("the RFC's codes for well-known errors") {
        CHECK(smtp::error_info(smtp::Errc::line_too_long).reply_code == 500);
        CHECK(smtp::error_info(smtp::Errc::parameter_unsupported).reply_code == 555);
        CHECK(smtp::error_info(smtp::Errc::message_too_big).reply_code == 552);
        CHECK(smtp::error_info(smtp::Errc::message_too_big).status == smtp::EnhancedStatus{5, 3, 4});
        CHECK(smtp::error_info(smtp::Errc::bad_recipient).status == smtp::EnhancedStatus{5, 1, 3});
        CHECK(smtp::error_info(smtp::Errc::bad_sender).status == smtp::EnhancedStatus{5, 1, 7});
        CHECK(smtp::error_info(smtp::Errc::bad_sequence).reply_code == 503);
        CHECK(smtp::error_info(smtp::Errc::too_many_recipients).status == smtp::EnhancedStatus{4, 5, 3});
        CHECK(smtp::error_info(smtp::Errc::timed_out).status == smtp::EnhancedStatus{4, 4, 2});
    }
}
