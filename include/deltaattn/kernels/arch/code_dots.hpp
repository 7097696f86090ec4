/**
 * @file kernels/arch/code_dots.hpp
 * Integer dots of code words with int8 query words (SPEC.md §10's int8 queries): per
 * 32-bit word of a register of codes, Σ over the word's channels of code × query, in
 * int32, exactly.
 *
 * A word of b-bit codes holds F = 32 / b channels (codecs/quant.hpp). The query side is
 * laid out to match, as `parts` words per code word:
 *   8-bit: one query word, byte k = channel 4w + k;
 *   4-bit: two query words, byte k of the first = channel 8w + 2k (the low nibbles),
 *          of the second = channel 8w + 2k + 1 (the high nibbles);
 *   3-bit: the same (a word's 24 bits hold its 8 channels' codes, channel 8w + f at bit 3f).
 *
 * Kernels (picked at compile time, see code_dot_isa_of):
 *   avx512_vnni  vpdpbusd on codes biased to unsigned (c + 4, c + 8, c + 128)
 *   maddubs      pmaddubsw + pmaddwd (SSSE3, AVX2, AVX-512 BW): 3- and 4-bit codes biased
 *                to unsigned (15 · 127 · 4 fits int16); 8-bit ones as |c| against
 *                q with c's sign (127 · 127 · 2 fits: no saturation either way)
 *   neon_sdot    sdot (armv8.2-a dotprod): signed codes, no bias
 *   neon_mull    vmull.s8 + pairwise adds (armv7, armv8.0)
 *   generic      one lane at a time (scalar, SSE2)
 * 3-bit codes are first spread to one per byte: VBMI's vpmultishiftqb and a mask on
 * AVX-512 with VBMI (Zen 4+, Ice Lake+), else a few shifts and masks per register
 * (code_dot_detail::spread_fields).
 * A kernel with a bias adds `bias × Σ q` of each word to its dots; the caller starts
 * every accumulator from `−bias × Σ q` instead of 0 (code_dots::bias), so every kernel
 * returns the same integers (tests/test_quant_int8.cpp checks them against the generic
 * one on extreme codes and queries).
 */
#ifndef DELTAATTN_KERNELS_ARCH_CODE_DOTS_HPP
#define DELTAATTN_KERNELS_ARCH_CODE_DOTS_HPP

#include "../../arch.hpp"

#include <cstddef>
#include <cstdint>
#include <type_traits>

#if defined(__SSSE3__) || defined(__AVX2__) || defined(__AVX512BW__)
#include <immintrin.h>
#endif
#if defined(__ARM_NEON)
#include <arm_neon.h>
#endif

namespace deltaattn
{
    namespace kernels
    {
        enum class code_dot_isa
        {
            avx512_vnni,
            avx512_maddubs,
            avx2_maddubs,
            ssse3_maddubs,
            neon_sdot,
            neon_mull,
            generic
        };

        /// The kernel code_dots<Arch, Bits> runs in this translation unit.
        template <class Arch>
        constexpr code_dot_isa code_dot_isa_of() noexcept
        {
            if constexpr (std::is_same<Arch, scalar>::value)
                return code_dot_isa::generic;
            else
            {
                constexpr std::size_t width = arch_traits<Arch>::width;
#if defined(__AVX512BW__)
                if (width == 16 && std::is_base_of<xsimd::avx512bw, Arch>::value)
#if defined(__AVX512VNNI__)
                    return code_dot_isa::avx512_vnni;
#else
                    return code_dot_isa::avx512_maddubs;
#endif
#endif
#if defined(__AVX2__)
                if (width == 8 && std::is_base_of<xsimd::avx2, Arch>::value)
                    return code_dot_isa::avx2_maddubs;
#endif
#if defined(__SSSE3__)
                if (width == 4 && std::is_base_of<xsimd::ssse3, Arch>::value)
                    return code_dot_isa::ssse3_maddubs;
#endif
#if defined(__ARM_NEON)
                if (width == 4 && std::is_base_of<xsimd::neon, Arch>::value)
#if defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
                    return code_dot_isa::neon_sdot;
#else
                    return code_dot_isa::neon_mull;
#endif
#endif
                (void)width;
                return code_dot_isa::generic;
            }
        }

