/**
 * @file kernels/attention_block.hpp
 * The one kernel behind dense and hybrid attention, prefill and decode: where skipped
 * multiplies are really skipped.
 *
 * A *query block* is P consecutive positions times the heads of one KV group (GQA),
 * at most R registers' worth of query vectors; a decode step is a block with P = 1.
 * For the query at position i, key j is (SPEC.md §3):
 *   masked  if j > i,
 *   exact   if j < sinks or j > i - window: score = alpha * q·k_j,
 *   delta   otherwise: score = alpha * q·k̂_j, where q·k̂_j is a prefix sum
 *           q·k̂_{sinks-1} + Σ q·Δk_m, restarted at keyframes (dense k̂ rows).
 * Keys are visited in tiles, in position order, flash-style: each tile's scores go
 * through an online softmax (running max and sum, rescaled accumulators) straight into
 * the value sum, so memory stays O(block), not O(n).
 *
 * The block's queries are transposed to `[channel][lane]`, one query per lane. Then:
 *  - a delta row costs one broadcast + one FMA per *stored* delta element: the prefix
 *    sums q·k̂_j of all lanes advance together, held in registers, with no horizontal
 *    reduction at all (zeros cost nothing; this is where sparsity becomes time);
 *  - an exact key costs d broadcast-FMAs for all lanes (a small transposed GEMM), or,
 *    for a single position, d / width FMAs per head along channels;
 *  - the online softmax (running max and sum) runs across lanes, a tile at a time;
 *  - p·V is a register-blocked outer product, vectorized over channels.
 * The three classes of a key are contiguous lane ranges, so two comparisons against
 * the lane index pick each lane's score.
 *
 * A decode step (P = 1) is the exception for exact keys: it dots them along channels
 * (see channel_dots), so prefill and decode agree to rounding, not to the bit.
 *
 * Invariant: lanes past the block's query count ("padding") carry a copy of lane 0's
 * query; their results are computed and discarded, never written.
 */
#ifndef DELTAATTN_KERNELS_ATTENTION_BLOCK_HPP
#define DELTAATTN_KERNELS_ATTENTION_BLOCK_HPP

