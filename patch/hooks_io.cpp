// hooks_io: being written.
#include "shim.hpp"
