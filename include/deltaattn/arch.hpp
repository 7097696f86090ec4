/**
 * @file arch.hpp
 * Backend tags and the handful of vector operations every kernel is written against.
 *
 * Kernels are templates on an arch tag: an xsimd arch type (`xsimd::sse2`,
 * `xsimd::fma3<xsimd::avx2>`, `xsimd::avx512f`, `xsimd::neon64`, ...) or
 * `deltaattn::scalar`, the plain C++ path that exists for every kernel and runs on
 * any CPU. `arch_traits<Arch>` hides the one difference that matters here: a vector
 * register is an `xsimd::batch<float, Arch>` or a single `float`. It also papers over
 * the API that changed between xsimd 8 (Debian 12) and xsimd 12+ (`hadd` became
 * `reduce_add`).
 *
 * Invariant: nothing here carries ISA flags of its own. `batch<float, Arch>` only
 * compiles in a translation unit built for that ISA, so a baseline TU never holds AVX
 * code unless it names an AVX arch itself.
 */
#ifndef DELTAATTN_ARCH_HPP
#define DELTAATTN_ARCH_HPP

#include "config.hpp"
#include "fp16.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <xsimd/xsimd.hpp>

namespace deltaattn
{
    /// The portable path: one float per "register", plain C++ arithmetic.
    struct scalar
    {
        static constexpr char const* name() noexcept { return "scalar"; }
    };

    /// The backend the compiler flags select: the best xsimd arch the TU is built for,
    /// or `scalar` when there is none (or DELTAATTN_FORCE_SCALAR is defined).
    using default_arch = std::conditional_t<DELTAATTN_DEFAULT_IS_SCALAR || std::is_same<xsimd::default_arch, xsimd::unavailable>::value,
                                            scalar, xsimd::default_arch>;

    namespace detail
    {
        /// Keeps `r`, a vector register's value, in a register: the compiler can no longer
        /// fold the load that made it into the instructions that read it (it emits
        /// nothing). GCC folds a loaded register into every FMA that uses it, reloading a
        /// value meant to be loaded once for several FMAs, and folds a plain load and a
        /// register-form vexpandps back into the slow memory form.
        template <class Register>
        inline void keep_in_register(Register& r) noexcept
        {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
            asm("" : "+v"(r));
#elif defined(__GNUC__) && defined(__ARM_NEON)
            asm("" : "+w"(r));
#else
            (void)r;
#endif
        }
    }  // namespace detail

    /// Vector operations on `Arch` registers of floats.
    template <class Arch>
    struct arch_traits
    {
        using reg = xsimd::batch<float, Arch>;
        using mask = xsimd::batch_bool<float, Arch>;
        static constexpr std::size_t width = reg::size;
        /// Architectural vector registers: what register-blocked loops size their tiles by.
        static constexpr std::size_t registers = std::is_base_of<xsimd::avx512f, Arch>::value || std::is_base_of<xsimd::neon64, Arch>::value ? 32 : 16;

        static reg zero() noexcept { return reg(0.0f); }
        static reg broadcast(float x) noexcept { return reg(x); }
        static reg load(float const* p) noexcept { return reg::load_unaligned(p); }
        /// `width` binary16 values, widened to floats (exact): F16C, AVX-512 or NEON's
        /// conversion instruction where the TU has one, else one value at a time.
        static reg load(float16 const* p) noexcept
        {
            [[maybe_unused]] auto const* bits = reinterpret_cast<std::uint16_t const*>(p);  // (unused without a conversion instruction)
#if defined(__AVX512F__)
            if constexpr (width == 16 && std::is_base_of<xsimd::avx512f, Arch>::value)
                return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<__m256i const*>(bits)));
#endif
#if defined(__F16C__)
            if constexpr (width == 8 && std::is_base_of<xsimd::avx, Arch>::value)
                return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<__m128i const*>(bits)));
            if constexpr (width == 4 && std::is_base_of<xsimd::sse2, Arch>::value)
                return _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<__m128i const*>(bits)));
#endif
#if defined(__aarch64__)
            if constexpr (width == 4 && std::is_base_of<xsimd::neon, Arch>::value)
                return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(bits)));
