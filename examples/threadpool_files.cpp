// The thread pool: the answer for blocking calls nothing can make cooperative (regular file
// I/O: a disk file is always "ready" for epoll) and for CPU-bound work. Writes a few temporary
// files, then reads and hashes them on a cogent::ThreadPool while a greenlet on the hub keeps
// printing ticks, proving the hub is never blocked; compares with doing the same inline.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cogent/cogent.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// FNV-1a over the file, with a few extra rounds per byte to stand for real CPU work (a
// checksum, compression, parsing). Plain blocking read(2): this runs on a worker thread.
std::uint64_t hash_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("open " + path + " failed");
    std::uint64_t h = 1469598103934665603ull;
    std::vector<unsigned char> buf(64 * 1024);
    for (;;) {
        ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0) {
            ::close(fd);
            throw std::runtime_error("read " + path + " failed");
        }
        if (n == 0) break;
        for (ssize_t i = 0; i < n; ++i)
            for (int round = 0; round < 8; ++round)
                h = (h ^ buf[std::size_t(i)]) * 1099511628211ull;
    }
    ::close(fd);
    return h;
}

// A greenlet that prints a tick every 5 ms until stopped: it only runs if the hub is free.
struct Ticker {
    int ticks = 0;
    bool stop = false;
    cogent::Greenlet<void> g = cogent::spawn([this] {
        while (!stop) {
            cogent::sleep(5ms);
            ++ticks;
            std::printf(" tick%d", ticks);
            std::fflush(stdout);
        }
    });
    int finish() {
        stop = true;
        g.join();
        if (ticks) std::printf("\n");
        return ticks;
    }
};

}  // namespace

int main() {
    const int files = 4;
    const std::size_t size = 1 << 20;  // 1 MiB each
    fs::path dir = fs::temp_directory_path() / ("cogent_threadpool_" + std::to_string(getpid()));
    fs::create_directories(dir);
    std::vector<std::string> paths;
    {
        std::string data(size, '\0');
        for (std::size_t i = 0; i < size; ++i) data[i] = char(i * 131 + i / 4096);
        for (int f = 0; f < files; ++f) {
            paths.push_back((dir / ("file" + std::to_string(f) + ".bin")).string());
            data[0] = char(f);  // each file differs
            std::FILE* out = std::fopen(paths.back().c_str(), "wb");
            if (!out || std::fwrite(data.data(), 1, data.size(), out) != data.size()) return 1;
            std::fclose(out);
        }
    }
    std::printf("wrote %d files of %zu MiB in %s\n\n", files, size >> 20, dir.c_str());

    // 1. Inline on the hub's thread: the ticker starves until every file is done.
    std::printf("1. hashing inline, in the main greenlet:\n");
    std::vector<std::uint64_t> inline_hashes;
    Ticker t1;
    auto t0 = Clock::now();
    for (auto& p : paths) inline_hashes.push_back(hash_file(p));
    double inline_ms = ms_since(t0);
    int inline_ticks = t1.ticks;  // the ticker could not run: the hub's thread was busy
    t1.finish();
    std::printf("   %.0f ms, ticks while hashing: %d (the hub was blocked)\n\n", inline_ms,
                inline_ticks);

    // 2. On a thread pool: the main greenlet waits cooperatively; the ticker keeps ticking.
    std::printf("2. hashing on a ThreadPool(%d), results back on this hub:\n", files);
    cogent::ThreadPool pool(files);
    Ticker t2;
    t0 = Clock::now();
    std::vector<std::uint64_t> pool_hashes = pool.map(hash_file, paths);
    double pool_ms = ms_since(t0);
    int pool_ticks = t2.finish();
    std::printf(
        "   %.0f ms, ticks while hashing: %d (the hub stayed free); speed-up %.1fx "
        "on %u cores\n",
        pool_ms, pool_ticks, inline_ms / pool_ms, std::thread::hardware_concurrency());

    for (int f = 0; f < files; ++f)
        std::printf("   %s  %016llx %s\n", fs::path(paths[std::size_t(f)]).filename().c_str(),
                    static_cast<unsigned long long>(pool_hashes[std::size_t(f)]),
                    pool_hashes[std::size_t(f)] == inline_hashes[std::size_t(f)] ? "(same)"
                                                                                 : "(DIFFERENT)");

    // 3. One blocking call with apply(): only the calling greenlet waits.
    auto bytes = pool.apply([&] { return fs::file_size(paths[0]); });
    std::printf("\n3. pool.apply(file_size) = %llu bytes\n",
                static_cast<unsigned long long>(bytes));

    // 4. A failing task: the worker's exception is rethrown here, with its type.
    try {
        pool.apply(hash_file, (dir / "missing.bin").string());
    } catch (const std::runtime_error& e) {
        std::printf("4. a worker's exception reaches the caller: %s\n", e.what());
    }

    std::error_code ec;
    fs::remove_all(dir, ec);
    std::printf("\ncleaned up %s; %s\n", dir.c_str(),
                pool_hashes == inline_hashes && pool_ticks > 0 ? "OK" : "UNEXPECTED");
    return pool_hashes == inline_hashes ? 0 : 1;
}
