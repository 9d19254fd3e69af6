// Every COGENT_* environment setting is read here.
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include "runtime.hpp"

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

}  // namespace cogent::detail
