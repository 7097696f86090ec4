/**
 * @file kernels/arch/expand_avx2.hpp
 * Expansion on AVX2, 8 lanes: AVX2 has no expand instruction, so a 256-entry table
 * of 8 bytes, sign-extended by one vpmovsxbd, gives each lane the index of its packed
 * value (vpermps) and whether it is active (a blend with zero); a table of popcounts
 * advances the pointer. Binary16 values (where the TU has F16C, as every AVX2 CPU
 * does) are loaded as 8 halves and widened by vcvtph2ps first.
 *
 * Invariants:
 * - Compiled only when the TU targets AVX2 (__AVX2__); used only for 8-lane archs
 *   derived from xsimd::avx2 (avx2, fma3<avx2>).
 * - Reads 8 values (floats or halves) from `packed` whatever the mask: up to 8 past
 *   the row's last packed value (callers pad by expand_padding).
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
                return typename arch_traits<Arch>::reg(place(bits, _mm256_loadu_ps(packed), packed));
            }

#if defined(__F16C__)
            /// Binary16 values: the group's 8 halves loaded plainly, widened, placed.
            template <class Arch>
            static typename arch_traits<Arch>::reg run(std::uint32_t bits, float16 const*& packed) noexcept
            {
                __m256 const widened = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<__m128i const*>(packed)));
                return typename arch_traits<Arch>::reg(place(bits, widened, packed));
            }
#endif

        private:
            /// Lane l of the result = raw[index of l] if bit l of `bits` is set, else 0;
            /// advances `packed` past the values used.
            template <class T>
            static __m256 place(std::uint32_t bits, __m256 raw, T const*& packed) noexcept
            {
                // One vpmovsxbd: lane l's packed index in bits 0-2 (vpermps ignores the rest)
                // and its "active" flag in the sign bit, which the blend reads.
                auto const* entry = &expand_detail::permute_bytes[bits & 0xFFu];
                __m256 const index = _mm256_castsi256_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<__m128i const*>(entry))));
                __m256 const moved = _mm256_permutevar8x32_ps(raw, _mm256_castps_si256(index));
                packed += expand_detail::popcounts8[bits & 0xFFu];
                return _mm256_blendv_ps(_mm256_setzero_ps(), moved, index);
            }
        };
    }  // namespace kernels
}  // namespace deltaattn
#endif  // __AVX2__

#endif  // DELTAATTN_KERNELS_ARCH_EXPAND_AVX2_HPP
