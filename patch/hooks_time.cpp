// hooks_time: being written.
#include "shim.hpp"
