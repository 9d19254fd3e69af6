// The monkey patch with durations too long for the clock (issue 12): nanosleep, clock_nanosleep
// (relative and TIMER_ABSTIME), ppoll, pselect, select, recvmmsg's timeout and SO_RCVTIMEO /
// SO_SNDTIMEO with a huge time mean "forever" as in the kernel, never "now"; invalid ones get
// libc's own answer (EINVAL).
#include <limits.h>
#include <poll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cogent/cogent.hpp>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

const time_t kHuge = std::numeric_limits<time_t>::max();

// fn() (a hooked libc call) is still blocked in its greenlet 60 ms later; then it is killed.
void check_blocks(const std::string& what, std::function<long()> fn) {
    INFO(what);
    bool returned = false;
    long rc = 0;
    int err = 0;
    auto g = cogent::spawn([&] {
        rc = fn();
        err = errno;
        returned = true;
    });
    cogent::sleep(60ms);
    CHECK_FALSE(returned);
    if (returned) MESSAGE("returned " << rc << " errno " << err);
    CHECK_FALSE(g.dead());  // nor threw
    g.kill();
    CHECK(g.dead());
}

struct Result {
    long rc;
    int err;
    bool operator==(const Result&) const = default;
};

template <class F>
Result call(F fn) {
    errno = 0;
    long rc = fn();
    return {rc, errno};
}

// Runs fn on a fresh OS thread that never touches cogent: every call there is libc's own.
template <class F>
auto plain_thread(F fn) {
    decltype(fn()) out{};
    std::thread([&] { out = fn(); }).join();
    return out;
}

std::pair<int, int> pair_of() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    return {sv[0], sv[1]};
}

