// Error reporting: describe an exception by its type and message, report one nothing else sees.
#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <typeinfo>

#include "cogent/exceptions.hpp"
#include "core/thread_state.hpp"

namespace cogent::detail {

namespace {
std::string demangle(const char* name) {
    int status = 0;
    char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
    std::string s = (status == 0 && d) ? d : name;
    std::free(d);
    return s;
}
}  // namespace

std::string describe_exception(std::exception_ptr e) {
    try {
        std::rethrow_exception(e);
    } catch (const BaseException& ex) {
        return demangle(typeid(ex).name()) + ": " + ex.what();
    } catch (const std::exception& ex) {
        return demangle(typeid(ex).name()) + ": " + ex.what();
    } catch (...) {
        auto* t = abi::__cxa_current_exception_type();
        return t ? demangle(t->name()) : std::string("unknown exception");
    }
}

void report_exception(const char* where, std::exception_ptr e) noexcept {
    try {
        std::string s = "cogent: uncaught exception in " + std::string(where) + ": " +
                        describe_exception(e) + "\n";
        fputs(s.c_str(), stderr);
    } catch (...) {
        fputs("cogent: uncaught exception (and no memory to describe it)\n", stderr);
    }
}

}  // namespace cogent::detail
