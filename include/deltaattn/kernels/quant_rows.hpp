/**
 * @file kernels/quant_rows.hpp
 * Reading code rows (codecs/quant.hpp) in a decode step: the far context's q·k̂ dots
 * and its Σ P · (s ⊙ c) value sums, for the query heads of one KV head.
 *
 * A register of w lanes of a b-bit row holds F codes per lane (32-bit words of F = 32 / b
 * codes at 4 and 8 bits; 3-byte groups of F = 8 codes at 3 bits, spread into 32-bit
 * lanes as they are loaded): lane l of the register starting at lane l0 holds channels
 * (l0 + l)·F .. (l0 + l)·F + F − 1, and "field" f of the register is channel
 * (l0 + l)·F + f of each lane. Two shifts and a conversion unpack a field for all lanes
 * at once, with no shuffle, on every ISA. The
 * channels come out strided, so the query is permuted once per step into the same
 * order (`qP[span][field][lane]`), and the value sums are accumulated in that order and
 * permuted back once at the end. A register of words is a *span* of w·F channels; a
 * row's last span may run past the row (into the next row or the cache's padding),
 * where the permuted query and the discarded output lanes are zero.
 *
 * Scales are per group of 32 channels (or per row): a span holds span / 32 groups
 * (AVX-512, 4-bit: 4), or lies inside one. The lanes' scales are built once per row and
 * span (and pass): one broadcast, one permute, or a sum of broadcasts times one-hot lane masks.
 *
 * Per code row and KV head this costs F unpacks (3 instructions each) shared by the
 * group's query heads, then F FMAs per head: the same FMAs as a dense row, on b/16 of
 * an fp16 row's bytes.
 */
#ifndef DELTAATTN_KERNELS_QUANT_ROWS_HPP
#define DELTAATTN_KERNELS_QUANT_ROWS_HPP

