/**
 * @file kernels/primitives.hpp
 * Vector building blocks of the attention kernels, generic on the arch tag.
 *
 * Invariants: channel rows are contiguous; `n` is any size (full registers first,
 * then a scalar tail), pointers need no alignment.
 */
#ifndef DELTAATTN_KERNELS_PRIMITIVES_HPP
#define DELTAATTN_KERNELS_PRIMITIVES_HPP

#include "../arch.hpp"
#include "../delta/delta_key_cache.hpp"
#include "../detail/bits.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace deltaattn
{
    namespace kernels
    {
        /// Σ a[c] b[c] in fp32, two accumulators to hide FMA latency.
        template <class Arch>
        float dot(float const* a, float const* b, std::size_t n) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width;
            auto acc0 = ops::zero(), acc1 = ops::zero();
            std::size_t c = 0;
            for (; c + 2 * w <= n; c += 2 * w)
            {
                acc0 = ops::fma(ops::load(a + c), ops::load(b + c), acc0);
                acc1 = ops::fma(ops::load(a + c + w), ops::load(b + c + w), acc1);
            }
            if (c + w <= n)
            {
                acc0 = ops::fma(ops::load(a + c), ops::load(b + c), acc0);
                c += w;
            }
            float s = ops::reduce_add(ops::add(acc0, acc1));
            for (; c < n; ++c)
                s += a[c] * b[c];
            return s;
        }

        /// y *= factor.
        template <class Arch>
        void scale(float* y, float factor, std::size_t n) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width;
            auto const f = ops::broadcast(factor);
            std::size_t c = 0;
            for (; c + w <= n; c += w)
                ops::store(y + c, ops::mul(ops::load(y + c), f));
            for (; c < n; ++c)
                y[c] *= factor;
        }

        /// Largest of x[0..n).
        template <class Arch>
        float max_of(float const* x, std::size_t n) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width;
            float m = -std::numeric_limits<float>::infinity();
            std::size_t c = 0;
            if (n >= w)
            {
                auto acc = ops::load(x);
                for (c = w; c + w <= n; c += w)
                    acc = ops::max(acc, ops::load(x + c));
                m = ops::reduce_max(acc);
            }
            for (; c < n; ++c)
                m = x[c] > m ? x[c] : m;
            return m;
        }

        /// x[c] = exp(x[c] - shift) in place; returns the sum. exp(-inf) = 0, so masked
        /// scores vanish without a branch.
        template <class Arch>
        float exp_shifted_sum(float* x, float shift, std::size_t n) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width;
            auto const s = ops::broadcast(shift);
            auto sum = ops::zero();
            std::size_t c = 0;
            for (; c + w <= n; c += w)
            {
                auto const e = ops::exp(ops::sub(ops::load(x + c), s));
                ops::store(x + c, e);
                sum = ops::add(sum, e);
            }
            float total = ops::reduce_add(sum);
            for (; c < n; ++c)
            {
                x[c] = std::exp(x[c] - shift);
                total += x[c];
            }
            return total;
        }

        /**
         * A compressed delta row expanded once into a dense buffer, with a bit per
         * register-wide group of channels saying whether the group holds any update.
         * Expanded once per query block, it is then dotted with every query of the
         * block while skipping the all-zero groups.
         */
        template <class Arch>
        class expanded_row
        {
        public:
            static constexpr std::size_t width = arch_traits<Arch>::width;

            /// `dense` holds `dim` floats, `group_bits` `detail::mask_words(groups(dim))` words.
            expanded_row(float* dense, std::uint64_t* group_bits, std::size_t dim) noexcept
                : m_dense(dense), m_groups(group_bits), m_dim(dim)
            {
            }

            static constexpr std::size_t groups(std::size_t dim) noexcept { return (dim + width - 1) / width; }

            void assign(delta_row const& row) noexcept
            {
                std::fill(m_dense, m_dense + m_dim, 0.0f);
                std::fill(m_groups, m_groups + detail::mask_words(groups(m_dim)), std::uint64_t(0));
                float const* v = row.values;
                for (std::size_t w = 0; w < detail::mask_words(m_dim); ++w)
                    for (std::uint64_t bits = row.mask[w]; bits != 0; bits &= bits - 1)
                    {
                        std::size_t const c = w * 64 + detail::lowest_bit(bits);
                        m_dense[c] = *v++;
                        std::size_t const g = c / width;
                        m_groups[g / 64] |= std::uint64_t(1) << (g % 64);
                    }
            }

            /// q · (expanded row), touching only groups with an update.
            float dot(float const* q) const noexcept
            {
                using ops = arch_traits<Arch>;
                std::size_t const full = m_dim / width;
                auto acc = ops::zero();
                float tail = 0.0f;
                for (std::size_t w = 0; w < detail::mask_words(groups(m_dim)); ++w)
                    for (std::uint64_t bits = m_groups[w]; bits != 0; bits &= bits - 1)
                    {
                        std::size_t const g = w * 64 + detail::lowest_bit(bits);
                        std::size_t const c = g * width;
                        if (g < full)
                            acc = ops::fma(ops::load(q + c), ops::load(m_dense + c), acc);
                        else
                            for (std::size_t t = c; t < m_dim; ++t)
                                tail += q[t] * m_dense[t];
                    }
                return ops::reduce_add(acc) + tail;
            }

        private:
            float* m_dense;
            std::uint64_t* m_groups;
            std::size_t m_dim;
        };
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_PRIMITIVES_HPP