std::pair<int, int> dgram_pair() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    return {sv[0], sv[1]};
}

}  // namespace

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "nanosleep and clock_nanosleep with a huge time block") {
    check_blocks("nanosleep({max, 0})", [] {
        timespec ts{kHuge, 0};
        return long(::nanosleep(&ts, nullptr));
    });
    check_blocks("nanosleep({1e12, 999999999})", [] {
        timespec ts{1'000'000'000'000, 999'999'999};
        return long(::nanosleep(&ts, nullptr));
    });
    check_blocks("nanosleep({9.3e9, 0})", [] {
        timespec ts{9'300'000'000, 0};
        return long(::nanosleep(&ts, nullptr));
    });
    for (clockid_t c : {CLOCK_MONOTONIC, CLOCK_REALTIME}) {
        check_blocks("clock_nanosleep({max, 0}) clock " + std::to_string(c), [c] {
            timespec ts{kHuge, 0};
            return long(::clock_nanosleep(c, 0, &ts, nullptr));
        });
        check_blocks("clock_nanosleep(TIMER_ABSTIME, {max, 999999999}) clock " + std::to_string(c),
                     [c] {
                         timespec ts{kHuge, 999'999'999};
                         return long(::clock_nanosleep(c, TIMER_ABSTIME, &ts, nullptr));
                     });
    }
    // (hours::max() would overflow inside libstdc++'s own sleep_for: EINVAL, as without cogent.)
    check_blocks("std::this_thread::sleep_for(seconds::max())", [] {
        std::this_thread::sleep_for(std::chrono::seconds::max());
        return 0L;
    });
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "ppoll, pselect, select with a huge timeout block") {
    auto [a, b] = pair_of();
    check_blocks("ppoll({max, 0})", [a = a] {
        pollfd p{a, POLLIN, 0};
        timespec ts{kHuge, 0};
        return long(::ppoll(&p, 1, &ts, nullptr));
    });
    check_blocks("pselect({max, 0})", [a = a] {
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(a, &rd);
        timespec ts{kHuge, 0};
        return long(::pselect(a + 1, &rd, nullptr, nullptr, &ts, nullptr));
    });
    check_blocks("select({max, 999999})", [a = a] {
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(a, &rd);
        timeval tv{kHuge, 999'999};
        return long(::select(a + 1, &rd, nullptr, nullptr, &tv));
    });
    check_blocks("select({max, 2000000}): glibc folds the seconds in, saturating", [a = a] {
        fd_set rd;
        FD_ZERO(&rd);
        FD_SET(a, &rd);
        timeval tv{kHuge, 2'000'000};
        return long(::select(a + 1, &rd, nullptr, nullptr, &tv));
    });
    // Still woken by the fd.
    auto g = cogent::spawn([a = a] {
        pollfd p{a, POLLIN, 0};
        timespec ts{kHuge, 0};
        return ::ppoll(&p, 1, &ts, nullptr);
    });
    cogent::sleep(10ms);
    REQUIRE(::write(b, "x", 1) == 1);
    CHECK(g.get() == 1);
    ::close(a);
    ::close(b);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "recvmmsg and SO_RCVTIMEO with a huge time block") {
    auto [a, b] = dgram_pair();
    check_blocks("recvmmsg({max, 0})", [a = a] {
        char buf[8];
        iovec iov{buf, sizeof buf};
        mmsghdr m{};
        m.msg_hdr.msg_iov = &iov;
        m.msg_hdr.msg_iovlen = 1;
        timespec ts{kHuge, 0};
        return long(::recvmmsg(a, &m, 1, 0, &ts));
    });
    // recvmmsg's timeout is checked after a datagram arrives: with a huge one, a first
    // datagram does not end the call at once (before: the wrapped deadline had passed).
    check_blocks("recvmmsg({max, 0}) after one datagram of two", [a = a, b = b] {
        REQUIRE(::send(b, "1", 1, 0) == 1);
        char buf[2][8];
        iovec iov[2] = {{buf[0], 8}, {buf[1], 8}};
        mmsghdr m[2]{};
        for (int i = 0; i < 2; ++i) {
            m[i].msg_hdr.msg_iov = &iov[i];
            m[i].msg_hdr.msg_iovlen = 1;
        }
        timespec ts{kHuge, 0};
        return long(::recvmmsg(a, m, 2, 0, &ts));
    });
    for (int opt : {SO_RCVTIMEO}) {
        timeval tv{kHuge / 2, 0};
        REQUIRE(::setsockopt(a, SOL_SOCKET, opt, &tv, sizeof tv) == 0);
        check_blocks("recv with SO_RCVTIMEO {max/2, 0}", [a = a] {
            char c;
            return long(::recv(a, &c, 1, 0));
        });
        tv = timeval{1'000'000'000'000, 0};  // within the kernel's range, beyond ours
        REQUIRE(::setsockopt(a, SOL_SOCKET, opt, &tv, sizeof tv) == 0);
        check_blocks("recv with SO_RCVTIMEO {1e12, 0}", [a = a] {
            char c;
            return long(::recv(a, &c, 1, 0));
        });
    }
    ::close(a);
    ::close(b);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "invalid huge times get libc's own error") {
    auto [a, b] = pair_of();
    struct Case {
        const char* what;
        std::function<Result()> fn;
    };
    std::vector<Case> cases = {
        {"nanosleep({max, 1e9})",
         [] {
             timespec ts{kHuge, 1'000'000'000};
             return call([&] { return ::nanosleep(&ts, nullptr); });
         }},
        {"nanosleep({min, 0})",
         [] {
             timespec ts{std::numeric_limits<time_t>::min(), 0};
             return call([&] { return ::nanosleep(&ts, nullptr); });
         }},
        {"clock_nanosleep(TIMER_ABSTIME, {max, -1})",
         [] {
             timespec ts{kHuge, -1};
             return Result{::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr), 0};
         }},
        {"clock_nanosleep(TIMER_ABSTIME, {-1, 0})",
         [] {
             timespec ts{-1, 0};
             return Result{::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr), 0};
         }},
        {"ppoll({max, 1e9})",
         [a = a] {
             pollfd p{a, POLLIN, 0};
             timespec ts{kHuge, 1'000'000'000};
             return call([&] { return ::ppoll(&p, 1, &ts, nullptr); });
         }},
        {"pselect({max, -1})",
         [a = a] {
             fd_set rd;
             FD_ZERO(&rd);
             FD_SET(a, &rd);
             timespec ts{kHuge, -1};
             return call([&] { return ::pselect(a + 1, &rd, nullptr, nullptr, &ts, nullptr); });
         }},
        {"select({-1, 2000000})",
         [a = a] {
             fd_set rd;
             FD_ZERO(&rd);
             FD_SET(a, &rd);
             timeval tv{-1, 2'000'000};
             return call([&] { return ::select(a + 1, &rd, nullptr, nullptr, &tv); });
         }},
        {"select({1, -1000000})",
         [a = a] {
             fd_set rd;
             FD_ZERO(&rd);
             FD_SET(a, &rd);
             timeval tv{1, -1'000'000};
             return call([&] { return ::select(a + 1, &rd, nullptr, nullptr, &tv); });
         }},
        {"recvmmsg({max, 1e9})",
         [a = a] {
             mmsghdr m{};
             timespec ts{kHuge, 1'000'000'000};
             return call([&] { return ::recvmmsg(a, &m, 1, 0, &ts); });
         }},
        {"setsockopt(SO_RCVTIMEO, {max, 1e6})",
         [a = a] {
             timeval tv{kHuge, 1'000'000};
             return call([&] { return ::setsockopt(a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv); });
         }},
    };
    for (auto& [what, fn] : cases) {
        Result patched = cogent::spawn(fn).get();
        Result libc = plain_thread(fn);
        INFO(std::string(what) << ": patched " << patched.rc << "/" << patched.err << ", libc "
                               << libc.rc << "/" << libc.err);
        CHECK(patched == libc);
        CHECK(libc.rc != 0);  // each is an error, not a (blocking) success
    }
    ::close(a);
    ::close(b);
}