#include "../arch.hpp"
#include "../caches/quant_cache.hpp"
#include "convert.hpp"
#include "row_ops.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace deltaattn
{
    namespace kernels
    {
        /// How a b-bit row of d channels maps onto registers of Arch.
        template <class Arch, unsigned Bits>
        struct code_spans
        {
            static constexpr std::size_t w = arch_traits<Arch>::width, fields = codes_per_lane(Bits), span = w * fields;
            /// Bytes of codes per lane, and per register of lanes.
            static constexpr std::size_t lane_bytes = fields * Bits / 8, register_bytes = w * lane_bytes;
            static constexpr std::size_t max_span_groups = span >= 32 ? span / 32 : 1;

            std::size_t d, count, padded, row_bytes, groups, group;

            explicit code_spans(quant_codec const& codec, std::size_t dim) noexcept
                : d(dim), count((dim + span - 1) / span), padded(count * span), row_bytes(codec.code_bytes(dim)), groups(codec.scales(dim)),
                  group(codec.group(dim))
            {
            }
        };

        /// Floats of ws.quant a step of `heads` heads needs: permuted queries and outputs,
        /// and the widened scales of one tile of rows.
        inline std::size_t quant_scratch_floats(std::size_t heads, std::size_t dim, quant_codec const& codec) noexcept
        {
            std::size_t const span = 16 * codes_per_lane(codec.bits);  // the widest arch's span
            std::size_t const padded = (dim + span - 1) / span * span;
            return 2 * heads * padded + 64 * codec.scales(dim) + 64;
        }

        namespace quant_detail
        {
            /// Rows per tile: the scales widened at once, and the rows the value passes
            /// re-read from L1 (64 rows of 4-bit d 128: 4 KiB of codes).
            constexpr std::size_t tile_rows = 64;

            /// How far ahead the value passes prefetch code rows (2–4 KiB at 4 and 8 bits,
            /// d 128): streamed, 16 and 32 rows ran alike, 8 slower (Zen 4).
            constexpr std::size_t prefetch_rows = 32;

            /// The scales of each lane of span `sp` of a row whose widened scales are `s`.
            template <class Arch, unsigned Bits>
            struct lane_scales
            {
                using ops = arch_traits<Arch>;
                using reg = typename ops::reg;
                using spans = code_spans<Arch, Bits>;
                static constexpr int F = static_cast<int>(spans::fields);

                reg onehot[spans::max_span_groups];
                std::size_t per_span;  // groups a span holds (1: broadcast)
                bool whole_row;

                explicit lane_scales(spans const& layout) noexcept
                {
                    whole_row = layout.group == layout.d;
                    per_span = whole_row || spans::span <= layout.group ? 1 : spans::span / layout.group;
                    alignas(64) float lanes[spans::w];
                    for (std::size_t k = 0; k < spans::max_span_groups; ++k)
                    {
                        for (std::size_t l = 0; l < spans::w; ++l)
                            lanes[l] = per_span > 1 && l * spans::fields / layout.group == k ? 1.0f : 0.0f;
                        onehot[k] = ops::load(lanes);
                    }
                }

                /// Where span sp's first scale sits among a row's scales. Groups are 32
                /// channels (or the whole row): a shift, not a division.
                std::size_t first_group(std::size_t sp) const noexcept { return whole_row ? 0 : sp * spans::span / 32; }
                /// Whether a span holds more than one group (else its scale is broadcast).
                bool spread() const noexcept { return per_span > 1; }

                reg operator()(float const* s, std::size_t sp) const noexcept
                {
                    float const* const at = s + first_group(sp);
                    return spread() ? of<true>(at) : of<false>(at);
                }

                /// The lane scales of a span whose first scale is at `at`, spread() known to
                /// the caller: a loop over rows then tests nothing per row.
                template <bool Spread>
                reg of(float const* at) const noexcept
                {
                    if constexpr (!Spread)
                        return ops::broadcast(*at);
                    else
                    {
#if defined(__AVX512F__)
                        // One permute of the span's (up to 4) scales: lane l takes scale l·F / 32.
                        // (Four broadcasts and FMAs made building the lane scales ~12% of a
                        // 4-bit step, Zen 4.) The scales have a register of padding past the last.
                        if constexpr (spans::w == 16 && std::is_base_of<xsimd::avx512f, Arch>::value)
                        {
                            static_assert(spans::max_span_groups <= 4, "one 128-bit load holds a span's scales");
                            __m512i const index = _mm512_set_epi32(15 * F / 32, 14 * F / 32, 13 * F / 32, 12 * F / 32, 11 * F / 32, 10 * F / 32, 9 * F / 32,
                                                                   8 * F / 32, 7 * F / 32, 6 * F / 32, 5 * F / 32, 4 * F / 32, 3 * F / 32, 2 * F / 32,
                                                                   1 * F / 32, 0);
                            return _mm512_permutexvar_ps(index, _mm512_castps128_ps512(_mm_loadu_ps(at)));
                        }
#endif
                        reg x = ops::mul(ops::broadcast(at[0]), onehot[0]);
                        for (std::size_t k = 1; k < per_span && k < spans::max_span_groups; ++k)
                            x = ops::fma(ops::broadcast(at[k]), onehot[k], x);
                        return x;
                    }
                }
            };

            /// Fields [First, First + N) of a register of words.
            template <class Arch, unsigned Bits, unsigned First, std::size_t... F>
            DELTAATTN_ALWAYS_INLINE void unpack(typename arch_traits<Arch>::words const& x, typename arch_traits<Arch>::reg* out, std::index_sequence<F...>) noexcept
            {
                ((out[F] = arch_traits<Arch>::template code_field<Bits, First + static_cast<unsigned>(F)>(x)), ...);
            }

            /// The scales of rows [j0, j0 + rows) widened into `out` (rows * groups floats,
            /// plus a register of padding).
            template <class Arch, class T>
            void widen_scales(basic_quant_cache<T> const& cache, std::size_t j0, std::size_t rows, float* out) noexcept
            {
                as_floats<Arch>(cache.code_row(j0).scales, rows * cache.codec().scales(cache.dim()), out);
            }
        }  // namespace quant_detail

        /// Calls f(channel, permuted index) for every slot of one head's permuted row:
        /// slot (sp * fields + f) * w + l holds channel (sp * w + l) * fields + f.
        template <class Arch, unsigned Bits, class F>
        void for_each_slot(code_spans<Arch, Bits> const& layout, F&& f) noexcept
        {
            using spans = code_spans<Arch, Bits>;
            for (std::size_t sp = 0; sp < layout.count; ++sp)
                for (std::size_t k = 0; k < spans::fields; ++k)
                    for (std::size_t l = 0; l < spans::w; ++l)
                        f((sp * spans::w + l) * spans::fields + k, (sp * spans::fields + k) * spans::w + l);
        }

        /// qP[h] = q_h in the permuted order, 0 past d.
        template <class Arch, unsigned Bits>
        void permute_queries(code_spans<Arch, Bits> const& layout, float const* const* q, std::size_t heads, float* qP) noexcept
        {
            for (std::size_t h = 0; h < heads; ++h)
                for_each_slot(layout, [&](std::size_t c, std::size_t slot) { qP[h * layout.padded + slot] = c < layout.d ? q[h][c] : 0.0f; });
        }

        /// o_h[c] += oP[h] in channel order: permute_queries' inverse, accumulated.
        template <class Arch, unsigned Bits>
        void add_unpermuted(code_spans<Arch, Bits> const& layout, float const* oP, std::size_t heads, float* o) noexcept
        {
            for (std::size_t h = 0; h < heads; ++h)
                for_each_slot(layout, [&](std::size_t c, std::size_t slot) {
                    if (c < layout.d)
                        o[h * layout.d + c] += oP[h * layout.padded + slot];
                });
        }

        /**
         * s[h * stride + j] = the lane sum of row j's accumulator for head h, over code rows
         * j in [j0, j1) and H heads: w rows at a time (their scales widened at once), each
         * row's H accumulators filled by `row_dot(codes, row_scales, acc)`, then reduced
         * with one transpose-add per head.
         */
        template <class Arch, std::size_t H, unsigned Bits, class T, class RowDot>
        DELTAATTN_ALWAYS_INLINE void batched_row_dots(basic_quant_cache<T> const& cache, code_spans<Arch, Bits> const& layout, std::size_t j0, std::size_t j1,
                                                      float* s, std::size_t stride, float* scales, RowDot&& row_dot) noexcept
        {
            using ops = arch_traits<Arch>;
            using reg = typename ops::reg;
            constexpr std::size_t w = code_spans<Arch, Bits>::w;
            for (std::size_t t0 = j0; t0 < j1; t0 += w)
            {
                std::size_t const nb = std::min(w, j1 - t0);
                // (No software prefetch: streamed, the 8-bit dots ran 21.5 ns a row without
                // the next batch's, 24.7 with; Zen 4.)
                quant_detail::widen_scales<Arch>(cache, t0, nb, scales);
                reg rows[H][w];
                for (std::size_t r = 0; r < w; ++r)
                {
                    std::size_t const rr = r < nb ? r : 0;
                    reg acc[H];
                    DELTAATTN_UNROLL
                    for (auto& a : acc)
                        a = ops::zero();
                    row_dot(cache.code_row(t0 + rr).codes, scales + rr * layout.groups, acc);
                    DELTAATTN_UNROLL
                    for (std::size_t h = 0; h < H; ++h)
                        rows[h][r] = acc[h];
                }
                for (std::size_t h = 0; h < H; ++h)
                    store_first<Arch>(s + h * stride + t0, ops::reduce_add_rows(rows[h]), nb);
            }
        }

        /// s[h * stride + j] = qP_h · (s_j ⊙ c_j) for code rows j in [j0, j1) and H heads.
        template <class Arch, unsigned Bits, std::size_t H, class T>
        void code_row_dots(basic_quant_cache<T> const& cache, code_spans<Arch, Bits> const& layout, float const* qP, std::size_t j0, std::size_t j1,
                           float* s, std::size_t stride, float* scales) noexcept
        {
            using ops = arch_traits<Arch>;
            using reg = typename ops::reg;
            using spans = code_spans<Arch, Bits>;
            constexpr std::size_t w = spans::w, F = spans::fields;
            quant_detail::lane_scales<Arch, Bits> const lane_scale(layout);
            batched_row_dots<Arch, H>(cache, layout, j0, j1, s, stride, scales, [&](std::uint8_t const* codes, float const* row_scales, reg* acc) {
                for (std::size_t sp = 0; sp < layout.count; ++sp)
                {
                    reg field[F];
                    quant_detail::unpack<Arch, Bits, 0>(ops::template load_code_lanes<Bits>(codes + sp * spans::register_bytes), field, std::make_index_sequence<F>{});
                    reg const ls = lane_scale(row_scales, sp);
                    DELTAATTN_UNROLL
                    for (std::size_t h = 0; h < H; ++h)
                    {
                        float const* qs = qP + h * layout.padded + sp * F * w;
                        reg even = ops::mul(ops::load(qs), field[0]);
                        reg odd = ops::mul(ops::load(qs + w), field[1]);
                        DELTAATTN_UNROLL
                        for (std::size_t f = 2; f < F; f += 2)
                        {
                            even = ops::fma(ops::load(qs + f * w), field[f], even);
                            odd = ops::fma(ops::load(qs + (f + 1) * w), field[f + 1], odd);
                        }
                        acc[h] = ops::fma(ops::add(even, odd), ls, acc[h]);
                    }
                }
            });
        }

        /**
         * oP_h += Σ_j m[h * stride + j] (s_j ⊙ c_j) over code rows j in [j0, j1), H heads,
         * in the permuted order: per tile of rows, per span and per four fields, the
         * 4·H accumulators stay in registers while the tile's rows stream from L1. Each
         * row's lane scales are rebuilt in every pass (one permute on AVX-512): a tile of
         * them stored once and loaded by the passes cost 7–10% more of a step (Zen 4).
         */
        template <class Arch, unsigned Bits, std::size_t H, unsigned FirstField, class T>
        void code_row_values_fields(basic_quant_cache<T> const& cache, code_spans<Arch, Bits> const& layout, float const* m, std::size_t stride,
                                    std::size_t t0, std::size_t t1, std::size_t j1, quant_detail::lane_scales<Arch, Bits> const& lane_scale,
                                    float const* scales, std::size_t sp, float* oP) noexcept
        {
            using ops = arch_traits<Arch>;
            using reg = typename ops::reg;
            using spans = code_spans<Arch, Bits>;
            constexpr std::size_t w = spans::w, F = spans::fields, N = 4;
            reg acc[H][N];
            DELTAATTN_UNROLL
            for (std::size_t h = 0; h < H; ++h)
                DELTAATTN_UNROLL
                for (std::size_t f = 0; f < N; ++f)
                    acc[h][f] = ops::load(oP + h * layout.padded + (sp * F + FirstField + f) * w);
            // The tile's first pass meets its rows in memory: each row asks for the one
            // prefetch_rows on. Streamed without it, the pass took 1.4–2× its time from
            // L2 (Zen 4); a tile's worth of prefetches at once is what the key dots
            // dropped (quant_int8_dots.hpp).
            bool const first_pass = sp == 0 && FirstField == 0;
            // The lane scales' kind chosen once, outside the rows (a test per row otherwise).
            auto const rows = [&](auto spread) {
                float const* row_scales = scales + lane_scale.first_group(sp);
                for (std::size_t j = t0; j < t1; ++j, row_scales += layout.groups)
                {
                    if (first_pass && j + quant_detail::prefetch_rows < j1)
                        prefetch(cache.code_row(j + quant_detail::prefetch_rows).codes, layout.row_bytes);
                    reg field[N];
                    quant_detail::unpack<Arch, Bits, FirstField>(ops::template load_code_lanes<Bits>(cache.code_row(j).codes + sp * spans::register_bytes), field, std::make_index_sequence<N>{});
                    reg const ls = lane_scale.template of<decltype(spread)::value>(row_scales);
                    DELTAATTN_UNROLL
                    for (std::size_t h = 0; h < H; ++h)
                    {
                        reg const mh = ops::mul(ops::broadcast(m[h * stride + j]), ls);
                        DELTAATTN_UNROLL
                        for (std::size_t f = 0; f < N; ++f)
                            acc[h][f] = ops::fma(mh, field[f], acc[h][f]);
                    }
                }
            };
            if (lane_scale.spread())
                rows(std::true_type{});
            else
                rows(std::false_type{});
            DELTAATTN_UNROLL
            for (std::size_t h = 0; h < H; ++h)
                DELTAATTN_UNROLL
                for (std::size_t f = 0; f < N; ++f)
                    ops::store(oP + h * layout.padded + (sp * F + FirstField + f) * w, acc[h][f]);
        }

        template <class Arch, unsigned Bits, std::size_t H, class T>
        void code_row_values(basic_quant_cache<T> const& cache, code_spans<Arch, Bits> const& layout, float const* m, std::size_t stride,
                             std::size_t j0, std::size_t j1, float* oP, float* scales) noexcept
        {
            constexpr std::size_t tile = quant_detail::tile_rows;
            quant_detail::lane_scales<Arch, Bits> const lane_scale(layout);
            for (std::size_t t0 = j0; t0 < j1; t0 += tile)
            {
                std::size_t const t1 = std::min(j1, t0 + tile);
                quant_detail::widen_scales<Arch>(cache, t0, t1 - t0, scales);
                for (std::size_t sp = 0; sp < layout.count; ++sp)
                {
                    code_row_values_fields<Arch, Bits, H, 0>(cache, layout, m, stride, t0, t1, j1, lane_scale, scales, sp, oP);
                    if constexpr (code_spans<Arch, Bits>::fields == 8)
                        code_row_values_fields<Arch, Bits, H, 4>(cache, layout, m, stride, t0, t1, j1, lane_scale, scales, sp, oP);
                }
            }
        }

        /// Runs f(std::integral_constant<std::size_t, H>) for H = min(4, heads - h0) over
        /// head chunks: the kernels above keep 4 heads' accumulators in registers.
        template <class F>
        void for_head_chunks(std::size_t heads, F&& f)
        {
            for (std::size_t h0 = 0; h0 < heads; h0 += 4)
                switch (std::min<std::size_t>(4, heads - h0))
                {
                case 1: f(h0, std::integral_constant<std::size_t, 1>{}); break;
                case 2: f(h0, std::integral_constant<std::size_t, 2>{}); break;
                case 3: f(h0, std::integral_constant<std::size_t, 3>{}); break;
                default: f(h0, std::integral_constant<std::size_t, 4>{}); break;
                }
        }
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_QUANT_ROWS_HPP
