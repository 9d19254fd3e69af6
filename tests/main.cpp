// The doctest main of every test executable, with skips (COGENT_SKIP in support.hpp) counted:
// a run in which every test case skipped exits 77, meson's code for a skipped test.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace cogent_test {

namespace {

int cases_run = 0;
int cases_skipped = 0;
bool current_skipped = false;
std::string skip_reasons;

// Counts the test cases that run and those of them that called COGENT_SKIP.
struct SkipCounter : doctest::IReporter {
    explicit SkipCounter(const doctest::ContextOptions&) {}
    void report_query(const doctest::QueryData&) override {}
    void test_run_start() override {}
    void test_run_end(const doctest::TestRunStats&) override {}
    void test_case_start(const doctest::TestCaseData&) override {
        ++cases_run;
        current_skipped = false;
    }
    void test_case_reenter(const doctest::TestCaseData&) override {}
    void test_case_end(const doctest::CurrentTestCaseStats&) override {
        if (current_skipped) ++cases_skipped;
    }
    void test_case_exception(const doctest::TestCaseException&) override {}
    void subcase_start(const doctest::SubcaseSignature&) override {}
    void subcase_end() override {}
    void log_assert(const doctest::AssertData&) override {}
    void log_message(const doctest::MessageData&) override {}
    void test_case_skipped(const doctest::TestCaseData&) override {}
};

}  // namespace

void note_skip(const std::string& reason) {
    current_skipped = true;
    skip_reasons += "\n  ";
    skip_reasons += reason;
}

}  // namespace cogent_test

DOCTEST_REGISTER_LISTENER("cogent_skips", 1, cogent_test::SkipCounter);

int main(int argc, char** argv) {
    doctest::Context context(argc, argv);
    const int rc = context.run();
    if (context.shouldExit()) return rc;  // --help, --list-test-cases and the like
    using cogent_test::cases_run;
    using cogent_test::cases_skipped;
    const char* meson = std::getenv("COGENT_TEST_MESON");
    const bool under_meson = meson && std::strcmp(meson, "1") == 0;
    if (cases_run == 0 && under_meson) {
        // A --test-case filter in tests/meson.build that no longer names a case.
        std::printf("[cogent] FAILED: no test case ran (check the filters in tests/meson.build)\n");
        return 1;
    }
    if (cases_skipped == 0) return rc;
    std::printf("[cogent] %d of %d test cases skipped:%s\n", cases_skipped, cases_run,
                cogent_test::skip_reasons.c_str());
    if (rc != 0) return rc;
    if (cases_skipped == cases_run) return 77;
    // Some cases passed, some skipped: meson would count the whole run as passed and hide the
    // skip. Under meson that is a mistake in tests/meson.build; run by hand it is fine.
    if (under_meson) {
        std::printf(
            "[cogent] FAILED: a skipped case ran beside others, so meson would count it as "
            "passed: register each case that may skip as its own meson test (skip_cases in "
            "tests/meson.build)\n");
        return 1;
    }
    return 0;
}
