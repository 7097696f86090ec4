/**
 * @file kernels/arch/expand_avx512.hpp
 * Expansion on AVX-512, 16 lanes: a plain unaligned load of the group's 16 values into
 * a register (binary16 values then widened by vcvtph2ps), then the register form of
 * vexpandps (`run`) or, where the TU has AVX512_VPOPCNTDQ, a vpermps whose indices
 * vpopcntd computes (`run_permute`). Which of the two a CPU gets is
 * kernels/arch/expand_form.hpp's choice, made once at run time.
 *
 * Why not the one-instruction expand-load (`_mm512_maskz_expandloadu_ps`, vexpandps
 * with a memory operand)? Per group of 16 lanes (40% kept, four FMAs each), measured on
 * an AMD EPYC (Zen 5): the memory form ~4.1 ns streaming from memory, a plain load plus
 * the register form ~2.0 ns, plain load + vpopcntd + vpermps ~1.0-1.2 ns, a plain load
 * alone ~0.8-1.0 ns. On Intel cores the memory form is a load plus the register uop, so
 * the split form is never slower there. Binary16 rows the same way: a plain 32-byte load
 * and vcvtph2ps, then the register form, instead of a masked 16-bit load.
 *
 * The compilers fold `loadu` + `maskz_expand` back into the slow memory form; an empty
 * asm statement that claims to modify the loaded register stops them (it emits nothing).
 *
 * Invariants:
 * - Compiled only when the TU targets AVX-512F (__AVX512F__); used only for archs
 *   derived from xsimd::avx512f with 16 float lanes (avx512f/cd/dq/bw, ...).
 * - Reads 16 values (floats or halves) from `packed` whatever the mask: callers pad
 *   their storage by expand_padding values (the delta caches and the workspace's
 *   converted rows do). The *_load forms read exactly popcount(bits) values.
 * - Bits above the low 16 are ignored.
 */
#ifndef DELTAATTN_KERNELS_ARCH_EXPAND_AVX512_HPP
#define DELTAATTN_KERNELS_ARCH_EXPAND_AVX512_HPP

#include "expand_kernel.hpp"

#if defined(__AVX512F__)
#include <immintrin.h>

#include <cstring>

namespace deltaattn
{
    namespace kernels
    {
        template <>
        struct expand_kernel<expand_isa::avx512>
        {
            static constexpr char const* name() noexcept { return "avx512 load + vexpandps"; }

            template <class Arch>
            static typename arch_traits<Arch>::reg run(std::uint32_t bits, float const*& packed) noexcept
            {
                __m512 raw = _mm512_loadu_ps(packed);
                deltaattn::detail::keep_in_register(raw);
                packed += expand_detail::popcount16(bits);
                return typename arch_traits<Arch>::reg(_mm512_maskz_expand_ps(static_cast<__mmask16>(bits), raw));
            }

            /// Binary16 values: the group's 16 halves loaded plainly, widened, expanded.
            template <class Arch>
            static typename arch_traits<Arch>::reg run(std::uint32_t bits, float16 const*& packed) noexcept
            {
                __m256i raw = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(packed));
                deltaattn::detail::keep_in_register(raw);
                packed += expand_detail::popcount16(bits);
                return typename arch_traits<Arch>::reg(_mm512_maskz_expand_ps(static_cast<__mmask16>(bits), _mm512_cvtph_ps(raw)));
            }

#if defined(__AVX512VPOPCNTDQ__)
            /// The permute form (expand_form.hpp): lane l takes packed value
            /// popcount(bits & ((1 << l) - 1)), computed for all lanes at once.
            template <class Arch>
            static __m512i source_lanes(std::uint32_t bits) noexcept
            {
                return source_lanes_in<Arch>(_mm512_set1_epi32(static_cast<int>(bits)), 0);
            }