#elif defined(__ARM_NEON) && defined(__ARM_NEON_FP) && (__ARM_NEON_FP & 2)
            // ARMv7 NEON with the half-precision extension (VFPv4 FPUs). GCC declares the
            // intrinsic only under -mfp16-format=ieee, which engines rarely pass.
            if constexpr (width == 4 && std::is_base_of<xsimd::neon, Arch>::value)
            {
                uint16x4_t const h = vld1_u16(bits);
                float32x4_t widened;
                __asm__("vcvt.f32.f16 %q0, %P1" : "=w"(widened) : "w"(h));
                return widened;
            }
#endif
            alignas(64) float lanes[width];
            for (std::size_t i = 0; i < width; ++i)
                lanes[i] = to_float(p[i]);
            return reg::load_unaligned(lanes);
        }
        static void store(float* p, reg const& x) noexcept { x.store_unaligned(p); }
        /// Keeps `x` in a register (detail::keep_in_register): loaded once, however many
        /// FMAs read it.
        static void pin(reg& x) noexcept { detail::keep_in_register(x.data); }

        /// A register of 32-bit words of packed codes (codecs/quant.hpp).
        using words = xsimd::batch<std::int32_t, Arch>;
        static words load_words(std::uint8_t const* p) noexcept { return words::load_unaligned(reinterpret_cast<std::int32_t const*>(p)); }
        /**
         * A register of code lanes of a `Bits`-bit row (codecs/quant.hpp): 32-bit words at
         * 4 and 8 bits; at 3 bits, lane l = bytes [3l, 3l + 3) (its 8 codes), zero-extended.
         * Reads one register's worth of bytes from p (4·width) whatever the lanes use: the
         * caches pad their code rows.
         */
        template <unsigned Bits>
        static words load_code_lanes(std::uint8_t const* p) noexcept
        {
            if constexpr (Bits != 3)
                return load_words(p);
            else
            {
#if defined(__AVX512BW__)
                // 128-bit lane k takes bytes [12k, 12k + 12) (dwords 3k..3k+2) by vpermd, then
                // each 32-bit lane its 3 bytes by vpshufb (which stays inside 128-bit lanes).
                if constexpr (width == 16 && std::is_base_of<xsimd::avx512f, Arch>::value)
                {
                    __m512i const dwords = _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 1, 2, 2, 3, 4, 5, 5, 6, 7, 8, 8, 9, 10, 11, 11),
                                                                    _mm512_loadu_si512(p));
                    return _mm512_shuffle_epi8(dwords, _mm512_broadcast_i32x4(three_byte_lanes()));
                }
#endif
#if defined(__AVX2__)
                if constexpr (width == 8 && std::is_base_of<xsimd::avx2, Arch>::value)
                {
                    __m256i const dwords = _mm256_permutevar8x32_epi32(_mm256_loadu_si256(reinterpret_cast<__m256i const*>(p)), _mm256_setr_epi32(0, 1, 2, 2, 3, 4, 5, 5));
                    return _mm256_shuffle_epi8(dwords, _mm256_broadcastsi128_si256(three_byte_lanes()));
                }
#endif
#if defined(__SSSE3__)
                if constexpr (width == 4 && std::is_base_of<xsimd::sse2, Arch>::value)
                    return _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<__m128i const*>(p)), three_byte_lanes());
#endif
#if defined(__aarch64__)
                if constexpr (width == 4 && std::is_base_of<xsimd::neon, Arch>::value)
                {
                    static constexpr std::uint8_t spread[16] = {0, 1, 2, 255, 3, 4, 5, 255, 6, 7, 8, 255, 9, 10, 11, 255};  // 255: a zero byte
                    return vreinterpretq_s32_u8(vqtbl1q_u8(vld1q_u8(p), vld1q_u8(spread)));
                }
#elif defined(__ARM_NEON)
                if constexpr (width == 4 && std::is_base_of<xsimd::neon, Arch>::value)
                {
                    static constexpr std::uint8_t spread[16] = {0, 1, 2, 255, 3, 4, 5, 255, 6, 7, 8, 255, 9, 10, 11, 255};
                    uint8x8x2_t const bytes = {{vld1_u8(p), vld1_u8(p + 8)}};
                    return vreinterpretq_s32_u8(vcombine_u8(vtbl2_u8(bytes, vld1_u8(spread)), vtbl2_u8(bytes, vld1_u8(spread + 8))));
                }