        /// Names for tests and reports.
        constexpr char const* code_dot_isa_name(code_dot_isa isa) noexcept
        {
            switch (isa)
            {
            case code_dot_isa::avx512_vnni: return "avx512-vnni";
            case code_dot_isa::avx512_maddubs: return "avx512-maddubs";
            case code_dot_isa::avx2_maddubs: return "avx2-maddubs";
            case code_dot_isa::ssse3_maddubs: return "ssse3-maddubs";
            case code_dot_isa::neon_sdot: return "neon-sdot";
            case code_dot_isa::neon_mull: return "neon-mull";
            default: return "generic";
            }
        }

        namespace code_dot_detail
        {
            /// Byte k of a word, sign-extended.
            inline int byte_of(std::int32_t x, unsigned k) noexcept { return static_cast<std::int8_t>(static_cast<std::uint32_t>(x) >> (8 * k)); }
            /// Nibble n (0..7) of a word, sign-extended.
            inline int nibble_of(std::int32_t x, unsigned n) noexcept
            {
                int const v = static_cast<int>((static_cast<std::uint32_t>(x) >> (4 * n)) & 0xF);
                return v >= 8 ? v - 16 : v;
            }

            /// This translation unit's flags enable AVX-512 VBMI (vpmultishiftqb).
#if defined(__AVX512VBMI__)
            constexpr bool avx512_vbmi = true;
#else
            constexpr bool avx512_vbmi = false;
#endif

            /// 3-bit field n (0..7) of a word, sign-extended.
            inline int field3_of(std::int32_t x, unsigned n) noexcept
            {
                int const v = static_cast<int>((static_cast<std::uint32_t>(x) >> (3 * n)) & 0x7);
                return v >= 4 ? v - 8 : v;
            }

            /// The generic kernel on one word: signed codes, no bias.
            template <unsigned Bits>
            std::int32_t word_dot(std::int32_t acc, std::int32_t codes, std::int32_t const* q) noexcept
            {
                for (unsigned k = 0; k < 4; ++k)
                {
                    if constexpr (Bits == 8)
                        acc += byte_of(codes, k) * byte_of(q[0], k);
                    else if constexpr (Bits == 4)
                        acc += nibble_of(codes, 2 * k) * byte_of(q[0], k) + nibble_of(codes, 2 * k + 1) * byte_of(q[1], k);
                    else
                        acc += field3_of(codes, 2 * k) * byte_of(q[0], k) + field3_of(codes, 2 * k + 1) * byte_of(q[1], k);
                }
                return acc;
            }

            /// The 3-bit fields of each word at bits 0, 6, 12 and 18 (codes 0, 2, 4, 6 of
            /// its 24), each moved to the low bits of its own byte (byte k: code 2k); the
            /// odd codes are the same of x >> 3. The high bits of each byte are 0.
            template <class Words>
            Words spread_fields(Words const& x) noexcept
            {
                return (x & Words(0x7)) | ((x << 2) & Words(0x700)) | ((x << 4) & Words(0x70000)) | ((x << 6) & Words(0x7000000));
            }
        }  // namespace code_dot_detail

        /**
         * Dots of registers of `Bits`-bit code words with int8 query words, in int32:
         *
         *     auto const u = code_dots<Arch, 4>::unpack(words);   // once per code register
         *     acc = code_dots<Arch, 4>::dot(acc, u, q);           // per query head
         *
         * where q points to `parts` query registers and acc started at −bias × Σ q per word.
         */
        template <class Arch, unsigned Bits>
        struct code_dots
        {
            static_assert(Bits == 3 || Bits == 4 || Bits == 8, "codes are 3, 4 or 8 bits");
            using ops = arch_traits<Arch>;
            using words = typename ops::words;
            using reg = typename ops::reg;
            static constexpr code_dot_isa isa = code_dot_isa_of<Arch>();
            static constexpr std::size_t parts = Bits == 8 ? 1 : 2;
            static constexpr bool x86 = isa == code_dot_isa::avx512_vnni || isa == code_dot_isa::avx512_maddubs || isa == code_dot_isa::avx2_maddubs ||
                                        isa == code_dot_isa::ssse3_maddubs;
            /// 3-bit codes spread to bytes by VBMI's vpmultishiftqb (AVX-512 with VBMI), not by
            /// shifts and masks.
            static constexpr bool multishift_spread = Bits == 3 && code_dot_detail::avx512_vbmi && (isa == code_dot_isa::avx512_vnni || isa == code_dot_isa::avx512_maddubs);
            /// What the kernel adds to each code (see the file comment).
            static constexpr int bias = x86 && Bits != 8 ? 1 << (Bits - 1) : isa == code_dot_isa::avx512_vnni ? 128 : 0;

