/**
 * @file kernels/channel_deltas.hpp
 * Delta rows of a decode step processed along channels, a register of channels at a
 * time: each register of a compressed row is expanded (AVX-512: a load, then vexpandps
 * or vpermps, as kernels/arch/expand_form.hpp chooses for the CPU)
 * and multiplies every head's query (keys) or suffix weight (values). Worth it only
 * where the expansion is one instruction; elsewhere the decode kernel keeps the heads
 * in lanes and pays per stored element.
 */
#ifndef DELTAATTN_KERNELS_CHANNEL_DELTAS_HPP
#define DELTAATTN_KERNELS_CHANNEL_DELTAS_HPP

#include "../arch.hpp"
#include "../delta/delta_key_cache.hpp"
#include "../detail/bits.hpp"
#include "arch/expand.hpp"
#include "arch/expand_form.hpp"
#include "convert.hpp"
#include "row_ops.hpp"
#include "workspace.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace deltaattn
{
    namespace kernels
    {
        /// Can this arch expand a register of a compressed row in a few instructions
        /// (AVX-512: a load, then vexpandps or vpermps; AVX2: a load, a table entry,
        /// vpermps and a blend)? Then the channel-parallel delta path of a decode step
        /// beats the lane path, which pays a bit scan, an address and a broadcast per
        /// stored element. On AVX2 (an AVX2 build on Zen 4, d 128, GQA 4) the K+V step at
        /// 60% delta sparsity ran 1.5-2x faster by channel, though the by-word kernels'
        /// queries and accumulators outnumber its 16 registers (the spills are L1 loads
        /// and stores; kernels re-walking rows in chunks that fit were slower at n 16384).
        /// With a scalar expand loop it cost ~1.7x the instructions; NEON's 4-lane `tbl`
        /// kernel is not measured on hardware here, so NEON keeps the lane path.
        template <class Arch>
        constexpr bool has_fast_expand() noexcept
        {
            return expand_isa_of<Arch>() == expand_isa::avx512 || expand_isa_of<Arch>() == expand_isa::avx2;
        }

        /// Can this translation unit run the permute form (expand_form.hpp) for Arch?
        template <class Arch>
        constexpr bool has_permute_expand() noexcept
        {
#if defined(__AVX512VPOPCNTDQ__)
            return expand_isa_of<Arch>() == expand_isa::avx512;
#else
            return false;
#endif
        }

        /// Does expand_lanes take values stored as T fast, or should a row be widened first?
        /// (Halves go through the generic loop where not.)
        template <class Arch, class T>
        constexpr bool expands_stored() noexcept
        {
#if defined(__F16C__)
            constexpr bool widens_halves = has_fast_expand<Arch>();  // (AVX2's kernel widens with F16C)
#else
            constexpr bool widens_halves = expand_isa_of<Arch>() == expand_isa::avx512;
#endif
            return std::is_same<T, float>::value || widens_halves;
        }

        /// One register of a compressed row, stored as float or float16: lane l = the next
        /// packed value (widened) if bit l of `bits` is set, else 0; advances `packed`
        /// past the values used. On AVX-512, by `Form` (vexpandps where this TU cannot
        /// run permute). May read expand_padding values past the row's last packed
        /// value: the delta caches pad their packed storage, and so does the workspace's
        /// converted row.
        template <class Arch, expand_form Form, class T>
        typename arch_traits<Arch>::reg expand_lanes(std::uint32_t bits, T const*& packed) noexcept
        {
            if constexpr (!has_fast_expand<Arch>() || !expands_stored<Arch, T>())
                return expand_kernel<expand_isa::generic>::template run<Arch>(bits, packed);
            else if constexpr (Form == expand_form::permute && has_permute_expand<Arch>())
                return expand_kernel<expand_isa_of<Arch>()>::template run_permute<Arch>(bits, packed);
            else
                return expand_kernel<expand_isa_of<Arch>()>::template run<Arch>(bits, packed);
        }

        /// expand_lanes of group g (of 64 / width) of the 64-bit mask word at `word`, for
        /// kernels that walk a row's words. The permute form reads the group's bits from
        /// memory itself (expand_avx512.hpp, run_permute_in_word).
        template <class Arch, expand_form Form, class T>
        typename arch_traits<Arch>::reg expand_word_group(std::uint64_t const* word, std::size_t g, T const*& packed) noexcept
        {
            constexpr std::size_t w = arch_traits<Arch>::width;
            if constexpr (Form == expand_form::permute && has_permute_expand<Arch>() && expands_stored<Arch, T>())
                return expand_kernel<expand_isa_of<Arch>()>::template run_permute_in_word<Arch>(word, static_cast<unsigned>(g), packed);
            else
                return expand_lanes<Arch, Form>(static_cast<std::uint32_t>(*word >> (g * w)) & ((1u << w) - 1u), packed);
        }

        /// Calls f(std::integral_constant<expand_form, F>{}) with the form this process
        /// uses for Arch: detected_expand_form where the TU can run both, else vexpandps.
        template <class Arch, class F>
        decltype(auto) with_expand_form(F&& f)
        {
            if constexpr (has_permute_expand<Arch>())
                if (detected_expand_form<Arch>() == expand_form::permute)
                    return f(std::integral_constant<expand_form, expand_form::permute>{});
            return f(std::integral_constant<expand_form, expand_form::vexpandps>{});
        }

        /// A delta row as the channel kernels read it: as stored where expand_lanes widens
        /// its values itself, else widened into `buffer` first.
        template <class Arch, class T>
        auto expandable_row(basic_delta_row<T> const& row, float* buffer) noexcept
        {
            if constexpr (expands_stored<Arch, T>())
                return row;
            else
                return as_float_row<Arch>(row, buffer);
        }

        /**
         * Raw dots q_h·k̂_j of a decode step for the delta keys j in [first, end), along
         * channels. Each row's dot with its delta, q_h·Δk_j, is a register of products per
         * head (registers of the row that hold no update are skipped), started afresh per
         * row so that rows do not wait on each other; `width` rows' registers are reduced
         * together (one transpose-add), and the prefix sum q_h·k̂_j = q_h·k̂_{j-1} + q_h·Δk_j
         * runs on the scalars. It starts at `start[h]` (the base row's dots) and restarts
         * at keyframes. Writes scores[h * stride + j]; returns the QK work of the keyframe
         * dots and delta rows. `converted` is scratch for a row's packed values widened
         * from float16 (dim floats).
         */
        template <class Arch, expand_form Form, std::size_t H, class Cache>
        std::uint64_t channel_delta_scores_by(Cache const& cache, float const* const* q, std::size_t heads, float const* start, std::size_t first,
                                              std::size_t end, float* scores, std::size_t stride, float* converted) noexcept
        {
            static_assert(H == 2 || H == 4, "heads per pass: 2 or 4 (spelled out below)");
            using ops = arch_traits<Arch>;
            using reg = typename ops::reg;
            constexpr std::size_t w = ops::width;
            std::size_t const d = cache.dim(), full = d / w * w;
            std::uint64_t macs = 0;
            for (std::size_t h0 = 0; h0 < heads; h0 += H)
            {
                std::size_t const hn = std::min(H, heads - h0);
                float const* qh[H];
                float running[H];  // q_h·k̂ of the last row flushed
                alignas(64) float aligned_q[H][256];
                for (std::size_t h = 0; h < H; ++h)
                {
                    qh[h] = q[h0 + (h < hn ? h : 0)];
                    running[h] = start[h0 + (h < hn ? h : 0)];
                    if (d <= 256)
                    {
                        std::copy(qh[h], qh[h] + d, aligned_q[h]);
                        qh[h] = aligned_q[h];
                    }
                }
                // Per pending row: its delta products (a register per head), the dots of
                // channels past the last full register, and, at a keyframe, the dots the
                // prefix restarts at.
                reg products[H][w];
                float tail[w][H];
                float restart[w][H];
                bool restarts[w];
                std::size_t pending = 0, pending_first = first;
                auto const flush = [&] {
                    for (std::size_t h = 0; h < hn; ++h)
                    {
                        for (std::size_t k = pending; k < w; ++k)
                            products[h][k] = ops::zero();
                        alignas(64) float dots[w];
                        ops::store(dots, ops::reduce_add_rows(products[h]));
                        float* out = scores + (h0 + h) * stride + pending_first;
                        float r = running[h];
                        for (std::size_t k = 0; k < pending; ++k)
                            out[k] = r = restarts[k] ? restart[k][h] : r + dots[k] + tail[k][h];
                        running[h] = r;
                    }
                    pending_first += pending;
                    pending = 0;
                };
                std::size_t keyframe_at = cache.next_keyframe(first);
                for (std::size_t j = first; j < end; ++j)
                {
                    restarts[pending] = j == keyframe_at;
                    if (restarts[pending])
                    {
                        float const* keyframe = cache.keyframe_row(j);
                        for (std::size_t h = 0; h < H; ++h)
                        {
                            products[h][pending] = ops::zero();
                            restart[pending][h] = row_dot<Arch>(qh[h], keyframe, d);
                        }
                        macs += hn * d;
                        keyframe_at = cache.next_keyframe(j + 1);
                    }
                    else
                    {
                        auto const row = expandable_row<Arch>(cache.delta(j), converted);
                        macs += hn * row.nnz;
                        auto const* value = row.values;
                        reg acc[H];
                        for (auto& a : acc)
                            a = ops::zero();
                        for (std::size_t c = 0; c < full; c += w)
                        {
                            auto const bits = static_cast<std::uint32_t>(detail::mask_bits(row.mask, c, w));
                            reg const delta = expand_lanes<Arch, Form>(bits, value);  // empty registers too (channel_delta_scores_by_words)
                            // Spelled out: GCC keeps a loop's `reg acc[H]` in memory here.
                            acc[0] = ops::fma(ops::load(qh[0] + c), delta, acc[0]);
                            acc[1] = ops::fma(ops::load(qh[1] + c), delta, acc[1]);
                            if constexpr (H == 4)
                            {
                                acc[2] = ops::fma(ops::load(qh[2] + c), delta, acc[2]);
                                acc[3] = ops::fma(ops::load(qh[3] + c), delta, acc[3]);
                            }
                        }
                        for (std::size_t h = 0; h < H; ++h)
                        {
                            products[h][pending] = acc[h];
                            tail[pending][h] = 0.0f;
                        }
                        for (std::size_t c = full; c < d; ++c)  // channels past the last full register
                            if (row.mask[c / 64] >> (c % 64) & 1u)
                            {
                                float const v = to_float(*value++);
                                for (std::size_t h = 0; h < H; ++h)
                                    tail[pending][h] += qh[h][c] * v;
                            }
                    }
                    if (++pending == w)
                        flush();
                }
                flush();
            }
            return macs;
        }

        /**
         * x[i] = base + x[0] + ... + x[i] for i < n, and base becomes the last sum. As four
         * interleaved chains over the quarters, joined by a second pass: one serial chain
         * waits an add's latency per row, which was a tenth of a d-64 step's delta scores.
         */
        inline void add_prefix_sums(float* x, std::size_t n, float& base) noexcept
        {
            std::size_t const quarter = n / 4;
            if (quarter < 8)
            {
                for (std::size_t i = 0; i < n; ++i)
                    x[i] = base += x[i];
                return;
            }
            float* const part[4] = {x, x + quarter, x + 2 * quarter, x + 3 * quarter};
            float sum[4] = {base, 0.0f, 0.0f, 0.0f};
            for (std::size_t i = 0; i < quarter; ++i)
            {
                part[0][i] = sum[0] += part[0][i];
                part[1][i] = sum[1] += part[1][i];
                part[2][i] = sum[2] += part[2][i];
                part[3][i] = sum[3] += part[3][i];
            }
            for (std::size_t i = quarter; i < n - 3 * quarter; ++i)
                part[3][i] = sum[3] += part[3][i];
            float carry = sum[0];
            for (std::size_t k = 1; k < 4; ++k)
            {
                std::size_t const length = k < 3 ? quarter : n - 3 * quarter;
                for (std::size_t i = 0; i < length; ++i)
                    part[k][i] += carry;
                carry += sum[k];
            }
            base = carry;
        }

        /// Rows per block of the by-word delta kernels: every mask word of a block is done
        /// before the next block, so the block's rows (about 15 KiB of fp32 keys at 60%
        /// delta sparsity, d 128) are read from memory once and from L1 by the later words.
        constexpr std::size_t delta_block_rows = 64;

        /// How many rows ahead the by-word kernels pull a delta row into L1, as they reach
        /// its first word. Without it a profile of the K+V step (Zen 4) put ~30% of the
        /// key kernel's samples on the instructions waiting for a row's first packed
        /// values: the hardware prefetchers did not keep ahead of three streams per head
        /// (masks, offsets, values). 8, 16 and 32 rows measured alike, 16 best by a little.
        constexpr std::size_t delta_ahead = 16;

        /**
         * How many rows ahead the by-word kernels also pull a delta row's packed values
         * into L2: two blocks, as the dense step pulls its rows two blocks ahead. The L1
         * prefetch alone comes too late for rows that stream from memory: over 16384 rows
         * of d 128 at 60% delta sparsity rotated through 64 copies (Zen 4), the fp32 key
         * kernel took 28-30 ns a row against 20 ns from L3; 128 or 256 rows ahead in L2,
         * 22-23 ns, and the value kernel 22 -> 19-20 ns. 64 rows ahead was no better than
         * none, 1024 worse. (fp16 rows, half the bytes, were at their arithmetic's rate
         * already: 19-20 ns a row either way.)
         */
        constexpr std::size_t delta_far = 2 * delta_block_rows;

        /// Pulls delta row j's packed values into L1.
        template <class Cache>
        void prefetch_delta_row(Cache const& cache, std::size_t j) noexcept
        {
            auto const row = cache.delta(j);
            prefetch(row.values, row.nnz * sizeof(*row.values));
        }

        /// Pulls delta row j's packed values into L2.
        template <class Cache>
        void prefetch_delta_row_far(Cache const& cache, std::size_t j) noexcept
        {
            auto const row = cache.delta(j);
            prefetch_far(row.values, row.nnz * sizeof(*row.values));
        }

        /// The first packed value of a row's mask word `word`: past the values of the
        /// words before it.
        template <class T>
        T const* word_values(basic_delta_row<T> const& row, std::size_t word) noexcept
        {
            T const* value = row.values;
            for (std::size_t before = 0; before < word; ++before)
                value += detail::popcount64(row.mask[before]);
            return value;
        }

        /// Registers of channels in mask word `word` of a d-channel row: 64 / width, fewer
        /// in the last word where d is not a multiple of 64 (d 96: 4 and 2 on AVX-512).
        template <class Arch>
        std::size_t live_groups(std::size_t d, std::size_t word) noexcept
        {
            constexpr std::size_t w = arch_traits<Arch>::width;
            return std::min(64 / w, (d - word * 64) / w);
        }

        /// f(std::false_type) for a whole word (every group live), f(std::true_type) for a
        /// partial last word: the kernels test `g < live` only where it can fail.
        template <class F>
        decltype(auto) with_word_kind(bool partial, F&& f)
        {
            if (partial)
                return f(std::true_type{});
            return f(std::false_type{});
        }

        /**
         * As channel_delta_scores_by, a 64-channel mask word at a time, for d a multiple of
         * the register width (a partial last word where d is not a multiple of 64):
         * the pass's queries for one word stay in registers (H x 64 / width of them; AVX2
         * spills some) while every row's registers of that word are expanded and
         * multiplied, as the values do in channel_delta_values_by. The rows go in blocks
         * of delta_block_rows, every word of a block before the next block: the words
         * after the first read the block's rows from L1, and add into the row's products
         * of the words before, so a row's products are reduced once (`width` rows at a
         * time, one transpose-add), not once per word. A last pass over the rows turns
         * the dots q_h·Δk_j into prefix sums in scores[h * stride + j], restarting at
         * keyframes.
         */
        template <class Arch, expand_form Form, std::size_t H, class Cache>
        std::uint64_t channel_delta_scores_by_words(Cache const& cache, float const* const* q, std::size_t heads, float const* start,
                                                    std::size_t first, std::size_t end, float* scores, std::size_t stride) noexcept
        {
            static_assert(H == 2 || H == 4, "heads per pass: 2 or 4");
            using ops = arch_traits<Arch>;
            using reg = typename ops::reg;
            constexpr std::size_t w = ops::width, groups = 64 / w, rows = delta_block_rows;
            static_assert(64 % w == 0 && rows % w == 0, "a mask word holds whole registers; a block, whole reductions");
            std::size_t const d = cache.dim(), words = (d + 63) / 64;
            std::uint64_t macs = 0;
            reg products[H][rows];  // per head, each row's products summed over the words so far
            for (std::size_t h0 = 0; h0 < heads; h0 += H)
            {
                std::size_t const hn = std::min(H, heads - h0);
                float const* qh[H];
                for (std::size_t h = 0; h < H; ++h)
                    qh[h] = q[h0 + (h < hn ? h : 0)];
                for (std::size_t b0 = first; b0 < end; b0 += rows)
                {
                    std::size_t const b1 = std::min(end, b0 + rows);
                    for (std::size_t word = 0; word < words; ++word)
                      with_word_kind(live_groups<Arch>(d, word) < groups, [&](auto partial) {
                        std::size_t const c0 = word * 64, live = live_groups<Arch>(d, word);
                        reg qw[H][groups];
                        DELTAATTN_UNROLL
                        for (std::size_t h = 0; h < H; ++h)
                            DELTAATTN_UNROLL
                            for (std::size_t g = 0; g < groups; ++g)
                                qw[h][g] = decltype(partial)::value && g >= live ? ops::zero() : ops::load(qh[h] + c0 + g * w);
                        std::size_t keyframe_at = cache.next_keyframe(b0);
                        for (std::size_t j = b0; j < b1; ++j)
                        {
                            std::size_t const i = j - b0;
                            reg acc[H];
                            DELTAATTN_UNROLL
                            for (std::size_t h = 0; h < H; ++h)
                                acc[h] = word == 0 ? ops::zero() : products[h][i];
                            if (word == 0 && j + delta_ahead < end)
                            {
                                prefetch_delta_row(cache, j + delta_ahead);
                                if (j + delta_far < end)
                                    prefetch_delta_row_far(cache, j + delta_far);
                            }
                            if (j == keyframe_at)  // restarts the prefix below: no delta to add
                                keyframe_at = cache.next_keyframe(j + 1);
                            else
                            {
                                auto const row = cache.delta(j);
                                macs += word == 0 ? hn * row.nnz : 0;
                                auto const* value = word_values(row, word);
                                DELTAATTN_UNROLL
                                for (std::size_t g = 0; g < groups; ++g)
                                    if (!decltype(partial)::value || g < live)  // (not a break: clang would not unroll)
                                    {
                                        // Empty groups are expanded too (to zeros): at 80% delta
                                        // sparsity 3% of them are empty, and a branch that skipped them
                                        // mispredicted enough to make the step slower than at 60%.
                                        reg const delta = expand_word_group<Arch, Form>(row.mask + word, g, value);
                                        DELTAATTN_UNROLL
                                        for (std::size_t h = 0; h < H; ++h)
                                            acc[h] = ops::fma(qw[h][g], delta, acc[h]);
                                    }
                            }
                            DELTAATTN_UNROLL
                            for (std::size_t h = 0; h < H; ++h)
                                products[h][i] = acc[h];
                        }
                      });
                    // The block's dots, `width` rows per transpose-add.
                    std::size_t const count = b1 - b0;
                    for (std::size_t h = 0; h < hn; ++h)
                    {
                        std::fill(products[h] + count, products[h] + (count + w - 1) / w * w, ops::zero());
                        for (std::size_t i0 = 0; i0 < count; i0 += w)
                            store_first<Arch>(scores + (h0 + h) * stride + b0 + i0, ops::reduce_add_rows(products[h] + i0), std::min(w, count - i0));
                    }
                }
                // The prefix sums, restarting at keyframes.
                for (std::size_t h = 0; h < hn; ++h)
                {
                    float running = start[h0 + h];
                    float* row_scores = scores + (h0 + h) * stride;
                    for (std::size_t j = first; j < end;)
                    {
                        std::size_t const keyframe_at = cache.next_keyframe(j), segment_end = std::min(end, keyframe_at);
                        add_prefix_sums(row_scores + j, segment_end - j, running);
                        if (segment_end == end)
                            break;
                        running = row_scores[keyframe_at] = row_dot<Arch>(qh[h], cache.keyframe_row(keyframe_at), d);
                        macs += d;
                        j = keyframe_at + 1;
                    }
                }
            }
            return macs;
        }

        /// Can the by-word kernels take rows of d channels on Arch (whole registers)?
        template <class Arch>
        constexpr bool by_words(std::size_t d) noexcept
        {
            return d % arch_traits<Arch>::width == 0;
        }

        /// As above (by mask words where by_words); passes of four heads, or of two where
        /// a KV head has no more (GQA 2 and MHA would otherwise spend half of each pass's
        /// FMAs on padding).
        template <class Arch, expand_form Form, class Cache>
        std::uint64_t channel_delta_scores(Cache const& cache, float const* const* q, std::size_t heads, float const* start, std::size_t first,
                                           std::size_t end, float* scores, std::size_t stride, float* converted) noexcept
        {
            if (by_words<Arch>(cache.dim()) && expands_stored<Arch, typename Cache::element_type>())
            {
                if (heads <= 2)
                    return channel_delta_scores_by_words<Arch, Form, 2>(cache, q, heads, start, first, end, scores, stride);
                return channel_delta_scores_by_words<Arch, Form, 4>(cache, q, heads, start, first, end, scores, stride);
            }
            if (heads <= 2)
                return channel_delta_scores_by<Arch, Form, 2>(cache, q, heads, start, first, end, scores, stride, converted);
            return channel_delta_scores_by<Arch, Form, 4>(cache, q, heads, start, first, end, scores, stride, converted);
        }

        /**
         * o_h += P_h Δv_m for the heads of a decode step, along channels: the registers
         * of row m that hold updates are expanded once and multiply every head's suffix
         * weight P_h (`mass`); o is [head][channel].
         */
        template <class Arch, expand_form Form>
        void add_weighted_row(delta_row const& row, float const* mass, std::size_t heads, std::size_t d, float* o) noexcept
        {
            using ops = arch_traits<Arch>;
            using reg = typename ops::reg;
            constexpr std::size_t w = ops::width, max_heads = block_scratch::max_channel_heads;
            reg weight[max_heads];
            for (std::size_t h = 0; h < heads; ++h)
                weight[h] = ops::broadcast(mass[h]);
            float const* value = row.values;
            std::size_t c = 0;
            for (; c + w <= d; c += w)
            {
                auto const bits = static_cast<std::uint32_t>(detail::mask_bits(row.mask, c, w));
                if (bits == 0)
                    continue;
                reg const delta = expand_lanes<Arch, Form>(bits, value);
                for (std::size_t h = 0; h < heads; ++h)
                    ops::store(o + h * d + c, ops::fma(weight[h], delta, ops::load(o + h * d + c)));
            }
            for (; c < d; ++c)  // channels past the last full register
                if (row.mask[c / 64] >> (c % 64) & 1u)
                {
                    float const v = *value++;
                    for (std::size_t h = 0; h < heads; ++h)
                        o[h * d + c] += mass[h] * v;
                }
        }

        /**
         * The delta region's values of a decode step, Σ_{j in [first, end)} p_h[j] v̂_j,
         * added to o ([head][channel]): suffix sums P_h(m) of each segment, walked
         * backwards, a 64-channel mask word at a time so that the accumulators of H
         * heads stay in registers (H x 64 / width: AVX-512's 32 hold them, AVX2's 16
         * spill some to L1). For d a multiple of the register width (see by_words).
         * The rows go in blocks of delta_block_rows, from the last: a block's suffix
         * weights are summed once, then every word of the block runs before the next
         * block, so the words after the first read the block's rows from L1. `p` is
         * [head][key] with row stride `stride`. Returns the PV work (SPEC.md §4).
         * `converted` is scratch for a word's packed values widened from float16.
         */
        template <class Arch, expand_form Form, std::size_t H, class Cache>
        std::uint64_t channel_delta_values_by(Cache const& cache, float const* p, std::size_t stride, std::size_t heads, std::size_t first,
                                              std::size_t end, float* o, float* converted) noexcept
        {
            using ops = arch_traits<Arch>;
            using reg = typename ops::reg;
            constexpr std::size_t w = ops::width, groups = 64 / w, rows = delta_block_rows;
            static_assert(64 % w == 0, "a mask word holds whole registers");
            std::size_t const d = cache.dim(), words = (d + 63) / 64;
            std::uint64_t macs = 0;
            for (std::size_t h0 = 0; h0 < heads; h0 += H)
            {
                std::size_t const hn = std::min(H, heads - h0);
                float const* ph[H];
                for (std::size_t h = 0; h < H; ++h)
                    ph[h] = p + (h0 + (h < hn ? h : 0)) * stride;
                // Adds Σ_rows weight * row to o's heads, one word at a time. `row_at(i, word,
                // acc, partial)` adds row i's share of a word to the word's accumulators (only
                // its live groups where `partial`: the last word of a d not a multiple of 64).
                auto const add_rows = [&](std::size_t count, auto&& row_at) {
                    for (std::size_t word = 0; word < words; ++word)
                        with_word_kind(live_groups<Arch>(d, word) < groups, [&](auto partial) {
                            std::size_t const live = live_groups<Arch>(d, word);
                            reg acc[H][groups];
                            for (auto& head : acc)
                                for (auto& a : head)
                                    a = ops::zero();
                            for (std::size_t i = count; i-- > 0;)
                                row_at(i, word, acc, partial);
                            DELTAATTN_UNROLL
                            for (std::size_t h = 0; h < H; ++h)  // whole, so that acc stays in registers
                                if (h < hn)
                                    DELTAATTN_UNROLL
                                    for (std::size_t g = 0; g < groups; ++g)
                                        if (!decltype(partial)::value || g < live)
                                        {
                                            float* out = o + (h0 + h) * d + word * 64 + g * w;
                                            ops::store(out, ops::add(ops::load(out), acc[h][g]));
                                        }
                        });
                };
                auto const add_dense_row = [&](float const* row, float const* weight, std::size_t word, reg (&acc)[H][groups], auto partial) {
                    std::size_t const live = live_groups<Arch>(d, word);
                    for (std::size_t h = 0; h < H; ++h)
                        for (std::size_t g = 0; g < groups; ++g)
                            if (!decltype(partial)::value || g < live)
                                acc[h][g] = ops::fma(ops::broadcast(weight[h]), ops::load(row + word * 64 + g * w), acc[h][g]);
                };
                float mass[H] = {};  // P_h(m): the suffix of the segment m lies in
                std::size_t keyframe_at = cache.previous_keyframe(end - 1);
                for (std::size_t b1 = end; b1 > first;)
                {
                    std::size_t const b0 = b1 - first > rows ? b1 - rows : first;
                    // The block's suffix weights, row by row from its last: P_h(m), and at
                    // a keyframe the mass that multiplies its dense row (the suffix restarts).
                    alignas(64) float suffix[rows][H];
                    bool keyframe[rows];
                    for (std::size_t m = b1; m-- > b0;)
                    {
                        for (std::size_t h = 0; h < H; ++h)
                            suffix[m - b0][h] = mass[h] += ph[h][m];
                        keyframe[m - b0] = m == keyframe_at;
                        if (m == keyframe_at)
                        {
                            std::fill(mass, mass + H, 0.0f);
                            keyframe_at = m > 0 ? cache.previous_keyframe(m - 1) : Cache::no_keyframe;
                            macs += hn * d;
                        }
                        else
                            macs += hn * cache.delta(m).nnz;
                    }
                    add_rows(b1 - b0, [&](std::size_t i, std::size_t word, reg(&acc)[H][groups], auto partial) {
                        std::size_t const m = b0 + i;
                        if (word == 0 && m >= first + delta_ahead)
                        {
                            prefetch_delta_row(cache, m - delta_ahead);
                            if (m >= first + delta_far)
                                prefetch_delta_row_far(cache, m - delta_far);
                        }
                        if (keyframe[i])
                            return add_dense_row(cache.keyframe_row(m), suffix[i], word, acc, partial);
                        auto const row = cache.delta(m);
                        std::uint64_t const bits = row.mask[word];
                        if (bits == 0)
                            return;
                        auto const* stored = word_values(row, word);
                        auto const* value = [&] {
                            if constexpr (expands_stored<Arch, typename Cache::element_type>())
                                return stored;
                            else
                                return as_floats<Arch>(stored, detail::popcount64(bits), converted);
                        }();
                        reg weights[H];
                        for (std::size_t h = 0; h < H; ++h)
                            weights[h] = ops::broadcast(suffix[i][h]);
                        std::size_t const live = live_groups<Arch>(d, word);
                        for (std::size_t g = 0; g < groups; ++g)
                            if (!decltype(partial)::value || g < live)  // past d: not a live register
                            {
                                reg const delta = expand_word_group<Arch, Form>(row.mask + word, g, value);  // empty groups too (scores_by_words)
                                for (std::size_t h = 0; h < H; ++h)
                                    acc[h][g] = ops::fma(weights[h], delta, acc[h][g]);
                            }
                    });
                    b1 = b0;
                }
                // P(S) v̂_{S-1}: the mass left at the region's first row.
                add_rows(1, [&](std::size_t, std::size_t word, reg(&acc)[H][groups], auto partial) {
                    add_dense_row(cache.base_row(), mass, word, acc, partial);
                });
                macs += hn * d;
            }
            return macs;
        }

        /// As above; passes of four heads, or of two where a KV head has no more.
        template <class Arch, expand_form Form, class Cache>
        std::uint64_t channel_delta_values(Cache const& cache, float const* p, std::size_t stride, std::size_t heads, std::size_t first,
                                           std::size_t end, float* o, float* converted) noexcept
        {
            if (heads <= 2)
                return channel_delta_values_by<Arch, Form, 2>(cache, p, stride, heads, first, end, o, converted);
            return channel_delta_values_by<Arch, Form, 4>(cache, p, stride, heads, first, end, o, converted);
        }
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_CHANNEL_DELTAS_HPP
