/**
 * @file kernels/value_deltas.hpp
 * The probability-value product over the delta region when values are kept as deltas
 * (SPEC.md §6.1), for the lanes of one query block.
 *
 * SPEC.md writes the delta region's value sum with suffix sums of the probabilities,
 * which need every probability of the region before the first row. The kernel visits
 * keys once, in position order, under an online softmax, so it uses the same identity
 * read forwards. Within a segment [f, e] of the delta region (f the base row or a
 * keyframe, where the reference restarts from a dense row, e the segment's last key
 * for this query), with C_x = Σ_{f ≤ j ≤ x} p_j:
 *
 *     Σ_{j=f..e} p_j v̂_j  =  C_e v̂_e  −  Σ_{m=f+1..e} C_{m−1} Δv_m
 *
 * so each lane keeps C (a scalar) and A = Σ C_{m−1} Δv_m (a row of d): a delta row m
 * costs one broadcast + FMA per stored element for all lanes together (A += C Δv_m[c]),
 * exactly like a delta key row. The running reference v̂ is shared by all lanes (one
 * sparse add per row for the whole block); a lane's segment is closed (o += C v̂ − A,
 * d multiply-adds) when its delta region ends or a keyframe restarts the reference.
 * C and A are rescaled with the output accumulators at each tile's new maximum.
 *
 * Lanes of the block hold consecutive positions, so the lanes in the delta region of
 * key j are always a suffix [lo, lanes) that only shrinks as j grows.
 */
#ifndef DELTAATTN_KERNELS_VALUE_DELTAS_HPP
#define DELTAATTN_KERNELS_VALUE_DELTAS_HPP

#include "../arch.hpp"
#include "../delta/delta_key_cache.hpp"
#include "../detail/bits.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace deltaattn
{
    namespace kernels
    {
        template <class Arch, std::size_t R>
        class value_delta_sums
        {
            using ops = arch_traits<Arch>;
            using reg = typename ops::reg;
            static constexpr std::size_t w = ops::width, lanes = R * w;

        public:
            /// `weighted` ([d][lanes], the A rows) and `reference` (d) are scratch of the block.
            value_delta_sums(float* weighted, float* reference, std::size_t d) noexcept : m_weighted(weighted), m_reference(reference), m_d(d)
            {
                std::fill(m_weighted, m_weighted + d * lanes, 0.0f);
                for (std::size_t r = 0; r < R; ++r)
                    m_mass[r] = ops::zero();
            }

            /// First lane with an open segment (lanes past it too); `lanes` if none.
            std::size_t open_from() const noexcept { return m_open; }

            /// Multiplies the open segments' C and A by the tile's softmax factors.
            void rescale(float const* factor) noexcept
            {
                if (m_open >= lanes)
                    return;
                reg f[R];
                for (std::size_t r = 0; r < R; ++r)
                {
                    f[r] = ops::load(factor + r * w);
                    m_mass[r] = ops::mul(m_mass[r], f[r]);
                }
                for (std::size_t c = 0; c < m_d; ++c)
                    for (std::size_t r = 0; r < R; ++r)
                        ops::store(m_weighted + c * lanes + r * w, ops::mul(ops::load(m_weighted + c * lanes + r * w), f[r]));
            }

            /// Opens a segment for lanes [from, lanes) at the dense reference row `start`.
            void open(float const* start, std::size_t from) noexcept
            {
                std::copy(start, start + m_d, m_reference);
                m_open = from;
            }

            /// Closes the segments of lanes [m_open, until), `until` <= valid lanes:
            /// o[lane] += C v̂ − A, then their C and A restart at 0. Returns the lanes closed.
            std::size_t close(std::size_t until, float* o) noexcept
            {
                if (until <= m_open)
                    return 0;
                alignas(64) float mass[lanes];
                for (std::size_t r = 0; r < R; ++r)
                    ops::store(mass + r * w, m_mass[r]);
                for (std::size_t lane = m_open; lane < until; ++lane)
                {
                    float* out = o + lane * m_d;
                    for (std::size_t c = 0; c < m_d; ++c)
                    {
                        out[c] += mass[lane] * m_reference[c] - m_weighted[c * lanes + lane];
                        m_weighted[c * lanes + lane] = 0.0f;
                    }
                    mass[lane] = 0.0f;
                }
                for (std::size_t r = 0; r < R; ++r)
                    m_mass[r] = ops::load(mass + r * w);
                std::size_t const closed = until - m_open;
                m_open = until;
                return closed;
            }

            /// Delta row m of the open segments: A += C Δv_m (skipped while every C is 0,
            /// i.e. for the segment's first row), then v̂ += Δv_m.
            void add_row(delta_row const& row, bool weigh) noexcept
            {
                float const* value = row.values;
                for (std::size_t word = 0; word < detail::mask_words(m_d); ++word)
                    for (std::uint64_t bits = row.mask[word]; bits != 0; bits &= bits - 1)
                    {
                        std::size_t const c = word * 64 + detail::lowest_bit(bits);
                        float const delta = *value++;
                        if (weigh)
                        {
                            reg const x = ops::broadcast(delta);
                            float* a = m_weighted + c * lanes;
                            for (std::size_t r = 0; r < R; ++r)
                                ops::store(a + r * w, ops::fma(m_mass[r], x, ops::load(a + r * w)));
                        }
                        m_reference[c] += delta;
                    }
            }

            /// C += p for the lanes [from, lanes) of key j's probabilities `p`, then zeroes
            /// those probabilities (their value is the reference's, not v_j).
            void take_mass(float* p, std::size_t from) noexcept
            {
                reg const first = ops::broadcast(static_cast<float>(from));
                for (std::size_t r = 0; r < R; ++r)
                {
                    reg const lane = ops::add(ops::iota(), ops::broadcast(static_cast<float>(r * w)));
                    reg const pr = ops::load(p + r * w);
                    auto const in_region = ops::less(lane, first);  // true below `from`: not delta
                    m_mass[r] = ops::add(m_mass[r], ops::select(in_region, ops::zero(), pr));
                    ops::store(p + r * w, ops::select(in_region, pr, ops::zero()));
                }
            }

        private:
            float* m_weighted;
            float* m_reference;
            std::size_t m_d;
            std::size_t m_open = lanes;
            reg m_mass[R];
        };
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_VALUE_DELTAS_HPP
