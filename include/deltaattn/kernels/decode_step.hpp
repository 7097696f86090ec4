/**
 * @file kernels/decode_step.hpp
 * The decode kernel: attention of one position for the g query heads of one KV head,
 * dense or hybrid, values exact or deltas. A decode step reads every cached row once
 * and does little arithmetic per byte, so this kernel is built around the reads:
 *
 *  1. raw scores q_h·k_j of every key into a [head][key] buffer:
 *     - exact keys in batches of `width` keys per head, vectorized along channels, the
 *       batch reduced with one transpose-add (no horizontal sum per key);
 *     - delta keys as prefix sums, heads in lanes: one broadcast + FMA per stored delta
 *       element for all heads at once, restarting at keyframes;
 *  2. a two-pass softmax per head, vectorized along keys (all scores are known, so no
 *     online rescaling is needed);
 *  3. p·V: exact values by channel chunks, up to four heads sharing each value load;
 *     delta values (SPEC.md §6.1) as true suffix sums of the probabilities, walked
 *     backwards over each segment, heads in lanes: one broadcast + FMA per stored
 *     element, plus d for each segment's dense start row (base row or keyframe).
 *
 * Work is counted as in SPEC.md §4 / reference/counts.hpp, so a decode step reports the
 * same counts as the prefill row of the same position; the outputs agree to rounding.
 */
#ifndef DELTAATTN_KERNELS_DECODE_STEP_HPP
#define DELTAATTN_KERNELS_DECODE_STEP_HPP

