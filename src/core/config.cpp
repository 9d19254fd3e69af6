// Every COGENT_* environment setting is read here.
#include <atomic>
#include <cctype>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include "core/patch_families.hpp"
#include "core/thread_state.hpp"

namespace cogent::detail {

namespace {
constexpr std::size_t kDefaultStack = 256 * 1024;

// "262144", "256K", "256k", "1M", "1MiB"...
std::optional<std::size_t> parse_size(const std::string& s) {
    std::size_t i = 0, v = 0;
    if (s.empty()) return std::nullopt;
    for (; i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); ++i) {
        if (v > (std::size_t(1) << 40)) return std::nullopt;
        v = v * 10 + std::size_t(s[i] - '0');
    }
    if (i == 0) return std::nullopt;
    std::string unit = s.substr(i);
    for (auto& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
    if (unit.empty() || unit == "B") return v;
    if (unit == "K" || unit == "KB" || unit == "KIB") return v << 10;
    if (unit == "M" || unit == "MB" || unit == "MIB") return v << 20;
    if (unit == "G" || unit == "GB" || unit == "GIB") return v << 30;
    return std::nullopt;
}

// "SIGQUIT", "QUIT", "3", "SIGRTMIN+2": a signal a program may catch, or 0.
int parse_signal(const std::string& text) {
    std::string s = text;
    for (auto& ch : s) ch = char(std::toupper(static_cast<unsigned char>(ch)));
    if (s.rfind("SIG", 0) == 0) s = s.substr(3);
    int sig = 0;
    if (!s.empty() && std::isdigit(static_cast<unsigned char>(s[0]))) {
        char* end = nullptr;
        const long v = std::strtol(s.c_str(), &end, 10);
        if (*end || v <= 0 || v >= NSIG) return 0;
        sig = static_cast<int>(v);
    } else if (s.rfind("RTMIN", 0) == 0 || s.rfind("RTMAX", 0) == 0) {
        const bool min = s[2] == 'M' && s[3] == 'I';
        int off = 0;
        if (s.size() > 5) {
            char* end = nullptr;
            off = static_cast<int>(std::strtol(s.c_str() + 5, &end, 10));
            if (*end || (min && s[5] != '+') || (!min && s[5] != '-')) return 0;
        }
        sig = (min ? SIGRTMIN : SIGRTMAX) + off;
        if (sig < SIGRTMIN || sig > SIGRTMAX) return 0;
    } else {
        static constexpr struct {
            const char* name;
            int sig;
        } kNames[] = {
            {"HUP", SIGHUP},     {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
            {"USR2", SIGUSR2},   {"TERM", SIGTERM}, {"ALRM", SIGALRM}, {"PWR", SIGPWR},
            {"WINCH", SIGWINCH}, {"URG", SIGURG},   {"TSTP", SIGTSTP}, {"CONT", SIGCONT},
            {"TTIN", SIGTTIN},   {"TTOU", SIGTTOU}, {"PROF", SIGPROF}, {"VTALRM", SIGVTALRM}};
        for (const auto& n : kNames)
            if (s == n.name) sig = n.sig;
    }
    // Not these: uncatchable, or the faults a handler cannot return from.
    if (sig == SIGKILL || sig == SIGSTOP || sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE ||
        sig == SIGILL || sig == SIGABRT || sig == SIGTRAP || sig == SIGSYS)
        return 0;
    return sig;
}

Config load() {
    Config c{kDefaultStack};
    if (const char* e = std::getenv("COGENT_STACK_SIZE"); e && *e) {
        auto v = parse_size(e);
        if (!v || *v < 16 * 1024 || *v > (std::size_t(1) << 30))
            throw std::invalid_argument(std::string("cogent: COGENT_STACK_SIZE='") + e +
                                        "' is not a stack size between 16K and 1G (examples: "
                                        "262144, 256K, 1M)");
        c.stack_size = *v;
    }
    if (const char* e = std::getenv("COGENT_THREADPOOL_SIZE"); e && *e) {
        char* end = nullptr;
        unsigned long v =
            std::isdigit(static_cast<unsigned char>(*e)) ? std::strtoul(e, &end, 10) : 0;
        if (!end || *end || v < 1 || v > 1024)
            throw std::invalid_argument(std::string("cogent: COGENT_THREADPOOL_SIZE='") + e +
                                        "' is not a number of threads between 1 and 1024");
        c.threadpool_size = v;
    }
    if (const char* e = std::getenv("COGENT_PATCH"); e && *e) {
        std::string bad;
        auto fam = parse_patch_families(e, &bad);
        if (!fam)
            throw std::invalid_argument(std::string("cogent: COGENT_PATCH='") + e +
                                        "': unknown family '" + bad +
                                        "' (expected all, none, or a list of socket, dns, "
                                        "time, select, sync, thread)");
        c.patch_families = *fam;
    }
    if (const char* e = std::getenv("COGENT_MAX_BLOCKING_TIME"); e && *e) {
        char* end = nullptr;
        const double v = std::strtod(e, &end);
        if (end == e || *end || !(v >= 0.0 && v <= 3600.0))
            throw std::invalid_argument(std::string("cogent: COGENT_MAX_BLOCKING_TIME='") + e +
                                        "' is not a number of seconds between 0 (off) and 3600 "
                                        "(examples: 1, 0.25)");
        c.max_blocking_time = v;
    }
    if (const char* e = std::getenv("COGENT_STACK_GUARD"); e && *e) {
        const std::string v = e;
        if (v != "madvise" && v != "mprotect")
            throw std::invalid_argument(std::string("cogent: COGENT_STACK_GUARD='") + e +
                                        "' is neither madvise (the default) nor mprotect");
        c.stack_guard_mprotect = v == "mprotect";
    }
    if (const char* e = std::getenv("COGENT_MONITOR"); e && *e) {
        const std::string v = e;
        if (v == "1" || v == "true" || v == "yes" || v == "on")
            c.monitor = true;
        else if (v != "0" && v != "false" && v != "no" && v != "off")
            throw std::invalid_argument(std::string("cogent: COGENT_MONITOR='") + e +
                                        "' is neither 1 (on: true, yes, on) nor 0 (off: false, "
                                        "no, off)");
    }
    if (const char* e = std::getenv("COGENT_RUN_INFO_SIGNAL"); e && *e) {
        const int sig = parse_signal(e);
        if (sig <= 0)
            throw std::invalid_argument(
                std::string("cogent: COGENT_RUN_INFO_SIGNAL='") + e +
                "' is not a signal that can be caught (examples: SIGQUIT, QUIT, SIGUSR2, 12, "
                "SIGRTMIN+3)");
        c.run_info_signal = sig;
    }
    return c;
}
}  // namespace

const Config& config() {
    static std::atomic<const Config*> ready{nullptr};
    if (const Config* c = ready.load(std::memory_order_acquire)) return *c;
    static std::mutex mu;
    static std::optional<Config> cached;
    std::lock_guard<std::mutex> lk(mu);
    if (!cached) cached = load();  // a malformed value throws here, on every call
    ready.store(&*cached, std::memory_order_release);
    return *cached;
}

ResolverSettings resolver_settings() {
    ResolverSettings r;
    if (const char* e = std::getenv("COGENT_RESOLVER"); e && *e) r.kind = e;
    if (const char* e = std::getenv("COGENT_RESOLVER_SERVERS"); e && *e) {
        std::string all = e;
        std::size_t pos = 0;
        while (pos <= all.size()) {
            std::size_t comma = all.find(',', pos);
            if (comma == std::string::npos) comma = all.size();
            std::string item = all.substr(pos, comma - pos);
            pos = comma + 1;
            item.erase(0, item.find_first_not_of(" \t"));
            item.erase(item.find_last_not_of(" \t") + 1);
            if (!item.empty()) r.servers.push_back(item);
        }
        if (r.servers.empty())
            throw std::invalid_argument(std::string("cogent: COGENT_RESOLVER_SERVERS='") + e +
                                        "' names no server (expected ip[:port],...)");
    }
    if (const char* e = std::getenv("COGENT_RESOLVER_TIMEOUT"); e && *e) {
        char* end = nullptr;
        double v = std::strtod(e, &end);
        if (!end || *end || !(v > 0) || v > 3600)
            throw std::invalid_argument(std::string("cogent: COGENT_RESOLVER_TIMEOUT='") + e +
                                        "' is not a number of seconds in (0, 3600]");
        r.timeout_s = v;
    }
    if (const char* e = std::getenv("COGENT_RESOLVER_TRIES"); e && *e) {
        char* end = nullptr;
        long v = std::isdigit(static_cast<unsigned char>(*e)) ? std::strtol(e, &end, 10) : 0;
        if (!end || *end || v < 1 || v > 100)
            throw std::invalid_argument(std::string("cogent: COGENT_RESOLVER_TRIES='") + e +
                                        "' is not a number of tries between 1 and 100");
        r.tries = int(v);
    }
    return r;
}

}  // namespace cogent::detail
