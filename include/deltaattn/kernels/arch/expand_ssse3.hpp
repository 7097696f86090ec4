/**
 * @file kernels/arch/expand_ssse3.hpp
 * Expansion on SSSE3 and later 4-lane x86 archs: one byte shuffle (pshufb) through a
 * 16-entry table; an index with its high bit set yields a zero byte, so inactive
 * lanes need no blend. Plain SSE2 has no variable shuffle and keeps the generic loop.
 *
 * Invariants:
 * - Compiled only when the TU targets SSSE3 (__SSSE3__); used only for 4-lane archs
 *   derived from xsimd::ssse3 (ssse3, sse4_1, sse4_2, fma3<sse4_2>).
 * - Reads 4 floats from `packed` whatever the mask (callers pad by expand_padding).
 * - Bits above the low 4 are ignored.
 */
#ifndef DELTAATTN_KERNELS_ARCH_EXPAND_SSSE3_HPP
#define DELTAATTN_KERNELS_ARCH_EXPAND_SSSE3_HPP

#include "expand_kernel.hpp"
#include "expand_tables.hpp"

#if defined(__SSSE3__)
#include <tmmintrin.h>

namespace deltaattn
{
    namespace kernels
    {
        template <>
        struct expand_kernel<expand_isa::ssse3>
        {
            static constexpr char const* name() noexcept { return "ssse3 pshufb LUT"; }

            template <class Arch>
            static typename arch_traits<Arch>::reg run(std::uint32_t bits, float const*& packed) noexcept
            {
                std::uint32_t const m = bits & 0xFu;
                __m128i const shuffle = _mm_loadu_si128(reinterpret_cast<__m128i const*>(expand_detail::byte_shuffles[m].data()));
                __m128i const values = _mm_castps_si128(_mm_loadu_ps(packed));
                packed += expand_detail::popcount4(m);
                return typename arch_traits<Arch>::reg(_mm_castsi128_ps(_mm_shuffle_epi8(values, shuffle)));
            }
        };
    }  // namespace kernels
}  // namespace deltaattn
#endif  // __SSSE3__

#endif  // DELTAATTN_KERNELS_ARCH_EXPAND_SSSE3_HPP