            /// As source_lanes, for a group's bits in half `half` (0 low, 1 high) of every
            /// 32-bit lane of `pair`.
            template <class Arch>
            static __m512i source_lanes_in(__m512i pair, unsigned half) noexcept
            {
                __m512i const below = _mm512_setr_epi32(0x0, 0x1, 0x3, 0x7, 0xF, 0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF,
                                                        0x3FFF, 0x7FFF);
                return _mm512_popcnt_epi32(_mm512_and_si512(pair, half == 0 ? below : _mm512_slli_epi32(below, 16)));
            }

            /// A group's 16 packed values, widened to floats where stored as binary16.
            template <class Arch>
            static __m512 widened(float const* packed) noexcept
            {
                return _mm512_loadu_ps(packed);
            }

            template <class Arch>
            static __m512 widened(float16 const* packed) noexcept
            {
                return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<__m256i const*>(packed)));
            }

            template <class Arch, class T>
            static typename arch_traits<Arch>::reg run_permute(std::uint32_t bits, T const*& packed) noexcept
            {
                __m512 const values = widened<Arch>(packed);
                packed += expand_detail::popcount16(bits);
                return typename arch_traits<Arch>::reg(_mm512_maskz_permutexvar_ps(static_cast<__mmask16>(bits), source_lanes<Arch>(bits), values));
            }

            /**
             * run_permute for group g of a 64-bit mask word read from memory (`word`, four
             * groups of 16 bits, little-endian). The bits go from memory straight to a
             * broadcast (a load, no ALU uop) and to the lane mask: from a general register,
             * vpbroadcastd and kmovw are domain crossings, and the form measured 1.2x
             * slower that way on Zen 4 (load, four FMAs a group; the broadcast reads the
             * 32 bits holding the group, so it never reads past the word).
             */
            template <class Arch, class T>
            static typename arch_traits<Arch>::reg run_permute_in_word(std::uint64_t const* word, unsigned g, T const*& packed) noexcept
            {
                unsigned char const* const bytes = reinterpret_cast<unsigned char const*>(word);
                std::uint32_t pair;
                std::memcpy(&pair, bytes + 4 * (g / 2), sizeof pair);
                std::uint16_t group;
                std::memcpy(&group, bytes + 2 * g, sizeof group);
                __m512 const values = widened<Arch>(packed);
                packed += expand_detail::popcount16(group);
                __m512i const lanes = source_lanes_in<Arch>(_mm512_set1_epi32(static_cast<int>(pair)), g % 2);
                return typename arch_traits<Arch>::reg(_mm512_maskz_permutexvar_ps(static_cast<__mmask16>(group), lanes, values));
            }
#endif

            // The forms never chosen, kept for bench/bench_expand.cpp's per-group costs and
            // for the test that every form gives the same bits.

            /// The one-instruction memory form (vexpandps zmm{k}{z}, m512).
            template <class Arch>
            static typename arch_traits<Arch>::reg run_expand_load(std::uint32_t bits, float const*& packed) noexcept
            {
                __m512 const lanes = _mm512_maskz_expandloadu_ps(static_cast<__mmask16>(bits), packed);
                packed += expand_detail::popcount16(bits);
                return typename arch_traits<Arch>::reg(lanes);
            }

#if defined(__AVX512BW__) && defined(__AVX512VL__)
            /// Binary16: a masked load of exactly the used halves, vcvtph2ps, register expand.
            template <class Arch>
            static typename arch_traits<Arch>::reg run_masked_load(std::uint32_t bits, float16 const*& packed) noexcept
            {
                unsigned const count = expand_detail::popcount16(bits);
                auto const used = static_cast<__mmask16>((1u << count) - 1u);
                __m512 const widened = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(used, packed));
                packed += count;
                return typename arch_traits<Arch>::reg(_mm512_maskz_expand_ps(static_cast<__mmask16>(bits), widened));
            }
#endif
        };
    }  // namespace kernels
}  // namespace deltaattn
#endif  // __AVX512F__

#endif  // DELTAATTN_KERNELS_ARCH_EXPAND_AVX512_HPP