#include "../arch.hpp"
#include "../counters.hpp"
#include "../detail/bits.hpp"
#include "../views.hpp"
#include "arch/expand.hpp"
#include "key_sources.hpp"
#include "value_deltas.hpp"
#include "workspace.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace deltaattn
{
    namespace kernels
    {
        /// out[r] = Σ_c qT[c][lanes of register r] * k[c], four independent FMA chains.
        template <class Arch, std::size_t R>
        void transposed_dot(float const* qT, std::size_t lanes, float const* k, std::size_t d, typename arch_traits<Arch>::reg* out) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width;
            typename ops::reg acc[4][R];
            for (auto& chain : acc)
                for (auto& a : chain)
                    a = ops::zero();
            std::size_t c = 0;
            for (; c + 4 <= d; c += 4)
                for (std::size_t u = 0; u < 4; ++u)
                {
                    auto const kb = ops::broadcast(k[c + u]);
                    for (std::size_t r = 0; r < R; ++r)
                        acc[u][r] = ops::fma(ops::load(qT + (c + u) * lanes + r * w), kb, acc[u][r]);
                }
            for (; c < d; ++c)
            {
                auto const kb = ops::broadcast(k[c]);
                for (std::size_t r = 0; r < R; ++r)
                    acc[0][r] = ops::fma(ops::load(qT + c * lanes + r * w), kb, acc[0][r]);
            }
            for (std::size_t r = 0; r < R; ++r)
                out[r] = ops::add(ops::add(acc[0][r], acc[1][r]), ops::add(acc[2][r], acc[3][r]));
        }

        /**
         * Exact scores of one key for the heads of a single position (a decode step),
         * vectorized along channels: d / width FMAs per head instead of the transposed
         * form's d, which would fill only `heads` of the register's lanes. Writes lane h
         * of `out` (padding lanes copy lane 0).
         */
        template <class Arch, std::size_t R>
        void channel_dots(float const* const* q, std::size_t heads, float const* k, std::size_t d, typename arch_traits<Arch>::reg* out) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width, lanes = R * w;
            alignas(64) float score[lanes];
            for (std::size_t h0 = 0; h0 < heads; h0 += 4)
            {
                // Always four accumulators (a compile-time count keeps them in registers);
                // past the last head they repeat head h0 and are dropped.
                std::size_t const hn = std::min<std::size_t>(4, heads - h0);
                float const* qh[4];
                for (std::size_t h = 0; h < 4; ++h)
                    qh[h] = q[h0 + (h < hn ? h : 0)];
                typename ops::reg acc[4] = {ops::zero(), ops::zero(), ops::zero(), ops::zero()};
                std::size_t c = 0;
                for (; c + w <= d; c += w)
                {
                    auto const kv = ops::load(k + c);
                    acc[0] = ops::fma(ops::load(qh[0] + c), kv, acc[0]);
                    acc[1] = ops::fma(ops::load(qh[1] + c), kv, acc[1]);
                    acc[2] = ops::fma(ops::load(qh[2] + c), kv, acc[2]);
                    acc[3] = ops::fma(ops::load(qh[3] + c), kv, acc[3]);
                }
                for (std::size_t h = 0; h < hn; ++h)
                {
                    float sum = ops::reduce_add(acc[h]);
                    for (std::size_t t = c; t < d; ++t)
                        sum += qh[h][t] * k[t];
                    score[h0 + h] = sum;
                }
            }
            for (std::size_t lane = heads; lane < lanes; ++lane)
                score[lane] = score[0];
            for (std::size_t r = 0; r < R; ++r)
                out[r] = ops::load(score + r * w);
        }

        /// Can this arch expand a compressed row into a register in one instruction? Only
        /// then does the channel-parallel delta path of a decode step beat the lane path
        /// (measured: with a scalar expand loop it costs ~1.7x the instructions on AVX2,
        /// and the LUT kernels of AVX2/NEON still cost several).
        template <class Arch>
        constexpr bool has_fast_expand() noexcept
        {
            return expand_isa_of<Arch>() == expand_isa::avx512;
        }

        /// One register of a compressed row: lane l = the next packed value if bit l of
        /// `bits` is set, else 0; advances `packed` past the values used. Reads only the
        /// values it uses (the cache's packed rows are not padded for the LUT kernels).
        template <class Arch>
        typename arch_traits<Arch>::reg expand_lanes(std::uint32_t bits, float const*& packed) noexcept
        {
            if constexpr (has_fast_expand<Arch>())
                return expand_group<Arch>(bits, packed);  // masked expand-load
            else
                return expand_group_generic<Arch>(bits, packed);
        }

        /**
         * Delta scores of a decode step, along channels: per head, a running prefix
         * vector acc_h += q_h ⊙ Δk_j (registers whose channels hold no update are
         * skipped), with the horizontal sums of `width` consecutive rows done together
         * (one haddp) instead of one per row and head.
         */
        template <class Arch>
        class channel_delta_scores
        {
            using ops = arch_traits<Arch>;
            using reg = typename ops::reg;
            static constexpr std::size_t w = ops::width, max_heads = block_scratch::max_channel_heads;

        public:
            channel_delta_scores(float const* const* q, std::size_t heads, std::size_t d, float scale, float* scores, std::size_t lanes,
                                 float* snapshots) noexcept
                : m_q(q), m_heads(heads), m_d(d), m_scale(scale), m_scores(scores), m_lanes(lanes), m_snapshots(snapshots)
            {
            }

            /// The prefix restarts at a dense row's dots `start[h]` (the base row or a keyframe).
            void restart(float const* start) noexcept
            {
                for (std::size_t h = 0; h < m_heads; ++h)
                {
                    m_offset[h] = start[h];
                    m_acc[h] = ops::zero();
                }
            }

            /// Adds delta row j (tile slot jj) to every head's prefix and queues its scores.
            void add(delta_row const& row, std::size_t jj) noexcept
            {
                accumulate(row);
                queue(jj);
            }

            /// Queues the current prefix as the scores of tile slot jj.
            void queue(std::size_t jj) noexcept
            {
                for (std::size_t h = 0; h < m_heads; ++h)
                {
                    ops::store(m_snapshots + (h * w + m_pending) * w, m_acc[h]);
                    m_pending_offset[m_pending][h] = m_offset[h];
                }
                m_pending_slot[m_pending++] = jj;
                if (m_pending == w)
                    flush();
            }

        private:
            void accumulate(delta_row const& row) noexcept
            {
                float const* value = row.values;
                std::size_t c = 0;
                for (; c + w <= m_d; c += w)
                {
                    auto const bits = static_cast<std::uint32_t>(detail::mask_bits(row.mask, c, w));
                    if (bits == 0)
                        continue;
                    reg const delta = expand_lanes<Arch>(bits, value);
                    for (std::size_t h = 0; h < m_heads; ++h)
                        m_acc[h] = ops::fma(ops::load(m_q[h] + c), delta, m_acc[h]);
                }
                for (; c < m_d; ++c)  // channels past the last full register
                    if (row.mask[c / 64] >> (c % 64) & 1u)
                    {
                        float const v = *value++;
                        for (std::size_t h = 0; h < m_heads; ++h)
                            m_offset[h] += m_q[h][c] * v;
                    }
            }

        public:
            /// Writes the queued rows' scores (all lanes of each row; padding lanes copy lane 0).
            void flush() noexcept
            {
                if (m_pending == 0)
                    return;
                alignas(64) float sums[w];
                for (std::size_t h = 0; h < m_heads; ++h)
                {
                    float* rows = m_snapshots + h * w * w;
                    std::fill(rows + m_pending * w, rows + w * w, 0.0f);
                    reg snapshot[w];
                    for (std::size_t k = 0; k < w; ++k)
                        snapshot[k] = ops::load(rows + k * w);
                    ops::store(sums, ops::reduce_add_rows(snapshot));
                    for (std::size_t k = 0; k < m_pending; ++k)
                        m_scores[m_pending_slot[k] * m_lanes + h] = m_scale * (m_pending_offset[k][h] + sums[k]);
                }
                for (std::size_t k = 0; k < m_pending; ++k)
                {
                    float* row = m_scores + m_pending_slot[k] * m_lanes;
                    std::fill(row + m_heads, row + m_lanes, row[0]);
                }
                m_pending = 0;
            }

        private:
            float const* const* m_q;
            std::size_t m_heads, m_d;
            float m_scale;
            float* m_scores;
            std::size_t m_lanes;
            float* m_snapshots;
            reg m_acc[max_heads];
            float m_offset[max_heads] = {};
            float m_pending_offset[w][max_heads] = {};
            std::size_t m_pending_slot[w] = {};
            std::size_t m_pending = 0;
        };

        /// Adds Σ_c qT[c] Δ[c] over the stored elements of a delta row, alternating two
        /// accumulator sets so consecutive FMAs do not wait on each other.
        template <class Arch, std::size_t R>
        void add_delta_row(float const* qT, std::size_t lanes, delta_row const& row, std::size_t d, typename arch_traits<Arch>::reg* even,
                           typename arch_traits<Arch>::reg* odd) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width;
            float const* value = row.values;
            for (std::size_t word = 0; word < detail::mask_words(d); ++word)
            {
                std::uint64_t bits = row.mask[word];
                while (bits != 0)
                {
                    std::size_t const c0 = word * 64 + detail::lowest_bit(bits);
                    bits &= bits - 1;
                    auto const x0 = ops::broadcast(*value++);
                    for (std::size_t r = 0; r < R; ++r)
                        even[r] = ops::fma(ops::load(qT + c0 * lanes + r * w), x0, even[r]);
                    if (bits == 0)
                        break;
                    std::size_t const c1 = word * 64 + detail::lowest_bit(bits);
                    bits &= bits - 1;
                    auto const x1 = ops::broadcast(*value++);
                    for (std::size_t r = 0; r < R; ++r)
                        odd[r] = ops::fma(ops::load(qT + c1 * lanes + r * w), x1, odd[r]);
                }
            }
        }

        /// o[lane] = o[lane] * factor[lane] + Σ_k p[key_k][lane] v_{key_k} over the tile
        /// keys listed in `keys`, for G lanes at once: each value row chunk is loaded once
        /// for G accumulators.
        template <class Arch, std::size_t G>
        void accumulate_lanes(float* o, std::size_t lane0, float const* factor, float const* p, std::size_t lanes, float const* const* v,
                              std::uint16_t const* keys, std::size_t count, std::size_t d) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width;
            std::size_t c = 0;
            for (; c + w <= d; c += w)
            {
                typename ops::reg a[G];
                for (std::size_t g = 0; g < G; ++g)
                    a[g] = ops::mul(ops::load(o + (lane0 + g) * d + c), ops::broadcast(factor[lane0 + g]));
                for (std::size_t k = 0; k < count; ++k)
                {
                    auto const vv = ops::load(v[keys[k]] + c);
                    for (std::size_t g = 0; g < G; ++g)
                        a[g] = ops::fma(ops::broadcast(p[keys[k] * lanes + lane0 + g]), vv, a[g]);
                }
                for (std::size_t g = 0; g < G; ++g)
                    ops::store(o + (lane0 + g) * d + c, a[g]);
            }
            for (; c < d; ++c)
                for (std::size_t g = 0; g < G; ++g)
                {
                    float a = o[(lane0 + g) * d + c] * factor[lane0 + g];
                    for (std::size_t k = 0; k < count; ++k)
                        a += p[keys[k] * lanes + lane0 + g] * v[keys[k]][c];
                    o[(lane0 + g) * d + c] = a;
                }
        }

        /**
         * Attention of one query block: `q` and `out` are P positions x g heads x d with
         * P * g <= R * width, the first at absolute position `first`. `keys` and `values`
         * are dense_rows or cached_rows; with cached values (SPEC.md §6.1) the delta
         * region's values come from their delta rows (value_deltas.hpp). Adds the block's
         * work (SPEC.md §4) to `work`.
         */
        template <class Arch, std::size_t R, class Keys, class Values>
        void attend_block(Keys const& keys, tensor_view<const float> q, tensor_view<float> out, std::size_t first, Values const& values,
                          float scale, hybrid_split split, block_scratch& ws, attention_work& work)
        {
            static_assert(Keys::has_deltas || !Values::has_deltas, "delta values come with delta keys");
            using ops = arch_traits<Arch>;
            using reg = typename ops::reg;
            constexpr std::size_t w = ops::width, lanes = R * w, tile = block_scratch::tile;
            constexpr std::size_t G = lanes % 4 == 0 ? 4 : lanes % 2 == 0 ? 2 : 1;
            std::size_t const positions = q.positions, heads = q.heads, d = q.dim, nq = positions * heads;
            std::size_t const last = first + positions - 1;
            ws.reserve(lanes, d);

            float* const qT = ws.transposed.data();
            for (std::size_t lane = 0; lane < lanes; ++lane)
            {
                float const* src = lane < nq ? q.at(lane / heads, lane % heads) : q.at(0, 0);
                for (std::size_t c = 0; c < d; ++c)
                    qT[c * lanes + lane] = src[c];
            }
            // A single position (a decode step) dots exact keys along channels, and (for up
            // to max_channel_heads heads, where expand is one instruction) runs the delta
            // prefix sums along channels too.
            bool const by_channel = positions == 1;
            bool const channel_deltas =
                has_fast_expand<Arch>() && by_channel && Keys::has_deltas && heads <= block_scratch::max_channel_heads;
            float const* q_rows[lanes];
            for (std::size_t h = 0; h < heads && by_channel; ++h)
                q_rows[h] = q.at(0, h);
            float* const o = ws.lane_acc.data();
            std::fill(o, o + lanes * d, 0.0f);
            float* const s = ws.lane_scores.data();
            channel_delta_scores<Arch> decode_deltas(q_rows, heads, d, scale, s, lanes, ws.snapshots.data());
            alignas(64) float first_lanes[lanes] = {};  // q·k_0 per lane, for the channel path
            alignas(64) float dense_lanes[lanes];

            reg lane_index[R], row_max[R], row_sum[R], first_dot[R], even[R], odd[R], exact[R];
            reg const neg_inf = ops::broadcast(-std::numeric_limits<float>::infinity()), alpha = ops::broadcast(scale);
            for (std::size_t r = 0; r < R; ++r)
            {
                lane_index[r] = ops::add(ops::iota(), ops::broadcast(static_cast<float>(r * w)));
                row_max[r] = neg_inf;
                row_sum[r] = first_dot[r] = even[r] = odd[r] = exact[r] = ops::zero();
            }
            std::uint64_t macs = 0, exact_macs = 0, value_macs = 0;
            value_delta_sums<Arch, R> value_sums(ws.value_weighted.data(), ws.value_reference.data(), d);
            alignas(64) float unit_factor[lanes];
            std::fill(unit_factor, unit_factor + lanes, 1.0f);

            for (std::size_t t0 = 0; t0 <= last; t0 += tile)
            {
                std::size_t const nt = std::min(tile, last + 1 - t0);
                for (std::size_t jj = 0; jj < nt; ++jj)
                {
                    std::size_t const j = t0 + jj;
                    std::size_t const p_visible = j > first ? j - first : 0;
                    std::size_t p_delta = positions;
                    if (Keys::has_deltas && j >= split.sinks && split.window <= last - j)
                        p_delta = std::max(p_visible, j + split.window > first ? j + split.window - first : 0);

                    if (p_visible < p_delta)
                    {
                        if (by_channel)
                            channel_dots<Arch, R>(q_rows, heads, keys.exact_row(j), d, exact);
                        else
                            transposed_dot<Arch, R>(qT, lanes, keys.exact_row(j), d, exact);
                        if (j == 0)
                        {
                            std::copy(exact, exact + R, first_dot);  // = q·k̂_0: the prefix base when sinks == 1
                            for (std::size_t r = 0; r < R; ++r)
                                ops::store(first_lanes + r * w, exact[r]);
                        }
                        exact_macs += (p_delta - p_visible) * heads * d;
                    }
                    if constexpr (Keys::has_deltas)
                    {
                        if (p_delta < positions)
                        {
                            delta_key_cache const& cache = *keys.cache;
                            std::size_t const count = (positions - p_delta) * heads;
                            if (channel_deltas)
                            {
                                // One position, all lanes delta: scores are written at flush.
                                auto const dense_dots = [&](float const* row) {
                                    channel_dots<Arch, R>(q_rows, heads, row, d, exact);
                                    for (std::size_t r = 0; r < R; ++r)
                                        ops::store(dense_lanes + r * w, exact[r]);
                                    macs += count * d;
                                    return dense_lanes;
                                };
                                if (j == split.sinks)
                                    decode_deltas.restart(split.sinks == 1 ? first_lanes : dense_dots(cache.base_row()));
                                if (float const* keyframe = cache.keyframe_row(j))
                                {
                                    decode_deltas.restart(dense_dots(keyframe));
                                    decode_deltas.queue(jj);
                                }
                                else
                                {
                                    delta_row const row = cache.delta(j);
                                    decode_deltas.add(row, jj);
                                    macs += count * row.nnz;
                                }
                                continue;
                            }
                            if (j == split.sinks)
                            {
                                if (split.sinks == 1)
                                    std::copy(first_dot, first_dot + R, even);
                                else
                                    transposed_dot<Arch, R>(qT, lanes, cache.base_row(), d, even);
                                std::fill(odd, odd + R, ops::zero());
                                if (split.sinks > 1)
                                    macs += count * d;
                            }
                            if (float const* keyframe = cache.keyframe_row(j))
                            {
                                transposed_dot<Arch, R>(qT, lanes, keyframe, d, even);
                                std::fill(odd, odd + R, ops::zero());
                                macs += count * d;
                            }
                            else
                            {
                                delta_row const row = cache.delta(j);
                                add_delta_row<Arch, R>(qT, lanes, row, d, even, odd);
                                macs += count * row.nnz;
                            }
                        }
                    }
                    // Lanes below p_visible * heads are masked, below p_delta * heads exact, the rest delta.
                    reg const masked_end = ops::broadcast(static_cast<float>(p_visible * heads));
                    reg const exact_end = ops::broadcast(static_cast<float>(p_delta * heads));
                    for (std::size_t r = 0; r < R; ++r)
                    {
                        reg const delta_score = ops::mul(alpha, ops::add(even[r], odd[r]));
                        reg score = ops::select(ops::less(lane_index[r], exact_end), ops::mul(alpha, exact[r]), delta_score);
                        score = ops::select(ops::less(lane_index[r], masked_end), neg_inf, score);
                        ops::store(s + jj * lanes + r * w, score);
                    }
                }

                decode_deltas.flush();

                // Online softmax across lanes: new max, rescale factor, probabilities in place.
                for (std::size_t r = 0; r < R; ++r)
                {
                    reg m_tile = neg_inf;
                    for (std::size_t jj = 0; jj < nt; ++jj)
                        m_tile = ops::max(m_tile, ops::load(s + jj * lanes + r * w));
                    reg const m_new = ops::max(row_max[r], m_tile);
                    // A lane that has seen no key yet keeps max -inf: shift by 0, so its
                    // exp(-inf) terms are 0 instead of exp(NaN).
                    reg const shift = ops::select(ops::equal(m_new, neg_inf), ops::zero(), m_new);
                    reg const factor = ops::exp(ops::sub(row_max[r], shift));
                    reg sum = ops::mul(row_sum[r], factor);
                    for (std::size_t jj = 0; jj < nt; ++jj)
                    {
                        reg const p = ops::exp(ops::sub(ops::load(s + jj * lanes + r * w), shift));
                        ops::store(s + jj * lanes + r * w, p);
                        sum = ops::add(sum, p);
                    }
                    row_sum[r] = sum;
                    row_max[r] = m_new;
                    ops::store(ws.lane_factor.data() + r * w, factor);
                }

                float const* factor = ws.lane_factor.data();
                if constexpr (Values::has_deltas)
                {
                    // The delta region's values (value_deltas.hpp). Its segments close into o,
                    // so o takes this tile's rescale now, not fused below.
                    for (std::size_t lane = 0; lane < nq; ++lane)
                        for (std::size_t c = 0; c < d; ++c)
                            o[lane * d + c] *= factor[lane];
                    value_sums.rescale(factor);
                    factor = unit_factor;
                    for (std::size_t jj = 0; jj < nt; ++jj)
                    {
                        std::size_t const j = t0 + jj;
                        // Lanes [delta_from, nq) have key j in their delta region.
                        std::size_t delta_from = nq;
                        if (j >= split.sinks && split.window <= last - j)
                            delta_from = std::min(nq, (j + split.window > first ? j + split.window - first : 0) * heads);
                        value_macs += value_sums.close(std::min(delta_from, nq), o) * d;
                        if (delta_from >= nq)
                            continue;
                        delta_key_cache const& cache = *values.cache;
                        std::size_t const count = nq - delta_from;
                        if (j == split.sinks)
                            value_sums.open(cache.base_row(), delta_from);
                        if (float const* keyframe = cache.keyframe_row(j))
                        {
                            value_macs += value_sums.close(nq, o) * d;
                            value_sums.open(keyframe, delta_from);
                        }
                        else
                        {
                            delta_row const row = cache.delta(j);
                            bool const weigh = j != split.sinks;  // C is 0 at a segment's first row
                            value_sums.add_row(row, weigh);
                            value_macs += weigh ? count * row.nnz : 0;
                        }
                        value_sums.take_mass(s + jj * lanes, delta_from);
                    }
                }

                // Exact values: per group of G lanes, the tile keys some lane of the group
                // reads v_j for (all visible keys, unless values are deltas).
                for (std::size_t jj = 0; jj < nt; ++jj)
                {
                    std::size_t const j = t0 + jj;
                    bool const block_reads = !Values::has_deltas || j < split.sinks || j + split.window > first;
                    ws.value_rows[jj] = block_reads ? values.exact_row(j) : nullptr;
                }
                std::uint16_t* const listed = ws.value_keys.data();
                for (std::size_t lane0 = 0; lane0 < nq; lane0 += G)
                {
                    // Keys past the group's last position have p = 0: skip them.
                    std::size_t const i_last = first + (std::min(lane0 + G, nq) - 1) / heads, i_first = first + lane0 / heads;
                    std::size_t const seen = i_last < t0 ? 0 : std::min(nt, i_last + 1 - t0);
                    std::size_t count = 0;
                    for (std::size_t jj = 0; jj < seen; ++jj)
                    {
                        std::size_t const j = t0 + jj;
                        if (!Values::has_deltas || j < split.sinks || j + split.window > i_first)
                            listed[count++] = static_cast<std::uint16_t>(jj);
                    }
                    accumulate_lanes<Arch, G>(o, lane0, factor, s, lanes, ws.value_rows.data(), listed, count, d);
                }
            }

            for (std::size_t r = 0; r < R; ++r)
                ops::store(ws.lane_sum.data() + r * w, row_sum[r]);
            for (std::size_t lane = 0; lane < nq; ++lane)
            {
                float const inv = 1.0f / ws.lane_sum[lane];
                float* dst = out.at(lane / heads, lane % heads);
                for (std::size_t c = 0; c < d; ++c)
                    dst[c] = o[lane * d + c] * inv;
            }

            std::uint64_t const dense = heads * d * (positions * (first + 1) + positions * (positions - 1) / 2);
            work.queries += nq;
            work.hybrid_macs += exact_macs + macs;
            work.dense_macs += dense;
            work.dense_pv_macs += dense;
            work.hybrid_pv_macs += Values::has_deltas ? exact_macs + value_macs : dense;
        }
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_ATTENTION_BLOCK_HPP
