/**
 * @file kernels/arch/expand_avx512.hpp
 * Expansion on AVX-512: one masked expand-load (vexpandps), 16 lanes.
 *
 * Invariants:
 * - Compiled only when the TU targets AVX-512F (__AVX512F__); used only for archs
 *   derived from xsimd::avx512f with 16 float lanes (avx512f/cd/dq/bw, ...).
 * - Reads exactly popcount(bits) floats: the instruction suppresses the rest.
 * - Bits above the low 16 are ignored.
 */
#ifndef DELTAATTN_KERNELS_ARCH_EXPAND_AVX512_HPP
#define DELTAATTN_KERNELS_ARCH_EXPAND_AVX512_HPP

#include "expand_kernel.hpp"

#if defined(__AVX512F__)
#include <immintrin.h>

namespace deltaattn
{
    namespace kernels
    {
        template <>
        struct expand_kernel<expand_isa::avx512>
        {
            static constexpr char const* name() noexcept { return "avx512 expand-load"; }

            template <class Arch>
            static typename arch_traits<Arch>::reg run(std::uint32_t bits, float const*& packed) noexcept
            {
                __m512 const lanes = _mm512_maskz_expandloadu_ps(static_cast<__mmask16>(bits), packed);
                packed += expand_detail::popcount16(bits);
                return typename arch_traits<Arch>::reg(lanes);
            }
        };
    }  // namespace kernels
}  // namespace deltaattn
#endif  // __AVX512F__

#endif  // DELTAATTN_KERNELS_ARCH_EXPAND_AVX512_HPP
