#include "cogent/event.hpp"

namespace cogent {

void Event::set() {
    flag_ = true;
    notify();
}

bool Event::wait(TimeoutArg timeout) { return wait_ready(timeout, "Event::wait"); }

}  // namespace cogent
