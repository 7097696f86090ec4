/**
 * @file kernels/attend_block.hpp
 * The one kernel behind dense and hybrid attention, prefill and decode.
 *
 * A *query block* is P consecutive positions times the g query heads of one KV group
 * (GQA). Keys are visited in tiles, in position order, flash-style: each tile's
 * scores go through an online softmax (running max and sum per query, rescaled
 * accumulators) straight into the value sum, so memory stays O(block), not O(n).
 *
 * For the query at position i, key j is (SPEC.md §3):
 *   masked  if j > i,
 *   exact   if j < sinks or j > i - window: score = alpha * q·k_j,
 *   delta   otherwise: score = alpha * q·k̂_j, where q·k̂_j is a prefix sum
 *           q·k̂_{sinks-1} + Σ q·Δk_m, restarted at keyframes (dense k̂ rows).
 * Within a block the three sets are contiguous ranges of positions for each key, and
 * every delta row is expanded once and shared by all the block's queries.
 */
#ifndef DELTAATTN_KERNELS_ATTEND_BLOCK_HPP
#define DELTAATTN_KERNELS_ATTEND_BLOCK_HPP

#include "../counters.hpp"
#include "../views.hpp"
#include "primitives.hpp"

#include <algorithm>
#include <cstddef>
#include <limits>
#include <vector>

namespace deltaattn
{
    /// Scratch memory of the attention kernels: sized once, reused by every call.
    class attention_workspace
    {
    public:
        /// Keys per tile of the online softmax.
        static constexpr std::size_t tile = 32;

        /// Grows (never shrinks) to fit blocks of `queries` query vectors of `dim` channels.
        void reserve(std::size_t queries, std::size_t dim)
        {
            if (queries <= m_queries && dim <= m_dim)
                return;
            m_queries = std::max(queries, m_queries);
            m_dim = std::max(dim, m_dim);
            acc.assign(m_queries * m_dim, 0.0f);
            scores.assign(m_queries * tile, 0.0f);
            row_max.assign(m_queries, 0.0f);
            row_sum.assign(m_queries, 0.0f);
            prefix.assign(m_queries, 0.0f);
            first_dot.assign(m_queries, 0.0f);
            expanded.assign(m_dim, 0.0f);
            group_bits.assign(detail::mask_words(m_dim), 0);
            value_rows.assign(tile, nullptr);
        }

        /// Grows to fit the lane-parallel prefill kernel: `lanes` query vectors, `dim` channels.
        void reserve_lanes(std::size_t lanes, std::size_t dim)
        {
            if (lanes <= m_lanes && dim <= m_lane_dim)
                return;
            m_lanes = std::max(lanes, m_lanes);
            m_lane_dim = std::max(dim, m_lane_dim);
            transposed.assign(m_lanes * m_lane_dim, 0.0f);
            lane_acc.assign(m_lanes * m_lane_dim, 0.0f);
            lane_scores.assign(m_lanes * tile, 0.0f);
            lane_factor.assign(m_lanes, 0.0f);
            lane_sum.assign(m_lanes, 0.0f);
            value_rows.resize(tile);
        }

        std::vector<float> acc, scores, row_max, row_sum, prefix, first_dot, expanded;
        std::vector<std::uint64_t> group_bits;
        std::vector<float const*> value_rows;
        // The lane-parallel prefill kernel: queries transposed to [dim][lane], scores
        // [key][lane], output accumulators [lane][dim].
        std::vector<float> transposed, lane_acc, lane_scores, lane_factor, lane_sum;

    private:
        std::size_t m_queries = 0, m_dim = 0, m_lanes = 0, m_lane_dim = 0;
    };

    namespace kernels
    {
        /// Keys of dense attention: every key exact, read in place from a view.
        struct dense_keys
        {
            matrix_view<const float> keys;

            static constexpr bool has_deltas = false;
            float const* exact_row(std::size_t j) const noexcept { return keys.row(j); }
        };

        /// Keys of hybrid attention: the delta K cache, plus the dense rows of the chunk
        /// being prefilled (positions >= chunk_first), which the ring may not hold yet.
        struct cached_keys
        {
            delta_key_cache const* cache;
            matrix_view<const float> chunk;
            std::size_t chunk_first;

