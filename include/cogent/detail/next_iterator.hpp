// The range-for iterator of the lazy sequences that have a next() (IWait, Group::imap's IMap,
// ThreadPool::imap's ThreadPoolIMap). Internal.
#pragma once

#include <cstddef>
#include <optional>

namespace cogent::detail {

// An input iterator over source->next(), an std::optional<T> whose nullopt ends the sequence.
// Constructing one from a source pulls the first value (so begin() may block and throw like
// next()); the end iterator is the default-constructed one.
template <class Source, class T>
class NextIterator {
public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    NextIterator() = default;
    explicit NextIterator(Source* source) : source_(source) { ++*this; }
    T& operator*() const { return *cur_; }
    T* operator->() const { return &**this; }
    NextIterator& operator++() {
        cur_ = source_->next();
        if (!cur_) source_ = nullptr;
        return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(const NextIterator& o) const { return source_ == o.source_; }

private:
    Source* source_ = nullptr;
    mutable std::optional<T> cur_;
};

}  // namespace cogent::detail
