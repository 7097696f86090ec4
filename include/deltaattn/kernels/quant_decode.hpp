/**
 * @file kernels/quant_decode.hpp
 * The decode step over a quantized far context (SPEC.md §10): attention of one
 * position for the g query heads of one KV head.
 *
 *  1. exact dots for the sinks and the window (decode_step.hpp's exact_dots);
 *  2. the far rows' dots q·(s ⊙ c) straight from the codes (quant_rows.hpp; with int8
 *     queries, q̃·(s ⊙ c) in integer dots, quant_int8_dots.hpp), then one
 *     pass of prefix sums per head, q·k̂_j = q·k̂_{j−1} + q·(s ⊙ c)_j, restarting at
 *     keyframes and starting from q·k̂_{sinks−1} (the base row);
 *  3. the softmax over all scores;
 *  4. values: exact rows directly; coded far rows through SPEC.md §6.1's suffix sums,
 *     Σ_m p_m v̂_m = Σ_i P_i (s ⊙ c)_i (+ the first segment's mass times v̂_{sinks−1}),
 *     with P_i computed in place of p_i by one backward pass, so the code rows are then
 *     read in any order, a tile at a time.
 * Every code row is read once for the scores and once for the values.
 */
#ifndef DELTAATTN_KERNELS_QUANT_DECODE_HPP
#define DELTAATTN_KERNELS_QUANT_DECODE_HPP

#include "../caches/quant_cache.hpp"
#include "../counters.hpp"
#include "../detail/exact_rows.hpp"
#include "../views.hpp"
#include "decode_step.hpp"
#include "key_sources.hpp"
#include "keyframe_sums.hpp"
#include "quant_int8_dots.hpp"
#include "quant_rows.hpp"
#include "row_ops.hpp"
#include "workspace.hpp"

#include <algorithm>
#include <cstddef>
#include <type_traits>

namespace deltaattn
{
    namespace kernels
    {
        /// Exact rows of a quantized cache (sinks, ring; every row if uncoded), plus the
        /// rows of the chunk being appended (positions >= chunk_first).
        template <class T>
        struct quant_exact_rows
        {
            basic_quant_cache<T> const* cache;
            matrix_view<const T> chunk;
            std::size_t chunk_first;

            static constexpr bool has_deltas = false;
            T const* exact_row(std::size_t j) const noexcept { return j >= chunk_first ? chunk.row(j - chunk_first) : cache->exact_row(j); }
            /// exact_row of positions [j0, j0 + count) into `out`, dividing once for the ring.
            void exact_rows(std::size_t j0, std::size_t count, T const** out) const noexcept
            {
                detail::cache_then_chunk_rows(*cache, chunk, chunk_first, j0, count, out);
            }
        };

        namespace quant_detail
        {
            /// f(std::integral_constant<unsigned, b>) for a codec's code width b (3, 4 or 8:
            /// validate_codec has checked it).
            template <class F>
            void with_code_bits(unsigned bits, F&& f)
            {
                switch (bits)
                {
                case 3: f(std::integral_constant<unsigned, 3>{}); break;
                case 4: f(std::integral_constant<unsigned, 4>{}); break;
                default: f(std::integral_constant<unsigned, 8>{}); break;
                }
            }

            /// Far scores [first, end) of every head: code-row dots, then prefix sums. The
            /// sums of up to four heads go side by side, each head's adds in row order: one
            /// head at a time, each row waited for the add before it.
            template <class Arch, unsigned Bits, class T>
            void far_scores(basic_quant_cache<T> const& keys, float const* const* q, std::size_t heads, std::size_t first, std::size_t end, float* s,
                            std::size_t stride, float* scratch, std::int32_t* words) noexcept
            {
                code_spans<Arch, Bits> const layout(keys.codec(), keys.dim());
                float* const qP = scratch;  // (int8 queries: their lane scales)
                float* const scales = scratch + 2 * heads * layout.padded;
                quant_codec const& codec = keys.codec();
                float const* base_q[block_scratch::max_decode_heads];  // what the base row is dotted with
                std::copy(q, q + heads, base_q);
                if (codec.int8_queries)
                {
                    int8_query_layout<Arch, Bits> const ql(layout);
                    float* const rounded = scratch + heads * layout.padded;  // (free until far_values)
                    prepare_int8_queries(layout, q, heads, words, qP, rounded);
                    for (std::size_t h = 0; h < heads; ++h)
                        base_q[h] = rounded + h * layout.d;
                    for_head_chunks(heads, [&](std::size_t h0, auto chunk) {
                        code_row_dots_int8<Arch, Bits, decltype(chunk)::value>(keys, layout, words + h0 * ql.words_per_head(), qP + h0 * ql.floats_per_head(),
                                                                               first, end, s + h0 * stride, stride, scales);
                    });
                }
                else
                {
                    permute_queries(layout, q, heads, qP);
                    for_head_chunks(heads, [&](std::size_t h0, auto chunk) {
                        code_row_dots<Arch, Bits, decltype(chunk)::value>(keys, layout, qP + h0 * layout.padded, first, end, s + h0 * stride, stride, scales);
                    });
                }
                bool const from_base = codec.next_keyframe(first) != first;
                for_head_chunks(heads, [&](std::size_t h0, auto chunk) {
                    constexpr std::size_t N = decltype(chunk)::value;
                    float running[N];
                    for (std::size_t h = 0; h < N; ++h)
                        running[h] = from_base ? row_dot<Arch>(base_q[h0 + h], keys.base_row(), keys.dim()) : 0.0f;
                    keyframe_prefix_sums<Arch, N>(s + h0 * stride, stride, first, end, codec, running);
                });
            }

