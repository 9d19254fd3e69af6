// Greenlet stacks: sizes, COGENT_STACK_SIZE, guard pages and the overflow report, 100,000
// greenlets at once, and (ASan build) proof that AddressSanitizer sees greenlet stacks.
#include <sys/utsname.h>
#include <sys/wait.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

using namespace cogent_test;  // ms_since, SetOnDestroy, StderrCapture, run_child...

using cogent::Event;
using cogent::RawGreenlet;
using cogent::SpawnOptions;

#if defined(__SANITIZE_ADDRESS__)
#define COGENT_TEST_ASAN 1
#endif

namespace {

SpawnOptions with_stack(std::size_t bytes) {
    SpawnOptions o;
    o.stack_size = bytes;
    return o;
}

std::size_t count_occurrences(const std::string& s, const std::string& what) {
    std::size_t n = 0;
    for (auto pos = s.find(what); pos != std::string::npos; pos = s.find(what, pos + 1)) ++n;
    return n;
}

std::size_t mapping_count() {
    std::ifstream maps("/proc/self/maps");
    std::size_t n = 0;
    std::string line;
    while (std::getline(maps, line)) ++n;
    return n;
}

// Touches `bytes` of stack in one frame and returns a checksum of it.
template <std::size_t Bytes>
unsigned use_stack() {
    volatile char big[Bytes];
    for (std::size_t i = 0; i < Bytes; i += 1024) big[i] = char(i >> 10);
    big[Bytes - 1] = 1;
    unsigned sum = 0;
    for (std::size_t i = 0; i < Bytes; i += 1024) sum += static_cast<unsigned char>(big[i]);
    return sum + big[Bytes - 1];
}

template <std::size_t Bytes>
unsigned expected_sum() {
    unsigned sum = 0;
    for (std::size_t i = 0; i < Bytes; i += 1024) sum += static_cast<unsigned char>(char(i >> 10));
    return sum + 1;
}

}  // namespace

TEST_SUITE("stacks") {
    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "SpawnOptions::stack_size is honoured") {
        // 2 MiB of locals: far beyond the 256 KiB default, fine within a 4 MiB stack.
        constexpr std::size_t kBig = 2u << 20;
        auto g = cogent::spawn(with_stack(4u << 20), [] { return use_stack<kBig>(); });
        CHECK(g.get() == expected_sum<kBig>());
        // The same through the raw greenlet's stack_size argument.
        RawGreenlet r([] { return use_stack<kBig>(); }, {}, 4u << 20);
        CHECK(std::any_cast<unsigned>(r.switch_to()) == expected_sum<kBig>());
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "stack sizes outside [16K, 1G] are rejected with std::invalid_argument") {
        auto f = [] { return 1; };
        CHECK_THROWS_AS(cogent::spawn(with_stack(8 * 1024), f), std::invalid_argument);
        CHECK_THROWS_AS(cogent::spawn(with_stack(16 * 1024 - 1), f), std::invalid_argument);
        CHECK_THROWS_AS(cogent::spawn(with_stack((std::size_t(1) << 30) + 1), f),
                        std::invalid_argument);
        CHECK_THROWS_AS(RawGreenlet(f, {}, 1000), std::invalid_argument);
        CHECK_THROWS_AS(cogent::make_greenlet(with_stack(1), f), std::invalid_argument);
        // The bounds themselves are accepted.
        auto lo = cogent::spawn(with_stack(16 * 1024), f);
        auto hi = cogent::spawn(with_stack(std::size_t(1) << 30), f);
        CHECK(lo.get() == 1);
        CHECK(hi.get() == 1);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck, "default stack size and guard") {
        if (!std::getenv("COGENT_STACK_SIZE"))
            CHECK(cogent::debug::default_stack_size() == 256 * 1024);
        CHECK(cogent::debug::stack_guard_size() >= 4096);
    }

    TEST_CASE_FIXTURE(
        cogent_test::LeakCheck,
        "COGENT_STACK_SIZE: a malformed value makes spawn throw, naming the variable") {
        std::string child = child_path("COGENT_CHILD_ENV");
        for (const char* bad : {"banana", "8K", "2G", "12Q", "-5"}) {
            auto r = run_child(std::string("env COGENT_STACK_SIZE='") + bad + "' " + child);
            INFO("COGENT_STACK_SIZE=" << std::string(bad) << " output: " << r.output);
            CHECK(WIFEXITED(r.status));
            CHECK(WEXITSTATUS(r.status) == 0);
            // Both attempts fail: the setting is not silently ignored after the first error.
            CHECK(count_occurrences(r.output, "invalid_argument:") == 2);
            CHECK(r.output.find("COGENT_STACK_SIZE") != std::string::npos);
            CHECK(r.output.find(bad) != std::string::npos);
            CHECK(r.output.find("spawn ok") == std::string::npos);
        }
        {
            // The same from a new thread: the failed attempts to create its hub leave nothing open.
            auto r = run_child(std::string("env COGENT_STACK_SIZE=banana ") + child + " thread");
            INFO("output: " << r.output);
            CHECK(count_occurrences(r.output, "invalid_argument:") == 3);
            CHECK(r.output.find("fds leaked: 0\n") != std::string::npos);
        }
        // COGENT_STACK_GUARD (madvise, the default, or mprotect) is read the same way.
        for (const char* bad : {"none", "MPROTECT", "1"}) {
            auto r = run_child(std::string("env COGENT_STACK_GUARD='") + bad + "' " + child);
            INFO("COGENT_STACK_GUARD=" << std::string(bad) << " output: " << r.output);
            CHECK(count_occurrences(r.output, "invalid_argument:") == 2);
            CHECK(r.output.find(std::string("COGENT_STACK_GUARD='") + bad +
                                "' is neither madvise (the default) nor mprotect") !=
                  std::string::npos);
        }
        for (const char* good : {"madvise", "mprotect"}) {
            auto r = run_child(std::string("env COGENT_STACK_GUARD=") + good + " " + child);
            INFO("COGENT_STACK_GUARD=" << std::string(good) << " output: " << r.output);
            CHECK(count_occurrences(r.output, "spawn ok 7") == 2);
        }
        for (auto [good, bytes] : {std::pair{"1M", "1048576"}, std::pair{"65536", "65536"},
                                   std::pair{"512k", "524288"}}) {
            auto r = run_child(std::string("env COGENT_STACK_SIZE='") + good + "' " + child);
            INFO("COGENT_STACK_SIZE=" << std::string(good) << " output: " << r.output);
            CHECK(WIFEXITED(r.status));
            CHECK(WEXITSTATUS(r.status) == 0);
            CHECK(count_occurrences(r.output, std::string("spawn ok 7 default=") + bytes) == 2);
        }
    }

