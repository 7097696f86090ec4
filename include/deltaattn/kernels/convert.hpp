/**
 * @file kernels/convert.hpp
 * float16 storage seen as float rows. Kernels that stream a row once (a decode step's
 * dots and value sums, a prefill's value rows) widen a register at a time as they load
 * (`arch_traits<Arch>::load(float16 const*)`). Kernels that walk a row element by
 * element or many times (a prefill's exact keys, broadcast per channel; packed delta
 * rows, expanded or broadcast per stored element) widen it once into scratch here, then
 * run their fp32 code unchanged. For float storage these are no-ops.
 */
#ifndef DELTAATTN_KERNELS_CONVERT_HPP
#define DELTAATTN_KERNELS_CONVERT_HPP

#include "../arch.hpp"
#include "../delta/delta_key_cache.hpp"
#include "../fp16.hpp"

#include <cstddef>

namespace deltaattn
{
    namespace kernels
    {
        /// `row` itself: already floats.
        template <class Arch>
        float const* as_floats(float const* row, std::size_t, float*) noexcept
        {
            return row;
        }

        /// The n values of `row` widened into `buffer`, which is returned. `buffer` holds
        /// n + arch_traits<Arch>::width floats (the last register is stored whole).
        template <class Arch>
        float const* as_floats(float16 const* row, std::size_t n, float* buffer) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width;
            std::size_t i = 0;
            for (; i + w <= n; i += w)
                ops::store(buffer + i, ops::load(row + i));
            if (i < n)
            {
                // The tail through a register too: packed rows nearly always have one, and
                // scalar widening costs a dozen branchy instructions per value. Copied
                // first, as the row may end where its allocation does; stored whole, into
                // the buffer's padding.
                float16 tail[w] = {};
                for (std::size_t t = 0; t < n - i; ++t)
                    tail[t] = row[i + t];
                ops::store(buffer + i, ops::load(tail));
            }
            return buffer;
        }

        /// A compressed delta row with its packed values as floats (widened into `buffer`,
        /// nnz + width floats, when stored as float16).
        template <class Arch, class T>
        delta_row as_float_row(basic_delta_row<T> const& row, float* buffer) noexcept
        {
            return {row.mask, as_floats<Arch>(row.values, row.nnz, buffer), row.nnz};
        }
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_CONVERT_HPP
