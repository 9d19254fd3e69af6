// cogent: gevent, natively in C++20. The umbrella header.
#pragma once

#include "cogent/async_result.hpp"
#include "cogent/debug.hpp"
#include "cogent/event.hpp"
#include "cogent/exceptions.hpp"
#include "cogent/greenlet.hpp"
#include "cogent/hub.hpp"
#include "cogent/lock.hpp"
#include "cogent/raw_greenlet.hpp"
#include "cogent/semaphore.hpp"
#include "cogent/time.hpp"
#include "cogent/timeout.hpp"
#include "cogent/wait.hpp"
