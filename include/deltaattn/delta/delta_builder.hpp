/**
 * @file delta/delta_builder.hpp
 * Builds one compressed delta row (SPEC.md §2) against the running reference.
 *
 * A compressed row is a channel bitmask (bit c set iff channel c was *updated*) and
 * the deltas of the updated channels packed in channel order. "Updated" is
 * structural: an updated channel whose delta happens to be exactly 0 is still stored,
 * so `target_sparsity` yields exactly the requested sparsity and `block_threshold`
 * zeros always come in whole groups.
 *
 * Arithmetic is fp32 exactly as SPEC.md §2 writes it, so rows are bit-exact with the
 * oracle (`reference::build_delta_rows`).
 */
#ifndef DELTAATTN_DELTA_DELTA_BUILDER_HPP
#define DELTAATTN_DELTA_DELTA_BUILDER_HPP

#include "../detail/bits.hpp"
#include "../policies/threshold.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace deltaattn
{
    /// Turns keys into compressed delta rows, one at a time, with a policy.
    /// Owns the scratch a row needs, so building allocates nothing.
    class delta_builder
    {
    public:
        delta_builder(delta_policy policy, std::size_t dim)
            : m_policy(policy), m_dim(dim), m_error(dim), m_rank(dim), m_updated(detail::mask_words(dim) * 64, 0)
        {
            DELTAATTN_REQUIRE(dim >= 1, "dim", "must be >= 1" + detail::got(dim));
            validate_policy(policy, dim);
        }

        delta_policy const& policy() const noexcept { return m_policy; }
        std::size_t dim() const noexcept { return m_dim; }

        /**
         * Delta of `key` against `reference` (the reference row of the previous
         * position). Writes the mask (`detail::mask_words(dim)` words) and the packed
         * deltas (up to `dim` floats), and updates `reference` in place to this
         * position's reference row. Returns the number of updated channels.
         */
        std::size_t build(float const* key, float* reference, std::uint64_t* mask, float* packed)
        {
            for (std::size_t c = 0; c < m_dim; ++c)
                m_error[c] = key[c] - reference[c];
            std::visit([&](auto const& p) { select(p, key, mask); }, m_policy);

            // Branch-free: a row's updates fall at random channels, and a branch per channel
            // mispredicted about as often as it was taken. (packed[nnz] is written for every
            // channel and kept by the ones updated; nnz <= c keeps it inside `dim`.) The
            // reference blend is a loop of its own, which the compiler vectorizes.
            std::uint8_t const* const updated = m_updated.data();
            for (std::size_t c = 0; c < m_dim; ++c)
                reference[c] = blend(updated[c], key[c], reference[c]);
            std::size_t nnz = 0;
            for (std::size_t c = 0; c < m_dim; ++c)
            {
                packed[nnz] = m_error[c];
                nnz += updated[c];
            }
            return nnz;
        }

        /// The first row of a sequence is dense: every channel updated, delta = key.
        std::size_t build_first(float const* key, float* reference, std::uint64_t* mask, float* packed) const
        {
            std::fill(mask, mask + detail::mask_words(m_dim), std::uint64_t(0));
            for (std::size_t c = 0; c < m_dim; ++c)
            {
                mask[c / 64] |= std::uint64_t(1) << (c % 64);
                packed[c] = reference[c] = key[c];
            }
            return m_dim;
        }

        /// θ of the row for `key` (SPEC.md §3 bound); NaN when the policy has no bound.
        float row_threshold(float const* key) const
        {
            struct visitor
            {
                float const* key;
                std::size_t dim;
                float operator()(fixed_threshold const& p) const { return p.theta; }
                float operator()(relative_threshold const& p) const { return relative_theta(p.ratio, key, dim); }
                float operator()(target_sparsity const&) const { return std::numeric_limits<float>::quiet_NaN(); }
                float operator()(block_threshold const& p) const { return p.theta; }
            };
            return std::visit(visitor{key, m_dim}, m_policy);
        }

    private:
        /// `updated` (0 or 1) ? a : b, bit for bit, without a branch: as a conditional
        /// expression GCC compiled it to one, mispredicted on random updates.
        static float blend(std::uint32_t updated, float a, float b) noexcept
        {
            std::uint32_t ia, ib;
            std::memcpy(&ia, &a, sizeof ia);
            std::memcpy(&ib, &b, sizeof ib);
            std::uint32_t const take = 0u - updated;
            std::uint32_t const bits = (ia & take) | (ib & ~take);
            float out;
            std::memcpy(&out, &bits, sizeof out);
            return out;
        }

        /// m_updated[c] = `updated(c)` (0 or 1), called in channel order, then the mask from
        /// those bytes. A byte per channel first, so that a stateless predicate's loop
        /// vectorizes and build's loops read a byte, not a bit extracted from a word.
        template <class Predicate>
        void fill_mask(std::uint64_t* mask, Predicate updated)
        {
            for (std::size_t c = 0; c < m_dim; ++c)
                m_updated[c] = static_cast<std::uint8_t>(updated(c));
            pack_updated(mask);
        }

        /// The mask words from m_updated (zero past dim), eight channels a multiply: with
        /// bytes x_i in {0, 1}, byte 7 of x * 0x0102040810204080 is Σ x_i << i (each x_i
        /// lands on a bit of its own, so no sum carries). Or-ing one bit a channel into a
        /// word chained 64 dependent instructions a word.
        void pack_updated(std::uint64_t* mask) const noexcept
        {
            static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "byte i of the loaded word is channel i's byte");
            for (std::size_t w = 0; w < detail::mask_words(m_dim); ++w)
            {
                std::uint64_t word = 0;
                for (std::size_t k = 0; k < 8; ++k)
                {
                    std::uint64_t bytes;
                    std::memcpy(&bytes, m_updated.data() + w * 64 + k * 8, sizeof bytes);
                    word |= (bytes * 0x0102040810204080ull) >> 56 << (8 * k);
                }
                mask[w] = word;
            }
        }

        // rms summed in double, θ rounded to fp32 (SPEC.md §5).
        static float relative_theta(float ratio, float const* key, std::size_t dim)
        {
            double s = 0.0;
            for (std::size_t c = 0; c < dim; ++c)
                s += static_cast<double>(key[c]) * static_cast<double>(key[c]);
            return static_cast<float>(static_cast<double>(ratio) * std::sqrt(s / static_cast<double>(dim)));
        }

        void select_above(float theta, std::uint64_t* mask) noexcept
        {
            fill_mask(mask, [&](std::size_t c) { return std::fabs(m_error[c]) > theta; });
        }

        void select(fixed_threshold const& p, float const*, std::uint64_t* mask) noexcept { select_above(p.theta, mask); }

        void select(relative_threshold const& p, float const* key, std::uint64_t* mask) noexcept
        {
            select_above(relative_theta(p.ratio, key, m_dim), mask);
        }

        void select(block_threshold const& p, float const*, std::uint64_t* mask) noexcept
        {
            bool any = false;  // the group of channel c has an |error| above θ
            fill_mask(mask, [&](std::size_t c) {
                if (c % p.group == 0)
                {
                    any = false;
                    for (std::size_t k = c; k < c + p.group; ++k)
                        any = any || std::fabs(m_error[k]) > p.theta;
                }
                return any;
            });
        }

        /// |x| as its bit pattern, every NaN the same one above +inf: on these, integer
        /// order is the order of |x| with NaN above every number (SPEC.md §5's ranking).
        static std::uint32_t magnitude_rank(float x) noexcept
        {
            std::uint32_t bits;
            std::memcpy(&bits, &x, sizeof bits);
            bits &= 0x7fffffffu;
            return bits > 0x7f800000u ? 0x7f800001u : bits;
        }

        /// Channels whose rank is at least `t` (a loop the compiler vectorizes).
        std::size_t count_at_least(std::uint32_t t) const noexcept
        {
            std::uint32_t n = 0;  // (32-bit lanes: half the vector work of a size_t count)
            for (std::size_t c = 0; c < m_dim; ++c)
                n += m_rank[c] >= t;
            return n;
        }

        /// How many of t1 < t2 < t3 have at least `keep` ranks >= t (one pass for all three).
        std::uint32_t count_enough(std::uint32_t t1, std::uint32_t t2, std::uint32_t t3, std::size_t keep) const noexcept
        {
            std::uint32_t n1 = 0, n2 = 0, n3 = 0;
            for (std::size_t c = 0; c < m_dim; ++c)
            {
                n1 += m_rank[c] >= t1;
                n2 += m_rank[c] >= t2;
                n3 += m_rank[c] >= t3;
            }
            return std::uint32_t(n1 >= keep) + std::uint32_t(n2 >= keep) + std::uint32_t(n3 >= keep);
        }

        /// The `keep` largest |e| (NaN above every number, ties to the lower channel).
        /// The keep-th largest rank is found from the top bit down (16 counting passes,
        /// no data-dependent branch), then one pass in channel order takes every rank above
        /// it and its ties while places remain. (A comparison-based nth_element spent 2-3 µs
        /// per 128-channel row in mispredicted branches: a sixth of a hybrid prefill.)
        void select(target_sparsity const& p, float const*, std::uint64_t* mask)
        {
            auto const keep = static_cast<std::size_t>(std::llround((1.0 - static_cast<double>(p.sparsity)) * static_cast<double>(m_dim)));
            if (keep == 0)
                return fill_mask(mask, [](std::size_t) { return false; });
            for (std::size_t c = 0; c < m_dim; ++c)
                m_rank[c] = magnitude_rank(m_error[c]);
            // The largest t with at least `keep` ranks >= t, two bits per pass (ranks are
            // below 2^31): of the pass's candidates cut + 1, 2, 3 units, the counts fall
            // as t grows, so the ones that keep enough are the lowest few, and their number
            // is the pass's two bits. (One bit per pass was a chain of 31 dependent counts.)
            std::uint32_t cut = 0;
            for (int bit = 29; bit >= 1; bit -= 2)
            {
                std::uint32_t const unit = std::uint32_t(1) << bit;
                cut += unit * count_enough(cut + unit, cut + 2 * unit, cut + 3 * unit, keep);
            }
            cut += count_at_least(cut + 1) >= keep;  // bit 0
            std::size_t ties = keep - count_at_least(cut + 1);
            for (std::size_t c = 0; c < m_dim; ++c)
                m_updated[c] = m_rank[c] > cut;
            for (std::size_t c = 0; c < m_dim && ties > 0; ++c)  // the first `ties` ranks equal to cut
                if (m_rank[c] == cut)
                {
                    m_updated[c] = 1;
                    --ties;
                }
            pack_updated(mask);
        }

        delta_policy m_policy;
        std::size_t m_dim;
        std::vector<float> m_error;
        std::vector<std::uint32_t> m_rank;      // target_sparsity's scratch
        std::vector<std::uint8_t> m_updated;    // 1 per updated channel, 0 past dim
    };
}  // namespace deltaattn

#endif  // DELTAATTN_DELTA_DELTA_BUILDER_HPP
