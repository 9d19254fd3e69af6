// cogent-run: run an unmodified program with the monkey patch (libcogent_patch.so) preloaded.
//
//   cogent-run [OPTIONS] [--] COMMAND [ARGS...]
//
// Prepends the absolute path of libcogent_patch.so to LD_PRELOAD (an existing LD_PRELOAD is
// kept, after it), sets COGENT_PATCH to the chosen families, and executes COMMAND in place (the
// exit status and signals are the command's own). See usage() for the options.
//
// The library is looked for next to this executable (the build tree, where both sit in patch/),
// then in the installed layout (BINDIR/../lib, ../lib64, ../lib/<multiarch>), then in the build
// directory this binary was compiled in (COGENT_PATCH_LIBDIR, set by patch/meson.build). The
// installed layout comes before the build directory so that an installed cogent-run never
// preloads a stale library from a build tree that happens to still exist.
//
// This launcher does not link libcogent: it parses the family list itself, with the same syntax
// and messages as src/config.cpp (which reads COGENT_PATCH in the patched program).
#include <glob.h>
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "services/shim_api.hpp"  // src/: the COGENT_PATCH grammar (header-only here)

#if defined(__SANITIZE_ADDRESS__)
#include <link.h>
#endif

#ifndef COGENT_PATCH_LIBDIR
#define COGENT_PATCH_LIBDIR ""
#endif

namespace {

constexpr const char* kLibName = "libcogent_patch.so";
constexpr unsigned kAll = cogent::detail::kPatchAll;
constexpr const auto& kFamilyNames = cogent::detail::kPatchFamilyNames;

// Exit statuses: as env(1) and a POSIX shell use them.
constexpr int kUsageError = 2;
constexpr int kCannotExecute = 126;
constexpr int kNotFound = 127;

void usage(FILE* to) {
    std::fprintf(
        to,
        "usage: cogent-run [OPTIONS] [--] COMMAND [ARGS...]\n"
        "Run COMMAND with cogent's monkey patch (libcogent_patch.so) preloaded: its socket,\n"
        "DNS, poll/select and sleep calls, and its waits on pthread mutexes, conditions and\n"
        "the like, made on cogent greenlets wait cooperatively; every other call (a program\n"
        "that never starts a cogent hub) behaves as with libc.\n"
        "\n"
        "options (applied left to right; the starting set is COGENT_PATCH, else all):\n"
        "  --patch=LIST   patch exactly LIST: all, none, or a comma-separated list of\n"
        "                 socket, dns, time, select, sync, thread (like COGENT_PATCH;\n"
        "                 all is every family but thread, and thread brings sync)\n"
        "  --threads      also patch thread: pthread_create starts a greenlet on the calling\n"
        "                 thread's hub instead of an OS thread (opt-in; see the README for\n"
        "                 which programs suit it)\n"
        "  --no-socket, --no-dns, --no-time, --no-select, --no-sync\n"
        "                 leave that family unpatched (gevent's patch_all(socket=False)...)\n"
        "  --show         print the families that would be patched, the library and the\n"
        "                 LD_PRELOAD the command would get; run nothing; exit 0 (1 if the\n"
        "                 library is not found)\n"
        "  -h, --help     print this help and exit 0\n"
        "\n"
        "exit status: COMMAND's own; 2 for a bad option, 126 if COMMAND cannot be executed,\n"
        "127 if it is not found.\n");
}

[[noreturn]] void usage_error(const std::string& msg) {
    std::fprintf(stderr, "cogent-run: %s\n", msg.c_str());
    std::fprintf(stderr, "Try 'cogent-run --help' for more information.\n");
    std::exit(kUsageError);
}

// The same grammar as COGENT_PATCH in src/config.cpp: one parser, in src/core/patch_families.hpp
// (through services/shim_api.hpp, patch/'s one header of src/).
std::optional<unsigned> parse_families(const std::string& v, std::string* bad_item) {
    return cogent::detail::parse_patch_families(v, bad_item);
}

// The canonical spelling, as patch.hpp's describe() gives it: "all" is spelled out.
std::string describe(unsigned fam) {
    if (!fam) return "none";
    std::string out;
    for (unsigned i = 0; i < cogent::detail::kPatchFamilyCount; ++i)
        if (fam & (1u << i)) out += (out.empty() ? "" : ",") + std::string(kFamilyNames[i]);
    return out;
}

std::string dirname_of(const std::string& path) {
    std::size_t slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    return slash == 0 ? "/" : path.substr(0, slash);
}

bool is_file(const std::string& path) { return access(path.c_str(), R_OK) == 0; }

// The directory made canonical ("bin/../lib" -> "lib"), the file name kept as it is (the
// unversioned libcogent_patch.so, not the file its symlink points to).
std::string canonical_dir(const std::string& dir) {
    char buf[PATH_MAX];
    return realpath(dir.c_str(), buf) ? std::string(buf) : dir;
}

// Where libcogent_patch.so is (see the file comment); empty if nowhere.
std::string find_library() {
    std::vector<std::string> dirs;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        const std::string bin = dirname_of(exe);
        dirs.push_back(bin);
        const std::string prefix = dirname_of(bin);
        dirs.push_back(prefix + "/lib");
        dirs.push_back(prefix + "/lib64");
        glob_t g{};
        const std::string pattern = prefix + "/lib/*/" + kLibName;
        if (glob(pattern.c_str(), GLOB_NOSORT, nullptr, &g) == 0)
            for (std::size_t i = 0; i < g.gl_pathc; ++i) dirs.push_back(dirname_of(g.gl_pathv[i]));
        globfree(&g);
    }
    if (*COGENT_PATCH_LIBDIR) dirs.push_back(COGENT_PATCH_LIBDIR);
    for (const auto& d : dirs) {
        const std::string p = d + "/" + kLibName;
        if (is_file(p)) return canonical_dir(d) + "/" + kLibName;
    }
    return {};
}

