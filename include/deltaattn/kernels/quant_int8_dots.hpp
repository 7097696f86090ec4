/**
 * @file kernels/quant_int8_dots.hpp
 * The far rows' dots q̃·(s ⊙ c) with the query quantized to int8 (SPEC.md §10's last
 * rule, `quant_codec::int8_queries`): integer dots of whole code registers, one
 * conversion and two multiplies per head and register.
 *
 * Why: widening codes to floats costs three instructions per 16 channels before the
 * FMAs (kernels/quant_rows.hpp); an integer dot instruction (VNNI, sdot, pmaddubsw)
 * takes the packed bytes as they are, 64 channels per instruction on AVX-512.
 *
 * Per KV head and step, each query head h is quantized once (codecs/quant.hpp,
 * quantize_query_group) and laid out against the code words (kernels/arch/code_dots.hpp):
 *   query words  [span][part][lane]  the int8 query bytes of each code word's channels
 *   start words  [span][lane]        −bias × Σ of those bytes: each dot's starting value
 *   query scales [span][lane]        s_q of each word's 32-channel group (0 past d)
 * (8-bit codes on AVX-512 and AVX2: query and start words per pair of spans, regrouped
 * as int8_query_layout::paired says.)
 * A word's channels never straddle a 32-channel group, so per lane
 *     q̃·(s ⊙ c) = Σ_lanes s_row[lane] · s_q[lane] · (integer dot of the lane's word).
 */
#ifndef DELTAATTN_KERNELS_QUANT_INT8_DOTS_HPP
#define DELTAATTN_KERNELS_QUANT_INT8_DOTS_HPP

#include "../arch.hpp"
#include "../caches/quant_cache.hpp"
#include "../codecs/quant.hpp"
#include "../detail/validate.hpp"
#include "arch/code_dots.hpp"
#include "arch/group_sums.hpp"
#include "quant_rows.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

namespace deltaattn
{
    namespace kernels
    {
        /// int32 words of ws.quant_words a step of `heads` heads needs (0 unless the
        /// codec reads int8 queries): query words and start words of every head.
        inline std::size_t quant_scratch_words(std::size_t heads, std::size_t dim, quant_codec const& codec) noexcept
        {
            if (!codec.int8_queries)
                return 0;
            std::size_t const fields = codes_per_lane(codec.bits), span = 16 * fields;  // the widest arch's span
            std::size_t const words = (dim + span - 1) / span * 16;
            return heads * words * (2 + 1);  // up to two query parts, and the start words
        }

        /// Refuses, naming "q", a query whose int8 scale would not fit binary16
        /// (|q| > quant_query_limit): SPEC.md §10 refuses such a scale rather than clip.
        inline void require_int8_query_range(float const* q, std::size_t n)
        {
            for (std::size_t c = 0; c < n; ++c)
                DELTAATTN_REQUIRE(!(std::fabs(q[c]) > quant_query_limit), "q",
                                "has |q| = " + std::to_string(std::fabs(q[c])) + " at channel " + std::to_string(c) +
                                    ", beyond int8 queries' range (127 x 65504)");
        }

        /// One head's int8 query, laid out for code_row_dots_int8.
        template <class Arch, unsigned Bits>
        struct int8_query_layout
        {
            using spans = code_spans<Arch, Bits>;
            using dots = code_dots<Arch, Bits>;
            static constexpr std::size_t w = spans::w, parts = dots::parts, chunks = w / 4;
            /// 8-bit spans read in pairs by the group sums (kernels/arch/group_sums.hpp):
            /// the query words of spans 2b and 2b + 1 regrouped as their code registers
            /// are (even chunks, then odd ones, group k of the block in chunk k), and one
            /// start word per lane of the pair. The registers of a pair then add up in
            /// one accumulator, with no fold per head.
            static constexpr bool paired = Bits == 8 && group_sums_isa_of<Arch>() != group_sums_isa::none;

            std::size_t count;   // spans per row
            std::size_t blocks;  // paired: pairs of spans (the last one may be half empty)

            explicit int8_query_layout(spans const& layout) noexcept : count(layout.count), blocks((layout.count + 1) / 2) {}
            /// Where the start words begin, after every query word.
            std::size_t start_offset() const noexcept { return paired ? 2 * blocks * w : count * parts * w; }
            std::size_t words_per_head() const noexcept { return paired ? 3 * blocks * w : count * w * (parts + 1); }
            std::size_t floats_per_head() const noexcept { return count * w; }

