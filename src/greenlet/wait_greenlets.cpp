// joinall and killall: waiting on (and killing) several greenlets, on top of MultiWait.
#include <algorithm>
#include <stdexcept>

#include "cogent/greenlet.hpp"
#include "cogent/wait.hpp"

namespace cogent {

using namespace detail;

std::vector<AnyGreenlet> joinall(const std::vector<AnyGreenlet>& greenlets, TimeoutArg timeout,
                                 bool raise_error, std::optional<std::size_t> count) {
    for (const auto& g : greenlets)
        if (!g.valid()) throw std::invalid_argument("cogent: joinall given a null greenlet handle");
    const std::size_t need = count ? std::min(*count, greenlets.size()) : greenlets.size();
    std::vector<Linkable*> objects;
    objects.reserve(greenlets.size());
    for (const auto& g : greenlets) objects.push_back(g.state());
    MultiWait mw(std::move(objects), timeout, "joinall");
    std::vector<AnyGreenlet> done;
    done.reserve(need);
    auto failed = [](Linkable* l) {
        return static_cast<bool>(static_cast<GreenletState*>(l)->error);
    };
    while (done.size() < need) {
        // Sleep until all that are still needed are done (or one failed, with raise_error).
        mw.gather(need - done.size(), raise_error ? +failed : nullptr);
        bool any = false;
        while (done.size() < need) {
            auto i = mw.take();
            if (!i) break;
            any = true;
            done.push_back(greenlets[*i]);
            if (raise_error && done.back().exception())
                std::rethrow_exception(done.back().exception());
        }
        if (!any) break;  // timed out
    }
    return done;
}

void killall_ptr(std::vector<AnyGreenlet> greenlets, std::exception_ptr exception, bool block,
                 TimeoutArg timeout) {
    std::vector<Linkable*> objects;
    objects.reserve(greenlets.size());
    for (const auto& g : greenlets) {
        if (!g.valid()) throw std::invalid_argument("cogent: killall given a null greenlet handle");
        objects.push_back(g.state());
    }
    // All checked before the first kill is sent. Killing itself among others is allowed only
    // without blocking (the wait would be a self-join).
    if (block)
        check_wait_args(objects, "killall");
    else
        for (Linkable* o : objects) o->check_thread("killall");
    for (auto& g : greenlets) g.state()->kill(exception, false, {});
    if (!block) return;
    std::size_t n = greenlets.size();
    auto done = joinall(greenlets, timeout);
    if (done.size() < n) throw Timeout::expired(timeout);
}

}  // namespace cogent
