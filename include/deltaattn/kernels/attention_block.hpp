/**
 * @file kernels/attention_block.hpp
 * The prefill kernel behind dense and hybrid attention: where skipped multiplies are
 * really skipped. (A decode step, one position, has a kernel of its own:
 * decode_step.hpp.)
 *
 * A *query block* is P consecutive positions times the heads of one KV group (GQA),
 * at most R registers' worth of query vectors.
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
 *  - an exact key costs d broadcast-FMAs for all lanes (a small transposed GEMM);
 *  - the online softmax (running max and sum) runs across lanes, a tile at a time;
 *  - p·V is a register-blocked outer product, vectorized over channels, on the
 *    tile's value rows copied contiguously.
 * The three classes of a key are contiguous lane ranges, so two comparisons against
 * the lane index pick each lane's score.
 *
 * With delta values (SPEC.md §6.1) the far keys' p·V reads either dense rows v̂_j
 * (rebuilt once per chunk, or here per block, in position order from the delta rows) like
 * any other, or, in tiles that store at most 70% of their values, the delta rows
 * themselves by §6.1's suffix sums (accumulate_sparse_far_values; a decode step, where
 * a row serves one position, always does: decode_step.hpp). The work counters keep §6.1's
 * accounting either way.
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
#include "convert.hpp"
#include "far_columns.hpp"
#include "key_sources.hpp"
#include "row_ops.hpp"
#include "workspace.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

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
            DELTAATTN_UNROLL
            for (auto& chain : acc)
                DELTAATTN_UNROLL
                for (auto& a : chain)
                    a = ops::zero();
            std::size_t c = 0;
            for (; c + 4 <= d; c += 4)
                DELTAATTN_UNROLL
                for (std::size_t u = 0; u < 4; ++u)
                {
                    auto const kb = ops::broadcast(k[c + u]);
                    DELTAATTN_UNROLL
                    for (std::size_t r = 0; r < R; ++r)
                        acc[u][r] = ops::fma(ops::load(qT + (c + u) * lanes + r * w), kb, acc[u][r]);
                }
            for (; c < d; ++c)
            {
                auto const kb = ops::broadcast(k[c]);
                DELTAATTN_UNROLL
                for (std::size_t r = 0; r < R; ++r)
                    acc[0][r] = ops::fma(ops::load(qT + c * lanes + r * w), kb, acc[0][r]);
            }
            DELTAATTN_UNROLL
            for (std::size_t r = 0; r < R; ++r)
                out[r] = ops::add(ops::add(acc[0][r], acc[1][r]), ops::add(acc[2][r], acc[3][r]));
        }

        /**
         * Keys per register block of the exact scores: on x86, as many keys as fit beside
         * the R query registers and one broadcast, up to 8 (AVX-512 at R = 4: 6 keys, 24
         * accumulators; AVX2 at R = 2: 6 keys, 12). The earlier rule filled every register
         * with accumulators (8 keys), and both spilled some to the stack on every channel
         * (13 stack operands in the AVX2 loop, 0 now): AVX2 dense
         * prefill n 2048, d 128 565 -> 515 ms (Zen 5, four shuffled rounds, medians),
         * AVX-512 within noise (the 6-key kernel alone, in L1: 96% of the FMA peak against
         * 92%). Blocks wider than half the registers pay because each streams the whole
         * transposed query block (32 KiB at 64 lanes, d 128) through L1. NEON keeps half:
         * no ARM hardware here to measure on.
         */
        template <class Arch, std::size_t R>
        constexpr std::size_t score_keys() noexcept
        {
            constexpr std::size_t registers = arch_traits<Arch>::registers;
            if constexpr (std::is_base_of<xsimd::neon, Arch>::value)
            {
                std::size_t k = 1;
                while (k < block_scratch::max_score_keys && 2 * k * R <= registers / 2)
                    k *= 2;
                return k;
            }
            return std::max<std::size_t>(1, std::min(block_scratch::max_score_keys, (registers - R - 1) / R));
        }

        /**
         * The micro-kernel of the exact scores: out[k][lanes of register r] =
         * Σ_c qT[c][lanes] * rows[k][c] for K keys at once. Each query register loaded
         * feeds K FMAs, each broadcast key value R: K * R independent accumulators, so
         * the loop is bound by the FMA units, not by loads. Every (key, register) sum
         * runs over c in order, one chain, so a key's score does not depend on the keys
         * it is blocked with.
         */
        template <class Arch, std::size_t R, std::size_t K>
        void transposed_dots(float const* qT, std::size_t lanes, float const* const* rows, std::size_t d, float* const* out) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width;
            typename ops::reg acc[K][R];
            DELTAATTN_UNROLL
            for (auto& key : acc)
                DELTAATTN_UNROLL
                for (auto& a : key)
                    a = ops::zero();
            for (std::size_t c = 0; c < d; ++c)
            {
                typename ops::reg q[R];
                DELTAATTN_UNROLL
                for (std::size_t r = 0; r < R; ++r)
                    q[r] = ops::load(qT + c * lanes + r * w);
                DELTAATTN_UNROLL
                for (std::size_t k = 0; k < K; ++k)
                {
                    auto const kb = ops::broadcast(rows[k][c]);
                    DELTAATTN_UNROLL
                    for (std::size_t r = 0; r < R; ++r)
                        acc[k][r] = ops::fma(q[r], kb, acc[k][r]);
                }
            }
            DELTAATTN_UNROLL
            for (std::size_t k = 0; k < K; ++k)
                DELTAATTN_UNROLL
                for (std::size_t r = 0; r < R; ++r)
                    ops::store(out[k] + r * w, acc[k][r]);
        }

        /**
         * transposed_dots over the `count` keys listed, K keys per register block, each
         * into its row of `dst` (row jj at dst + jj * lanes); the r < K keys left after the
         * full blocks, one block of r. (Blocks of K/2 with a short last block repeating
         * its key, as before, spent 6 key passes on the 4 keys left of a 64-key tile at
         * K = 6, 13% of the exact scores' samples for 6% of their keys.) row_of(jj, k):
         * key jj's row as floats, widened into slot k if it must be (k < K).
         */
        template <class Arch, std::size_t R, std::size_t K, class RowOf>
        void listed_dots_in_blocks(float const* qT, std::size_t lanes, std::uint16_t const* listed, std::size_t count, std::size_t d, float* dst,
                                   RowOf const& row_of) noexcept
        {
            std::size_t b = 0;
            for (; b + K <= count; b += K)
            {
                float const* rows[K];
                float* dots[K];
                for (std::size_t k = 0; k < K; ++k)
                {
                    rows[k] = row_of(listed[b + k], k);
                    dots[k] = dst + listed[b + k] * lanes;
                }
                transposed_dots<Arch, R, K>(qT, lanes, rows, d, dots);
            }
            if constexpr (K > 1)
                if (b < count)
                    listed_dots_in_blocks<Arch, R, K - 1>(qT, lanes, listed + b, count - b, d, dst, row_of);
        }

        /**
         * The running prefix sums q·k̂_j of R registers of query lanes, split over `sets`
         * interleaved accumulator sets: a delta row's consecutive stored elements go to
         * different sets, so their FMAs do not wait on each other (an FMA's latency is 4
         * cycles on Zen 4/5 and recent Intel cores). Two sets, the earlier form, cost 0.55
         * ns per stored element against 0.49 for four (Zen 5, d 128, 40% kept); what
         * limits four is instruction issue, about nine per element, not the FMAs.
         */
        template <class Arch, std::size_t R>
        struct prefix_sums
        {
            using reg = typename arch_traits<Arch>::reg;
            static constexpr std::size_t sets = 4;
            reg acc[sets][R];

            /// Starts over from the dots in `start` (R registers).
            void restart(reg const* start) noexcept
            {
                DELTAATTN_UNROLL
                for (std::size_t r = 0; r < R; ++r)
                {
                    acc[0][r] = start[r];
                    DELTAATTN_UNROLL
                    for (std::size_t k = 1; k < sets; ++k)
                        acc[k][r] = arch_traits<Arch>::zero();
                }
            }

            /// The prefix sum of register r.
            reg total(std::size_t r) const noexcept
            {
                using ops = arch_traits<Arch>;
                return ops::add(ops::add(acc[0][r], acc[1][r]), ops::add(acc[2][r], acc[3][r]));
            }
        };

        /// acc += qT[c] * value for the lowest channel c left in `bits` (offset by `base`),
        /// which it clears; advances `value`. qT holds R registers of lanes per channel (a
        /// constant stride: a shift, not a multiply, on the element's address).
        template <class Arch, std::size_t R>
        DELTAATTN_ALWAYS_INLINE void add_lowest_element(float const* qT, std::uint64_t& bits, std::size_t base, float const*& value,
                                                        typename arch_traits<Arch>::reg* acc) noexcept
        {
            using ops = arch_traits<Arch>;
            std::size_t const c = base + detail::lowest_bit(bits);
            bits &= bits - 1;
            auto const x = ops::broadcast(*value++);
            DELTAATTN_UNROLL
            for (std::size_t r = 0; r < R; ++r)
                acc[r] = ops::fma(ops::load(qT + (c * R + r) * ops::width), x, acc[r]);
        }

        /// Adds Σ_c qT[c] Δ[c] over the stored elements of a delta row to `sums`, the
        /// elements dealt round-robin to its sets. qT: R registers of lanes per channel.
        template <class Arch, std::size_t R>
        DELTAATTN_ALWAYS_INLINE void add_delta_row(float const* qT, delta_row const& row, std::size_t d, prefix_sums<Arch, R>& sums) noexcept
        {
            static_assert(prefix_sums<Arch, R>::sets == 4, "the loop below deals to four sets");
            // A local copy: through the reference the compiler cannot tell the accumulators
            // from the rows it reads, and kept every FMA's result in memory (a load and a
            // store per stored element, seen in the aarch64 build).
            prefix_sums<Arch, R> local = sums;
            float const* value = row.values;
            for (std::size_t word = 0; word < detail::mask_words(d); ++word)
            {
                std::uint64_t bits = row.mask[word];
                std::size_t const base = word * 64;
                while (bits != 0)
                {
                    add_lowest_element<Arch, R>(qT, bits, base, value, local.acc[0]);
                    if (bits == 0)
                        break;
                    add_lowest_element<Arch, R>(qT, bits, base, value, local.acc[1]);
                    if (bits == 0)
                        break;
                    add_lowest_element<Arch, R>(qT, bits, base, value, local.acc[2]);
                    if (bits == 0)
                        break;
                    add_lowest_element<Arch, R>(qT, bits, base, value, local.acc[3]);
                }
            }
            sums = local;
        }

        /// reference += the stored elements of `row` (padded storage: expand_padding),
        /// each at its channel: a register at a time where the arch expands registers.
        template <class Arch>
        void add_stored(delta_row const& row, float* reference, std::size_t d) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width;
            float const* value = row.values;
            std::size_t c = 0;
            if constexpr (expand_is_vectorized<Arch>())
                for (; c + w <= d; c += w)
                {
                    auto const bits = static_cast<std::uint32_t>(row.mask[c / 64] >> (c % 64));
                    ops::store(reference + c, ops::add(ops::load(reference + c), expand_group<Arch>(bits, value)));
                }
            for (; c < d; ++c)
                if (row.mask[c / 64] >> (c % 64) & 1)
                    reference[c] += *value++;
        }

        /// What SPEC.md §6.1 counts per lane for far row j: d for the base row v̂_{S-1}
        /// that starts the region (at j = S), then d for a keyframe, else nnz(Δv_j).
        template <class T>
        std::size_t reference_macs(basic_delta_cache<T> const& cache, std::size_t j, std::size_t sinks) noexcept
        {
            std::size_t const start = j == sinks ? cache.dim() : 0;
            return start + (cache.keyframe_row(j) ? cache.dim() : cache.delta(j).nnz);
        }

        /// reference = v̂_j, from v̂_{j-1} (or from nothing at j = sinks), in position
        /// order: the base row first at j = sinks, then keyframe j's row or the stored
        /// delta Δv_j. Returns reference_macs. `converted`: scratch for a float16 row.
        template <class Arch, class T>
        std::size_t advance_reference(basic_delta_cache<T> const& cache, std::size_t j, std::size_t sinks, float* reference, float* converted) noexcept
        {
            std::size_t const d = cache.dim();
            if (j == sinks)
                std::copy_n(cache.base_row(), d, reference);
            if (float const* keyframe = cache.keyframe_row(j))
                std::copy_n(keyframe, d, reference);
            else
                add_stored<Arch>(as_float_row<Arch>(cache.delta(j), converted), reference, d);
            return reference_macs(cache, j, sinks);
        }

        /// The far rows v̂_j of positions [sinks, end), each d floats, into `dst`, once for
        /// every query block of a prefill chunk. `reference`: d floats of scratch.
        template <class Arch, class T>
        void rebuild_far_values(basic_delta_cache<T> const& cache, std::size_t end, float* dst, float* reference, float* converted) noexcept
        {
            std::size_t const sinks = cache.options().sinks, d = cache.dim();
            for (std::size_t j = sinks; j < end; ++j)
            {
                advance_reference<Arch>(cache, j, sinks, reference, converted);
                std::copy_n(reference, d, dst + (j - sinks) * d);
            }
        }

        /// Copies (widens) a row of d values to `dst`, which holds d + expand_padding
        /// floats, and returns `dst`.
        template <class Arch, class T>
        float const* pack_row(T const* row, std::size_t d, float* dst) noexcept
        {
            if constexpr (std::is_same<T, float>::value)
                return std::copy_n(row, d, dst) - d;
            else
                return as_floats<Arch>(row, d, dst);
        }

        /// accumulate_lanes on C registers of channels from c: G x C accumulators, so each
        /// value register loaded feeds G FMAs and each broadcast probability C.
        template <class Arch, std::size_t G, std::size_t C, class V>
        void accumulate_channels(float* o, std::size_t lane0, float const* factor, float const* p, std::size_t lanes, V const* const* v,
                                 std::uint16_t const* keys, std::size_t count, std::size_t d, std::size_t c) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width;
            typename ops::reg a[G][C];
            DELTAATTN_UNROLL
            for (std::size_t g = 0; g < G; ++g)
            {
                auto const f = ops::broadcast(factor[lane0 + g]);
                DELTAATTN_UNROLL
                for (std::size_t u = 0; u < C; ++u)
                    a[g][u] = ops::mul(ops::load(o + (lane0 + g) * d + c + u * w), f);
            }
            for (std::size_t k = 0; k < count; ++k)
            {
                typename ops::reg vv[C];
                DELTAATTN_UNROLL
                for (std::size_t u = 0; u < C; ++u)
                    vv[u] = ops::load(v[keys[k]] + c + u * w);
                DELTAATTN_UNROLL
                for (std::size_t g = 0; g < G; ++g)
                {
                    auto const pb = ops::broadcast(p[keys[k] * lanes + lane0 + g]);
                    DELTAATTN_UNROLL
                    for (std::size_t u = 0; u < C; ++u)
                        a[g][u] = ops::fma(pb, vv[u], a[g][u]);
                }
            }
            DELTAATTN_UNROLL
            for (std::size_t g = 0; g < G; ++g)
                DELTAATTN_UNROLL
                for (std::size_t u = 0; u < C; ++u)
                    ops::store(o + (lane0 + g) * d + c + u * w, a[g][u]);
        }

        /// o[lane] = o[lane] * factor[lane] + Σ_k p[key_k][lane] v_{key_k} over the tile
        /// keys listed in `keys`, for G lanes at once: each value row chunk is loaded (and
        /// widened, for float16 rows) once for G accumulators. Each output element is one
        /// chain over the keys in order, however the channels are blocked.
        template <class Arch, std::size_t G, class V>
        void accumulate_lanes(float* o, std::size_t lane0, float const* factor, float const* p, std::size_t lanes, V const* const* v,
                              std::uint16_t const* keys, std::size_t count, std::size_t d) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width;
            // G x C accumulators in half the registers (the rest: C values, a broadcast).
            constexpr std::size_t C = std::max<std::size_t>(1, ops::registers / 2 / G);
            std::size_t c = 0;
            for (; c + C * w <= d; c += C * w)
                accumulate_channels<Arch, G, C>(o, lane0, factor, p, lanes, v, keys, count, d, c);
            for (; c + w <= d; c += w)
                accumulate_channels<Arch, G, 1>(o, lane0, factor, p, lanes, v, keys, count, d, c);
            for (; c < d; ++c)
                for (std::size_t g = 0; g < G; ++g)
                {
                    float a = o[(lane0 + g) * d + c] * factor[lane0 + g];
                    for (std::size_t k = 0; k < count; ++k)
                        a += p[keys[k] * lanes + lane0 + g] * to_float(v[keys[k]][c]);
                    o[(lane0 + g) * d + c] = a;
                }
        }

        /**
         * The tile's p·V when the far region's values are dense rows v̂_j (`far_rows`,
         * set for the keys the block's last position reads as far): per group of G lanes,
         * one pass over the tile's visible keys, each through its exact row v_j
         * (`exact_rows`) or its far row v̂_j, as the group's positions read it. (Two passes,
         * exact keys then far keys, loaded and stored every lane group's accumulators
         * twice per tile, and once for nothing in tiles of one kind.) A group whose lanes
         * disagree on a key's class (lanes of two positions either side of the window's
         * edge) is done lane by lane.
         */
        template <class Arch, std::size_t G>
        void accumulate_dense_far_values(float const* const* far_rows, std::size_t t0, std::size_t nt, std::size_t first, std::size_t heads,
                                         std::size_t nq, hybrid_split split, float const* factor, float const* p, std::size_t lanes,
                                         float const* const* exact_rows, std::uint16_t* listed, float* o, std::size_t d) noexcept
        {
            auto const is_far = [&](std::size_t j, std::size_t i) { return j >= split.sinks && j + split.window <= i; };
            float const* rows[block_scratch::tile];
            // Lists the tile's keys visible to position i, each with the row i reads;
            // returns the count.
            auto const list = [&](std::size_t i) {
                std::size_t const seen = i < t0 ? 0 : std::min(nt, i + 1 - t0);
                for (std::size_t jj = 0; jj < seen; ++jj)
                {
                    rows[jj] = is_far(t0 + jj, i) ? far_rows[jj] : exact_rows[jj];
                    listed[jj] = static_cast<std::uint16_t>(jj);
                }
                return seen;
            };
            for (std::size_t lane0 = 0; lane0 < nq; lane0 += G)
            {
                std::size_t const i_first = first + lane0 / heads, i_last = first + (std::min(lane0 + G, nq) - 1) / heads;
                // Every key of the tile of one class for every lane of the group that sees it:
                // far-ness grows with i, so compare the first lane that sees j with the last.
                bool uniform = true;
                for (std::size_t jj = 0; jj < nt && uniform && i_first != i_last; ++jj)
                {
                    std::size_t const j = t0 + jj;
                    uniform = j > i_last || is_far(j, std::max(j, i_first)) == is_far(j, i_last);
                }
                if (uniform)
                {
                    accumulate_lanes<Arch, G>(o, lane0, factor, p, lanes, rows, listed, list(i_last), d);
                    continue;
                }
                for (std::size_t lane = lane0; lane < std::min(lane0 + G, nq); ++lane)
                    accumulate_lanes<Arch, 1>(o, lane, factor, p, lanes, rows, listed, list(first + lane / heads), d);
            }
        }

        /// oT[c] *= factor for every channel c: oT holds R registers of lanes per channel.
        template <class Arch, std::size_t R>
        void rescale_transposed(float* oT, float const* factor, std::size_t d) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width;
            typename ops::reg f[R];
            DELTAATTN_UNROLL
            for (std::size_t r = 0; r < R; ++r)
                f[r] = ops::load(factor + r * w);
            for (std::size_t c = 0; c < d; ++c)
                DELTAATTN_UNROLL
                for (std::size_t r = 0; r < R; ++r)
                    ops::store(oT + (c * R + r) * w, ops::mul(f[r], ops::load(oT + (c * R + r) * w)));
        }

        /**
         * The far keys' share of a tile's p·V read from the delta rows themselves (SPEC.md
         * §6.1's suffix sums, lane by lane), for a query block whose lanes are in
         * registers: with v̂_j = v̂_{a-1} + Σ_{a<=m<=j} Δv_m,
         *   Σ_{j in [a, b]} p_j v̂_j = P(a) v̂_{a-1} + Σ_m P(m) Δv_m,  P(m) = Σ_{j in [m, b]} p_j,
         * restarted at keyframes (their dense row takes P(k)). The delta rows come as the
         * tile's columns (far_columns.hpp): per stored element one broadcast and R FMAs
         * into registers, where the dense rows v̂_j cost d / width FMAs per lane group and
         * key whatever they hold. oT ([channel][lane]) becomes oT * factor + the share,
         * one pass over it.
         * `p` ([key][lane], tile rows) holds on entry the probabilities of the lanes that
         * read key t0 + jj as far (0 elsewhere), far keys being jj in [a, b] (far-ness is a
         * prefix of the tile for every lane); it is overwritten with the suffix weights.
         * `far_rows`: the rebuilt v̂_j of positions [sinks, ...), for v̂_{a-1}.
         */
        template <class Arch, std::size_t R, class T>
        void accumulate_sparse_far_values(basic_delta_cache<T> const& cache, far_delta_columns const& columns, float const* far_rows, std::size_t t0,
                                          std::size_t a, std::size_t b, std::size_t sinks, float* p, float const* factor, float* oT) noexcept
        {
            using ops = arch_traits<Arch>;
            using reg = typename ops::reg;
            constexpr std::size_t w = ops::width, lanes = R * w, tile = block_scratch::tile;
            std::size_t const d = cache.dim();
            // The suffix weights, and the dense rows they multiply: keyframes, then
            // v̂_{a-1} unless a is a keyframe; weight of dense row k: p + dense_at[k] * lanes.
            float const* dense_rows[tile + 1];
            std::size_t dense_at[tile + 1], dense_count = 0;
            reg suffix[R];
            for (auto& s : suffix)
                s = ops::zero();
            for (std::size_t jj = b + 1; jj-- > a;)
            {
                float* const weight = p + jj * lanes;
                for (std::size_t r = 0; r < R; ++r)
                    ops::store(weight + r * w, suffix[r] = ops::add(suffix[r], ops::load(weight + r * w)));
                if (float const* keyframe = cache.keyframe_row(t0 + jj))
                {
                    dense_rows[dense_count] = keyframe;
                    dense_at[dense_count++] = jj;
                    for (auto& s : suffix)
                        s = ops::zero();
                }
            }
            if (!cache.keyframe_row(t0 + a))  // P(a) multiplies v̂_{a-1}
            {
                dense_rows[dense_count] = t0 + a == sinks ? cache.base_row() : far_rows + (t0 + a - 1 - sinks) * d;
                dense_at[dense_count++] = a;
            }
            // The tile's columns may hold rows outside [a, b] (far for later blocks only).
            std::fill(p, p + a * lanes, 0.0f);
            std::fill(p + (b + 1) * lanes, p + tile * lanes, 0.0f);
            reg f[R];
            DELTAATTN_UNROLL
            for (std::size_t r = 0; r < R; ++r)
                f[r] = ops::load(factor + r * w);
            std::size_t const t = t0 / tile;
            std::uint8_t const* const keys = columns.keys();
            float const* const values = columns.values();
            for (std::size_t c = 0; c < d; ++c)
            {
                reg acc[R];
                DELTAATTN_UNROLL
                for (std::size_t r = 0; r < R; ++r)
                    acc[r] = ops::mul(f[r], ops::load(oT + (c * R + r) * w));
                for (std::size_t k = 0; k < dense_count; ++k)
                {
                    auto const x = ops::broadcast(dense_rows[k][c]);
                    float const* const weight = p + dense_at[k] * lanes;
                    DELTAATTN_UNROLL
                    for (std::size_t r = 0; r < R; ++r)
                        acc[r] = ops::fma(ops::load(weight + r * w), x, acc[r]);
                }
                for (std::uint32_t e = columns.start(t, c), e1 = columns.start(t, c + 1); e < e1; ++e)
                {
                    auto const x = ops::broadcast(values[e]);
                    float const* const weight = p + keys[e] * lanes;
                    DELTAATTN_UNROLL
                    for (std::size_t r = 0; r < R; ++r)
                        acc[r] = ops::fma(ops::load(weight + r * w), x, acc[r]);
                }
                DELTAATTN_UNROLL
                for (std::size_t r = 0; r < R; ++r)
                    ops::store(oT + (c * R + r) * w, acc[r]);
            }
        }

        /// qT[c][lane] = the query of lane `lane` (position lane / heads, head lane % heads)
        /// at channel c, for `lanes` lanes (a multiple of the width): lanes past the
        /// block's queries copy lane 0's. A register of lanes at a time, `width` channels
        /// transposed in registers.
        template <class Arch>
        void transpose_queries(tensor_view<const float> q, std::size_t lanes, float* qT) noexcept
        {
            using ops = arch_traits<Arch>;
            constexpr std::size_t w = ops::width;
            std::size_t const nq = q.positions * q.heads, d = q.dim;
            for (std::size_t lane0 = 0; lane0 < lanes; lane0 += w)
            {
                float const* src[w];
                for (std::size_t i = 0; i < w; ++i)
                    src[i] = lane0 + i < nq ? q.at((lane0 + i) / q.heads, (lane0 + i) % q.heads) : q.at(0, 0);
                std::size_t c = 0;
                for (; c + w <= d; c += w)
                {
                    typename ops::reg x[w];
                    DELTAATTN_UNROLL
                    for (std::size_t i = 0; i < w; ++i)
                        x[i] = ops::load(src[i] + c);
                    ops::transpose(x);
                    DELTAATTN_UNROLL
                    for (std::size_t i = 0; i < w; ++i)
                        ops::store(qT + (c + i) * lanes + lane0, x[i]);
                }
                for (; c < d; ++c)
                    for (std::size_t i = 0; i < w; ++i)
                        qT[c * lanes + lane0 + i] = src[i][c];
            }
        }

        /**
         * Attention of one query block: `q` and `out` are P positions x g heads x d with
         * P * g <= R * width, the first at absolute position `first`. `keys` and `values`
         * are dense_rows or cached_rows; with cached values (SPEC.md §6.1) the delta
         * region's values come from their delta rows, rebuilt per tile. Adds the block's
         * work (SPEC.md §4) to `work`.
         */
        template <class Arch, std::size_t R, class Keys, class Values>
        void attend_block(Keys const& keys, tensor_view<const float> q, tensor_view<float> out, std::size_t first, Values const& values,
                          float scale, hybrid_split split, block_scratch& ws, attention_work& work)
        {
            static_assert(Keys::has_deltas || !Values::has_deltas, "delta values come with delta keys");
            // The far region's values are rows of their own (delta or reconstructed rows).
            constexpr bool far_values = Values::has_deltas || reads_dense_far_rows<Values>::value;
            using ops = arch_traits<Arch>;
            using reg = typename ops::reg;
            constexpr std::size_t w = ops::width, lanes = R * w, tile = block_scratch::tile;
            constexpr std::size_t G = lanes % 4 == 0 ? 4 : lanes % 2 == 0 ? 2 : 1;
            std::size_t const positions = q.positions, heads = q.heads, d = q.dim, nq = positions * heads;
            std::size_t const last = first + positions - 1;
            ws.reserve(lanes, d);

            float* const qT = ws.transposed.data();
            transpose_queries<Arch>(q, lanes, qT);
            float* const o = ws.lane_acc.data();
            std::fill(o, o + lanes * d, 0.0f);
            float* const s = ws.lane_scores.data();
            float* const oT = ws.value_weighted.data();  // delta values read sparsely: their share, [channel][lane]
            bool sparse_far_started = false;
            // A lane group that reads no exact row in a tile (far keys read sparsely) leaves
            // its accumulators alone: o_scale is what they must still be multiplied by, and
            // o_factor, the tile's factor times it, what the p·V below rescales them by.
            alignas(64) float o_scale[lanes], o_factor[lanes];
            std::fill(o_scale, o_scale + lanes, 1.0f);

            reg lane_index[R], row_max[R], row_sum[R], first_dot[R];
            prefix_sums<Arch, R> prefix;
            reg const neg_inf = ops::broadcast(-std::numeric_limits<float>::infinity()), alpha = ops::broadcast(scale);
            for (std::size_t r = 0; r < R; ++r)
            {
                lane_index[r] = ops::add(ops::iota(), ops::broadcast(static_cast<float>(r * w)));
                row_max[r] = neg_inf;
                row_sum[r] = first_dot[r] = ops::zero();
            }
            prefix.restart(first_dot);  // (restarted again at the first delta row)
            std::uint16_t* const listed = ws.value_keys.data();  // a tile's keys of one kind
            std::uint64_t macs = 0, exact_macs = 0, value_macs = 0;

            for (std::size_t t0 = 0; t0 <= last; t0 += tile)
            {
                std::size_t const nt = std::min(tile, last + 1 - t0);
                // Key j is masked for the block's positions below p_visible[jj], exact below
                // p_delta[jj], delta from there on.
                std::size_t p_visible[tile], p_delta[tile];
                std::size_t exact_count = 0;
                for (std::size_t jj = 0; jj < nt; ++jj)
                {
                    std::size_t const j = t0 + jj;
                    p_visible[jj] = j > first ? j - first : 0;
                    p_delta[jj] = positions;
                    if (Keys::has_deltas && j >= split.sinks && split.window <= last - j)
                        p_delta[jj] = std::max(p_visible[jj], j + split.window > first ? j + split.window - first : 0);
                    if (p_visible[jj] < p_delta[jj])
                    {
                        listed[exact_count++] = static_cast<std::uint16_t>(jj);
                        exact_macs += (p_delta[jj] - p_visible[jj]) * heads * d;
                    }
                }
                // The dots of the `count` keys listed, each into its row of `dst`;
                // row_of(jj, k): key jj's row as floats, widened into slot k if it must be.
                auto const listed_dots = [&](std::size_t count, float* dst, auto const& row_of) {
                    listed_dots_in_blocks<Arch, R, score_keys<Arch, R>()>(qT, lanes, listed, count, d, dst, row_of);
                };
                // The exact dots q·k_j, into the score rows.
                listed_dots(exact_count, s, [&](std::size_t jj, std::size_t k) {
                    return as_floats<Arch>(keys.exact_row(t0 + jj), d, ws.converted_keys.data() + k * ws.converted_stride());
                });
                if (t0 == 0)
                    for (std::size_t r = 0; r < R; ++r)
                        first_dot[r] = ops::load(s + r * w);  // = q·k̂_0: the prefix base when sinks == 1
                // Far keys that are dense rows k̂_j (a quantized cache's reconstruction) carry
                // no prefix: their dots q·k̂_j go through the same micro-kernel, K keys at a
                // time, into rows of their own (a key can be exact for some lanes, far for
                // others). (Run one key at a time, as they were, each query load fed a
                // single FMA.)
                float* const far_s = ws.far_scores.data();
                if constexpr (reads_dense_far_rows<Keys>::value)
                {
                    std::size_t far_count = 0;
                    for (std::size_t jj = 0; jj < nt; ++jj)
                        if (p_delta[jj] < positions)
                            listed[far_count++] = static_cast<std::uint16_t>(jj);
                    listed_dots(far_count, far_s, [&](std::size_t jj, std::size_t) { return keys.cache->keyframe_row(t0 + jj); });
                }
                else if constexpr (Keys::has_deltas)
                {
                    // The delta keys' dots q·k̂_j as prefix sums over the tile, into far_s
                    // like the dense far rows' dots. A loop of their own, so that the sums
                    // stay in registers: updated key by key inside the tile's main loop,
                    // they went to memory and back for every key.
                    auto const& cache = *keys.cache;
                    prefix_sums<Arch, R> sums = prefix;
                    for (std::size_t jj = 0; jj < nt; ++jj)
                    {
                        if (p_delta[jj] >= positions)
                            continue;
                        std::size_t const j = t0 + jj, count = (positions - p_delta[jj]) * heads;
                        if (j == split.sinks)
                        {
                            reg base[R];
                            if (split.sinks == 1)
                                std::copy(first_dot, first_dot + R, base);
                            else
                                transposed_dot<Arch, R>(qT, lanes, cache.base_row(), d, base);
                            sums.restart(base);
                            if (split.sinks > 1)
                                macs += count * d;
                        }
                        if (float const* keyframe = cache.keyframe_row(j))
                        {
                            reg restart[R];
                            transposed_dot<Arch, R>(qT, lanes, keyframe, d, restart);
                            sums.restart(restart);
                            macs += count * d;
                        }
                        else
                        {
                            delta_row const row = as_float_row<Arch>(cache.delta(j), ws.converted.data());
                            add_delta_row<Arch, R>(qT, row, d, sums);
                            macs += count * row.nnz;
                        }
                        DELTAATTN_UNROLL
                        for (std::size_t r = 0; r < R; ++r)
                            ops::store(far_s + jj * lanes + r * w, sums.total(r));
                    }
                    prefix = sums;
                }

                for (std::size_t jj = 0; jj < nt; ++jj)
                {
                    std::size_t const j = t0 + jj;
                    // The next tile's exact rows, which sit a page apart in a token-major
                    // cache: the hardware prefetchers stop at page boundaries.
                    // A row the block reads exactly: every key's, unless the arm has far
                    // rows of its own (then the sinks' and the window's). (The value rows of
                    // dense and K-only prefill went unprefetched until 2026-12-03: their
                    // tile copies waited on L3, 6-11% of a dense prefill's samples.)
                    std::size_t const ahead = j + tile;
                    if (ahead <= last)
                    {
                        bool const exact_for_block = ahead < split.sinks || ahead + split.window > first;
                        if (!Keys::has_deltas || exact_for_block)
                            prefetch_far(keys.exact_row(ahead), d * sizeof(*keys.exact_row(ahead)));
                        if (!far_values || exact_for_block)
                            prefetch_far(values.exact_row(ahead), d * sizeof(*values.exact_row(ahead)));
                    }
                    if constexpr (reads_dense_far_rows<Keys>::value)
                    {
                        // d per far key, the dots the batched pass above performed (no base
                        // row: a dense k̂_j needs no prefix); a decode step counts the same.
                        if (p_delta[jj] < positions)
                            macs += (positions - p_delta[jj]) * heads * d;
                    }
                    // Lanes below p_visible * heads are masked, below p_delta * heads exact, the rest delta.
                    reg const masked_end = ops::broadcast(static_cast<float>(p_visible[jj] * heads));
                    reg const exact_end = ops::broadcast(static_cast<float>(p_delta[jj] * heads));
                    bool const has_exact = p_visible[jj] < p_delta[jj], has_delta = p_delta[jj] < positions;
                    for (std::size_t r = 0; r < R; ++r)
                    {
                        reg const delta_score = has_delta ? ops::mul(alpha, ops::load(far_s + jj * lanes + r * w)) : ops::zero();
                        reg const exact = has_exact ? ops::load(s + jj * lanes + r * w) : ops::zero();
                        reg score = ops::select(ops::less(lane_index[r], exact_end), ops::mul(alpha, exact), delta_score);
                        score = ops::select(ops::less(lane_index[r], masked_end), neg_inf, score);
                        ops::store(s + jj * lanes + r * w, score);
                    }
                }

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
                    ops::store(o_factor + r * w, ops::mul(factor, ops::load(o_scale + r * w)));
                    ops::store(o_scale + r * w, ops::broadcast(1.0f));
                }

                float const* factor = ws.lane_factor.data();
                // Far values (the keys some lane reads in its delta region) as dense rows v̂_j:
                // rebuilt here from the delta rows, in position order (SPEC.md §6.1:
                // v̂_S = v̂_{S-1} + Δv_S, ..., restarted at keyframes), or a quantized cache's
                // reconstructed rows. Then the p·V of every key is the dense micro-kernel's.
                float const* far_rows[tile] = {};
                std::size_t far_first = tile, far_last = 0;  // the tile's far keys, if any: [far_first, far_last]
                if constexpr (Values::has_deltas)
                {
                    auto const& cache = *values.cache;
                    for (std::size_t jj = 0; jj < nt; ++jj)
                    {
                        std::size_t const j = t0 + jj;
                        if (j < split.sinks || split.window > last - j)
                            continue;  // no lane reads v̂_j
                        far_first = std::min(far_first, jj);
                        far_last = jj;
                        // Lanes [delta_from, nq) have key j in their delta region.
                        std::size_t const delta_from = std::min(nq, (j + split.window > first ? j + split.window - first : 0) * heads);
                        std::size_t const count = nq - delta_from;
                        if (values.far)  // rebuilt for the whole chunk already (rebuild_far_values)
                        {
                            value_macs += count * reference_macs(cache, j, split.sinks);
                            far_rows[jj] = values.far + (j - split.sinks) * d;
                            continue;
                        }
                        float* const reference = ws.value_reference.data();
                        value_macs += count * advance_reference<Arch>(cache, j, split.sinks, reference, ws.converted.data());
                        far_rows[jj] = std::copy_n(reference, d, ws.far_tile.data() + jj * d) - d;
                    }
                }
                else if constexpr (reads_dense_far_rows<Values>::value)
                {
                    for (std::size_t jj = 0; jj < nt; ++jj)
                        if (t0 + jj >= split.sinks && split.window <= last - (t0 + jj))
                            far_rows[jj] = values.far_row(t0 + jj);
                }

                // Exact values: the tile keys some lane of the block reads v_j for (all
                // visible keys, unless the far values are rows of their own). Copied
                // (widened) into a contiguous tile first: every lane group reads each row,
                // and rows of a token-major cache sit a few KiB apart, so a tile of them maps
                // to a few L1 sets and was read from L2 by every group.
                float const* value_rows[tile];
                for (std::size_t jj = 0; jj < nt; ++jj)
                {
                    std::size_t const j = t0 + jj;
                    bool const block_reads = !far_values || j < split.sinks || j + split.window > first;
                    value_rows[jj] = block_reads ? pack_row<Arch>(values.exact_row(j), d, ws.value_tile.data() + jj * d) : nullptr;
                }
                bool read_sparsely = false;  // the far values of this tile, from their delta rows
                if constexpr (Values::has_deltas)
                {
                    read_sparsely =
                        values.far_columns && far_first <= far_last && values.far_columns->kept(t0 / tile) <= sparse_values_max_kept;
                    if (read_sparsely)
                    {
                        // The far lanes' probabilities move to p_far: the lane groups below
                        // then read the exact rows only.
                        float* const p_far = ws.far_scores.data();
                        for (std::size_t jj = far_first; jj <= far_last; ++jj)
                        {
                            reg const exact_end = ops::broadcast(static_cast<float>(p_delta[jj] * heads));
                            for (std::size_t r = 0; r < R; ++r)
                            {
                                reg const p = ops::load(s + jj * lanes + r * w);
                                auto const exact = ops::less(lane_index[r], exact_end);
                                ops::store(s + jj * lanes + r * w, ops::select(exact, p, ops::zero()));
                                ops::store(p_far + jj * lanes + r * w, ops::select(exact, ops::zero(), p));
                            }
                        }
                        if (!sparse_far_started)
                            std::fill(oT, oT + d * lanes, 0.0f);
                        accumulate_sparse_far_values<Arch, R>(*values.cache, *values.far_columns, values.far, t0, far_first, far_last, split.sinks, p_far,
                                                              factor, oT);
                        sparse_far_started = true;
                    }
                    else if (sparse_far_started)  // every tile moves the softmax's shift
                        rescale_transposed<Arch, R>(oT, factor, d);
                }
                if constexpr (far_values)
                    if (!read_sparsely)
                    {
                        accumulate_dense_far_values<Arch, G>(far_rows, t0, nt, first, heads, nq, split, o_factor, s, lanes, value_rows, listed, o, d);
                        continue;
                    }
                for (std::size_t lane0 = 0; lane0 < nq; lane0 += G)
                {
                    // Keys past the group's last position have p = 0: skip them.
                    std::size_t const i_last = first + (std::min(lane0 + G, nq) - 1) / heads, i_first = first + lane0 / heads;
                    std::size_t const seen = i_last < t0 ? 0 : std::min(nt, i_last + 1 - t0);
                    // The keys read as exact rows by some lane: all, or with delta values
                    // the sinks and the keys from i_first - window + 1 on.
                    std::size_t count = 0, sink_end = seen, window_from = seen;
                    if constexpr (Values::has_deltas)
                    {
                        sink_end = std::min(seen, split.sinks > t0 ? split.sinks - t0 : 0);
                        window_from = std::max(sink_end, i_first + 1 > t0 + split.window ? i_first + 1 - split.window - t0 : 0);
                    }
                    for (std::size_t jj = 0; jj < sink_end; ++jj)
                        listed[count++] = static_cast<std::uint16_t>(jj);
                    for (std::size_t jj = window_from; jj < seen; ++jj)
                        listed[count++] = static_cast<std::uint16_t>(jj);
                    if (count == 0)
                        std::copy_n(o_factor + lane0, G, o_scale + lane0);
                    else
                        accumulate_lanes<Arch, G>(o, lane0, o_factor, s, lanes, value_rows, listed, count, d);
                }
            }

            for (std::size_t lane = 0; lane < nq; ++lane)
                if (o_scale[lane] != 1.0f)
                    for (std::size_t c = 0; c < d; ++c)
                        o[lane * d + c] *= o_scale[lane];

            if (sparse_far_started)  // the far values' share, [channel][lane]
                for (std::size_t c = 0; c < d; ++c)
                    for (std::size_t lane = 0; lane < nq; ++lane)
                        o[lane * d + c] += oT[c * lanes + lane];
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
