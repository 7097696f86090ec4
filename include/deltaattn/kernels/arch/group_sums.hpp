/**
 * @file kernels/arch/group_sums.hpp
 * Register pieces for dots summed per 32-channel group (kernels/quant_int8_dots.hpp's
 * code_row_dots_int8_by_group), on AVX-512 and AVX2.
 *
 * The registers are seen as 128-bit *chunks* of 4 lanes; a *block* is one group per
 * chunk (4 groups, 128 channels, on AVX-512; 2 groups, 64 channels, on AVX2): a register
 * of 4-bit code words holds a block as it is (8 channels per lane, 4 lanes per group),
 * two registers of 8-bit words hold one, their chunks regrouped (even_chunks,
 * odd_chunks: 8 words per group, two in each lane of its chunk). After
 * `sum_within_chunks` on the word dots of 4 rows, lane 4k + r holds row r's dot over
 * group k of the block.
 *
 * Invariant: compiled only when the TU targets the ISA; selected by group_sums_isa_of,
 * which depends on the Arch type only (the same answer in every TU that can name it).
 */
#ifndef DELTAATTN_KERNELS_ARCH_GROUP_SUMS_HPP
#define DELTAATTN_KERNELS_ARCH_GROUP_SUMS_HPP

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
        enum class group_sums_isa
        {
            none,
            avx512,
            avx2
        };

        /// The group_sums specialization Arch uses (none: the caller's generic path).
        template <class Arch>
        constexpr group_sums_isa group_sums_isa_of() noexcept
        {
            if constexpr (std::is_same<Arch, scalar>::value)
                return group_sums_isa::none;
            else
            {
                [[maybe_unused]] constexpr std::size_t width = arch_traits<Arch>::width;
#if defined(__AVX512BW__)
                if constexpr (width == 16 && std::is_base_of<xsimd::avx512bw, Arch>::value)
                    return group_sums_isa::avx512;
#endif
#if defined(__AVX2__) && defined(__FMA__)
                if constexpr (width == 8 && std::is_base_of<xsimd::avx2, Arch>::value)
                    return group_sums_isa::avx2;
#endif
                return group_sums_isa::none;
            }
        }

        template <group_sums_isa Isa>
        struct group_sums;

#if defined(__AVX512BW__)
        template <>
        struct group_sums<group_sums_isa::avx512>
        {
            using floats = __m512;
            using ints = __m512i;
            static constexpr std::size_t chunks = 4;

            /// Two 8-bit spans (a: groups 0, 1 in chunks 0-1 and 2-3; b: groups 2, 3) as two
            /// registers with group k in chunk k: the even chunks of a then b, and the odd
            /// ones. Dots of both, added, hold the block's groups as a 4-bit span's do.
            static ints even_chunks(ints a, ints b) noexcept { return _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)); }
            static ints odd_chunks(ints a, ints b) noexcept { return _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)); }
            /// Per-word values of two 8-bit spans: the first chunk of each group.
            static floats pick(floats a, floats b) noexcept { return _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)); }
            /// Lane 0 of each chunk in all its lanes.
            static floats spread_first(floats x) noexcept { return _mm512_permute_ps(x, 0); }
            /// Lane 4k + r = Σ chunk k of x[r], in int32.
            static floats sum_within_chunks(floats const* x) noexcept
            {
                return arch_traits<xsimd::avx512bw>::sum_within_128bit_lanes(
                    x, [](floats a, floats b) { return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b))); });
            }
            /// Lane i = row i's sum, from quads[i / 4] lanes 4k + i % 4.
            static floats reduce_quads(floats const* quads) noexcept { return arch_traits<xsimd::avx512bw>::reduce_add_quads_avx512(quads); }
            /// Lane 4k + r = the scale of row 4i + r for group 4b + k (0 past the row's
            /// last group), from 16 rows' scales, `groups` per row (1: one for the row).
            static floats row_scales(float const* scales, std::size_t groups, std::size_t i, std::size_t b) noexcept
            {
                if (groups == 4)  // d 128: rows 4i..4i+3 as they are stored, transposed
                    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), _mm512_loadu_ps(scales + 16 * i));
                __m512i const row = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(4 * i)), _mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3));
                if (groups == 1)
                    return _mm512_permutexvar_ps(row, _mm512_loadu_ps(scales));
                __m512i const group = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(4 * b)), _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3));
                std::size_t const valid = groups - 4 * b;
                __mmask16 const lanes = static_cast<__mmask16>(valid >= 4 ? 0xFFFF : (1u << (4 * valid)) - 1);
                __m512i const index = _mm512_add_epi32(_mm512_mullo_epi32(row, _mm512_set1_epi32(static_cast<int>(groups))), group);
                return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes, index, scales, 4);
            }
            /// int32 lanes carried as floats (bits moved, not converted), and converted.
            static floats as_floats(ints x) noexcept { return _mm512_castsi512_ps(x); }
            static floats to_float(floats x) noexcept { return _mm512_cvtepi32_ps(_mm512_castps_si512(x)); }
            static floats fma(floats a, floats b, floats c) noexcept { return _mm512_fmadd_ps(a, b, c); }
            static floats mul(floats a, floats b) noexcept { return _mm512_mul_ps(a, b); }
        };
