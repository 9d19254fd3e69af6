// Symbol visibility. libcogent.so is built with -fvisibility=hidden and
// -fvisibility-inlines-hidden: a symbol is exported only when its declaration says so.
//   COGENT_API           the public API (include/cogent/*.hpp, namespace cogent).
//   COGENT_INTERNAL_API  an internal symbol that must still be exported: named by the public
//                        headers' inline and template code (cogent::detail in include/), by
//                        libcogent_patch.so (src/services/shim_api.hpp) or by the tests. Not
//                        part of the API: it may change at any time.
// Classes are marked as a whole (`class COGENT_API Foo`) so that their vtables and typeinfo are
// exported too: an exception thrown in the library is then caught by its type in the program.
#pragma once

// The C++11 attribute spelling, so that it sits beside other standard attributes:
// `class [[nodiscard]] COGENT_API Foo`, `[[noreturn]] COGENT_API void f();`,
// `COGENT_INTERNAL_API extern thread_local T* v;`.
#if defined(__GNUC__) || defined(__clang__)
#define COGENT_API [[gnu::visibility("default")]]
#define COGENT_INTERNAL_API [[gnu::visibility("default")]]
#else
#define COGENT_API
#define COGENT_INTERNAL_API
#endif
