/**
 * @file kernels/row_ops.hpp
 * Single-row vector helpers of the decode kernels: a dot product and an axpy along
 * channels, for the rare dense rows (base rows, keyframes) of a delta region.
 */
#ifndef DELTAATTN_KERNELS_ROW_OPS_HPP
#define DELTAATTN_KERNELS_ROW_OPS_HPP

#include "../arch.hpp"

#include <cstddef>

namespace deltaattn
{
    namespace kernels
    {
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