#endif

#if defined(__AVX2__) && defined(__FMA__)
        template <>
        struct group_sums<group_sums_isa::avx2>
        {
            using floats = __m256;
            using ints = __m256i;
            static constexpr std::size_t chunks = 2;

            static ints even_chunks(ints a, ints b) noexcept { return _mm256_permute2x128_si256(a, b, 0x20); }
            static ints odd_chunks(ints a, ints b) noexcept { return _mm256_permute2x128_si256(a, b, 0x31); }
            static floats pick(floats a, floats b) noexcept { return _mm256_permute2f128_ps(a, b, 0x20); }
            static floats spread_first(floats x) noexcept { return _mm256_permute_ps(x, 0); }
            static floats sum_within_chunks(floats const* x) noexcept
            {
                auto const add = [](floats a, floats b) { return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(a), _mm256_castps_si256(b))); };
                floats const p = add(_mm256_unpacklo_ps(x[0], x[1]), _mm256_unpackhi_ps(x[0], x[1]));
                floats const q = add(_mm256_unpacklo_ps(x[2], x[3]), _mm256_unpackhi_ps(x[2], x[3]));
                return add(_mm256_shuffle_ps(p, q, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(p, q, _MM_SHUFFLE(3, 2, 3, 2)));
            }
            static floats reduce_quads(floats const* quads) noexcept
            {
                return _mm256_add_ps(_mm256_permute2f128_ps(quads[0], quads[1], 0x20), _mm256_permute2f128_ps(quads[0], quads[1], 0x31));
            }
            static floats row_scales(float const* scales, std::size_t groups, std::size_t i, std::size_t b) noexcept
            {
                __m256i const row = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(4 * i)), _mm256_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3));
                if (groups == 1)
                    return _mm256_permutevar8x32_ps(_mm256_loadu_ps(scales + 4 * i), _mm256_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3));
                __m256i const group = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(2 * b)), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
                __m256 const lanes = _mm256_castsi256_ps(groups - 2 * b >= 2 ? _mm256_set1_epi32(-1) : _mm256_setr_epi32(-1, -1, -1, -1, 0, 0, 0, 0));
                __m256i const index = _mm256_add_epi32(_mm256_mullo_epi32(row, _mm256_set1_epi32(static_cast<int>(groups))), group);
                return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), scales, index, lanes, 4);
            }
            static floats as_floats(ints x) noexcept { return _mm256_castsi256_ps(x); }
            static floats to_float(floats x) noexcept { return _mm256_cvtepi32_ps(_mm256_castps_si256(x)); }
            static floats fma(floats a, floats b, floats c) noexcept { return _mm256_fmadd_ps(a, b, c); }
            static floats mul(floats a, floats b) noexcept { return _mm256_mul_ps(a, b); }
        };
#endif
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_ARCH_GROUP_SUMS_HPP
