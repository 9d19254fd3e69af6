// local<T>: greenlet-local storage (gevent.local.local).
#pragma once

#include <functional>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "cogent/detail/export.hpp"

namespace cogent {

namespace detail {

// The type-erased part of local<T>: a map from greenlet to value, and the exit hook that drops a
// Greenlet's value when it dies. Thread-safe: one local may serve greenlets of several threads.
class COGENT_INTERNAL_API LocalBase {
public:
    LocalBase(const LocalBase&) = delete;
    LocalBase& operator=(const LocalBase&) = delete;

protected:
    LocalBase();
    ~LocalBase();
    // The calling greenlet's value, or null.
    void* find() const;
    // Adopt `value` as the calling greenlet's (it has none). If this throws, `value` is not
    // adopted (the caller still owns it).
    void insert(void* value);
    // Destroy the calling greenlet's value, if any.
    void reset_current() noexcept;
    // Destroy every value (the derived destructor calls it: destroy() is virtual).
    void clear() noexcept;
    virtual void destroy(void* value) noexcept = 0;

private:
    struct Impl;
    void on_death(void* key) noexcept;
    std::unique_ptr<Impl> impl_;
};

}  // namespace detail

// One T per greenlet (gevent.local): each greenlet that uses it gets its own value,
// constructed on its first use (default-constructed, or by the factory given to the
// constructor) and destroyed when that greenlet ends: for a Greenlet (spawn), on the hub right
// after its death, before the next hub turn (so ~T must not block); for the main greenlet and
// raw greenlets, which have no death notification, with the local itself (a dead raw
// greenlet's value also goes at the next first use by another greenlet). Values of greenlets
// still alive are destroyed with the local. Not copyable or movable; usable from any thread.
template <class T>
class local : private detail::LocalBase {
public:
    // Values are default-constructed on first use.
    local() = default;
    // Values are made by factory() on first use (it may block; it runs in the greenlet that
    // asks). Throws std::invalid_argument for an empty factory.
    explicit local(std::function<T()> factory) : factory_(std::move(factory)) {
        if (!factory_) throw std::invalid_argument("cogent: local needs a callable factory");
    }
    ~local() { clear(); }

    // The calling greenlet's value, constructed now if it has none (what the constructor or
    // factory throws propagates; nothing is stored then). The reference stays valid until the
    // greenlet ends, reset() or the local is destroyed.
    T& get() {
        if (void* p = find()) return *static_cast<T*>(p);
        std::unique_ptr<T> v = make();
        insert(v.get());
        return *v.release();
    }
    T& operator*() { return get(); }
    T* operator->() { return &get(); }
    // True if the calling greenlet already has a value.
    bool has_value() const { return find() != nullptr; }
    // Destroy the calling greenlet's value now (the next get() makes a new one).
    void reset() noexcept { reset_current(); }

private:
    std::unique_ptr<T> make() {
        if (factory_) return std::unique_ptr<T>(new T(factory_()));  // elided: T need not move
        if constexpr (std::is_default_constructible_v<T>)
            return std::make_unique<T>();
        else
            throw std::logic_error(
                "cogent: local<T> of a non-default-constructible T needs a factory");
    }
    void destroy(void* value) noexcept override { delete static_cast<T*>(value); }

    std::function<T()> factory_;
};

}  // namespace cogent
