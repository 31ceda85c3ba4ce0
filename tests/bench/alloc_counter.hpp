#pragma once
/// Counting replacements for every global operator new/delete (plain, array, nothrow, sized,
/// aligned), built on malloc/free, so a benchmark can report allocations per operation.
///
/// Replacement allocation functions may not be inline, so this header DEFINES them: include it
/// in exactly one translation unit of a benchmark executable (and never in a library).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace spoa::bench {

/// Calls to any operator new / operator new[] since program start (successful or not).
inline std::atomic<std::uint64_t> allocation_count{0};
/// Calls to any operator delete / operator delete[] with a non-null pointer.
inline std::atomic<std::uint64_t> deallocation_count{0};

[[nodiscard]] inline std::uint64_t allocations() noexcept {
    return allocation_count.load(std::memory_order_relaxed);
}
[[nodiscard]] inline std::uint64_t deallocations() noexcept {
    return deallocation_count.load(std::memory_order_relaxed);
}

namespace detail {

inline void* counted_malloc(std::size_t size) noexcept {
    allocation_count.fetch_add(1, std::memory_order_relaxed);
    return std::malloc(size == 0 ? 1 : size);
}

inline void* counted_aligned_malloc(std::size_t size, std::align_val_t align) noexcept {
    allocation_count.fetch_add(1, std::memory_order_relaxed);
    auto alignment = static_cast<std::size_t>(align);
    if (alignment < sizeof(void*)) alignment = sizeof(void*);
    // aligned_alloc wants a size that is a multiple of the alignment.
    const std::size_t rounded = ((size == 0 ? 1 : size) + alignment - 1) / alignment * alignment;
    return std::aligned_alloc(alignment, rounded);
}

inline void counted_free(void* p) noexcept {
    if (p == nullptr) return;
    deallocation_count.fetch_add(1, std::memory_order_relaxed);
    std::free(p);
}

inline void* throwing(void* p) {
    if (p == nullptr) throw std::bad_alloc();
    return p;
}

}  // namespace detail
}  // namespace spoa::bench

// NOLINTBEGIN(misc-new-delete-overloads)
void* operator new(std::size_t n) {
    return spoa::bench::detail::throwing(spoa::bench::detail::counted_malloc(n));
}
void* operator new[](std::size_t n) {
    return spoa::bench::detail::throwing(spoa::bench::detail::counted_malloc(n));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    return spoa::bench::detail::counted_malloc(n);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    return spoa::bench::detail::counted_malloc(n);
}
void* operator new(std::size_t n, std::align_val_t a) {
    return spoa::bench::detail::throwing(spoa::bench::detail::counted_aligned_malloc(n, a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
    return spoa::bench::detail::throwing(spoa::bench::detail::counted_aligned_malloc(n, a));
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return spoa::bench::detail::counted_aligned_malloc(n, a);
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return spoa::bench::detail::counted_aligned_malloc(n, a);
}

void operator delete(void* p) noexcept {
    spoa::bench::detail::counted_free(p);
}
void operator delete[](void* p) noexcept {
    spoa::bench::detail::counted_free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    spoa::bench::detail::counted_free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    spoa::bench::detail::counted_free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    spoa::bench::detail::counted_free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    spoa::bench::detail::counted_free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
    spoa::bench::detail::counted_free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
    spoa::bench::detail::counted_free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
    spoa::bench::detail::counted_free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
    spoa::bench::detail::counted_free(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    spoa::bench::detail::counted_free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    spoa::bench::detail::counted_free(p);
}
// NOLINTEND(misc-new-delete-overloads)
