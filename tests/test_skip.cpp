// COGENT_SKIP (tests/support.hpp) and the doctest main (tests/main.cpp): a skipped case counts
// as skipped, never as passed. This binary runs its own hidden cases (doctest::skip(), run
// with --no-skip) as children and checks their exit status: 77 (meson's skip) when every case
// that ran skipped, a failure when skips are forbidden (CI) or hidden beside passing cases.
#include <climits>
#include <map>
#include <string>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;
namespace sp = cogent::subprocess;

namespace {

std::string self_exe() {
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    REQUIRE(n > 0);
    return std::string(buf, std::size_t(n));
}

// Runs this binary on the hidden cases `filter` (doctest's --test-case) with the environment
// settings `env` ("" unsets), nothing else of ours: status and output.
sp::CompletedProcess run_cases(const std::string& filter,
                               const std::map<std::string, std::string>& env = {}) {
    auto e = sp::Env::current();
    e.unset("COGENT_TEST_MESON");
    e.unset("COGENT_TEST_NO_SKIP");
    for (auto& [k, v] : env) {
        if (v.empty())
            e.unset(k);
        else
            e.set(k, v);
    }
    sp::RunOptions o;
    o.env = e;
    o.stdout = sp::PIPE;
    o.stderr = sp::STDOUT;
    o.timeout = 60s;
    return sp::run({self_exe(), "--no-skip", "--test-case=" + filter}, o);
}

bool contains(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("child: skips" * doctest::skip()) {
    COGENT_SKIP("the reason, " << 42);
    FAIL("COGENT_SKIP did not return");
}

TEST_CASE("child: unsupported" * doctest::skip()) {
    COGENT_SKIP_UNSUPPORTED("cannot run in this build");
    FAIL("COGENT_SKIP_UNSUPPORTED did not return");
}

TEST_CASE("child: passes" * doctest::skip()) { CHECK(1 + 1 == 2); }

TEST_CASE("child: fails" * doctest::skip()) { CHECK(1 + 1 == 3); }

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "a case that skips exits 77 and says why") {
    auto r = run_cases("child: skips");
    INFO(r.stdout);
    CHECK(r.returncode == 77);
    CHECK(contains(r.stdout, "SKIPPED: the reason, 42"));
    CHECK(contains(r.stdout, "[cogent] 1 of 1 test cases skipped"));
    // Under meson too: alone, it is meson's skip.
    CHECK(run_cases("child: skips", {{"COGENT_TEST_MESON", "1"}}).returncode == 77);
    // A passing case alone: 0, and no skip reported.
    auto p = run_cases("child: passes", {{"COGENT_TEST_MESON", "1"}});
    CHECK(p.returncode == 0);
    CHECK_FALSE(contains(p.stdout, "skipped:"));
    // A failure among skips is a failure.
    CHECK(run_cases("child: skips,child: fails").returncode == 1);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "with COGENT_TEST_NO_SKIP=1 (CI) a skip fails") {
    auto r = run_cases("child: skips", {{"COGENT_TEST_NO_SKIP", "1"}});
    INFO(r.stdout);
    CHECK(r.returncode == 1);
    CHECK(contains(r.stdout, "cannot skip with COGENT_TEST_NO_SKIP=1 (CI=true): the reason, 42"));
    // ...except a case that this build cannot run anywhere.
    auto u = run_cases("child: unsupported", {{"COGENT_TEST_NO_SKIP", "1"}});
    INFO(u.stdout);
    CHECK(u.returncode == 77);
    CHECK(contains(u.stdout, "SKIPPED: cannot run in this build"));
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "under meson a skip beside passing cases fails") {
    // meson counts a whole executable: a skip hidden among passes would count as a pass.
    auto r = run_cases("child: skips,child: passes", {{"COGENT_TEST_MESON", "1"}});
    INFO(r.stdout);
    CHECK(r.returncode == 1);
    CHECK(contains(r.stdout, "[cogent] 1 of 2 test cases skipped"));
    CHECK(contains(r.stdout, "register each case that may skip as its own meson test"));
    // Run by hand, the same is fine (and still says what skipped).
    auto h = run_cases("child: skips,child: passes");
    CHECK(h.returncode == 0);
    CHECK(contains(h.stdout, "[cogent] 1 of 2 test cases skipped"));
    // A filter that matches nothing (a renamed case in tests/meson.build) fails under meson.
    auto none = run_cases("child: no such case", {{"COGENT_TEST_MESON", "1"}});
    CHECK(none.returncode == 1);
    CHECK(contains(none.stdout, "no test case ran"));
}