            /// A code register made ready for its dots (shared by every query head).
            struct unpacked
            {
                words part[parts];
            };

            static unpacked unpack(words const& x) noexcept
            {
                unpacked u;
#if defined(__AVX512VBMI__)
                if constexpr (multishift_spread)
                {
                    // vpmultishiftqb: byte k of a qword takes the 8 bits at its own offset (a
                    // qword holds two lanes' 24 code bits, at bits 0 and 32), then & 7, ^ 4.
                    __m512i const even = _mm512_set1_epi64(0x322c'2620'120c'0600), odd = _mm512_set1_epi64(0x352f'2923'150f'0903);
                    __m512i const low = _mm512_set1_epi8(0x07), top = _mm512_set1_epi8(0x04);
                    u.part[0] = _mm512_ternarylogic_epi32(_mm512_multishift_epi64_epi8(even, x), low, top, 0x6A);  // (a & b) ^ c
                    u.part[1] = _mm512_ternarylogic_epi32(_mm512_multishift_epi64_epi8(odd, x), low, top, 0x6A);
                }
                else
#endif
                if constexpr (Bits == 3 && isa != code_dot_isa::generic)
                {
                    u.part[0] = code_dot_detail::spread_fields(x);
                    u.part[1] = code_dot_detail::spread_fields(x >> 3);
                    for (auto& p : u.part)
                    {
                        if constexpr (x86)
                            p = p ^ words(0x04040404);  // c + 4: flip each code's top bit
#if defined(__ARM_NEON)
                        else  // sign-extended bytes
                            p = words(vreinterpretq_s32_s8(vshrq_n_s8(vshlq_n_s8(vreinterpretq_s8_s32(p), 5), 5)));
#endif
                    }
                }
                else if constexpr (x86 && Bits == 4)
                {
                    // Nibbles biased to unsigned (c + 8: flip each nibble's top bit), split
                    // into low and high ones. (>> is arithmetic; the mask drops its sign bits.)
                    words const biased = x ^ words(static_cast<std::int32_t>(0x88888888u)), low(0x0F0F0F0F);
                    u.part[0] = biased & low;
                    u.part[1] = (biased >> 4) & low;
                }
                else if constexpr (isa == code_dot_isa::avx512_vnni)
                    u.part[0] = x ^ words(static_cast<std::int32_t>(0x80808080u));  // c + 128
#if defined(__ARM_NEON)
                else if constexpr ((isa == code_dot_isa::neon_sdot || isa == code_dot_isa::neon_mull) && Bits == 4)
                {
                    int8x16_t const v = vreinterpretq_s8_s32(x);
                    u.part[0] = words(vreinterpretq_s32_s8(vshrq_n_s8(vshlq_n_s8(v, 4), 4)));  // low nibbles, sign-extended
                    u.part[1] = words(vreinterpretq_s32_s8(vshrq_n_s8(v, 4)));                 // high nibbles
                }
#endif
                else
                {
                    for (auto& p : u.part)
                        p = x;  // signed bytes as they are (the maddubs kernels take their sign per query); generic: split per lane
                }
                return u;
            }

            /// acc + Σ_parts Σ_{bytes k} u.part[p]_k · q[p]_k, per word.
            static words dot(words const& acc, unpacked const& u, words const* q) noexcept
            {
                if constexpr (isa == code_dot_isa::generic)
                    return generic_dot(acc, u.part[0], q);
#if defined(__AVX512BW__)
                else if constexpr (isa == code_dot_isa::avx512_vnni)
                {
#if defined(__AVX512VNNI__)
                    __m512i a = _mm512_dpbusd_epi32(acc, u.part[0], q[0]);
                    if constexpr (parts == 2)
                        a = _mm512_dpbusd_epi32(a, u.part[1], q[1]);
                    return words(a);
#endif
                }
                else if constexpr (isa == code_dot_isa::avx512_maddubs)
                {
                    __m512i pairs;
                    if constexpr (parts == 2)
                        pairs = _mm512_add_epi16(_mm512_maddubs_epi16(u.part[0], q[0]), _mm512_maddubs_epi16(u.part[1], q[1]));
                    else
                    {
                        __m512i const c = u.part[0];
                        __mmask64 const negative = _mm512_movepi8_mask(c);
                        __m512i const signed_q = _mm512_mask_sub_epi8(q[0], negative, _mm512_setzero_si512(), q[0]);
                        pairs = _mm512_maddubs_epi16(_mm512_abs_epi8(c), signed_q);
                    }
                    return words(_mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1))));
                }
#endif
#if defined(__AVX2__)
                else if constexpr (isa == code_dot_isa::avx2_maddubs)
                {
                    __m256i pairs;
                    if constexpr (parts == 2)
                        pairs = _mm256_add_epi16(_mm256_maddubs_epi16(u.part[0], q[0]), _mm256_maddubs_epi16(u.part[1], q[1]));
                    else
                        pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(u.part[0]), _mm256_sign_epi8(q[0], u.part[0]));
                    return words(_mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))));
                }
