// hooks_dns: being written.
#include "shim.hpp"
