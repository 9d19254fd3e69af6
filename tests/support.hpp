// Shared test support: a fixture that fails a test which leaves a greenlet, a queued hub
// callback or a file descriptor behind.
#pragma once

#include <dirent.h>

#include <cogent/cogent.hpp>
#include <cstddef>
#include <doctest/doctest.h>

namespace cogent_test {

inline std::size_t open_fds() {
    std::size_t n = 0;
    if (DIR* d = opendir("/proc/self/fd")) {
        while (readdir(d)) ++n;
        closedir(d);
    }
    return n;
}

// Use as TEST_CASE_FIXTURE(cogent_test::LeakCheck, "...").
struct LeakCheck {
    // The hub's own fds (epoll, eventfd) are created once per thread, not leaked by a test.
    std::size_t fds_before = (cogent::get_hub(), open_fds());
    ~LeakCheck() {
        // Let greenlets that are finishing (links, notifications) run to the end.
        for (int i = 0; i < 100 && (cogent::debug::live_greenlets() > 0 ||
                                    cogent::debug::pending_callbacks() > 0);
             ++i)
            cogent::sleep(0);
        CHECK_MESSAGE(cogent::debug::live_greenlets() == 0, "a greenlet was left running");
        CHECK_MESSAGE(cogent::debug::pending_callbacks() == 0, "a hub callback was left queued");
        CHECK_MESSAGE(open_fds() == fds_before, "a file descriptor was leaked");
    }
};

}  // namespace cogent_test