            /// Where the query word of code word `word` (part p) goes, and its start word.
            std::size_t query_slot(std::size_t word, std::size_t p) const noexcept
            {
                if constexpr (paired)
                    return 2 * (word / w / 2) * w + paired_lane(word) + (word / 4 % 2) * w;  // odd chunks: the second register
                else
                    return word / w * w * parts + word % w + p * w;  // span word / w, lane word % w
            }
            std::size_t start_slot(std::size_t word) const noexcept { return paired ? word / w / 2 * w + paired_lane(word) : word; }

        private:
            /// A paired word's lane: chunk c of span 2b + half goes to chunk
            /// half · chunks / 2 + c / 2 (of the even register if c is even, else the odd).
            static std::size_t paired_lane(std::size_t word) noexcept
            {
                std::size_t const lane = word % w, half = word / w % 2, chunk = lane / 4;
                return (half * chunks / 2 + chunk / 2) * 4 + lane % 4;
            }
        };

        /**
         * Quantizes the query of each of `heads` heads and lays it out: head h's query and
         * start words at words + h * words_per_head() (query words of span sp, part p at
         * (sp * parts + p) * w, or int8_query_layout's pairs; start words after every
         * span's), its lane scales at
         * scales + h * floats_per_head(); and the query as rounded, q̃ = s_q · code, at
         * rounded + h * d (the prefix sums' base row meets q̃ too, as every far row).
         */
        template <class Arch, unsigned Bits>
        void prepare_int8_queries(code_spans<Arch, Bits> const& layout, float const* const* q, std::size_t heads, std::int32_t* words, float* scales,
                                  float* rounded) noexcept
        {
            using q_layout = int8_query_layout<Arch, Bits>;
            constexpr std::size_t parts = q_layout::parts, F = codes_per_lane(Bits);
            constexpr int bias = code_dots<Arch, Bits>::bias;
            q_layout const ql(layout);
            std::size_t const d = layout.d;
            for (std::size_t h = 0; h < heads; ++h)
            {
                std::int32_t* const qw = words + h * ql.words_per_head();
                std::int32_t* const start = qw + ql.start_offset();
                float* const sq = scales + h * ql.floats_per_head();
                std::fill(qw, qw + ql.words_per_head(), 0);  // the words past d stay 0
                std::fill(sq, sq + ql.floats_per_head(), 0.0f);
                for (std::size_t g0 = 0; g0 < d; g0 += quant_query_group)
                {
                    std::size_t const n = std::min(quant_query_group, d - g0);
                    std::int8_t codes[quant_query_group];
                    float const group_scale = quantize_query_group(q[h] + g0, n, codes);
                    for (std::size_t c = 0; c < n; ++c)
                        rounded[h * d + g0 + c] = group_scale * static_cast<float>(codes[c]);  // exact: 11 bits times 7
                    for (std::size_t word = g0 / F; word < (g0 + n) / F; ++word)  // d % 8 == 0: whole words
                    {
                        int sum = 0;
                        for (std::size_t p = 0; p < parts; ++p)
                        {
                            std::uint32_t packed = 0;
                            for (std::size_t k = 0; k < 4; ++k)
                            {
                                int const v = codes[Bits == 8 ? word * F - g0 + k : word * F - g0 + 2 * k + p];
                                sum += v;
                                packed |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(v)) << (8 * k);
                            }
                            qw[ql.query_slot(word, p)] = static_cast<std::int32_t>(packed);
                        }
                        start[ql.start_slot(word)] += -bias * sum;  // (paired: two words per slot)
                        sq[word] = group_scale;
                    }
                }
            }
        }

