// patch.hpp: ask the shim, if it is loaded, through the one symbol it exports for this.
#include <dlfcn.h>

#include "cogent/patch.hpp"
#include "core/patch_families.hpp"

namespace cogent::patch {

namespace {
using Query = unsigned (*)();
Query query() noexcept {
    static Query q = reinterpret_cast<Query>(dlsym(RTLD_DEFAULT, "cogent_patch_families"));
    return q;
}
}  // namespace

bool loaded() noexcept { return query() != nullptr; }

unsigned families() noexcept {
    Query q = query();
    return q ? q() : 0;
}

bool is_patched(Family family) noexcept { return (families() & family) == unsigned(family); }

std::string describe() {
    if (!loaded()) return "not loaded";
    unsigned f = families();
    if (!f) return "none";
    std::string out;
    for (unsigned i = 0; i < detail::kPatchFamilyCount; ++i)
        if (f & (1u << i))
            out += (out.empty() ? "" : ",") + std::string(detail::kPatchFamilyNames[i]);
    return out;
}

}  // namespace cogent::patch