#endif
                alignas(64) std::int32_t lanes[width];
                for (std::size_t l = 0; l < width; ++l)
                    lanes[l] = static_cast<std::int32_t>(p[3 * l] | p[3 * l + 1] << 8 | p[3 * l + 2] << 16);
                return words::load_aligned(lanes);
            }
        }
#if defined(__SSSE3__)
        /// pshufb indices that spread 12 bytes into four 32-bit lanes of 3 (the top byte 0).
        static __m128i three_byte_lanes() noexcept { return _mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1); }
#endif

        /// Field `Field` of each lane, a signed `Bits`-bit code, as a float: two shifts
        /// (the top field one) and a conversion.
        template <unsigned Bits, unsigned Field>
        static reg code_field(words const& x) noexcept
        {
#if defined(__AVX512F__)
            // 4- and 3-bit codes: vpermps reads the low 4 bits of each index lane, so one
            // shift and a lookup in the code values replace the shifts and the conversion
            // (at 3 bits the table holds the 8 values twice: index bit 3 is the next field's).
            if constexpr ((Bits == 4 || Bits == 3) && width == 16 && std::is_base_of<xsimd::avx512f, Arch>::value)
            {
                __m512 const values = Bits == 4 ? _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1)
                                                : _mm512_setr_ps(0, 1, 2, 3, -4, -3, -2, -1, 0, 1, 2, 3, -4, -3, -2, -1);
                __m512i const index = Field == 0 ? __m512i(x) : _mm512_srli_epi32(x, Bits * Field);
                return _mm512_permutexvar_ps(index, values);
            }
#endif
            constexpr int up = static_cast<int>(32 - Bits * (Field + 1)), down = static_cast<int>(32 - Bits);
            if constexpr (up == 0)
                return xsimd::to_float(x >> down);
            else
                return xsimd::to_float((x << up) >> down);
        }

        static reg fma(reg const& a, reg const& b, reg const& c) noexcept { return xsimd::fma(a, b, c); }
        static reg add(reg const& a, reg const& b) noexcept { return a + b; }
        static reg sub(reg const& a, reg const& b) noexcept { return a - b; }
        static reg mul(reg const& a, reg const& b) noexcept { return a * b; }
        static reg max(reg const& a, reg const& b) noexcept { return xsimd::max(a, b); }
        static reg exp(reg const& x) noexcept
        {
#if defined(__AVX512F__)
            if constexpr (std::is_base_of<xsimd::avx512f, Arch>::value)
                return exp_avx512(x);
#endif
            return xsimd::exp(x);
        }
#if defined(__AVX512F__)
        /// e^x = 2^n e^r, n = round(x log2 e), r = x - n ln 2 (in two parts, Cody-Waite),
        /// e^r by Cephes' degree-5 polynomial; `vscalefps` applies 2^n, rounding subnormal
        /// results and overflowing to inf by itself, so only x < -88 (and -inf: the masked
        /// scores of the softmax) needs a mask, to 0. 14 instructions against xsimd's 22,
        /// which builds 2^n from integer bits and blends both ends of the range: dense
        /// prefill 1.01-1.02x (Zen 4), where the softmax is ~5% of the time.
        static reg exp_avx512(__m512 x) noexcept
        {
            __m512 const n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
            r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
            __m512 p = _mm512_set1_ps(1.9875691500e-4f);
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
            __m512 const y = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
            // Unordered compares true: a NaN goes through as NaN.
            return _mm512_maskz_scalef_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(-88.0f), _CMP_NLT_UQ), y, n);
        }
#endif
        static mask less(reg const& a, reg const& b) noexcept { return a < b; }
        static mask equal(reg const& a, reg const& b) noexcept { return a == b; }
        static reg select(mask const& m, reg const& a, reg const& b) noexcept { return xsimd::select(m, a, b); }
        /// Lanes 0, 1, ..., width - 1.
        static reg iota() noexcept
        {
            alignas(64) float lanes[width];
            for (std::size_t i = 0; i < width; ++i)
                lanes[i] = static_cast<float>(i);
            return reg::load_unaligned(lanes);
        }
        static float reduce_add(reg const& x) noexcept
        {
#if XSIMD_VERSION_MAJOR >= 9
            return xsimd::reduce_add(x);
#else
            return xsimd::hadd(x);
#endif
        }
        /// Lane i of the result = the sum of the lanes of rows[i] (`width` rows).
        static reg reduce_add_rows(reg const* rows) noexcept
        {
#if defined(__AVX512F__)
            // Our own 16x16 transpose-add: xsimd 8's AVX-512 haddp returns its lanes out of
            // order (2,3 <-> 4,5 and 10,11 <-> 12,13), and a reduction row by row costs
            // ~10x the instructions (it dominated the decode kernel's delta scores).
            if constexpr (std::is_base_of<xsimd::avx512f, Arch>::value)
                return reduce_add_rows_avx512(rows);
#endif
            return xsimd::haddp(rows);
        }
