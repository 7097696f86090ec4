/**
 * @file kernels/arch/lane_scans.hpp
 * Running sums across the lanes of one register, on AVX-512 and AVX2: lane i of
 * `prefix(x)` is x[0] + ... + x[i], of `suffix(x)` x[i] + ... + x[w − 1], in log2(w)
 * shift-and-add steps.
 *
 * Why: a decode step over a quantized far context turns its code-row dots into scores by
 * prefix sums along the rows, and its probabilities into suffix masses (SPEC.md §6.1).
 * One row at a time, each head's sum waits for the add before it: the two loops took
 * ~10% of a 4-bit step (Zen 5). A register of rows at a time, the wait is one add and
 * one broadcast per register (kernels/keyframe_sums.hpp).
 *
 * Invariant: compiled only when the TU targets the ISA; selected by lane_scans_isa_of,
 * which depends on the Arch type only (the same answer in every TU that can name it).
 */
#ifndef DELTAATTN_KERNELS_ARCH_LANE_SCANS_HPP
#define DELTAATTN_KERNELS_ARCH_LANE_SCANS_HPP

#include "../../arch.hpp"

#include <cstddef>
#include <type_traits>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace deltaattn
{
    namespace kernels
    {
        enum class lane_scans_isa
        {
            none,
            avx512,
            avx2
        };

        /// The lane_scans specialization Arch uses (none: the caller's row-at-a-time loop).
        template <class Arch>
        constexpr lane_scans_isa lane_scans_isa_of() noexcept
        {
            if constexpr (std::is_same<Arch, scalar>::value)
                return lane_scans_isa::none;
            else
            {
                [[maybe_unused]] constexpr std::size_t width = arch_traits<Arch>::width;
#if defined(__AVX512F__)
                if constexpr (width == 16 && std::is_base_of<xsimd::avx512f, Arch>::value)
                    return lane_scans_isa::avx512;
#endif
#if defined(__AVX2__)
                if constexpr (width == 8 && std::is_base_of<xsimd::avx2, Arch>::value)
                    return lane_scans_isa::avx2;
#endif
                return lane_scans_isa::none;
            }
        }

        template <lane_scans_isa>
        struct lane_scans;

#if defined(__AVX512F__)
        template <>
        struct lane_scans<lane_scans_isa::avx512>
        {
            using reg = __m512;
            /// x shifted up (prefix) or down (suffix) by K lanes, zeros shifted in.
            template <int K>
            static reg up(reg x) noexcept
            {
                return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_castps_si512(x), _mm512_setzero_si512(), 16 - K));
            }
            template <int K>
            static reg down(reg x) noexcept
            {
                return _mm512_castsi512_ps(_mm512_alignr_epi32(_mm512_setzero_si512(), _mm512_castps_si512(x), K));
            }
            static reg prefix(reg x) noexcept
            {
                x = _mm512_add_ps(x, up<1>(x));
                x = _mm512_add_ps(x, up<2>(x));
                x = _mm512_add_ps(x, up<4>(x));
                return _mm512_add_ps(x, up<8>(x));
            }
            static reg suffix(reg x) noexcept
            {
                x = _mm512_add_ps(x, down<1>(x));
                x = _mm512_add_ps(x, down<2>(x));
                x = _mm512_add_ps(x, down<4>(x));
                return _mm512_add_ps(x, down<8>(x));
            }
            static reg last_everywhere(reg x) noexcept { return _mm512_permutexvar_ps(_mm512_set1_epi32(15), x); }
            static reg first_everywhere(reg x) noexcept { return _mm512_broadcastss_ps(_mm512_castps512_ps128(x)); }
            static float first(reg x) noexcept { return _mm512_cvtss_f32(x); }
        };
#endif

#if defined(__AVX2__)
        template <>
        struct lane_scans<lane_scans_isa::avx2>
        {
            using reg = __m256;
            static reg prefix(reg x) noexcept
            {
                // within each 128-bit half, then the low half's total into the high half
                x = _mm256_add_ps(x, _mm256_castsi256_ps(_mm256_slli_si256(_mm256_castps_si256(x), 4)));
                x = _mm256_add_ps(x, _mm256_castsi256_ps(_mm256_slli_si256(_mm256_castps_si256(x), 8)));
                reg const low_total = _mm256_permutevar8x32_ps(x, _mm256_set1_epi32(3));
                return _mm256_add_ps(x, _mm256_blend_ps(_mm256_setzero_ps(), low_total, 0xF0));
            }
            static reg suffix(reg x) noexcept
            {
                x = _mm256_add_ps(x, _mm256_castsi256_ps(_mm256_srli_si256(_mm256_castps_si256(x), 4)));
                x = _mm256_add_ps(x, _mm256_castsi256_ps(_mm256_srli_si256(_mm256_castps_si256(x), 8)));
                reg const high_total = _mm256_permutevar8x32_ps(x, _mm256_set1_epi32(4));
                return _mm256_add_ps(x, _mm256_blend_ps(_mm256_setzero_ps(), high_total, 0x0F));
            }
            static reg last_everywhere(reg x) noexcept { return _mm256_permutevar8x32_ps(x, _mm256_set1_epi32(7)); }
            static reg first_everywhere(reg x) noexcept { return _mm256_broadcastss_ps(_mm256_castps256_ps128(x)); }
            static float first(reg x) noexcept { return _mm256_cvtss_f32(x); }
        };
#endif
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_ARCH_LANE_SCANS_HPP
