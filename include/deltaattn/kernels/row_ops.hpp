/**
 * @file kernels/row_ops.hpp
 * Single-row vector helpers of the decode kernels: prefetches, a partial store, and a
 * dot product and an axpy along channels for the rare dense rows (base rows, keyframes)
 * of a delta region.
 */
#ifndef DELTAATTN_KERNELS_ROW_OPS_HPP
#define DELTAATTN_KERNELS_ROW_OPS_HPP

#include "../arch.hpp"

#include <cstddef>

namespace deltaattn
{
    namespace kernels
    {
        /// Asks for the `bytes` at `p` to be brought into the cache ahead of use: a hint,
        /// which never faults. A decode step walks head rows that sit one per page in a
        /// token-major cache (`[pos][head][dim]`), where the hardware prefetchers, which
        /// stop at page boundaries, do not follow.
        template <class T>
        void prefetch(T const* p, std::size_t bytes) noexcept
        {
#if defined(__GNUC__)
            char const* const c = reinterpret_cast<char const*>(p);
            for (std::size_t offset = 0; offset < bytes; offset += 64)
                __builtin_prefetch(c + offset);
#else
            (void)p;
            (void)bytes;
#endif
        }

        /// As prefetch, into the outer cache levels only (L2 on the CPUs seen here): many
        /// more lines can be in flight there than L1 tracks, for data used a while later.
        template <class T>
        void prefetch_far(T const* p, std::size_t bytes) noexcept
        {
#if defined(__GNUC__)
            char const* const c = reinterpret_cast<char const*>(p);
            for (std::size_t offset = 0; offset < bytes; offset += 64)
                __builtin_prefetch(c + offset, 0, 1);
#else
            (void)p;
            (void)bytes;
#endif
        }

        /// Stores the first n lanes of x at p (n <= width). A whole register where it
        /// can: a copy of n floats became `rep movsl`, ~10% of the code rows'
        /// dots (Zen 5) and of the delta rows' scores (Zen 4).
        template <class Arch>
        void store_first(float* p, typename arch_traits<Arch>::reg const& x, std::size_t n) noexcept
        {
            using ops = arch_traits<Arch>;
            if (n == ops::width)
            {
                ops::store(p, x);
                return;
            }
            alignas(64) float lanes[ops::width];
            ops::store(lanes, x);
            for (std::size_t l = 0; l < n; ++l)
                p[l] = lanes[l];
        }

        /// a · b along channels.
        template <class Arch>
        float row_dot(float const* a, float const* b, std::size_t d) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width;
            auto acc = ops::zero();
            std::size_t c = 0;
            for (; c + w <= d; c += w)
                acc = ops::fma(ops::load(a + c), ops::load(b + c), acc);
            float sum = ops::reduce_add(acc);
            for (; c < d; ++c)
                sum += a[c] * b[c];
            return sum;
        }

        /// y += a x along channels.
        template <class Arch>
        void row_axpy(float a, float const* x, float* y, std::size_t d) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width;
            auto const av = ops::broadcast(a);
            std::size_t c = 0;
            for (; c + w <= d; c += w)
                ops::store(y + c, ops::fma(av, ops::load(x + c), ops::load(y + c)));
            for (; c < d; ++c)
                y[c] += a * x[c];
        }
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_ROW_OPS_HPP