            static constexpr bool has_deltas = true;
            float const* exact_row(std::size_t j) const noexcept
            {
                // The chunk's rows reach the sinks and the ring only after the chunk.
                if (j >= chunk_first)
                    return chunk.row(j - chunk_first);
                return j < cache->options().sinks ? cache->sink_row(j) : cache->window_row(j);
            }
        };

        /// Where the exact/delta split falls for a block.
        struct hybrid_split
        {
            std::size_t sinks;
            std::size_t window;
        };

        /// acc += Σ_jj p[jj] v_jj, accumulators held in registers across the tile.
        template <class Arch>
        void accumulate_values(float* acc, float const* p, float const* const* v, std::size_t count, std::size_t d) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width;
            std::size_t c = 0;
            for (; c + w <= d; c += w)
            {
                auto a = ops::load(acc + c);
                for (std::size_t jj = 0; jj < count; ++jj)
                    a = ops::fma(ops::broadcast(p[jj]), ops::load(v[jj] + c), a);
                ops::store(acc + c, a);
            }
            for (; c < d; ++c)
                for (std::size_t jj = 0; jj < count; ++jj)
                    acc[c] += p[jj] * v[jj][c];
        }

        /// Delta scores of key j for the block positions [p_first, P): the prefix sums
        /// q·k̂_j, started at j == sinks and restarted at keyframes.
        template <class Arch, class Keys>
        void delta_scores(Keys const& keys, std::size_t j, tensor_view<const float> q, std::size_t p_first, float scale,
                          hybrid_split split, expanded_row<Arch>& expanded, attention_workspace& ws, std::size_t jj,
                          std::uint64_t& macs)
        {
            constexpr std::size_t tile = attention_workspace::tile;
            std::size_t const heads = q.heads, d = q.dim;
            std::size_t const count = (q.positions - p_first) * heads;
            delta_key_cache const& cache = *keys.cache;

            if (j == split.sinks)
            {
                // Start every prefix at q·k̂_{sinks-1}. With one sink that row is k_0,
                // whose dot the exact pass already made.
                for (std::size_t p = p_first; p < q.positions; ++p)
                    for (std::size_t h = 0; h < heads; ++h)
                    {
                        std::size_t const qv = p * heads + h;
                        ws.prefix[qv] = split.sinks == 1 ? ws.first_dot[qv] : dot<Arch>(q.at(p, h), cache.base_row(), d);
                    }
                if (split.sinks > 1)
                    macs += count * d;
            }

            if (float const* keyframe = cache.keyframe_row(j))
            {
                for (std::size_t p = p_first; p < q.positions; ++p)
                    for (std::size_t h = 0; h < heads; ++h)
                        ws.prefix[p * heads + h] = dot<Arch>(q.at(p, h), keyframe, d);
                macs += count * d;
            }
            else
            {
                delta_row const row = cache.delta(j);
                expanded.assign(row);
                for (std::size_t p = p_first; p < q.positions; ++p)
                    for (std::size_t h = 0; h < heads; ++h)
                        ws.prefix[p * heads + h] += expanded.dot(q.at(p, h));
                macs += count * row.nnz;
            }

            for (std::size_t p = p_first; p < q.positions; ++p)
                for (std::size_t h = 0; h < heads; ++h)
                {
                    std::size_t const qv = p * heads + h;
                    ws.scores[qv * tile + jj] = scale * ws.prefix[qv];
                }
        }
        /**
         * Attention of one query block. `q` and `out` are P positions x g heads x d,
         * the first at absolute position `first`; `values` has a row per position.
         * Adds this block's work to `work`.
         */
        template <class Arch, class Keys>
        void attend_block(Keys const& keys, tensor_view<const float> q, tensor_view<float> out, std::size_t first,
                          matrix_view<const float> values, float scale, hybrid_split split, attention_workspace& ws,
                          qk_work& work)
        {
            constexpr std::size_t tile = attention_workspace::tile;
            constexpr float neg_inf = -std::numeric_limits<float>::infinity();
            std::size_t const positions = q.positions, heads = q.heads, d = q.dim, nq = positions * heads;
            std::size_t const last = first + positions - 1;
            ws.reserve(nq, d);

            std::fill(ws.row_max.begin(), ws.row_max.begin() + static_cast<std::ptrdiff_t>(nq), neg_inf);
            std::fill(ws.row_sum.begin(), ws.row_sum.begin() + static_cast<std::ptrdiff_t>(nq), 0.0f);
            std::fill(ws.acc.begin(), ws.acc.begin() + static_cast<std::ptrdiff_t>(nq * d), 0.0f);
            expanded_row<Arch> expanded(ws.expanded.data(), ws.group_bits.data(), d);
            std::uint64_t macs = 0;

            auto query = [&](std::size_t p, std::size_t h) { return q.at(p, h); };

            for (std::size_t t0 = 0; t0 <= last; t0 += tile)
            {
                std::size_t const nt = std::min(tile, last + 1 - t0);

                // Scores of the tile, one row of `tile` per query vector.
                for (std::size_t jj = 0; jj < nt; ++jj)
                {
                    std::size_t const j = t0 + jj;
                    // Positions p of the block: i = first + p sees j iff i >= j; j is a
                    // delta key for i iff j >= sinks and i >= j + window.
                    std::size_t const p_visible = j > first ? j - first : 0;
                    // (Rows p < p_visible are masked: the softmax below never reads them.)
                    std::size_t p_delta = positions;
                    if (Keys::has_deltas && j >= split.sinks && split.window <= last - j)
                        p_delta = std::max(p_visible, j + split.window > first ? j + split.window - first : 0);

                    if (p_visible < p_delta)
                    {
                        float const* k = keys.exact_row(j);
                        for (std::size_t p = p_visible; p < p_delta; ++p)
                            for (std::size_t h = 0; h < heads; ++h)
                            {
                                std::size_t const qv = p * heads + h;
                                float const raw = dot<Arch>(query(p, h), k, d);
                                if (j == 0)
                                    ws.first_dot[qv] = raw;  // = q·k̂_0: the prefix base when sinks == 1
                                ws.scores[qv * tile + jj] = scale * raw;
                            }
                        macs += (p_delta - p_visible) * heads * d;
                    }

                    if constexpr (Keys::has_deltas)
                    {
                        if (p_delta < positions)
                            delta_scores<Arch>(keys, j, q, p_delta, scale, split, expanded, ws, jj, macs);
                    }
                }

                // Online softmax over the tile, then the tile's share of p·V.
                for (std::size_t jj = 0; jj < nt; ++jj)
                    ws.value_rows[jj] = values.row(t0 + jj);
                for (std::size_t p = 0; p < positions; ++p)
                {
                    std::size_t const i = first + p;
                    if (i < t0)
                        continue;
                    std::size_t const seen = std::min(nt, i + 1 - t0);  // keys of the tile this row sees
                    for (std::size_t h = 0; h < heads; ++h)
                    {
                        std::size_t const qv = p * heads + h;
                        float* s = ws.scores.data() + qv * tile;
                        float const m_tile = max_of<Arch>(s, seen);
                        float const m_old = ws.row_max[qv];
                        float const m_new = std::max(m_old, m_tile);
                        float* acc = ws.acc.data() + qv * d;
                        if (m_new > m_old && ws.row_sum[qv] != 0.0f)
                        {
                            float const c = std::exp(m_old - m_new);
                            ws.row_sum[qv] *= c;
                            kernels::scale<Arch>(acc, c, d);
                        }
                        ws.row_max[qv] = m_new;
                        ws.row_sum[qv] += exp_shifted_sum<Arch>(s, m_new, seen);
                        accumulate_values<Arch>(acc, s, ws.value_rows.data(), seen, d);
                    }
                }
            }

            for (std::size_t p = 0; p < positions; ++p)
                for (std::size_t h = 0; h < heads; ++h)
                {
                    std::size_t const qv = p * heads + h;
                    float const* acc = ws.acc.data() + qv * d;
                    float const inv = 1.0f / ws.row_sum[qv];
                    float* o = out.at(p, h);
                    for (std::size_t c = 0; c < d; ++c)
                        o[c] = acc[c] * inv;
                }

            work.queries += nq;
            work.hybrid_macs += macs;
            // Σ_{i=first}^{last} (i + 1) d, per head.
            work.dense_macs += heads * d * (positions * (first + 1) + positions * (positions - 1) / 2);
        }

    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_ATTEND_BLOCK_HPP