#endif
#if defined(__SSSE3__)
                else if constexpr (isa == code_dot_isa::ssse3_maddubs)
                {
                    __m128i pairs;
                    if constexpr (parts == 2)
                        pairs = _mm_add_epi16(_mm_maddubs_epi16(u.part[0], q[0]), _mm_maddubs_epi16(u.part[1], q[1]));
                    else
                        pairs = _mm_maddubs_epi16(_mm_abs_epi8(u.part[0]), _mm_sign_epi8(q[0], u.part[0]));
                    return words(_mm_add_epi32(acc, _mm_madd_epi16(pairs, _mm_set1_epi16(1))));
                }
#endif
#if defined(__ARM_NEON)
                else if constexpr (isa == code_dot_isa::neon_sdot)
                {
#if defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
                    int32x4_t a = vdotq_s32(acc, vreinterpretq_s8_s32(u.part[0]), vreinterpretq_s8_s32(q[0]));
                    if constexpr (parts == 2)
                        a = vdotq_s32(a, vreinterpretq_s8_s32(u.part[1]), vreinterpretq_s8_s32(q[1]));
                    return words(a);
#endif
                }
                else if constexpr (isa == code_dot_isa::neon_mull)
                {
                    int32x4_t a = acc;
                    for (std::size_t p = 0; p < parts; ++p)
                    {
                        int8x16_t const c = vreinterpretq_s8_s32(u.part[p]), qp = vreinterpretq_s8_s32(q[p]);
                        // Products of words 0-1 and 2-3 (int16: |c q| <= 127 · 127), then
                        // pairs of pairs: one int32 per word.
                        int32x4_t const lo = vpaddlq_s16(vmull_s8(vget_low_s8(c), vget_low_s8(qp)));
                        int32x4_t const hi = vpaddlq_s16(vmull_s8(vget_high_s8(c), vget_high_s8(qp)));
                        int32x4_t const words4 = vcombine_s32(vpadd_s32(vget_low_s32(lo), vget_high_s32(lo)), vpadd_s32(vget_low_s32(hi), vget_high_s32(hi)));
                        a = vaddq_s32(a, words4);
                    }
                    return words(a);
                }
#endif
                else
                    return acc;  // unreachable: every isa above has its branch
            }

            static reg to_float(words const& x) noexcept
            {
                if constexpr (std::is_same<Arch, scalar>::value)
                    return static_cast<float>(x);
                else
                    return xsimd::to_float(x);
            }

        private:
            static words generic_dot(words const& acc, words const& codes, words const* q) noexcept
            {
                if constexpr (std::is_same<Arch, scalar>::value)
                    return code_dot_detail::word_dot<Bits>(acc, codes, q);
                else
                {
                    constexpr std::size_t w = ops::width;
                    alignas(64) std::int32_t a[w], c[w], qw[parts][w];
                    acc.store_aligned(a);
                    codes.store_aligned(c);
                    for (std::size_t p = 0; p < parts; ++p)
                        q[p].store_aligned(qw[p]);
                    for (std::size_t l = 0; l < w; ++l)
                    {
                        std::int32_t ql[parts];
                        for (std::size_t p = 0; p < parts; ++p)
                            ql[p] = qw[p][l];
                        a[l] = code_dot_detail::word_dot<Bits>(a[l], c[l], ql);
                    }
                    return words::load_aligned(a);
                }
            }
        };
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_ARCH_CODE_DOTS_HPP
