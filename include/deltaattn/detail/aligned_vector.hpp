/**
 * @file detail/aligned_vector.hpp
 * A std::vector whose storage starts on a cache line.
 *
 * The kernels load whole registers from scratch rows and cache rows. From a plain
 * std::vector (16-byte aligned under glibc, large blocks too: their mmap header is 16
 * bytes) every 64-byte AVX-512 load of a row straddles two cache lines; on AMD Zen 5
 * that made a 4-bit quantized decode step 1.25x slower (docs/benchmarks.md). Rows
 * whose stride is a multiple of 64 bytes then all start on a line.
 */
#ifndef DELTAATTN_DETAIL_ALIGNED_VECTOR_HPP
#define DELTAATTN_DETAIL_ALIGNED_VECTOR_HPP

#include <cstddef>
#include <new>
#include <vector>

namespace deltaattn
{
    namespace detail
    {
        /// Bytes of a cache line on the CPUs we target, and the widest register (AVX-512).
        constexpr std::size_t cache_line = 64;

        template <class T>
        struct cache_line_allocator
        {
            using value_type = T;

            cache_line_allocator() noexcept = default;
            template <class U>
            cache_line_allocator(cache_line_allocator<U> const&) noexcept
            {
            }

            T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{cache_line})); }
            void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t{cache_line}); }

            template <class U>
            bool operator==(cache_line_allocator<U> const&) const noexcept
            {
                return true;
            }
            template <class U>
            bool operator!=(cache_line_allocator<U> const&) const noexcept
            {
                return false;
            }
        };

        /// cache_line_allocator whose value-less construct leaves the element
        /// default-initialized: `std::vector<float, A>(n)` then allocates without writing.
        /// (Construction with arguments falls back to std::allocator_traits' placement new.)
        template <class T>
        struct uninitialized_allocator : cache_line_allocator<T>
        {
            uninitialized_allocator() noexcept = default;
            template <class U>
            uninitialized_allocator(uninitialized_allocator<U> const&) noexcept
            {
            }
            template <class U>
            void construct(U* p) noexcept
            {
                ::new (static_cast<void*>(p)) U;
            }
        };
    }  // namespace detail

    /// std::vector with cache-line-aligned storage (detail/aligned_vector.hpp says why).
    template <class T>
    using aligned_vector = std::vector<T, detail::cache_line_allocator<T>>;

    /// aligned_vector whose sized constructor and resize leave floats unwritten: scratch a
    /// call fills before it reads (a prefill's far rows, MiBs: zeroing them first is a
    /// pass over memory the call does not need).
    template <class T>
    using scratch_vector = std::vector<T, detail::uninitialized_allocator<T>>;
}  // namespace deltaattn

#endif  // DELTAATTN_DETAIL_ALIGNED_VECTOR_HPP
