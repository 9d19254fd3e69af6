// Greenlet stacks: slabs, guard regions, reuse. Internal.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

namespace cogent::detail {

// Stacks are carved from slabs (one mmap holds many stacks, so the number of mappings stays
// far below vm.max_map_count), each stack with a guard region below it installed with
// MADV_GUARD_INSTALL (no VMA split) or, on kernels without it, mprotect. Freed stacks are kept
// for reuse; beyond `kHot` of them their pages are returned to the kernel (MADV_DONTNEED) but
// the address range stays reserved, so spawn never calls mmap in the steady state. Pages are
// given back in batches, sorted and coalesced into runs of neighbouring stacks, so a wave of
// greenlets ending costs a handful of madvise calls, not one each.
class StackPool {
public:
    static constexpr std::size_t kGuard = 16 * 1024;
    static constexpr std::size_t kHot = 256;
    StackPool() = default;
    StackPool(const StackPool&) = delete;
    ~StackPool();
    // Lowest usable address of a stack of `size` bytes (size must be page-rounded).
    void* acquire(std::size_t size);
    void release(void* lo, std::size_t size) noexcept;
    // True if `addr` lies in the guard region below the stack starting at `lo`.
    static bool in_guard(const void* addr, const void* lo) noexcept {
        auto a = reinterpret_cast<std::uintptr_t>(addr), l = reinterpret_cast<std::uintptr_t>(lo);
        return a < l && a >= l - kGuard;
    }
    static bool guard_via_madvise() noexcept;

private:
    struct SizeClass {
        std::vector<void*> free;  // LIFO: the most recently freed (warmest) at the back
        std::size_t cold = 0;     // free[0, cold) have had their pages given back
    };
    void trim(SizeClass& sc, std::size_t size) noexcept;
    SizeClass& size_class(std::size_t size) {
        if (size == last_size_) [[likely]]
            return *last_class_;
        SizeClass& sc = classes_[size];  // node-based: the reference stays valid
        last_size_ = size;
        last_class_ = &sc;
        return sc;
    }
    std::unordered_map<std::size_t, SizeClass> classes_;
    std::size_t last_size_ = 0;
    SizeClass* last_class_ = nullptr;
    std::vector<std::pair<void*, std::size_t>> slabs_;
};

}  // namespace cogent::detail
