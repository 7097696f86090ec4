/**
 * @file kernels/arch/expand_avx2.hpp
 * Expansion on AVX2, 8 lanes: AVX2 has no expand instruction, so a 256-entry table
 * gives each lane the index of its packed value (vpermps) and whether it is active
 * (a blend with zero).
 *
 * Invariants:
 * - Compiled only when the TU targets AVX2 (__AVX2__); used only for 8-lane archs
 *   derived from xsimd::avx2 (avx2, fma3<avx2>).
 * - Reads 8 floats from `packed` whatever the mask: up to 8 past the row's last
 *   packed value (callers pad by expand_padding).
 * - Bits above the low 8 are ignored; they never index the table.
 */
#ifndef DELTAATTN_KERNELS_ARCH_EXPAND_AVX2_HPP
#define DELTAATTN_KERNELS_ARCH_EXPAND_AVX2_HPP

#include "expand_kernel.hpp"
#include "expand_tables.hpp"

#if defined(__AVX2__)
#include <immintrin.h>

namespace deltaattn
{
    namespace kernels
    {
        template <>
        struct expand_kernel<expand_isa::avx2>
        {
            static constexpr char const* name() noexcept { return "avx2 permute LUT"; }

            template <class Arch>
            static typename arch_traits<Arch>::reg run(std::uint32_t bits, float const*& packed) noexcept
            {
                std::uint32_t const entry = expand_detail::permute_nibbles[bits & 0xFFu];
                // Nibble l of the entry moved to the low bits of lane l (vpermps ignores
                // the higher bits), then its "active" bit 3 moved to the sign bit.
                __m256i const index = _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(entry)), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
                __m256 const active = _mm256_castsi256_ps(_mm256_slli_epi32(index, 28));
                __m256 const moved = _mm256_permutevar8x32_ps(_mm256_loadu_ps(packed), index);
                packed += expand_detail::nibble_entry_count(entry);
                return typename arch_traits<Arch>::reg(_mm256_blendv_ps(_mm256_setzero_ps(), moved, active));
            }
        };
    }  // namespace kernels
}  // namespace deltaattn
#endif  // __AVX2__

#endif  // DELTAATTN_KERNELS_ARCH_EXPAND_AVX2_HPP