#if defined(__AVX512F__)
        /// Lane i = Σ rows[i], for 16 rows of 16 lanes, in four levels of pairwise sums:
        /// within 128-bit lanes (unpack, then shuffle), then across them (shuffle_f32x4).
        static reg reduce_add_rows_avx512(reg const* rows) noexcept
        {
            __m512 quads[4];
            DELTAATTN_UNROLL
            for (int i = 0; i < 4; ++i)
            {
                __m512 const four[4] = {rows[4 * i], rows[4 * i + 1], rows[4 * i + 2], rows[4 * i + 3]};
                quads[i] = sum_within_128bit_lanes(four, [](__m512 a, __m512 b) { return _mm512_add_ps(a, b); });
            }
            return reduce_add_quads_avx512(quads);
        }
        /// The first two levels of reduce_add_rows_avx512, on 4 registers: lane 4k + r =
        /// the sum of 128-bit lane k of x[r]. `add` sums two registers: float lanes, or
        /// int32 lanes carried in __m512 (the shuffles only move bits).
        template <class Add>
        static __m512 sum_within_128bit_lanes(__m512 const* x, Add add) noexcept
        {
            // rows 0, 1 (and 2, 3): [a02 b02 a13 b13] per 128-bit lane
            __m512 const p = add(_mm512_unpacklo_ps(x[0], x[1]), _mm512_unpackhi_ps(x[0], x[1]));
            __m512 const q = add(_mm512_unpacklo_ps(x[2], x[3]), _mm512_unpackhi_ps(x[2], x[3]));
            return add(_mm512_shuffle_ps(p, q, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(p, q, _MM_SHUFFLE(3, 2, 3, 2)));
        }
        /// The last two levels of reduce_add_rows_avx512: quads[i] lane 4k + r holds a partial
        /// sum of row 4i + r (k: its 128-bit lane); lane i of the result = row i's sum.
        static reg reduce_add_quads_avx512(__m512 const* quads) noexcept
        {
            __m512 octs[2];
            DELTAATTN_UNROLL
            for (int i = 0; i < 2; ++i)  // 128-bit lanes 0+1 and 2+3 of rows 8i..8i+7
                octs[i] = _mm512_add_ps(_mm512_shuffle_f32x4(quads[2 * i], quads[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                                        _mm512_shuffle_f32x4(quads[2 * i], quads[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
            return _mm512_add_ps(_mm512_shuffle_f32x4(octs[0], octs[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_f32x4(octs[0], octs[1], _MM_SHUFFLE(3, 1, 3, 1)));
        }
#endif
        /// rows[i] lane c becomes rows[c] lane i: a width x width transpose in registers
        /// (AVX-512 16x16 in 64 shuffles, AVX 8x8 in 24, SSE and NEON 4x4 in 8). The prefill
        /// kernel turns its query rows into lanes with it: element by element, the
        /// transpose took 2-5% of a dense prefill (Zen 4, n 1024-2048, d 128).
        static void transpose(reg* rows) noexcept
        {
#if defined(__AVX512F__)
            if constexpr (width == 16 && std::is_base_of<xsimd::avx512f, Arch>::value)
                return transpose_avx512(rows);
#endif
#if defined(__AVX__)
            if constexpr (width == 8 && std::is_base_of<xsimd::avx, Arch>::value)
                return transpose_avx(rows);
#endif
#if defined(__SSE2__)
            if constexpr (width == 4 && std::is_base_of<xsimd::sse2, Arch>::value)
            {
                __m128 r0 = rows[0], r1 = rows[1], r2 = rows[2], r3 = rows[3];
                _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
                rows[0] = r0, rows[1] = r1, rows[2] = r2, rows[3] = r3;
                return;
            }
#endif
#if defined(__ARM_NEON)
            if constexpr (width == 4 && std::is_base_of<xsimd::neon, Arch>::value)
            {
                float32x4x2_t const ab = vtrnq_f32(rows[0], rows[1]);  // [a0 b0 a2 b2], [a1 b1 a3 b3]
                float32x4x2_t const cd = vtrnq_f32(rows[2], rows[3]);
                rows[0] = vcombine_f32(vget_low_f32(ab.val[0]), vget_low_f32(cd.val[0]));
                rows[1] = vcombine_f32(vget_low_f32(ab.val[1]), vget_low_f32(cd.val[1]));
                rows[2] = vcombine_f32(vget_high_f32(ab.val[0]), vget_high_f32(cd.val[0]));
                rows[3] = vcombine_f32(vget_high_f32(ab.val[1]), vget_high_f32(cd.val[1]));
                return;
            }
#endif
            alignas(64) float m[width][width];
            for (std::size_t i = 0; i < width; ++i)
                rows[i].store_unaligned(m[i]);
            for (std::size_t i = 0; i < width; ++i)
            {
                alignas(64) float column[width];
                for (std::size_t c = 0; c < width; ++c)
                    column[c] = m[c][i];
                rows[i] = reg::load_unaligned(column);
            }
        }
#if defined(__AVX512F__)
        static void transpose_avx512(reg* rows) noexcept
        {
            // Per 128-bit lane k, after the unpacks and shuffle_ps: u[4g + j] holds column
            // 4k + j of rows 4g..4g+3; the shuffle_f32x4 levels then gather lane k of
            // u[j], u[4 + j], u[8 + j], u[12 + j].
            __m512 u[16];
            DELTAATTN_UNROLL
            for (int g = 0; g < 4; ++g)
            {
                __m512 const lo01 = _mm512_unpacklo_ps(rows[4 * g], rows[4 * g + 1]), hi01 = _mm512_unpackhi_ps(rows[4 * g], rows[4 * g + 1]);
                __m512 const lo23 = _mm512_unpacklo_ps(rows[4 * g + 2], rows[4 * g + 3]), hi23 = _mm512_unpackhi_ps(rows[4 * g + 2], rows[4 * g + 3]);
                u[4 * g] = _mm512_shuffle_ps(lo01, lo23, _MM_SHUFFLE(1, 0, 1, 0));
                u[4 * g + 1] = _mm512_shuffle_ps(lo01, lo23, _MM_SHUFFLE(3, 2, 3, 2));
                u[4 * g + 2] = _mm512_shuffle_ps(hi01, hi23, _MM_SHUFFLE(1, 0, 1, 0));
                u[4 * g + 3] = _mm512_shuffle_ps(hi01, hi23, _MM_SHUFFLE(3, 2, 3, 2));
            }
            DELTAATTN_UNROLL
            for (int j = 0; j < 4; ++j)
            {
                __m512 const even01 = _mm512_shuffle_f32x4(u[j], u[4 + j], _MM_SHUFFLE(2, 0, 2, 0));  // lanes 0, 2 of u[j], u[4+j]
                __m512 const odd01 = _mm512_shuffle_f32x4(u[j], u[4 + j], _MM_SHUFFLE(3, 1, 3, 1));
                __m512 const even23 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], _MM_SHUFFLE(2, 0, 2, 0));
                __m512 const odd23 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], _MM_SHUFFLE(3, 1, 3, 1));
                rows[j] = _mm512_shuffle_f32x4(even01, even23, _MM_SHUFFLE(2, 0, 2, 0));
                rows[8 + j] = _mm512_shuffle_f32x4(even01, even23, _MM_SHUFFLE(3, 1, 3, 1));
                rows[4 + j] = _mm512_shuffle_f32x4(odd01, odd23, _MM_SHUFFLE(2, 0, 2, 0));
                rows[12 + j] = _mm512_shuffle_f32x4(odd01, odd23, _MM_SHUFFLE(3, 1, 3, 1));
            }
        }
#endif
#if defined(__AVX__)
        static void transpose_avx(reg* rows) noexcept
        {
            // Per 128-bit half h: u[4g + j] holds column 4h + j of rows 4g..4g+3.
            __m256 u[8];
            DELTAATTN_UNROLL
            for (int g = 0; g < 2; ++g)
            {
                __m256 const lo01 = _mm256_unpacklo_ps(rows[4 * g], rows[4 * g + 1]), hi01 = _mm256_unpackhi_ps(rows[4 * g], rows[4 * g + 1]);
                __m256 const lo23 = _mm256_unpacklo_ps(rows[4 * g + 2], rows[4 * g + 3]), hi23 = _mm256_unpackhi_ps(rows[4 * g + 2], rows[4 * g + 3]);
                u[4 * g] = _mm256_shuffle_ps(lo01, lo23, _MM_SHUFFLE(1, 0, 1, 0));
                u[4 * g + 1] = _mm256_shuffle_ps(lo01, lo23, _MM_SHUFFLE(3, 2, 3, 2));
                u[4 * g + 2] = _mm256_shuffle_ps(hi01, hi23, _MM_SHUFFLE(1, 0, 1, 0));
                u[4 * g + 3] = _mm256_shuffle_ps(hi01, hi23, _MM_SHUFFLE(3, 2, 3, 2));
            }
            DELTAATTN_UNROLL
            for (int j = 0; j < 4; ++j)
            {
                rows[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
                rows[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
            }
        }
#endif
        static float reduce_max(reg const& x) noexcept
        {
            alignas(64) float lanes[width];
            x.store_unaligned(lanes);
            float m = lanes[0];
            for (std::size_t i = 1; i < width; ++i)
                m = lanes[i] > m ? lanes[i] : m;
            return m;
        }
    };

    template <>
    struct arch_traits<scalar>
    {
        using reg = float;
        using mask = bool;
        static constexpr std::size_t width = 1;
        static constexpr std::size_t registers = 16;

        static reg zero() noexcept { return 0.0f; }
        static reg broadcast(float x) noexcept { return x; }
        static reg load(float const* p) noexcept { return *p; }
        static reg load(float16 const* p) noexcept { return to_float(*p); }
        static void store(float* p, reg x) noexcept { *p = x; }
        static void pin(reg&) noexcept {}

        using words = std::int32_t;
        static words load_words(std::uint8_t const* p) noexcept
        {
            std::uint32_t x;
            std::memcpy(&x, p, sizeof x);
            return static_cast<std::int32_t>(x);
        }
        template <unsigned Bits>
        static words load_code_lanes(std::uint8_t const* p) noexcept
        {
            if constexpr (Bits != 3)
                return load_words(p);
            else
                return static_cast<std::int32_t>(p[0] | p[1] << 8 | p[2] << 16);
        }
        template <unsigned Bits, unsigned Field>
        static reg code_field(words x) noexcept
        {
            // Shifted as unsigned (no overflow), then arithmetically right (two's complement).
            constexpr unsigned up = 32 - Bits * (Field + 1), down = 32 - Bits;
            return static_cast<float>(static_cast<std::int32_t>(static_cast<std::uint32_t>(x) << up) >> down);
        }

        static reg fma(reg a, reg b, reg c) noexcept
        {
#if defined(FP_FAST_FMAF)
            // Hardware FMA: fuse explicitly, so rounding never depends on where the
            // compiler chose to contract a * b + c.
            return std::fma(a, b, c);
#else
            return a * b + c;  // std::fma would be a slow library call
#endif
        }
        static reg add(reg a, reg b) noexcept { return a + b; }
        static reg sub(reg a, reg b) noexcept { return a - b; }
        static reg mul(reg a, reg b) noexcept { return a * b; }
        static reg max(reg a, reg b) noexcept { return a > b ? a : b; }
        static reg exp(reg x) noexcept { return std::exp(x); }
        static mask less(reg a, reg b) noexcept { return a < b; }
        static mask equal(reg a, reg b) noexcept { return a == b; }
        static reg select(mask m, reg a, reg b) noexcept { return m ? a : b; }
        static reg iota() noexcept { return 0.0f; }
        static float reduce_add(reg x) noexcept { return x; }
        static reg reduce_add_rows(reg const* rows) noexcept { return rows[0]; }
        static void transpose(reg*) noexcept {}
        static float reduce_max(reg x) noexcept { return x; }
    };

    /// The name of an arch tag, as printed by tests, tools and benchmarks.
    template <class Arch>
    constexpr char const* arch_name() noexcept
    {
        return Arch::name();
    }

    /// The name of `default_arch`: what the kernels called without an explicit arch run.
    inline char const* active_arch_name() noexcept { return arch_name<default_arch>(); }
}  // namespace deltaattn

#endif  // DELTAATTN_ARCH_HPP
