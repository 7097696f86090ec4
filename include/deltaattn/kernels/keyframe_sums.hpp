/**
 * @file kernels/keyframe_sums.hpp
 * The running sums of a decode step over code rows (kernels/quant_decode.hpp), in place,
 * for N heads whose rows lie `stride` floats apart, restarting at the codec's keyframes
 * (SPEC.md §10: a keyframe row's reference is its own code row):
 *  - prefix sums of the rows' dots, forward: the scores q·k̂_j;
 *  - suffix sums of the probabilities, backward: SPEC.md §6.1's masses P_i.
 * A register of rows at a time where the arch has lane scans (kernels/arch/lane_scans.hpp),
 * one row at a time elsewhere and in each segment's ragged end. The sums' order differs
 * between the two (a tree within a register): both are fp32 sums of the same terms,
 * each a fixed function of the rows, so outputs stay the same for any thread count.
 */
#ifndef DELTAATTN_KERNELS_KEYFRAME_SUMS_HPP
#define DELTAATTN_KERNELS_KEYFRAME_SUMS_HPP

#include "../codecs/quant.hpp"
#include "arch/lane_scans.hpp"

#include <algorithm>
#include <cstddef>

namespace deltaattn
{
    namespace kernels
    {
        namespace keyframe_detail
        {
            /// s_h[j] = running_h += s_h[j] for j in [j0, j1), a register at a time where the
            /// arch can (then the rest one row at a time).
            template <class Arch, std::size_t N>
            void prefix_segment(float* s, std::size_t stride, std::size_t j0, std::size_t j1, float* running) noexcept
            {
                std::size_t j = j0;
                constexpr lane_scans_isa isa = lane_scans_isa_of<Arch>();
                if constexpr (isa != lane_scans_isa::none)
                {
                    using scans = lane_scans<isa>;
                    using ops = arch_traits<Arch>;
                    constexpr std::size_t w = ops::width;
                    if (j + w <= j1)
                    {
                        typename scans::reg carry[N];
                        for (std::size_t h = 0; h < N; ++h)
                            carry[h] = ops::broadcast(running[h]);
                        for (; j + w <= j1; j += w)
                            DELTAATTN_UNROLL
                            for (std::size_t h = 0; h < N; ++h)
                            {
                                float* const p = s + h * stride + j;
                                typename scans::reg const y = ops::add(scans::prefix(ops::load(p)), carry[h]);
                                ops::store(p, y);
                                carry[h] = scans::last_everywhere(y);
                            }
                        for (std::size_t h = 0; h < N; ++h)
                            running[h] = scans::first(carry[h]);
                    }
                }
                for (; j < j1; ++j)
                    DELTAATTN_UNROLL
                    for (std::size_t h = 0; h < N; ++h)
                        s[h * stride + j] = running[h] += s[h * stride + j];
            }

            /// s_h[j] = mass_h += s_h[j] for j from j1 − 1 down to j0: the rows above the last
            /// whole register one at a time, then a register at a time where the arch can.
            template <class Arch, std::size_t N>
            void suffix_segment(float* s, std::size_t stride, std::size_t j0, std::size_t j1, float* mass) noexcept
            {
                constexpr lane_scans_isa isa = lane_scans_isa_of<Arch>();
                constexpr bool by_register = isa != lane_scans_isa::none;
                constexpr std::size_t w = by_register ? arch_traits<Arch>::width : 1;
                std::size_t j = j1;
                for (; j > j0 && (!by_register || (j - j0) % w != 0); --j)
                    DELTAATTN_UNROLL
                    for (std::size_t h = 0; h < N; ++h)
                        s[h * stride + j - 1] = mass[h] += s[h * stride + j - 1];
                if constexpr (by_register)
                {
                    using scans = lane_scans<isa>;
                    using ops = arch_traits<Arch>;
                    if (j > j0)
                    {
                        typename scans::reg carry[N];
                        for (std::size_t h = 0; h < N; ++h)
                            carry[h] = ops::broadcast(mass[h]);
                        for (; j > j0; j -= w)
                            DELTAATTN_UNROLL
                            for (std::size_t h = 0; h < N; ++h)
                            {
                                float* const p = s + h * stride + j - w;
                                typename scans::reg const y = ops::add(scans::suffix(ops::load(p)), carry[h]);
                                ops::store(p, y);
                                carry[h] = scans::first_everywhere(y);
                            }
                        for (std::size_t h = 0; h < N; ++h)
                            mass[h] = scans::first(carry[h]);
                    }
                }
            }
        }  // namespace keyframe_detail

        /// Forward: s_h[j] = running_h + Σ s_h[i] over i from the segment's start to j, for j
        /// in [first, end); a keyframe row starts a segment from 0, `running` (N floats, in
        /// and out) carries the sums across rows outside the keyframes.
        template <class Arch, std::size_t N>
        void keyframe_prefix_sums(float* s, std::size_t stride, std::size_t first, std::size_t end, quant_codec const& codec, float* running) noexcept
        {
            std::size_t keyframe = codec.next_keyframe(first);
            for (std::size_t j = first; j < end;)
            {
                if (j == keyframe)
                {
                    std::fill(running, running + N, 0.0f);
                    keyframe = codec.next_keyframe(j + 1);
                }
                std::size_t const segment_end = std::min(end, keyframe);
                keyframe_detail::prefix_segment<Arch, N>(s, stride, j, segment_end, running);
                j = segment_end;
            }
        }

        /// Backward: s_h[j] = Σ s_h[i] over i from j to the end of j's segment (the row
        /// before the next keyframe, or end − 1). On return `mass` (N floats, zeroed here)
        /// holds the first segment's total when `first` is not a keyframe, else 0.
        template <class Arch, std::size_t N>
        void keyframe_suffix_sums(float* s, std::size_t stride, std::size_t first, std::size_t end, quant_codec const& codec, float* mass) noexcept
        {
            std::fill(mass, mass + N, 0.0f);
            for (std::size_t hi = end; hi > first;)
            {
                std::size_t const keyframe = codec.previous_keyframe(hi - 1), lo = std::max(first, keyframe);
                keyframe_detail::suffix_segment<Arch, N>(s, stride, lo, hi, mass);
                if (lo == keyframe)
                    std::fill(mass, mass + N, 0.0f);
                hi = lo;
            }
        }
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_KEYFRAME_SUMS_HPP