// A sanitizer build of the shim needs the ASan runtime loaded first, before any other library;
// an uninstrumented program (curl, sleep...) does not load it at all. This launcher is built
// with the same flags as the shim, so it finds its own copy of the runtime and preloads it too.
std::string sanitizer_runtime() {
#if defined(__SANITIZE_ADDRESS__)
    std::string found;
    dl_iterate_phdr(
        [](dl_phdr_info* info, std::size_t, void* out) {
            const char* name = info->dlpi_name;
            if (name && std::strstr(name, "/libasan.so")) {
                *static_cast<std::string*>(out) = name;
                return 1;
            }
            return 0;
        },
        &found);
    return found;
#else
    return {};
#endif
}

// `front` (in that order), then the existing LD_PRELOAD without any copy of the shim (two
// copies, say from two build trees, would each keep their own fd table) or of `front`'s entries.
// ld.so separates LD_PRELOAD entries by colons or blanks.
std::string compose_preload(const std::vector<std::string>& front) {
    std::string out;
    auto add = [&](const std::string& item) { out += (out.empty() ? "" : ":") + item; };
    for (const auto& f : front)
        if (!f.empty()) add(f);
    if (const char* old = std::getenv("LD_PRELOAD")) {
        const std::string v = old;
        std::size_t pos = 0;
        while (pos < v.size()) {
            std::size_t end = v.find_first_of(": \t", pos);
            if (end == std::string::npos) end = v.size();
            const std::string item = v.substr(pos, end - pos);
            pos = end + 1;
            if (item.empty()) continue;
            const std::string base = item.substr(item.rfind('/') + 1);
            bool dup = base.rfind(kLibName, 0) == 0;
            for (const auto& f : front) dup = dup || item == f;
            if (!dup) add(item);
        }
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    // The starting set: the inherited COGENT_PATCH (checked here, so that a typo is reported by
    // the launcher and not by the shim inside the command), else all.
    unsigned fam = kAll;
    if (const char* e = std::getenv("COGENT_PATCH"); e && *e) {
        std::string bad;
        auto f = parse_families(e, &bad);
        if (!f)
            usage_error(
                std::string("COGENT_PATCH='") + e + "': unknown family '" + bad +
                "' (expected all, none, or a list of socket, dns, time, select, sync, thread)");
        fam = *f;
    }
    bool show = false;
    int i = 1;
    for (; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--") {
            ++i;
            break;
        }
        if (a.empty() || a[0] != '-') break;  // the command
        if (a == "-h" || a == "--help") {
            usage(stdout);
            return 0;
        }
        if (a == "--show") {
            show = true;
            continue;
        }
        if (a == "--threads") {  // green threads: thread (and the sync it needs)
            fam |= cogent::detail::kPatchThread | cogent::detail::kPatchSync;
            continue;
        }
        if (a == "--patch" || a.rfind("--patch=", 0) == 0) {
            std::string list;
            if (a == "--patch") {
                if (i + 1 >= argc)
                    usage_error(
                        "option '--patch' needs a value (all, none, or "
                        "a list of socket, dns, time, select)");
                list = argv[++i];
            } else {
                list = a.substr(8);
            }
            std::string bad;
            auto f = parse_families(list, &bad);
            if (!f)
                usage_error(
                    "--patch='" + list + "': unknown family '" + bad +
                    "' (expected all, none, or a list of socket, dns, time, select, sync, thread)");
            fam = *f;
            continue;
        }
        bool matched = false;
        for (unsigned k = 0; k < cogent::detail::kPatchFamilyCount; ++k)
            if (a == std::string("--no-") + kFamilyNames[k]) {
                fam &= ~(1u << k);
                if ((1u << k) == cogent::detail::kPatchSync) fam &= ~cogent::detail::kPatchThread;
                matched = true;
            }
        if (!matched) usage_error("unknown option '" + a + "'");
    }

    const std::string lib = find_library();
    const std::string preload = compose_preload({sanitizer_runtime(), lib});
    if (show) {
        std::printf("patched: %s\n", describe(fam).c_str());
        std::printf("library: %s\n", lib.empty() ? "(not found)" : lib.c_str());
        if (!lib.empty()) std::printf("LD_PRELOAD=%s\n", preload.c_str());
        return lib.empty() ? 1 : 0;
    }
    if (i >= argc) usage_error("no command given");
    if (lib.empty()) {
        std::fprintf(stderr,
                     "cogent-run: cannot find %s (looked next to this program, in ../lib and in "
                     "the build directory '%s')\n",
                     kLibName, COGENT_PATCH_LIBDIR);
        return kCannotExecute;
    }

    if (setenv("LD_PRELOAD", preload.c_str(), 1) != 0 ||
        setenv("COGENT_PATCH", describe(fam).c_str(), 1) != 0) {
        std::perror("cogent-run: setenv");
        return kCannotExecute;
    }
    execvp(argv[i], argv + i);
    const int err = errno;
    std::fprintf(stderr, "cogent-run: %s: %s\n", argv[i],
                 err == ENOENT ? "command not found" : std::strerror(err));
    return err == ENOENT ? kNotFound : kCannotExecute;
}
