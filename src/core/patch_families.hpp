// The COGENT_PATCH grammar, shared by src/config.cpp (which reads the variable for the shim) and
// patch/cogent_run.cpp (which does not link libcogent). Header-only, no dependencies.
#pragma once

#include <cctype>
#include <optional>
#include <string>

namespace cogent::detail {

// Bit i is family kPatchFamilyNames[i]. "all" is every family but "thread" (green threads are
// opt-in: cogent-run --threads); "thread" brings "sync" with it.
inline constexpr const char* kPatchFamilyNames[] = {"socket", "dns",  "time",
                                                    "select", "sync", "thread"};
inline constexpr unsigned kPatchFamilyCount = 6;
inline constexpr unsigned kPatchSync = 1u << 4;
inline constexpr unsigned kPatchThread = 1u << 5;
inline constexpr unsigned kPatchAll = (1u << kPatchFamilyCount) - 1 - kPatchThread;

// "all", "none", "socket,dns"...: items case-insensitive, blanks around them ignored, "all" and
// "none" combinable with names. nullopt (and *bad_item) for an unknown item.
inline std::optional<unsigned> parse_patch_families(const std::string& v, std::string* bad_item) {
    unsigned fam = 0;
    std::size_t pos = 0;
    while (pos <= v.size()) {
        std::size_t comma = v.find(',', pos);
        if (comma == std::string::npos) comma = v.size();
        std::string item = v.substr(pos, comma - pos);
        pos = comma + 1;
        for (auto& ch : item) ch = char(std::tolower(static_cast<unsigned char>(ch)));
        item.erase(0, item.find_first_not_of(" \t"));
        item.erase(item.find_last_not_of(" \t") + 1);
        bool known = item == "none";
        if (item == "all") {
            fam |= kPatchAll;
            known = true;
        }
        for (unsigned i = 0; i < kPatchFamilyCount && !known; ++i)
            if (item == kPatchFamilyNames[i]) {
                fam |= 1u << i;
                known = true;
            }
        if (!known) {
            if (bad_item) *bad_item = item;
            return std::nullopt;
        }
    }
    if (fam & kPatchThread) fam |= kPatchSync;
    return fam;
}

}  // namespace cogent::detail