        /**
         * code_row_dots_int8 on AVX-512 and AVX2 (4- and 8-bit codes): the integer dots
         * summed per 32-channel group before any float. A row's score is
         * Σ_g s_row[g] · s_q[g] · I_g with I_g, the group's integer dot, exact in int32: so
         * the first two levels of the transpose-add run on the int32 word dots of 4 rows
         * (kernels/arch/group_sums.hpp: lane 4k + r = row r, group k of a block), and the
         * conversion and the two scales then cost 3 float ops per head and 4 rows, where
         * the generic kernel pays them per head and row. Same integers, fewer roundings:
         * within SPEC.md §9's tolerance like the generic kernel, not bit-identical to it.
         */
        template <class Arch, unsigned Bits, std::size_t H, class T>
        void code_row_dots_int8_by_group(basic_quant_cache<T> const& cache, code_spans<Arch, Bits> const& layout, std::int32_t const* words,
                                         float const* query_scales, std::size_t j0, std::size_t j1, float* s, std::size_t stride, float* scales) noexcept
        {
            using ops = arch_traits<Arch>;
            using q_layout = int8_query_layout<Arch, Bits>;
            using dots = code_dots<Arch, Bits>;
            using words_reg = typename ops::words;
            using sums = group_sums<group_sums_isa_of<Arch>()>;
            using floats = typename sums::floats;
            constexpr std::size_t w = q_layout::w, parts = q_layout::parts, spans_per_block = q_layout::paired ? 2 : 1, quads = w / 4;
            q_layout const ql(layout);
            std::size_t const blocks = (layout.count + spans_per_block - 1) / spans_per_block;
            // Row and head's int32 word dots over block b (u: the row's registers of the
            // block), group k in chunk k.
            auto const block_dot = [&](std::int32_t const* qw, typename dots::unpacked const* u, std::size_t b) {
                words_reg const start = words_reg::load_aligned(qw + ql.start_offset() + b * w);
                if constexpr (q_layout::paired)
                {
                    words_reg const even[1] = {words_reg::load_aligned(qw + 2 * b * w)}, odd[1] = {words_reg::load_aligned(qw + (2 * b + 1) * w)};
                    return dots::dot(dots::dot(start, u[0], even), u[1], odd);
                }
                else
                {
                    words_reg qp[parts];
                    for (std::size_t p = 0; p < parts; ++p)
                        qp[p] = words_reg::load_aligned(qw + (b * parts + p) * w);
                    return dots::dot(start, u[0], qp);
                }
            };
            // s_q of group (chunks·b + k) in every lane of chunk k: the scale of the group's
            // first word (words past d hold 0).
            auto const query_group_scales = [&](std::size_t h, std::size_t b) {
                float const* qs = query_scales + h * ql.floats_per_head();
                floats words_scales;
                if constexpr (spans_per_block == 2)
                {
                    std::size_t const sp = 2 * b;
                    words_scales = sums::pick(ops::load(qs + sp * w), sp + 1 < layout.count ? ops::load(qs + (sp + 1) * w) : ops::zero());
                }
                else
                    words_scales = ops::load(qs + b * w);
                return sums::spread_first(words_scales);
            };

            for (std::size_t t0 = j0; t0 < j1; t0 += w)
            {
                // No software prefetch: the next batch's rows asked for at once made the
                // streamed 8-bit dots slower (16–18 ns a row against 10–13 without, Zen 4),
                // and spread a quad at a time 32 or 64 rows ahead, no faster.
                std::size_t const nb = std::min(w, j1 - t0);
                quant_detail::widen_scales<Arch>(cache, t0, nb, scales);
                floats partial[H][quads];  // [head][rows 4i..4i+3]: lane 4k + r, summed over blocks
                for (std::size_t i = 0; i < quads; ++i)
                {
                    floats acc[H];
                    DELTAATTN_UNROLL
                    for (auto& a : acc)
                        a = ops::zero();
                    for (std::size_t b = 0; b < blocks && 4 * i < nb; ++b)
                    {
                        // The 4 rows unpacked first, then one head at a time: 4 dot registers
                        // live, not 4·H (4·H of them spill on AVX-512 at H 4).
                        typename dots::unpacked u[4][spans_per_block];
                        DELTAATTN_UNROLL
                        for (std::size_t r = 0; r < 4; ++r)
                        {
                            std::size_t const row = 4 * i + r < nb ? 4 * i + r : 0;  // rows past the batch: computed, discarded
                            std::uint8_t const* codes = cache.code_row(t0 + row).codes;
                            DELTAATTN_UNROLL
                            for (std::size_t k = 0; k < spans_per_block; ++k)  // (an odd count's last block has one span: no read past the row)
                            {
                                std::size_t const sp = b * spans_per_block + k;
                                u[r][k] = dots::unpack(sp < layout.count ? ops::template load_code_lanes<Bits>(codes + sp * code_spans<Arch, Bits>::register_bytes) : words_reg(0));
                            }
                            if constexpr (q_layout::paired)  // the two spans regrouped once per row, for every head
                            {
                                typename dots::unpacked const first = u[r][0];
                                u[r][0].part[0] = sums::even_chunks(first.part[0], u[r][1].part[0]);
                                u[r][1].part[0] = sums::odd_chunks(first.part[0], u[r][1].part[0]);
                            }
                        }
                        floats const rs = sums::row_scales(scales, layout.groups, i, b);
                        DELTAATTN_UNROLL
                        for (std::size_t h = 0; h < H; ++h)
                        {
                            floats dot[4];
                            DELTAATTN_UNROLL
                            for (std::size_t r = 0; r < 4; ++r)
                                dot[r] = sums::as_floats(block_dot(words + h * ql.words_per_head(), u[r], b));
                            acc[h] = sums::fma(sums::to_float(sums::sum_within_chunks(dot)), sums::mul(query_group_scales(h, b), rs), acc[h]);
                        }
                    }
                    DELTAATTN_UNROLL
                    for (std::size_t h = 0; h < H; ++h)
                        partial[h][i] = acc[h];
                }
                for (std::size_t h = 0; h < H; ++h)
                    store_first<Arch>(s + h * stride + t0, sums::reduce_quads(partial[h]), nb);
            }
        }

