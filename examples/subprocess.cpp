// Subprocesses from greenlets: several commands run at once and are waited on cooperatively,
// so four 0.2 s commands take about 0.2 s, not 0.8 s. Then check_output, communicate, a
// timeout, and a function run in a forked child with Process.
#include <chrono>
#include <cogent/cogent.hpp>
#include <cstdio>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace sp = cogent::subprocess;

int main() {
    using Clock = std::chrono::steady_clock;
    auto since = [](Clock::time_point t0) {
        return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    };

    // 1. Four commands at once, one greenlet each.
    std::printf("running 4 x \"sleep 0.2; echo ...\" concurrently from greenlets\n");
    auto t0 = Clock::now();
    std::vector<cogent::Greenlet<std::string>> jobs;
    for (int i = 1; i <= 4; ++i) {
        jobs.push_back(cogent::spawn([i, t0, &since] {
            sp::RunOptions o;
            o.capture_output = true;
            auto r = sp::run(
                {"sh", "-c", "sleep 0.2; echo job " + std::to_string(i) + " from pid $$"}, o);
            char line[160];
            std::snprintf(line, sizeof line, "  %-28s exit %d, done at %4.0f ms",
                          r.stdout.substr(0, r.stdout.size() - 1).c_str(), r.returncode, since(t0));
            return std::string(line);
        }));
    }
    for (auto& j : jobs) std::printf("%s\n", j.get().c_str());
    const double total = since(t0);
    std::printf("all 4 finished in %.0f ms (sequentially: ~800 ms) -> %s\n", total,
                total < 600 ? "they overlapped" : "they did NOT overlap");

    // 2. check_output.
    std::string uname = sp::check_output({"uname", "-s"});
    std::printf("check_output({\"uname\", \"-s\"}) = \"%s\"\n",
                uname.substr(0, uname.find('\n')).c_str());

    // 3. communicate: input and output through pipes at the same time.
    sp::Options o;
    o.stdin = sp::PIPE;
    o.stdout = sp::PIPE;
    sp::Popen sorter({"sort"}, o);
    auto [sorted, err] = sorter.communicate("pear\napple\nfig\n");
    for (auto& c : sorted)
        if (c == '\n') c = ' ';
    std::printf("sort via communicate(\"pear apple fig\") -> \"%s\" (exit %d)\n", sorted.c_str(),
                *sorter.returncode());

    // 4. A timeout: the child keeps running until we kill it.
    sp::Popen sleeper({"sleep", "10"});
    try {
        sleeper.wait(100ms);
    } catch (const sp::TimeoutExpired& e) {
        std::printf("TimeoutExpired: %s\n", e.what());
    }
    sleeper.kill();
    std::printf("killed: returncode %d (minus SIGKILL)\n", sleeper.wait());

    // 5. A function in a forked child, joined cooperatively.
    cogent::Process child([] {
        cogent::sleep(20ms);  // the child's hub works
        return 3;
    });
    child.join();
    std::printf("Process(pid %d) exit code %d\n", int(child.pid()), *child.exitcode());
    return 0;
}
