// Stack overflow that jumps the guard, and running out of memory for stacks (issue 12): a large
// frame faults in the guard (-fstack-clash-protection) and names its greenlet, and one built
// without probes is still named; a greenlet the hub cannot give a stack fails alone, with
// std::bad_alloc, while the hub and the other greenlets carry on. The programs that crash or
// limit their memory are child processes (tests/child_stack_guard.cpp, tests/child_oom.cpp).
#include <sys/wait.h>

#include <csignal>
#include <fstream>
#include <sstream>
#include <string>

#include "support.hpp"

using namespace cogent_test;  // run_child, child_path, LeakCheck, COGENT_SKIP

#if defined(__SANITIZE_ADDRESS__)
#define COGENT_TEST_ASAN 1
#endif

TEST_SUITE("stack_guard") {
    TEST_CASE("cogent.pc tells programs that use cogent to build with -fstack-clash-protection") {
        const char* pc = std::getenv("COGENT_PC");
        REQUIRE_MESSAGE(pc != nullptr, "COGENT_PC is not set (run the test through meson test)");
        std::ifstream f(pc);
        REQUIRE(f.good());
        std::string line, cflags;
        while (std::getline(f, line))
            if (line.rfind("Cflags:", 0) == 0) cflags = line;
        INFO("Cflags line: " << cflags);
        CHECK(cflags.find("-fstack-clash-protection") != std::string::npos);
    }

#if !defined(COGENT_TEST_ASAN)
    TEST_CASE(
        "a 64 KiB frame near a greenlet's stack end faults in the guard and names the greenlet; "
        "the neighbour's stack is intact") {
        auto r = run_child(child_path("COGENT_CHILD_STACK_GUARD"));
        INFO("output: " << r.output);
        CHECK(WIFSIGNALED(r.status));
        if (WIFSIGNALED(r.status)) CHECK(WTERMSIG(r.status) == SIGSEGV);
        CHECK(r.output.find("stack overflow in greenlet big-frame") != std::string::npos);
        CHECK(r.output.find("131072") != std::string::npos);
        CHECK(r.output.find("neighbour intact") != std::string::npos);
        CHECK(r.output.find("neighbour corrupted") == std::string::npos);
        CHECK(r.output.find("big frame returned") == std::string::npos);
        CHECK(r.output.find("jumped the stack guard") ==
              std::string::npos);  // the probes caught it
    }

    TEST_CASE(
        "built without stack-clash probes, a frame that jumped the guard still names its greenlet "
        "and says how to build") {
        auto r = run_child(child_path("COGENT_CHILD_STACK_GUARD_NOPROBE"));
        INFO("output: " << r.output);
        CHECK(WIFSIGNALED(r.status));
        if (WIFSIGNALED(r.status)) CHECK(WTERMSIG(r.status) == SIGSEGV);
        CHECK(r.output.find("stack overflow in greenlet big-frame") != std::string::npos);
        CHECK(r.output.find("jumped the stack guard") != std::string::npos);
        CHECK(r.output.find("-fstack-clash-protection") != std::string::npos);
        CHECK(r.output.find("big frame returned") == std::string::npos);
    }
#endif

    TEST_CASE(
        "out of address space (RLIMIT_AS): a greenlet the hub cannot give a stack fails with "
        "std::bad_alloc; the hub and the others carry on") {
#if defined(COGENT_TEST_ASAN)
        COGENT_SKIP_UNSUPPORTED("ASan's shadow memory does not fit under an RLIMIT_AS");
#else
        auto r = run_child(child_path("COGENT_CHILD_OOM"));
        INFO("output: " << r.output);
        CHECK(WIFEXITED(r.status));
        if (WIFEXITED(r.status)) CHECK(WEXITSTATUS(r.status) == 0);
        CHECK(r.output.find("oom ok started=") != std::string::npos);
        // Each failure is reported on stderr like a greenlet's own, with its name.
        CHECK(r.output.find("could not start (no stack): std::bad_alloc") != std::string::npos);
#endif
    }

}  // TEST_SUITE