            /// o_h += Σ_{j in [first, end)} p_h[j] v̂_j for coded values: p becomes the
            /// suffix masses in place, then the code rows are summed in permuted order.
            template <class Arch, unsigned Bits, class T>
            void far_values(basic_quant_cache<T> const& values, float* p, std::size_t stride, std::size_t heads, std::size_t first, std::size_t end,
                            float* o, float* scratch) noexcept
            {
                code_spans<Arch, Bits> const layout(values.codec(), values.dim());
                float* const oP = scratch + heads * layout.padded;
                float* const scales = scratch + 2 * heads * layout.padded;
                quant_codec const& codec = values.codec();
                for_head_chunks(heads, [&](std::size_t h0, auto chunk) {
                    constexpr std::size_t N = decltype(chunk)::value;
                    float mass[N];
                    keyframe_suffix_sums<Arch, N>(p + h0 * stride, stride, first, end, codec, mass);
                    for (std::size_t h = 0; h < N; ++h)
                        if (mass[h] != 0.0f)  // the first segment starts from v̂_{sinks-1}
                            row_axpy<Arch>(mass[h], values.base_row(), o + (h0 + h) * values.dim(), values.dim());
                });
                std::fill(oP, oP + heads * layout.padded, 0.0f);
                for_head_chunks(heads, [&](std::size_t h0, auto chunk) {
                    code_row_values<Arch, Bits, decltype(chunk)::value>(values, layout, p + h0 * stride, stride, first, end, oP + h0 * layout.padded,
                                                                        scales);
                });
                add_unpermuted(layout, oP, heads, o);
            }
        }  // namespace quant_detail

        /**
         * One decode step over quantized caches: q and out hold one position (`last`) and
         * the g query heads of one KV head; `keys` and `values` are that head's caches,
         * `k_chunk` / `v_chunk` the exact rows of positions >= chunk_first not yet pushed
         * to them. Work is counted as dense (SPEC.md §10: attention sparsity does not
         * apply to coded rows).
         */
        template <class Arch, class T>
        void quant_decode_block(basic_quant_cache<T> const& keys, basic_quant_cache<T> const& values, matrix_view<const T> k_chunk,
                                matrix_view<const T> v_chunk, std::size_t chunk_first, tensor_view<const float> q, tensor_view<float> out,
                                std::size_t last, float scale, hybrid_split split, block_scratch& ws, attention_work& work)
        {
            std::size_t const heads = q.heads, d = q.dim, n = last + 1;
            bool const far = split.window <= last && last - split.window >= split.sinks;
            std::size_t const far_first = far ? split.sinks : n, far_end = far ? last - split.window + 1 : n;
            decode_detail::step_buffers const buffers = decode_detail::begin_step<Arch>(ws, q, 0, heads, n);
            float* const s = buffers.scores;
            float* const o = buffers.out;
            std::size_t const stride = buffers.stride;
            float const* const* qh = buffers.q;

            quant_exact_rows<T> const exact_keys{&keys, k_chunk, chunk_first}, exact_values{&values, v_chunk, chunk_first};
            decode_detail::exact_dots<Arch>(exact_keys, qh, heads, d, 0, far_first, s, stride);
            decode_detail::exact_dots<Arch>(exact_keys, qh, heads, d, far_end, n, s, stride);
            if (far)
            {
                quant_detail::with_code_bits(keys.codec().bits, [&](auto bits) {
                    quant_detail::far_scores<Arch, decltype(bits)::value>(keys, qh, heads, far_first, far_end, s, stride, ws.quant.data(),
                                                                          ws.quant_words.data());
                });
            }

            alignas(64) float sums[block_scratch::max_decode_heads];
            for (std::size_t h = 0; h < heads; ++h)
                sums[h] = decode_detail::softmax_row<Arch>(s + h * stride, n, scale);

            if (values.coded() && far)
            {
                decode_detail::exact_values<Arch>(exact_values, s, stride, heads, d, 0, far_first, o);
                decode_detail::exact_values<Arch>(exact_values, s, stride, heads, d, far_end, n, o);
                quant_detail::with_code_bits(values.codec().bits, [&](auto bits) {
                    quant_detail::far_values<Arch, decltype(bits)::value>(values, s, stride, heads, far_first, far_end, o, ws.quant.data());
                });
            }
            else
                decode_detail::streamed_exact_values<Arch>(exact_values, s, stride, heads, d, 0, n, o);

            decode_detail::write_outputs(o, sums, heads, d, out, 0);
            std::uint64_t const macs = std::uint64_t(n) * heads * d;
            work.queries += heads;
            work.dense_macs += macs;
            work.hybrid_macs += macs;
            work.dense_pv_macs += macs;
            work.hybrid_pv_macs += macs;
        }
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_QUANT_DECODE_HPP