#if !defined(COGENT_TEST_ASAN)
    TEST_CASE_FIXTURE(
        cogent_test::LeakCheck,
        "stack overflow is reported with the greenlet's name and stack size, then SIGSEGV") {
        auto r = run_child(child_path("COGENT_CHILD_OVERFLOW"));
        INFO("output: " << r.output);
        CHECK(WIFSIGNALED(r.status));
        if (WIFSIGNALED(r.status)) CHECK(WTERMSIG(r.status) == SIGSEGV);
        CHECK(r.output.find("stack overflow in greenlet deep-recursion") != std::string::npos);
        CHECK(r.output.find("65536") != std::string::npos);
        CHECK(r.output.find("recursion returned") == std::string::npos);
    }
#endif

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "100,000 greenlets blocked on one Event, then all released and joined") {
#if defined(COGENT_TEST_ASAN)
        constexpr std::size_t kCount = 10'000;  // ASan's shadow memory and redzones make 100k slow
#else
        constexpr std::size_t kCount = 100'000;
#endif
        Event ev;
        std::size_t woken = 0;
        std::vector<cogent::Greenlet<void>> gs;
        gs.reserve(kCount);
        for (std::size_t i = 0; i < kCount; ++i)
            gs.push_back(cogent::spawn(with_stack(32 * 1024), [&ev, &woken] {
                ev.wait();
                ++woken;
            }));
        cogent::sleep(0);  // every one runs up to its wait
        CHECK(cogent::debug::live_greenlets() == kCount);
        CHECK(woken == 0);
        // One mapping per stack (or two, with mprotect guards) would exhaust vm.max_map_count
        // (65530): the stacks must share mappings.
        std::size_t maps = mapping_count();
        INFO("mappings: " << maps);
        CHECK(maps < 20'000);
        ev.set();
        auto done = cogent::joinall(gs);
        CHECK(done.size() == kCount);
        CHECK(woken == kCount);
        CHECK(cogent::debug::live_greenlets() == 0);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "guard pages use MADV_GUARD_INSTALL on kernels that have it (6.13+)") {
        auto g = cogent::spawn([] { return 1; });
        CHECK(g.get() == 1);
        utsname u{};
        REQUIRE(uname(&u) == 0);
        int major = 0, minor = 0;
        std::sscanf(u.release, "%d.%d", &major, &minor);
        INFO("kernel " << u.release);
        const bool kernel_has_it = major > 6 || (major == 6 && minor >= 13);
        CHECK(cogent::debug::stack_guard_uses_madvise() == kernel_has_it);
    }

    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "stacks are reused: many short greenlets in sequence") {
        std::size_t maps_before = 0;
        for (int round = 0; round < 3; ++round) {
            std::vector<cogent::Greenlet<int>> gs;
            for (int i = 0; i < 2000; ++i) gs.push_back(cogent::spawn([i] { return i; }));
            cogent::joinall(gs);
            long sum = 0;
            for (auto& g : gs) sum += g.get();
            CHECK(sum == 1999L * 2000 / 2);
            if (round == 0) maps_before = mapping_count();
        }
        // Later rounds reuse the stacks of the first: no new mappings beyond a few (libc's own).
        CHECK(mapping_count() <= maps_before + 8);
    }

#if defined(COGENT_TEST_ASAN)
    TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                      "ASan reports a heap-use-after-free inside a greenlet") {
        auto r = run_child(child_path("COGENT_CHILD_UAF"));
        INFO("output: " << r.output);
        CHECK_FALSE((WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0));
        CHECK(r.output.find("heap-use-after-free") != std::string::npos);
        CHECK(r.output.find("uaf read returned") ==
              std::string::npos);  // it stopped at the bad read
    }
#endif

}  // TEST_SUITE
