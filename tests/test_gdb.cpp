// gdb's view of a cogent program (issue 15): scripts/cogent-gdb.py, auto-loaded from beside
// libcogent in the build tree, lists every greenlet of every hub (`info greenlets`) and prints a
// parked greenlet's backtrace without resuming it (`greenlet bt N`), on a live process and on a
// core file written by gcore. The program looked at is tests/child_gdb.cpp, run under gdb.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support.hpp"

using namespace cogent_test;  // run_child, child_path, COGENT_SKIP

namespace {

std::string env_path(const char* var) {
    const char* p = std::getenv(var);
    REQUIRE_MESSAGE(p != nullptr, var << " is not set (run the test through meson test)");
    return p;
}

bool have_gdb() {
    auto r = run_child("gdb --version");
    return WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0 &&
           r.output.find("GNU gdb") != std::string::npos;
}

bool debug_info_expected() {
    const char* d = std::getenv("COGENT_DEBUG_INFO");
    return !d || std::string(d) != "0";
}

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it.
struct TempDir {
    std::string path;
    TempDir() {
        std::string templ = (std::filesystem::temp_directory_path() / "cogent-gdb-XXXXXX").string();
        REQUIRE(mkdtemp(templ.data()) != nullptr);
        path = templ;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
};

// gdb in batch mode, without the user's gdbinit, allowed to auto-load scripts from anywhere
// (the build tree), bounded in time. `args` is the rest of the command line, already quoted.
ChildResult run_gdb(const std::string& args) {
    return run_child(
        "timeout -k 10 180 gdb -batch -nx -iex 'set auto-load safe-path /' "
        "-iex 'set debuginfod enabled off' -iex 'set pagination off' -iex 'set width 0' " +
        args);
}

// A gdb command file: take the number `info greenlets` gives the greenlet parked in
// Event::wait and ask for its backtrace, as a user would.
std::string write_bt_script(const TempDir& dir) {
    const std::string path = dir.path + "/event_wait_bt.gdb";
    std::ofstream f(path);
    f << "python\n"
         "import re\n"
         "_out = gdb.execute('info greenlets', to_string=True)\n"
         "_m = re.search(r'^\\s*(\\d+)\\s.*\\sEvent::wait\\s', _out, re.M)\n"
         "print('TEST: the Event::wait greenlet is %s' % (_m.group(1) if _m else 'missing'))\n"
         "print('TEST: bt begins')\n"
         "if _m:\n"
         "    gdb.execute('greenlet bt ' + _m.group(1))\n"
         "print('TEST: bt ends')\n"
         "end\n";
    REQUIRE(f.good());
    return path;
}

// The text between two marker lines of the output.
std::string between(const std::string& text, const std::string& from, const std::string& to) {
    auto a = text.find(from);
    if (a == std::string::npos) return {};
    a += from.size();
    auto b = text.find(to, a);
    return text.substr(a, b == std::string::npos ? std::string::npos : b - a);
}

// The one line of `info greenlets` output that holds `key` (a greenlet's name or marker).
std::string line_with(const std::string& text, const std::string& key) {
    std::istringstream in(text);
    std::string line, found;
    int n = 0;
    while (std::getline(in, line))
        if (line.find(key) != std::string::npos) {
            found = line;
            ++n;
        }
    CHECK_MESSAGE(n == 1, "lines holding " << key << ": " << n);
    return found;
}

bool has(const std::string& text, const std::string& s) {
    return text.find(s) != std::string::npos;
}

// What `info greenlets` and `greenlet bt N` must show of tests/child_gdb.cpp, live or in a core.
void check_greenlets(const std::string& out) {
    // Loaded by gdb's auto-load from beside the library, not by -x.
    CHECK(has(out, "libcogent.so.0.1.0-gdb.py"));
    bool auto_loaded = false;
    {
        std::istringstream in(out);
        std::string line;
        while (std::getline(in, line))
            if (has(line, "-gdb.py") && line.find("Yes") != std::string::npos) auto_loaded = true;
    }
    CHECK_MESSAGE(auto_loaded, "info auto-load python-scripts does not show the script loaded");

    // The listing of `info greenlets` (the command file prints its TEST: lines after it): two
    // hubs, the main thread's and the second thread's.
    const std::string listing = between(out, "\nHub 1 ", "TEST: the Event::wait greenlet");
    INFO("info greenlets:\n" << listing);
    REQUIRE(!listing.empty());
    CHECK(has(listing, "\nHub 2 "));
    CHECK_FALSE(has(listing, "\nHub 3 "));
    CHECK_FALSE(has(out, "cannot unwind"));
    CHECK_FALSE(has(out, "unreadable"));
    CHECK_FALSE(has(out, "Traceback"));
    CHECK_FALSE(has(out, "Python Exception"));

    struct Expect {
        const char* key;    // what makes the line unique
        const char* name;   // its name column
        const char* state;  // its state column
        const char* waits;  // part of what it waits on
    };
    const Expect expects[] = {
        {"park_in_event_wait_marker", "Greenlet-", "parked", "Event::wait"},
        {"park_in_sleep_marker", "Greenlet-", "parked", "sleep"},
        {"park_in_queue_get_marker", "Greenlet-", "parked", "get"},
        {"park_in_lock_marker", "lock-waiter", "parked", "Lock::acquire"},
        {"park_in_recv_marker", "recv-worker", "parked", "recv"},
        {"park_on_other_thread_marker", "other-thread-sleeper", "parked", "sleep"},
        {"stopper", "stopper", "running", "-"},
        {"not-started-yet", "not-started-yet", "unstarted", "-"},
    };
    for (const auto& e : expects) {
        CAPTURE(e.key);
        const std::string line = line_with(listing, e.key);
        CAPTURE(line);
        CHECK(has(line, e.name));
        CHECK(has(line, std::string(" ") + e.state + " "));
        CHECK(has(line, e.waits));
    }
    // The parked ones show their stack, with the part in use.
    CHECK(has(line_with(listing, "park_in_event_wait_marker"), "256 KiB"));
    CHECK(has(line_with(listing, "park_in_event_wait_marker"), "used"));
    // Each thread's main greenlet and hub: the main thread's main greenlet waits in join.
    std::size_t mains = 0, hubs = 0;
    {
        std::istringstream in(listing);
        std::string line;
        while (std::getline(in, line)) {
            if (has(line, "<main>")) ++mains;
            if (has(line, "<hub>")) ++hubs;
        }
    }
    CHECK(mains == 2);
    CHECK(hubs == 2);

    // greenlet bt N, N as info greenlets numbered the one in Event::wait: its own frames from
    // the switch out to its start, none of the stopped thread's.
    const std::string bt = between(out, "TEST: bt begins", "TEST: bt ends");
    CAPTURE(bt);
    CHECK_FALSE(has(out, "TEST: the Event::wait greenlet is missing"));
    CHECK(has(bt, "Greenlet "));
    CHECK(has(bt, "Event::wait"));
    CHECK(has(bt, "#0 "));
    CHECK(has(bt, "park_in_event_wait_marker"));
    CHECK(has(bt, "cogent::Event::wait"));
    CHECK_FALSE(has(bt, "stop_for_debugger_marker"));
    CHECK_FALSE(has(bt, "raise"));
}

}  // namespace

TEST_SUITE("gdb") {
    TEST_CASE("the build puts the gdb extension beside libcogent under gdb's auto-load name") {
        namespace fs = std::filesystem;
        const fs::path lib = fs::canonical(env_path("COGENT_LIBCOGENT"));
        const fs::path script = lib.string() + "-gdb.py";
        CHECK(script == fs::path(env_path("COGENT_GDB_SCRIPT")));
        REQUIRE(fs::exists(script));
        std::ifstream f(script);
        std::stringstream text;
        text << f.rdbuf();
        CHECK(has(text.str(), "info greenlets"));
        CHECK(has(text.str(), "gdb.unwinder"));
    }

    TEST_CASE("gdb on a live process: info greenlets and greenlet bt") {
        if (!have_gdb()) COGENT_SKIP("gdb is not installed (Debian package gdb)");
        TempDir dir;
        const std::string bt_script = write_bt_script(dir);
        // Loaded a second time by hand (source): still one unwinder.
        auto r = run_gdb("-ex run -ex 'info auto-load python-scripts' -ex 'info greenlets' -x '" +
                         bt_script + "' -ex 'greenlet bt all' -ex 'source " +
                         env_path("COGENT_GDB_SCRIPT") + "' -ex 'info unwinder' --args " +
                         child_path("COGENT_CHILD_GDB"));
        INFO("gdb output:\n" << r.output);
        REQUIRE(WIFEXITED(r.status));
        CHECK(WEXITSTATUS(r.status) == 0);
        REQUIRE(has(r.output, "child_gdb: everything parked"));
        CHECK(has(r.output, "SIGTRAP"));
        if (!debug_info_expected()) {
            CHECK(has(r.output, "no debug info"));
            return;
        }
        check_greenlets(r.output);
        // greenlet bt all: every greenlet, the running one through its thread.
        CHECK(has(r.output, "running: the backtrace of its thread"));
        CHECK(has(r.output, "park_in_recv_marker"));
        const auto first = r.output.find("cogent-greenlets");
        CHECK(first != std::string::npos);
        CHECK(r.output.find("cogent-greenlets", first + 1) == std::string::npos);

        // The same program with a copy of libcogent stripped of its debug info (first on
        // LD_LIBRARY_PATH, the script beside it): info greenlets says what it needs.
        const std::string lib = dir.path + "/libcogent.so.0";
        auto strip =
            run_child("objcopy --strip-debug '" + env_path("COGENT_LIBCOGENT") + "' '" + lib + "'");
        INFO("objcopy: " << strip.output);
        REQUIRE(strip.status == 0);
        std::filesystem::copy_file(env_path("COGENT_GDB_SCRIPT"), lib + "-gdb.py");
        auto nodebug = run_gdb("-ex 'set environment LD_LIBRARY_PATH " + dir.path +
                               "' -ex run -ex 'info sharedlibrary libcogent' -ex 'info greenlets' "
                               "--args " +
                               child_path("COGENT_CHILD_GDB"));
        INFO("gdb output (no debug info):\n" << nodebug.output);
        CHECK(has(nodebug.output, dir.path + "/libcogent.so.0"));
        CHECK(has(nodebug.output, "cannot be read: it has no debug info"));
        CHECK(has(nodebug.output, "buildtype debug or debugoptimized"));
    }

    TEST_CASE("gdb on a core file: info greenlets and greenlet bt") {
        if (!have_gdb()) COGENT_SKIP("gdb is not installed (Debian package gdb)");
#if defined(__SANITIZE_ADDRESS__)
        COGENT_SKIP_UNSUPPORTED(
            "the sanitizer build: gcore cannot read ASan's shadow and allocator regions "
            "(terabytes reserved), and the core it writes lacks the greenlet stacks");
#endif
        TempDir dir;
        const std::string core = dir.path + "/child_gdb.core";
        // gcore stops copying a mapping at the first MADV_GUARD_INSTALL guard page (Linux >=
        // 6.13), which would lose every greenlet stack: the child uses PROT_NONE guards.
        auto live =
            run_gdb("-ex 'set environment COGENT_STACK_GUARD mprotect' -ex run -ex 'gcore " + core +
                    "' --args " + child_path("COGENT_CHILD_GDB"));
        INFO("gdb output (live):\n" << live.output);
        REQUIRE(has(live.output, "child_gdb: everything parked"));
        CHECK(has(live.output, "child_gdb: stack guards: mprotect"));
        REQUIRE(std::filesystem::exists(core));

        const std::string bt_script = write_bt_script(dir);
        auto r = run_gdb("-ex 'info auto-load python-scripts' -ex 'info greenlets' -x '" +
                         bt_script + "' " + child_path("COGENT_CHILD_GDB") + " '" + core + "'");
        INFO("gdb output (core):\n" << r.output);
        REQUIRE(WIFEXITED(r.status));
        CHECK(WEXITSTATUS(r.status) == 0);
        if (!debug_info_expected()) {
            CHECK(has(r.output, "no debug info"));
            return;
        }
        check_greenlets(r.output);
    }
}
