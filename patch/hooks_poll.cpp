// hooks_poll: being written.
#include "shim.hpp"
