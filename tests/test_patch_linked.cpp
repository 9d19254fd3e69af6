// The monkey patch linked in, for a program whose own code calls no hooked libc function: all
// the blocking happens inside a library (tests/libblocking.c, standing in for libzmq or libpq).
// A linker that drops unused libraries (--as-needed, Debian's default, and meson's) would leave
// libcogent_patch out of such a program, and nothing would be patched. tests/meson.build builds
// this file twice: test_patch_linked through meson's patch_dep, and test_patch_byhand with the
// flags the README gives for linking by hand.
//
// tests/meson.build sets COGENT_PATCH=all, and COGENT_PATCH_LIB to the path of
// libcogent_patch.so, whose exported names are the hooked functions.
#include <elf.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cogent/cogent.hpp>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "libblocking.h"
#include "support.hpp"

using namespace std::chrono_literals;
using cogent_test::ms_since;

namespace {

// The dynamic section of an ELF64 file: its DT_NEEDED names, and the names of its dynamic
// symbols, undefined (imported) or defined (exported). Read with std::ifstream: the program's
// own code must not call read/close, which the shim hooks.
struct ElfDynamic {
    std::vector<std::string> needed;
    std::set<std::string> imports, exports;
};

// A malformed file is the test's environment failing, not the property under test: throw (the
// case fails with the message) rather than count an assertion per byte read.
void need(bool ok, const std::string& what) {
    if (!ok) throw std::runtime_error(what);
}

ElfDynamic read_elf(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    need(bool(in), "cannot open " + path);
    const std::string img((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    need(img.size() >= sizeof(Elf64_Ehdr), path + " is too short for ELF");
    Elf64_Ehdr eh;
    std::memcpy(&eh, img.data(), sizeof eh);
    need(std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 && eh.e_ident[EI_CLASS] == ELFCLASS64,
         path + " is not ELF64");
    need(eh.e_shoff + std::size_t(eh.e_shnum) * sizeof(Elf64_Shdr) <= img.size(),
         path + ": section headers beyond the end");
    std::vector<Elf64_Shdr> sh(eh.e_shnum);
    std::memcpy(sh.data(), img.data() + eh.e_shoff, sh.size() * sizeof(Elf64_Shdr));
    auto bytes = [&](const Elf64_Shdr& s) {
        need(s.sh_offset + s.sh_size <= img.size(), path + ": a section beyond the end");
        return img.data() + s.sh_offset;
    };
    auto str = [&](const Elf64_Shdr& strtab, std::size_t off) {
        need(off < strtab.sh_size, path + ": a name beyond its string table");
        return std::string(bytes(strtab) + off);
    };
    ElfDynamic out;
    for (const Elf64_Shdr& s : sh) {
        if (s.sh_type != SHT_DYNAMIC && s.sh_type != SHT_DYNSYM) continue;
        need(s.sh_link < sh.size(), path + ": a bad string table index");
        const Elf64_Shdr& strtab = sh[s.sh_link];
        const char* data = bytes(s);
        if (s.sh_type == SHT_DYNAMIC) {
            for (std::size_t i = 0; i < s.sh_size / sizeof(Elf64_Dyn); ++i) {
                Elf64_Dyn d;
                std::memcpy(&d, data + i * sizeof d, sizeof d);
                if (d.d_tag == DT_NEEDED) out.needed.push_back(str(strtab, d.d_un.d_val));
            }
        } else {
            for (std::size_t i = 1; i < s.sh_size / sizeof(Elf64_Sym); ++i) {
                Elf64_Sym sym;
                std::memcpy(&sym, data + i * sizeof sym, sizeof sym);
                if (ELF64_ST_BIND(sym.st_info) == STB_LOCAL) continue;
                (sym.st_shndx == SHN_UNDEF ? out.imports : out.exports)
                    .insert(str(strtab, sym.st_name));
            }
        }
    }
    need(!out.needed.empty(), path + ": no dynamic section");
    return out;
}

std::string shim_path() {
    const char* p = std::getenv("COGENT_PATCH_LIB");
    REQUIRE_MESSAGE(p, "COGENT_PATCH_LIB is not set (tests/meson.build sets it)");
    return p;
}

// Greenlets each blocked in the library on their own socketpair, woken by one byte each from
// this greenlet once all of them are inside the call. `wait` is the blocking call (recv or
// poll); it returns what the greenlet saw. Without the patch the first one blocks the thread
// until SO_RCVTIMEO (or poll's timeout) gives up, and every greenlet sees a failure.
template <class Wait>
std::vector<int> block_in_library(int n, Wait wait) {
    std::vector<std::array<int, 2>> pairs(n);
    for (auto& p : pairs) REQUIRE(blocking_pair(p.data(), 2000) == 0);
    int entered = 0;
    std::vector<int> seen(n, -2);
    std::vector<cogent::Greenlet<void>> gs;
    for (int i = 0; i < n; ++i)
        gs.push_back(cogent::spawn([&, i] {
            ++entered;
            seen[i] = wait(pairs[i][0]);
        }));
    // Each greenlet parks inside its call before the next one runs: once all have entered,
    // all are waiting.
    while (entered < n) cogent::sleep(0);
    for (int i = 0; i < n; ++i) CHECK(blocking_send_byte(pairs[i][1], 'a' + i) == 1);
    cogent::joinall(gs);
    for (auto& p : pairs) {
        blocking_close(p[0]);
        blocking_close(p[1]);
    }
    return seen;
}

constexpr int kGreenlets = 5;

}  // namespace

TEST_CASE("the program links libcogent_patch although its own code calls no hooked function") {
    const ElfDynamic self = read_elf("/proc/self/exe");
    const ElfDynamic shim = read_elf(shim_path());
    // What makes this test mean something: the program imports none of the shim's I/O, DNS,
    // poll and sleep hooks. (Any C++ program calls pthread functions, which the sync family
    // hooks too; the --as-needed hazard is that of a program whose blocking is all in a library.)
    const auto is_sync = [](const std::string& n) {
        for (const char* p : {"pthread_", "__pthread_", "sem_", "sched_yield", "syscall",
                              "flockfile", "ftrylockfile", "funlockfile"})
            if (n.rfind(p, 0) == 0) return true;
        return false;
    };
    std::vector<std::string> hooked;
    for (const auto& name : self.imports)
        if (name.rfind("_Z", 0) != 0 && !is_sync(name) && shim.exports.count(name))
            hooked.push_back(name);
    CHECK_MESSAGE(hooked.empty(), "the test program itself calls hooked functions, e.g. "
                                      << (hooked.empty() ? "" : hooked.front()));
    REQUIRE(shim.exports.count("cogent_patch_families"));
    const bool needed = std::any_of(self.needed.begin(), self.needed.end(), [](const auto& n) {
        return n.rfind("libcogent_patch.so", 0) == 0;
    });
    CHECK_MESSAGE(needed, "no DT_NEEDED entry for libcogent_patch.so: the linker dropped it");
}

TEST_CASE("cogent::patch reports the linked-in shim as loaded") {
    CHECK(cogent::patch::loaded());
    CHECK(cogent::patch::describe() == "socket,dns,time,select,sync");  // COGENT_PATCH=all
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck, "greenlets sleeping inside a library sleep at once") {
    constexpr int kSleepMs = 300;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<cogent::Greenlet<int>> gs;
    for (int i = 0; i < 2 * kGreenlets; ++i)
        gs.push_back(cogent::spawn([] { return blocking_sleep_ms(kSleepMs); }));
    cogent::joinall(gs);
    const double took = ms_since(t0);
    for (auto& g : gs) CHECK(g.get() == 0);
    // One after another would take 2 * kGreenlets * 300 ms = 3 s: allow five times one call.
    CHECK_MESSAGE(took < 5 * kSleepMs, "took " << took << " ms");
    CHECK(took >= kSleepMs - 1);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "greenlets blocked in recv inside a library wait at once") {
    std::vector<int> seen =
        block_in_library(kGreenlets, [](int fd) { return blocking_recv_byte(fd); });
    for (int i = 0; i < kGreenlets; ++i) CHECK(seen[i] == 'a' + i);
}

TEST_CASE_FIXTURE(cogent_test::LeakCheck,
                  "greenlets blocked in poll inside a library wait at once") {
    std::vector<int> seen = block_in_library(kGreenlets, [](int fd) {
        int r = blocking_poll_in(fd, 2000);
        return r == 1 ? blocking_recv_byte(fd) : -1;
    });
    for (int i = 0; i < kGreenlets; ++i) CHECK(seen[i] == 'a' + i);
}

TEST_CASE("run info names a wait made inside a library through the shim, and the library") {
    int sv[2];
    REQUIRE(blocking_pair(sv, 5000) == 0);
    auto g = cogent::spawn({.name = "in-library"}, [&] { (void)blocking_recv_byte(sv[0]); });
    cogent::sleep(0);
    const std::string info = cogent::format_run_info();
    INFO(info);
    const std::size_t at = info.find("in-library: ");
    REQUIRE(at != std::string::npos);
    const std::string line = info.substr(at, info.find('\n', at) - at);
    CHECK(line.find("parked in recv() (reading fd " + std::to_string(sv[0]) + ", unix socket)") !=
          std::string::npos);
    CHECK(line.find(" from libblocking.so") != std::string::npos);
    CHECK(info.find("blocking_recv_byte", at) != std::string::npos);  // the library's frame
    CHECK(blocking_send_byte(sv[1], 7) == 1);
    g.join();
    blocking_close(sv[0]);
    blocking_close(sv[1]);
}