        /**
         * code_row_dots_int8 on every other arch: each register of word dots converted and
         * scaled per head and row, w rows at a time, reduced with one transpose-add, as
         * code_row_dots.
         */
        template <class Arch, unsigned Bits, std::size_t H, class T>
        void code_row_dots_int8_by_register(basic_quant_cache<T> const& cache, code_spans<Arch, Bits> const& layout, std::int32_t const* words,
                                            float const* query_scales, std::size_t j0, std::size_t j1, float* s, std::size_t stride, float* scales) noexcept
        {
            using ops = arch_traits<Arch>;
            using reg = typename ops::reg;
            using q_layout = int8_query_layout<Arch, Bits>;
            using dots = code_dots<Arch, Bits>;
            using words_reg = typename ops::words;
            constexpr std::size_t w = q_layout::w, parts = q_layout::parts;
            q_layout const ql(layout);
            quant_detail::lane_scales<Arch, Bits> const lane_scale(layout);
            auto const load_words = [](std::int32_t const* p) {
                if constexpr (std::is_same<Arch, scalar>::value)
                    return *p;
                else
                    return words_reg::load_aligned(p);
            };
            batched_row_dots<Arch, H>(cache, layout, j0, j1, s, stride, scales, [&](std::uint8_t const* codes, float const* row_scales, reg* acc) {
                for (std::size_t sp = 0; sp < layout.count; ++sp)
                {
                    typename dots::unpacked const u = dots::unpack(ops::template load_code_lanes<Bits>(codes + sp * code_spans<Arch, Bits>::register_bytes));
                    reg const ls = lane_scale(row_scales, sp);
                    DELTAATTN_UNROLL
                    for (std::size_t h = 0; h < H; ++h)
                    {
                        std::int32_t const* qw = words + h * ql.words_per_head();
                        words_reg qp[parts];
                        for (std::size_t p = 0; p < parts; ++p)
                            qp[p] = load_words(qw + (sp * parts + p) * w);
                        words_reg const dot = dots::dot(load_words(qw + ql.count * parts * w + sp * w), u, qp);
                        reg const scaled = ops::mul(dots::to_float(dot), ops::load(query_scales + h * ql.floats_per_head() + sp * w));
                        acc[h] = ops::fma(scaled, ls, acc[h]);
                    }
                }
            });
        }

        /// s[h * stride + j] = q̃_h · (s_j ⊙ c_j) for code rows j in [j0, j1) and H heads
        /// prepared by prepare_int8_queries: the group sums where the arch has them.
        template <class Arch, unsigned Bits, std::size_t H, class T>
        void code_row_dots_int8(basic_quant_cache<T> const& cache, code_spans<Arch, Bits> const& layout, std::int32_t const* words,
                                float const* query_scales, std::size_t j0, std::size_t j1, float* s, std::size_t stride, float* scales) noexcept
        {
            if constexpr (group_sums_isa_of<Arch>() != group_sums_isa::none)
                code_row_dots_int8_by_group<Arch, Bits, H>(cache, layout, words, query_scales, j0, j1, s, stride, scales);
            else
                code_row_dots_int8_by_register<Arch, Bits, H>(cache, layout, words, query_scales, j0, j1, s, stride, scales);
        }
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_QUANT_INT8_DOTS_HPP