#include "../arch.hpp"
#include "../counters.hpp"
#include "../detail/bits.hpp"
#include "../detail/exact_rows.hpp"
#include "../views.hpp"
#include "attention_block.hpp"
#include "channel_deltas.hpp"
#include "convert.hpp"
#include "key_sources.hpp"
#include "row_ops.hpp"
#include "workspace.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace deltaattn
{
    namespace kernels
    {
        namespace decode_detail
        {
            /// Whether exact_dots multiplies batches of keys by four heads at once on `Arch`:
            /// with 32 vector registers (a tile's 16 accumulators, 4 query and 4 key
            /// registers fit). It does where a row is whole registers, for each four heads
            /// (GQA 7: one tile and three heads alone).
            template <class Arch>
            constexpr bool tiles_dots() noexcept
            {
                return arch_traits<Arch>::registers >= 32 && arch_traits<Arch>::width % 4 == 0;
            }

            /**
             * exact_dots of one batch (`width` rows k, the first nb real) for four heads q, in
             * tiles of 4 heads x 4 keys: each register of a key row is loaded once and
             * multiplies the four heads' query registers. Head by head (exact_dots' loop),
             * GCC folds the key register into every head's FMA, so the batch's rows are
             * loaded once per head, and rows 4 KiB apart (a token-major fp32 cache) share L1
             * sets: the reloads came from L2. The tile made the dense step 1.15-1.4x faster
             * on Zen 4, fp32 and fp16. (On AVX2's 16 registers a 4 x 2 tile measured within
             * the noise.)
             */
            template <class Arch, class Row>
            void tile_dots(Row const* k, float const* const* q, std::size_t d, std::size_t nb, float* scores, std::size_t stride) noexcept
            {
                using ops = arch_traits<Arch>;
                using reg = typename ops::reg;
                constexpr std::size_t w = ops::width, H = 4, K = 4;
                reg dots[H][w];  // per head, each key's products, reduced at the end
                for (std::size_t k0 = 0; k0 < w; k0 += K)
                {
                    reg acc[H][K];
                    DELTAATTN_UNROLL
                    for (auto& a : acc)
                        DELTAATTN_UNROLL
                        for (auto& x : a)
                            x = ops::zero();
                    for (std::size_t c = 0; c < d; c += w)
                    {
                        reg qc[H];
                        DELTAATTN_UNROLL
                        for (std::size_t h = 0; h < H; ++h)
                        {
                            qc[h] = ops::load(q[h] + c);
                            ops::pin(qc[h]);
                        }
                        DELTAATTN_UNROLL
                        for (std::size_t kk = 0; kk < K; ++kk)
                        {
                            reg kc = ops::load(k[k0 + kk] + c);
                            ops::pin(kc);
                            DELTAATTN_UNROLL
                            for (std::size_t h = 0; h < H; ++h)
                                acc[h][kk] = ops::fma(qc[h], kc, acc[h][kk]);
                        }
                    }
                    DELTAATTN_UNROLL
                    for (std::size_t h = 0; h < H; ++h)
                        DELTAATTN_UNROLL
                        for (std::size_t kk = 0; kk < K; ++kk)
                            dots[h][k0 + kk] = acc[h][kk];
                }
                for (std::size_t h = 0; h < H; ++h)
                    store_first<Arch>(scores + h * stride, ops::reduce_add_rows(dots[h]), nb);
            }

            /// Raw dots q_h·k_j for keys [first, end) and every head, `width` keys at a time.
            /// (Widening float16 rows once per batch instead of once per head measured no
            /// faster: the step waits on memory, not on vcvtph2ps.)
            template <class Arch, class Keys>
            void exact_dots(Keys const& keys, float const* const* q, std::size_t heads, std::size_t d, std::size_t first, std::size_t end,
                            float* scores, std::size_t stride) noexcept
            {
                using ops = arch_traits<Arch>;
                using reg = typename ops::reg;
                constexpr std::size_t w = ops::width;
                std::size_t const full = d / w * w;
                using row_pointer = decltype(keys.exact_row(0));  // float or float16 rows, widened as loaded
                row_pointer next[w];  // the next batch's rows, prefetched a batch ahead
                if (first < end)
                    detail::exact_rows_of(keys, first, std::min(w, end - first), next);
                for (std::size_t j0 = first; j0 < end; j0 += w)
                {
                    std::size_t const nb = std::min(w, end - j0);
                    row_pointer k[w];
                    for (std::size_t kk = 0; kk < w; ++kk)
                        k[kk] = next[kk < nb ? kk : 0];
                    if (j0 + w < end)
                    {
                        std::size_t const next_nb = std::min(w, end - j0 - w);
                        detail::exact_rows_of(keys, j0 + w, next_nb, next);
                        for (std::size_t kk = 0; kk < next_nb; ++kk)
                            prefetch(next[kk], d * sizeof(*next[kk]));
                    }
                    std::size_t tiled = 0;  // heads done in tiles; the rest (and every head elsewhere) one at a time
                    if constexpr (tiles_dots<Arch>())
                        if (full == d)
                            for (; tiled + 4 <= heads; tiled += 4)
                                tile_dots<Arch>(k, q + tiled, d, nb, scores + tiled * stride + j0, stride);
                    for (std::size_t h = tiled; h < heads; ++h)
                    {
                        reg acc[w];
                        DELTAATTN_UNROLL
                        for (auto& a : acc)
                            a = ops::zero();
                        for (std::size_t c = 0; c < full; c += w)
                        {
                            reg const qc = ops::load(q[h] + c);
                            DELTAATTN_UNROLL
                            for (std::size_t kk = 0; kk < w; ++kk)
                                acc[kk] = ops::fma(qc, ops::load(k[kk] + c), acc[kk]);
                        }
                        alignas(64) float sums[w];
                        ops::store(sums, ops::reduce_add_rows(acc));
                        for (std::size_t kk = 0; kk < nb; ++kk)
                        {
                            float s = sums[kk];
                            for (std::size_t c = full; c < d; ++c)
                                s += q[h][c] * to_float(k[kk][c]);
                            scores[h * stride + j0 + kk] = s;
                        }
                    }
                }
            }

            /// Softmax of row `s` (n raw dots) scaled by alpha, in place; returns the sum.
            template <class Arch>
            float softmax_row(float* s, std::size_t n, float alpha) noexcept
            {
                using ops = arch_traits<Arch>;
                constexpr std::size_t w = ops::width;
                std::size_t const full = n / w * w;
                auto const a = ops::broadcast(alpha);
                auto top = ops::broadcast(-std::numeric_limits<float>::infinity());
                for (std::size_t j = 0; j < full; j += w)
                    top = ops::max(top, ops::mul(a, ops::load(s + j)));
                float m = ops::reduce_max(top);
                for (std::size_t j = full; j < n; ++j)
                    m = std::max(m, alpha * s[j]);
                auto const shift = ops::broadcast(m);
                auto sum = ops::zero();
                for (std::size_t j = 0; j < full; j += w)
                {
                    auto const p = ops::exp(ops::sub(ops::mul(a, ops::load(s + j)), shift));
                    ops::store(s + j, p);
                    sum = ops::add(sum, p);
                }
                float total = ops::reduce_add(sum);
                for (std::size_t j = full; j < n; ++j)
                {
                    alignas(64) float lane[w] = {};
                    lane[0] = alpha * s[j] - m;
                    alignas(64) float p[w];
                    ops::store(p, ops::exp(ops::load(lane)));
                    s[j] = p[0];
                    total += p[0];
                }
                return total;
            }

            /**
             * o[h] += Σ_{j in [first, end)} p[h][j] v_j: channel chunks of two registers,
             * H heads sharing each value load, in blocks of `block` rows so that a block's
             * rows stay in L1 while every chunk reads them (a head's values stream from
             * memory once, not once per chunk).
             *
             * Written so that the 2H accumulators stay in registers: with the output loop
             * bounded by the run-time head count, or the row loop unrolled with early exits,
             * GCC 12 kept them in memory (eight zmm stores per chunk), and with the row
             * pointers recomputed and a prefetch test inside the row loop the loop carried
             * ~10 scalar instructions per row. As written, the pass costs ~41 cycles per row
             * of four heads from L1 (32 FMAs; it was ~50), and the dense decode step ran
             * 1.05-1.18x faster (Zen 4, fp32 and fp16).
             */
            template <class Arch, std::size_t H, class Values>
            void exact_values_by(Values const& values, float const* p, std::size_t stride, std::size_t heads, std::size_t d, std::size_t first,
                                 std::size_t end, float* o) noexcept
            {
                using ops = arch_traits<Arch>;
                using reg = typename ops::reg;
                // 8 rows: a head row of a token-major fp32 cache sits 4 KiB after the last, so a
                // block maps to the same few L1 sets (8 ways on Zen 4, 12 on Zen 5).
                constexpr std::size_t w = ops::width, block = 8;
                using row_pointer = decltype(values.exact_row(0));
                row_pointer lists[2][block];  // the block's rows, and the next block's (pulled into L1)
                row_pointer* rows = lists[0];
                row_pointer* next_rows = lists[1];
                std::size_t const full = d / (2 * w) * (2 * w);
                if (first < end)
                    detail::exact_rows_of(values, first, std::min(block, end - first), next_rows);
                for (std::size_t b0 = first; b0 < end; b0 += block)
                {
                    std::size_t const nb = std::min(block, end - b0);
                    std::swap(rows, next_rows);
                    if (b0 + block < end)
                    {
                        std::size_t const next = std::min(block, end - b0 - block);
                        detail::exact_rows_of(values, b0 + block, next, next_rows);
                        for (std::size_t i = 0; i < next; ++i)
                            prefetch(next_rows[i], d * sizeof(*rows[0]));
                    }
                    for (std::size_t h0 = 0; h0 < heads; h0 += H)
                    {
                        std::size_t const hn = std::min(H, heads - h0);
                        float const* ph[H];
                        for (std::size_t h = 0; h < H; ++h)
                            ph[h] = p + (h0 + (h < hn ? h : 0)) * stride + b0;
                        for (std::size_t c0 = 0; c0 < full; c0 += 2 * w)
                        {
                            reg acc[H][2];
                            DELTAATTN_UNROLL
                            for (auto& a : acc)
                                a[0] = a[1] = ops::zero();
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 1  // unrolled, GCC keeps the accumulators in memory for the loop's exits
#endif
                            for (std::size_t j = 0; j < nb; ++j)
                            {
                                auto const* v = rows[j] + c0;
                                reg v0 = ops::load(v), v1 = ops::load(v + w);
                                ops::pin(v0);  // loaded once for the H heads, not folded into each FMA
                                ops::pin(v1);
                                DELTAATTN_UNROLL
                                for (std::size_t h = 0; h < H; ++h)
                                {
                                    reg const pj = ops::broadcast(ph[h][j]);
                                    acc[h][0] = ops::fma(pj, v0, acc[h][0]);
                                    acc[h][1] = ops::fma(pj, v1, acc[h][1]);
                                }
                            }
                            DELTAATTN_UNROLL
                            for (std::size_t h = 0; h < H; ++h)  // whole, so that acc stays in registers
                                if (h < hn)
                                {
                                    float* out = o + (h0 + h) * d + c0;
                                    ops::store(out, ops::add(ops::load(out), acc[h][0]));
                                    ops::store(out + w, ops::add(ops::load(out + w), acc[h][1]));
                                }
                        }
                    }
                    for (std::size_t h = 0; h < heads && full < d; ++h)  // channels past the last chunk
                        for (std::size_t j = 0; j < nb; ++j)
                            for (std::size_t c = full; c < d; ++c)
                                o[h * d + c] += p[h * stride + b0 + j] * to_float(rows[j][c]);
                }
            }

            /// As exact_values_by, up to four heads per value load; two where the KV head has
            /// no more (GQA 2 would spend half of a four-head pass's FMAs on padding).
            template <class Arch, class Values>
            void exact_values(Values const& values, float const* p, std::size_t stride, std::size_t heads, std::size_t d, std::size_t first,
                              std::size_t end, float* o) noexcept
            {
                if (heads <= 2)
                    exact_values_by<Arch, 2>(values, p, stride, heads, d, first, end, o);
                else
                    exact_values_by<Arch, 4>(values, p, stride, heads, d, first, end, o);
            }

            /// Where a decode step of `heads` query heads over n keys works: scores
            /// [head][key] with rows of `stride` keys (rounded up to whole registers, so a
            /// row's vector tail stays inside the buffer), outputs [head][channel], zeroed,
            /// and the step's query rows.
            struct step_buffers
            {
                float* scores;
                float* out;
                std::size_t stride;
                float const* q[block_scratch::max_decode_heads];
            };

            /// The buffers of a step of query heads [first_head, first_head + heads) of `q`
            /// (one position) over n keys.
            template <class Arch>
            step_buffers begin_step(block_scratch& ws, tensor_view<const float> q, std::size_t first_head, std::size_t heads, std::size_t n)
            {
                constexpr std::size_t w = arch_traits<Arch>::width;
                std::size_t const stride = (n + w - 1) / w * w, d = q.dim;
                ws.reserve_decode(heads, stride, d);
                std::fill(ws.lane_acc.begin(), ws.lane_acc.begin() + static_cast<std::ptrdiff_t>(heads * d), 0.0f);
                step_buffers b{ws.decode_scores.data(), ws.lane_acc.data(), stride, {}};
                for (std::size_t h = 0; h < heads; ++h)
                    b.q[h] = q.at(0, first_head + h);
                return b;
            }

            /// out head (first + h) = o[h] / sums[h]: the softmax's normalization, at the end.
            inline void write_outputs(float const* o, float const* sums, std::size_t heads, std::size_t d, tensor_view<float> out,
                                      std::size_t first) noexcept
            {
                for (std::size_t h = 0; h < heads; ++h)
                {
                    float const inv = 1.0f / sums[h];
                    float* dst = out.at(0, first + h);
                    for (std::size_t c = 0; c < d; ++c)
                        dst[c] = o[h * d + c] * inv;
                }
            }

            /// A dense step's blocks of positions (a multiple of every register width, so
            /// blocks align with exact_dots's key batches), and how far ahead of a block its
            /// rows are pulled into L2. Each block visits every KV head in turn, so memory
            /// sees rows 4 KiB apart (token-major) rather than in address order. A plain read
            /// in this order streams 11-12 GB/s on the AMD EPYC (Zen 5) seen here, and 22-24
            /// GB/s, as a sequential read does, with rows pulled into L2 two blocks ahead;
            /// pulled into L1 instead, a block's rows evict each other (they share L1 sets).
            constexpr std::size_t dense_block = 16, dense_ahead = 2 * dense_block;

            /// The value pass's blocks of positions. It has no key batches to align with, and
            /// with half a key block (every KV head's rows of 8 positions, then the next 8)
            /// memory sees a more nearly sequential stream: the dense fp32 step ran 1.06-1.17x
            /// faster at n 4096-16384 and the K-only step 1.12-1.14x (Zen 4, 1 thread);
            /// binary16 rows (half the bytes per block) gained 0-10%. The next-block L1
            /// prefetch inside exact_values was not the cause: without it, no change.
            constexpr std::size_t value_block = 8;

            /// Pulls rows [first, end) of KV head `kv` of a token-major cache into L2.
            template <class T>
            void prefetch_rows_far(tensor_view<const T> x, std::size_t kv, std::size_t first, std::size_t end) noexcept
            {
                for (std::size_t j = first; j < end; ++j)
                    prefetch_far(x.at(j, kv), x.dim * sizeof(T));
            }

            /// o += p·V for the query heads of KV heads [kv0, kv1) (`group` each, rows of
            /// `stride` probabilities in p) over positions [0, n) of the dense V cache `v`,
            /// position-major: blocks of value_block positions with every KV head of the
            /// range inside each. In a token-major cache the heads of a position are
            /// adjacent, so this streams through memory instead of jumping a page per head
            /// row.
            template <class Arch, class T>
            void position_major_values(tensor_view<const T> v, float const* p, std::size_t stride, std::size_t group, std::size_t kv0,
                                       std::size_t kv1, std::size_t d, std::size_t n, float* o) noexcept
            {
                constexpr std::size_t block = value_block;
                for (std::size_t j0 = 0; j0 < n; j0 += block)
                    for (std::size_t kv = kv0; kv < kv1; ++kv)
                    {
                        std::size_t const h0 = (kv - kv0) * group;
                        prefetch_rows_far(v, kv, std::min(n, j0 + dense_ahead), std::min(n, j0 + dense_ahead + block));
                        if (j0 + dense_ahead < n)  // and the heads' probabilities (a step's scores outgrow L2 from n ~ 8k)
                            for (std::size_t h = h0; h < h0 + group; ++h)
                                prefetch_far(p + h * stride + j0 + dense_ahead, std::min(block, n - j0 - dense_ahead) * sizeof(float));
                        exact_values<Arch>(dense_rows<T>{v.head(kv)}, p + h0 * stride, stride, group, d, j0, std::min(n, j0 + block), o + h0 * d);
                    }
            }

            /// exact_values over rows [first, end) of one KV head's value rows, in blocks of
            /// dense_block rows with the rows dense_ahead ahead pulled into L2, as the dense
            /// step pulls its own. A step with dense (or K-only coded) values reads every V row
            /// of the head this way; with exact_values' short L1 prefetch alone a K-only quant
            /// step streamed them at ~6 GB/s (Zen 4), below the dense step's rate.
            template <class Arch, class Values>
            void streamed_exact_values(Values const& values, float const* p, std::size_t stride, std::size_t heads, std::size_t d,
                                       std::size_t first, std::size_t end, float* o) noexcept
            {
                using row_pointer = decltype(values.exact_row(0));
                row_pointer rows[dense_block];
                for (std::size_t j0 = first; j0 < end; j0 += dense_block)
                {
                    std::size_t const a0 = std::min(end, j0 + dense_ahead), a1 = std::min(end, a0 + dense_block);
                    detail::exact_rows_of(values, a0, a1 - a0, rows);
                    for (std::size_t j = a0; j < a1; ++j)
                        prefetch_far(rows[j - a0], d * sizeof(*rows[0]));
                    exact_values<Arch>(values, p, stride, heads, d, j0, std::min(end, j0 + dense_block), o);
                }
            }

            /// acc[c] += m * row[c] for every channel: a segment's dense start row.
            template <class Arch>
            void add_scaled_row(float* accT, typename arch_traits<Arch>::reg m, float const* row, std::size_t d) noexcept
            {
                using ops = arch_traits<Arch>;
                constexpr std::size_t w = ops::width;
                for (std::size_t c = 0; c < d; ++c)
                    ops::store(accT + c * w, ops::fma(m, ops::broadcast(row[c]), ops::load(accT + c * w)));
            }
        }  // namespace decode_detail

        /**
         * A dense decode step for the query heads of KV heads [kv0, kv1), position-major:
         * keys, then values, in blocks of `block` positions with every KV head of the
         * range inside each block. In a token-major cache (`[pos][head][dim]`) the heads
         * of a position are adjacent, so the step streams through memory instead of
         * jumping a page per head row, where the hardware prefetchers stop. The
         * arithmetic per head is decode_block's (the blocks align with its key batches).
         * q and out: the layer's query heads, one position, the last of k and v; at most
         * `block_scratch::max_decode_heads` query heads in the range.
         */
        template <class Arch, class T>
        void dense_decode_heads(tensor_view<const T> k, tensor_view<const T> v, tensor_view<const float> q, tensor_view<float> out,
                                std::size_t kv0, std::size_t kv1, float scale, block_scratch& ws, attention_work& work)
        {
            constexpr std::size_t block = decode_detail::dense_block, ahead = decode_detail::dense_ahead;
            std::size_t const group = q.heads / k.heads, heads = (kv1 - kv0) * group, d = q.dim, n = k.positions;
            decode_detail::step_buffers const buffers = decode_detail::begin_step<Arch>(ws, q, kv0 * group, heads, n);
            float* const s = buffers.scores;
            float* const o = buffers.out;
            std::size_t const stride = buffers.stride;
            float const* const* qh = buffers.q;
            for (std::size_t j0 = 0; j0 < n; j0 += block)
                for (std::size_t kv = kv0; kv < kv1; ++kv)
                {
                    std::size_t const h0 = (kv - kv0) * group;
                    decode_detail::prefetch_rows_far(k, kv, std::min(n, j0 + ahead), std::min(n, j0 + ahead + block));
                    decode_detail::exact_dots<Arch>(dense_rows<T>{k.head(kv)}, qh + h0, group, d, j0, std::min(n, j0 + block), s + h0 * stride, stride);
                }
            alignas(64) float sums[block_scratch::max_decode_heads];
            for (std::size_t h = 0; h < heads; ++h)
                sums[h] = decode_detail::softmax_row<Arch>(s + h * stride, n, scale);
            decode_detail::position_major_values<Arch>(v, s, stride, group, kv0, kv1, d, n, o);
            decode_detail::write_outputs(o, sums, heads, d, out, kv0 * group);
            std::uint64_t const macs = std::uint64_t(n) * heads * d;
            work.queries += heads;
            work.dense_macs += macs;
            work.hybrid_macs += macs;
            work.dense_pv_macs += macs;
            work.hybrid_pv_macs += macs;
        }

        /// Where a decode step's delta region lies (SPEC.md §3): [first, end), empty (both
        /// n) when the step has none.
        struct delta_region
        {
            bool hybrid;
            std::size_t first, end;

            delta_region(bool has_deltas, std::size_t last, hybrid_split split) noexcept
                : hybrid(has_deltas && split.window <= last && last - split.window >= split.sinks),
                  first(hybrid ? split.sinks : last + 1),
                  end(hybrid ? last - split.window + 1 : last + 1)
            {
            }
            std::size_t exact_keys(std::size_t n) const noexcept { return n - (end - first); }
        };

        /**
         * Step 1 of a decode step for `heads` query heads (rows `qh`) of one KV head: raw
         * scores of keys [0, last] into rows of `stride` in `s`. Returns the multiply-adds
         * of the delta keys (base row, keyframes, stored elements; SPEC.md §4).
         */
        template <class Arch, class Keys>
        std::uint64_t decode_scores(Keys const& keys, float const* const* qh, std::size_t heads, std::size_t d, std::size_t last, hybrid_split split,
                                    float* s, std::size_t stride, block_scratch& ws) noexcept
        {
            using ops = arch_traits<Arch>;
            using reg = typename ops::reg;
            constexpr std::size_t w = ops::width;
            std::size_t const n = last + 1;
            delta_region const region(Keys::has_deltas, last, split);
            bool const hybrid = region.hybrid;
            std::size_t const delta_first = region.first, delta_end = region.end;
            std::uint64_t qk_macs = 0;
            decode_detail::exact_dots<Arch>(keys, qh, heads, d, 0, delta_first, s, stride);
            decode_detail::exact_dots<Arch>(keys, qh, heads, d, delta_end, n, s, stride);

            // Delta keys: prefix sums q·k̂_j, along channels where a register expands in one
            // instruction, else with the heads in lanes, w heads at a time.
            float* const qT = ws.transposed.data();
            alignas(64) float lanes[w];
            bool const by_channel = has_fast_expand<Arch>() && heads <= block_scratch::max_channel_heads;
            if constexpr (Keys::has_deltas)
            {
                auto const& cache = *keys.cache;
                float* const converted = ws.converted.data();
                if (by_channel && hybrid)
                {
                    // The prefix starts at q·k̂_{S-1}: k_0's exact dots when S = 1.
                    alignas(64) float start[block_scratch::max_decode_heads];
                    for (std::size_t h = 0; h < heads; ++h)
                        start[h] = split.sinks == 1 ? s[h * stride] : row_dot<Arch>(qh[h], cache.base_row(), d);
                    qk_macs += split.sinks > 1 ? heads * d : 0;
                    qk_macs += with_expand_form<Arch>([&](auto form) {
                        return channel_delta_scores<Arch, decltype(form)::value>(cache, qh, heads, start, delta_first, delta_end, s, stride, converted);
                    });
                }
                for (std::size_t h0 = 0; h0 < heads && hybrid && !by_channel; h0 += w)
                {
                    std::size_t const hn = std::min(w, heads - h0);
                    for (std::size_t c = 0; c < d; ++c)
                        for (std::size_t l = 0; l < w; ++l)
                            qT[c * w + l] = qh[h0 + (l < hn ? l : 0)][c];
                    reg start[1];
                    if (split.sinks == 1)
                    {
                        for (std::size_t l = 0; l < w; ++l)
                            lanes[l] = s[(h0 + (l < hn ? l : 0)) * stride];  // q·k_0: k̂_0 = k_0
                        start[0] = ops::load(lanes);
                    }
                    else
                        transposed_dot<Arch, 1>(qT, w, cache.base_row(), d, start);
                    prefix_sums<Arch, 1> prefix;
                    prefix.restart(start);
                    for (std::size_t j = delta_first; j < delta_end; ++j)
                    {
                        if (float const* keyframe = cache.keyframe_row(j))
                        {
                            transposed_dot<Arch, 1>(qT, w, keyframe, d, start);
                            prefix.restart(start);
                            qk_macs += hn * d;
                        }
                        else
                        {
                            delta_row const row = as_float_row<Arch>(cache.delta(j), converted);
                            add_delta_row<Arch, 1>(qT, row, d, prefix);
                            qk_macs += hn * row.nnz;
                        }
                        ops::store(lanes, prefix.total(0));
                        for (std::size_t l = 0; l < hn; ++l)
                            s[(h0 + l) * stride + j] = lanes[l];
                    }
                    if (split.sinks > 1)
                        qk_macs += hn * d;
                }
            }

            return qk_macs;
        }

        /**
         * One decode step: q and out hold one position (`last`) and the g query heads of
         * one KV head; keys and values are dense_rows or cached_rows. Adds the step's
         * work to `work`.
         */
        template <class Arch, class Keys, class Values>
        void decode_block(Keys const& keys, tensor_view<const float> q, tensor_view<float> out, std::size_t last, Values const& values, float scale,
                          hybrid_split split, block_scratch& ws, attention_work& work)
        {
            static_assert(Keys::has_deltas || !Values::has_deltas, "delta values come with delta keys");
            using ops = arch_traits<Arch>;
            using reg = typename ops::reg;
            constexpr std::size_t w = ops::width;
            std::size_t const heads = q.heads, d = q.dim, n = last + 1;
            delta_region const region(Keys::has_deltas, last, split);
            bool const hybrid = region.hybrid;
            std::size_t const delta_first = region.first, delta_end = region.end;
            decode_detail::step_buffers const buffers = decode_detail::begin_step<Arch>(ws, q, 0, heads, n);
            float* const s = buffers.scores;
            float* const o = buffers.out;
            std::size_t const stride = buffers.stride;
            std::uint64_t const exact_keys = region.exact_keys(n), qk_macs = decode_scores<Arch>(keys, buffers.q, heads, d, last, split, s, stride, ws);
            std::uint64_t pv_macs = 0;
            alignas(64) float lanes[w];
            bool const by_channel = has_fast_expand<Arch>() && heads <= block_scratch::max_channel_heads;

            alignas(64) float sums[block_scratch::max_decode_heads];
            for (std::size_t h = 0; h < heads; ++h)
                sums[h] = decode_detail::softmax_row<Arch>(s + h * stride, n, scale);

            if constexpr (Values::has_deltas)
            {
                decode_detail::exact_values<Arch>(values, s, stride, heads, d, 0, delta_first, o);
                decode_detail::exact_values<Arch>(values, s, stride, heads, d, delta_end, n, o);
                // Delta values: Σ_{j in D} p_j v̂_j as suffix sums P(m) of each segment,
                // walked backwards, heads in lanes (accT is [channel][lane]).
                auto const& cache = *values.cache;
                float* const converted = ws.converted.data();
                bool const by_words = by_channel && kernels::by_words<Arch>(d);
                if (by_words && hybrid)
                    pv_macs += with_expand_form<Arch>([&](auto form) {
                        return channel_delta_values<Arch, decltype(form)::value>(cache, s, stride, heads, delta_first, delta_end, o, converted);
                    });
                else if (by_channel && hybrid)
                {
                    float mass[block_scratch::max_channel_heads] = {};
                    auto const add_start_row = [&](float const* row) {  // P(f) v̂_f
                        for (std::size_t h = 0; h < heads; ++h)
                            row_axpy<Arch>(mass[h], row, o + h * d, d);
                        pv_macs += heads * d;
                    };
                    for (std::size_t m = delta_end; m-- > delta_first;)
                    {
                        for (std::size_t h = 0; h < heads; ++h)
                            mass[h] += s[h * stride + m];
                        if (float const* keyframe = cache.keyframe_row(m))
                        {
                            add_start_row(keyframe);
                            std::fill(mass, mass + heads, 0.0f);
                            continue;
                        }
                        delta_row const row = as_float_row<Arch>(cache.delta(m), converted);
                        with_expand_form<Arch>([&](auto form) { add_weighted_row<Arch, decltype(form)::value>(row, mass, heads, d, o); });
                        pv_macs += heads * row.nnz;
                    }
                    add_start_row(cache.base_row());  // P(S) v̂_{S-1}
                }
                float* const accT = ws.value_weighted.data();
                for (std::size_t h0 = 0; h0 < heads && hybrid && !by_channel; h0 += w)
                {
                    std::size_t const hn = std::min(w, heads - h0);
                    std::fill(accT, accT + d * w, 0.0f);
                    std::fill(lanes, lanes + w, 0.0f);
                    reg mass = ops::zero();
                    for (std::size_t m = delta_end; m-- > delta_first;)
                    {
                        for (std::size_t l = 0; l < hn; ++l)
                            lanes[l] = s[(h0 + l) * stride + m];
                        mass = ops::add(mass, ops::load(lanes));
                        if (float const* keyframe = cache.keyframe_row(m))
                        {
                            decode_detail::add_scaled_row<Arch>(accT, mass, keyframe, d);
                            mass = ops::zero();
                            pv_macs += hn * d;
                            continue;
                        }
                        delta_row const row = as_float_row<Arch>(cache.delta(m), converted);
                        float const* value = row.values;
                        for (std::size_t word = 0; word < detail::mask_words(d); ++word)
                            for (std::uint64_t bits = row.mask[word]; bits != 0; bits &= bits - 1)
                            {
                                std::size_t const c = word * 64 + detail::lowest_bit(bits);
                                ops::store(accT + c * w, ops::fma(mass, ops::broadcast(*value++), ops::load(accT + c * w)));
                            }
                        pv_macs += hn * row.nnz;
                    }
                    decode_detail::add_scaled_row<Arch>(accT, mass, cache.base_row(), d);  // P(S) v̂_{S-1}
                    pv_macs += hn * d;
                    for (std::size_t c = 0; c < d; ++c)
                        for (std::size_t l = 0; l < hn; ++l)
                            o[(h0 + l) * d + c] += accT[c * w + l];
                }
                pv_macs += exact_keys * heads * d;
            }
            else
            {
                decode_detail::streamed_exact_values<Arch>(values, s, stride, heads, d, 0, n, o);
                pv_macs = n * heads * d;
            }

            decode_detail::write_outputs(o, sums, heads, d, out, 0);

            work.queries += heads;
            work.dense_macs += n * heads * d;
            work.hybrid_macs += exact_keys * heads * d + qk_macs;
            work.dense_pv_macs += n * heads * d;
            work.hybrid_pv_macs += pv_macs;
        }

        /**
         * A hybrid decode step with delta keys and dense values for the query heads of KV
         * heads [kv0, kv1): each head's scores as decode_block computes them, then p·V
         * position-major over the dense V cache `v`, as dense_decode_heads reads it
         * (decode_block, one KV head at a time, would jump a page per value row of a
         * token-major cache). `caches[kv]` holds KV head kv's keys up to the step's
         * position, which is the last. At most `block_scratch::max_decode_heads` query
         * heads in the range.
         */
        template <class Arch, class T>
        void hybrid_decode_heads(basic_delta_cache<T> const* caches, tensor_view<const T> v, tensor_view<const float> q, tensor_view<float> out,
                                 std::size_t kv0, std::size_t kv1, float scale, hybrid_split split, block_scratch& ws, attention_work& work)
        {
            std::size_t const group = q.heads / v.heads, heads = (kv1 - kv0) * group, d = q.dim, n = caches[kv0].size(), last = n - 1;
            decode_detail::step_buffers const buffers = decode_detail::begin_step<Arch>(ws, q, kv0 * group, heads, n);
            float* const s = buffers.scores;
            std::size_t const stride = buffers.stride;
            std::uint64_t qk_macs = 0;
            for (std::size_t kv = kv0; kv < kv1; ++kv)
            {
                std::size_t const h0 = (kv - kv0) * group;
                qk_macs += decode_scores<Arch>(cached_rows<T>{&caches[kv], {}, n}, buffers.q + h0, group, d, last, split, s + h0 * stride, stride, ws);
            }
            alignas(64) float sums[block_scratch::max_decode_heads];
            for (std::size_t h = 0; h < heads; ++h)
                sums[h] = decode_detail::softmax_row<Arch>(s + h * stride, n, scale);
            decode_detail::position_major_values<Arch>(v, s, stride, group, kv0, kv1, d, n, buffers.out);
            decode_detail::write_outputs(buffers.out, sums, heads, d, out, kv0 * group);
            std::uint64_t const dense = std::uint64_t(n) * heads * d;
            work.queries += heads;
            work.dense_macs += dense;
            work.hybrid_macs += delta_region(true, last, split).exact_keys(n) * heads * d + qk_macs;
            work.dense_pv_macs += dense;
            work.hybrid_pv_macs += dense;
        }
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_DECODE_STEP_HPP
