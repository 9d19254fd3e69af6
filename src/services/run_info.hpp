// Backtraces and their symbols, for run info (services/run_info.cpp) and the monitor. Internal.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cogent/util.hpp"
#include "core/thread_state.hpp"

namespace cogent::detail {

// Program counters, innermost first (each the address of a call, or of the instruction a
// signal interrupted).
struct Frames {
    static constexpr int kMax = 64;
    std::uintptr_t pc[kMax];
    int n = 0;
};
// One source-level frame (a pc may be several: inlined calls).
struct FrameInfo {
    std::string function;  // demangled; empty if unknown
    std::string file;      // with debug information
    int line = 0;
    std::string object;  // the executable's or library's file name
};

// The caller's own backtrace, without `skip` frames above the caller's.
Frames backtrace_here(int skip);
// A parked greenlet's (not the running one), read from its stack without resuming it; empty
// where the platform has no way (not x86-64) or the greenlet has not run yet.
Frames backtrace_parked(const GreenletImpl* g);
// The live backtrace of OS thread `tid` of this process, taken by the thread itself in a
// signal handler (SIGRTMAX - 4), and the name of the greenlet it was running (if any). False
// if it did not answer within 0.5 s.
bool backtrace_thread(pid_t tid, Frames* out, std::string* greenlet = nullptr);
std::vector<FrameInfo> symbolize(std::uintptr_t pc);
// Frames symbolized, one a line ("INDENT#0  function at file:line").
std::string format_backtrace(const Frames& fr, const char* indent);
// A detached OS thread of the runtime's, named (run info's signal thread, the monitor).
bool start_daemon_thread(void* (*fn)(void*), const char* name);
// The calling thread's hub and greenlets, formatted for run info.
std::string format_own_thread(const RunInfoOptions& opt, bool caller_is_here);

}  // namespace cogent::detail
