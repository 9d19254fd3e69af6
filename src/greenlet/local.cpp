// local<T>: the greenlet -> value map and the exit hooks that empty it.
#include "cogent/local.hpp"

#include <mutex>
#include <unordered_map>
#include <vector>

#include "cogent/greenlet.hpp"

namespace cogent::detail {

namespace {
struct Entry {
    Ref<GreenletImpl> g;             // keeps the key from being reused while the entry exists
    GreenletState* state = nullptr;  // non-null when an exit hook will drop the entry
    LinkId link = 0;
    void* value = nullptr;
};
}  // namespace

struct LocalBase::Impl {
    mutable std::mutex mu;
    std::unordered_map<GreenletImpl*, Entry> entries;
    // Keys of entries without a death link (main, hub and raw greenlets).
    std::vector<GreenletImpl*> unlinked;

    void forget_unlinked(GreenletImpl* key) {
        for (auto& k : unlinked) {
            if (k == key) {
                k = unlinked.back();
                unlinked.pop_back();
                return;
            }
        }
    }
};

LocalBase::LocalBase() : impl_(std::make_unique<Impl>()) {}

LocalBase::~LocalBase() = default;

void* LocalBase::find() const {
    GreenletImpl* cur = current();
    std::lock_guard<std::mutex> lk(impl_->mu);
    auto it = impl_->entries.find(cur);
    return it == impl_->entries.end() ? nullptr : it->second.value;
}

void LocalBase::insert(void* value) {
    GreenletImpl* cur = current();
    auto* state = dynamic_cast<GreenletState*>(cur);
    // Dead raw greenlets' values, destroyed outside the lock on every exit path.
    struct Swept {
        LocalBase* self;
        std::vector<Entry> entries;
        ~Swept() {
            for (auto& e : entries) self->destroy(e.value);
        }
    } swept{this, {}};
    {
        std::lock_guard<std::mutex> lk(impl_->mu);
        auto& unl = impl_->unlinked;
        for (std::size_t i = 0; i < unl.size();) {
            GreenletImpl* k = unl[i];
            // Only this thread's greenlets: reading another thread's state would race.
            if (k->thread == cur->thread && k->dead()) {
                auto it = impl_->entries.find(k);
                swept.entries.push_back(std::move(it->second));
                impl_->entries.erase(it);
                unl[i] = unl.back();
                unl.pop_back();
            } else {
                ++i;
            }
        }
        impl_->entries.emplace(cur, Entry{Ref<GreenletImpl>::share(cur), nullptr, 0, value});
        if (!state) {
            try {
                impl_->unlinked.push_back(cur);
            } catch (...) {
                impl_->entries.erase(cur);
                throw;
            }
        }
    }
    if (state) {
        try {
            // Runs in the greenlet itself when its function ends, before joiners wake.
            LinkId id = state->add_exit_hook([this, cur] { on_death(cur); });
            std::lock_guard<std::mutex> lk(impl_->mu);
            Entry& e = impl_->entries.at(cur);
            e.state = state;
            e.link = id;
        } catch (...) {
            std::lock_guard<std::mutex> lk(impl_->mu);
            impl_->entries.erase(cur);
            throw;
        }
    }
}

void LocalBase::on_death(void* key) noexcept {
    Entry e;
    {
        std::lock_guard<std::mutex> lk(impl_->mu);
        auto it = impl_->entries.find(static_cast<GreenletImpl*>(key));
        if (it == impl_->entries.end()) return;
        e = std::move(it->second);
        impl_->entries.erase(it);
    }
    destroy(e.value);
}

void LocalBase::reset_current() noexcept {
    GreenletImpl* cur = current();
    Entry e;
    {
        std::lock_guard<std::mutex> lk(impl_->mu);
        auto it = impl_->entries.find(cur);
        if (it == impl_->entries.end()) return;
        e = std::move(it->second);
        impl_->entries.erase(it);
        if (!e.state) impl_->forget_unlinked(cur);
    }
    if (e.state) e.state->remove_exit_hook(e.link);
    destroy(e.value);
}

void LocalBase::clear() noexcept {
    std::unordered_map<GreenletImpl*, Entry> all;
    {
        std::lock_guard<std::mutex> lk(impl_->mu);
        all.swap(impl_->entries);
        impl_->unlinked.clear();
    }
    for (auto& [key, e] : all) {
        if (e.state) e.state->remove_exit_hook(e.link);
        destroy(e.value);
    }
}

}  // namespace cogent::detail
