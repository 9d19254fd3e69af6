#include "cogent/event.hpp"

#include "hub/hub.hpp"

namespace cogent {

using namespace detail;

Event::Event() noexcept : Linkable(true) { set_kind("Event"); }

Event::~Event() = default;

void Event::set() {
    check_thread("Event::set");
    flag_ = true;
    if (waiters_.empty()) return;
    // Every party there now is woken even if clear() comes before its turn.
    notify_all_linked();
}

bool Event::wait(TimeoutArg timeout) {
    check_thread("Event::wait");
    if (flag_) {
        wait_turn(timeout, "Event::wait");
        return true;
    }
    // Woken means a set() happened while we waited: true even if cleared since.
    return park(waiters_, timeout, "Event::wait") || flag_;
}

}  // namespace cogent
