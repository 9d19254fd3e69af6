// The floating-point environment across greenlet switches, as documented in README.md and
// cogent/detail/switch_core.hpp: the FP control state (rounding mode, masks) belongs to the
// thread, shared by its greenlets; a greenlet that changes it restores it before switching.
// The status flags are not carried by a switch; switching with them set is fine.
#include <cfenv>
#include <cmath>
#include <vector>

#include "support.hpp"

using cogent::Greenlet;
using cogent::RawGreenlet;

namespace {

// Opaque to the optimiser, so that the divisions below happen at run time, in the rounding
// mode of the moment.
volatile double g_one = 1.0;
volatile double g_three = 3.0;
volatile double g_zero = 0.0;
volatile long double g_one_l = 1.0L;
volatile long double g_three_l = 3.0L;

double third() { return g_one / g_three; }
long double third_l() { return g_one_l / g_three_l; }  // x87 arithmetic on x86-64

// 1/3 rounded up is above 1/3 rounded down, in both SSE and x87 arithmetic.
struct Thirds {
    double d;
    long double l;
};
Thirds thirds() { return {third(), third_l()}; }

}  // namespace

TEST_CASE("a greenlet that sets the rounding mode and restores it before switching") {
    REQUIRE(std::fegetround() == FE_TONEAREST);
    const Thirds nearest = thirds();
    std::fesetround(FE_UPWARD);
    const Thirds up = thirds();
    std::fesetround(FE_DOWNWARD);
    const Thirds down = thirds();
    std::fesetround(FE_TONEAREST);
    REQUIRE(up.d > down.d);
    REQUIRE(up.l > down.l);

    RawGreenlet main_g = cogent::getcurrent();
    std::vector<Thirds> seen;  // what the greenlet computed in its own mode, each round
    std::vector<int> modes;    // the mode the greenlet found on each resume
    RawGreenlet g([&] {
        for (int i = 0; i < 100; ++i) {
            modes.push_back(std::fegetround());
            std::fesetround(i % 2 ? FE_UPWARD : FE_DOWNWARD);
            seen.push_back(thirds());
            std::fesetround(FE_TONEAREST);  // the policy: restore before switching
            main_g.switch_to();
        }
    });
    for (int i = 0; i < 100; ++i) {
        g.switch_to();
        CHECK(std::fegetround() == FE_TONEAREST);
        const Thirds t = thirds();
        CHECK(t.d == nearest.d);
        CHECK(t.l == nearest.l);
    }
    g.switch_to();  // let it end
    REQUIRE(g.dead());
    REQUIRE(seen.size() == 100);
    for (int i = 0; i < 100; ++i) {
        CHECK(modes[i] == FE_TONEAREST);
        CHECK(seen[i].d == (i % 2 ? up.d : down.d));
        CHECK(seen[i].l == (i % 2 ? up.l : down.l));
    }
}

TEST_CASE(
    "the rounding mode is the thread's: a greenlet that leaves it changed changes it for "
    "the others") {
    // Not a recommendation: it shows that a switch neither saves nor restores the control state
    // (Boost.Context's own switch, used on other platforms, restores it).
#if defined(__x86_64__) && defined(__ELF__)
    RawGreenlet main_g = cogent::getcurrent();
    int seen_in_g = -1;
    RawGreenlet g([&] {
        seen_in_g = std::fegetround();
        std::fesetround(FE_DOWNWARD);
        main_g.switch_to();
        std::fesetround(FE_TONEAREST);
    });
    std::fesetround(FE_UPWARD);
    g.switch_to();
    CHECK(seen_in_g == FE_UPWARD);
    CHECK(std::fegetround() == FE_DOWNWARD);
    g.switch_to();
    CHECK(std::fegetround() == FE_TONEAREST);
    CHECK(g.dead());
#endif
    std::fesetround(FE_TONEAREST);
}

TEST_CASE("switches with FP exception flags set: arithmetic stays right, flags are not carried") {
    REQUIRE(std::fegetround() == FE_TONEAREST);
    const double expect = third();
    RawGreenlet main_g = cogent::getcurrent();
    double sum_g = 0;
    RawGreenlet g([&] {
        for (int i = 0; i < 1000; ++i) {
            volatile double inf = g_one / g_zero;  // sets FE_DIVBYZERO
            (void)inf;
            sum_g += third();  // sets FE_INEXACT
            main_g.switch_to();
        }
    });
    double sum_main = 0;
    std::feclearexcept(FE_ALL_EXCEPT);
    for (int i = 0; i < 1000; ++i) {
        g.switch_to();
        sum_main += third();
        CHECK(std::isinf(g_one / g_zero));
    }
    g.switch_to();
    REQUIRE(g.dead());
    CHECK(sum_main == sum_g);
    CHECK(std::fabs(sum_main - 1000 * expect) < 1e-9);
    // The flags raised on either side are now simply the thread's.
    CHECK(std::fetestexcept(FE_DIVBYZERO | FE_INEXACT) != 0);
    std::feclearexcept(FE_ALL_EXCEPT);
}

TEST_CASE("FP values live across switches through the hub") {
    // Many doubles live across each yield: the switch must not lose them (no vector register
    // is callee-saved on x86-64, so the compiler keeps them in the frame around the jump).
    auto work = [](double seed) {
        double a = seed, b = seed * 2, c = seed * 3, d = seed * 4, e = seed * 5, f = seed * 6;
        for (int i = 0; i < 50; ++i) {
            cogent::sleep(0);
            a += 1.5;
            b *= 1.0000001;
            c -= 0.25;
            d = d * 0.5 + 1;
            e += a * 1e-3;
            f = std::sqrt(f * f);
        }
        return a + b + c + d + e + f;
    };
    auto expect = [&](double seed) {
        double a = seed, b = seed * 2, c = seed * 3, d = seed * 4, e = seed * 5, f = seed * 6;
        for (int i = 0; i < 50; ++i) {
            a += 1.5;
            b *= 1.0000001;
            c -= 0.25;
            d = d * 0.5 + 1;
            e += a * 1e-3;
            f = std::sqrt(f * f);
        }
        return a + b + c + d + e + f;
    };
    std::vector<Greenlet<double>> gs;
    for (int i = 0; i < 8; ++i) gs.push_back(cogent::spawn([=] { return work(i + 0.125); }));
    for (int i = 0; i < 8; ++i) CHECK(gs[i].get() == expect(i + 0.125));
}

TEST_CASE("a spawned greenlet that changes the rounding mode around its own computation") {
    REQUIRE(std::fegetround() == FE_TONEAREST);
    const double nearest = third();
    std::fesetround(FE_UPWARD);
    const double up = third();
    std::fesetround(FE_TONEAREST);
    auto g1 = cogent::spawn([&] {
        int wrong = 0;
        for (int i = 0; i < 100; ++i) {
            std::fesetround(FE_UPWARD);
            if (third() != up) ++wrong;
            std::fesetround(FE_TONEAREST);
            cogent::sleep(0);
        }
        return wrong;
    });
    auto g2 = cogent::spawn([&] {
        int wrong = 0;
        for (int i = 0; i < 100; ++i) {
            if (std::fegetround() != FE_TONEAREST || third() != nearest) ++wrong;
            cogent::sleep(0);
        }
        return wrong;
    });
    CHECK(g1.get() == 0);
    CHECK(g2.get() == 0);
    CHECK(std::fegetround() == FE_TONEAREST);
}
