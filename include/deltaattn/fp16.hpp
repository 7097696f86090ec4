/**
 * @file fp16.hpp
 * IEEE 754 binary16 <-> binary32, one value at a time, in portable C++, and
 * `float16`, the storage type of fp16 K/V caches.
 *
 * The functions here serve appends, tails and checks, not hot loops (kernels convert
 * a register at a time: `arch_traits<Arch>::load(float16 const*)`). The conversion is exact
 * (every half is a float), and float -> half rounds to nearest, ties to even, with
 * overflow to infinity and NaN kept NaN, as F16C's `vcvtps2ph` and NEON's `vcvt`
 * do in their default rounding mode.
 */
#ifndef DELTAATTN_FP16_HPP
#define DELTAATTN_FP16_HPP

#include <cstdint>
#include <cstring>

namespace deltaattn
{
    /// The float a binary16 bit pattern stands for (exact).
    inline float half_to_float(std::uint16_t h) noexcept
    {
        std::uint32_t const sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
        std::uint32_t exponent = (h >> 10) & 0x1fu;
        std::uint32_t mantissa = h & 0x3ffu;
        std::uint32_t bits;
        if (exponent == 0x1fu)  // infinity or NaN: the payload moves to the top of the float's
            bits = sign | 0x7f800000u | (mantissa << 13);
        else if (exponent != 0)  // normal: rebias 15 -> 127
            bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
        else if (mantissa == 0)
            bits = sign;
        else
        {
            // Subnormal half: normalize, so it becomes a normal float.
            exponent = 113u;
            while ((mantissa & 0x400u) == 0)
            {
                mantissa <<= 1;
                --exponent;
            }
            bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
        }
        float f;
        std::memcpy(&f, &bits, sizeof f);
        return f;
    }

    /// The binary16 nearest to `f` (ties to even); beyond the half range, infinity.
    inline std::uint16_t float_to_half(float f) noexcept
    {
        std::uint32_t bits;
        std::memcpy(&bits, &f, sizeof bits);
        auto const sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
        std::uint32_t const magnitude = bits & 0x7fffffffu;
        if (magnitude > 0x7f800000u)  // NaN: keep it quiet and keep the top payload bits
            return static_cast<std::uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
        if (magnitude >= 0x477ff000u)  // rounds to >= 65520: infinity
            return static_cast<std::uint16_t>(sign | 0x7c00u);
        if (magnitude < 0x38800000u)  // below the smallest normal half (2^-14): subnormal or zero
        {
            if (magnitude < 0x33000000u)  // below half the smallest subnormal (2^-25): zero
                return sign;
            // Shift the full 24-bit significand down to units of 2^-24, rounding to even.
            std::uint32_t const exponent = magnitude >> 23;
            std::uint32_t const significand = (magnitude & 0x7fffffu) | 0x800000u;
            std::uint32_t const shift = 126u - exponent;  // 14..24
            std::uint32_t const kept = significand >> shift;
            std::uint32_t const rest = significand & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
            std::uint32_t const rounded = kept + ((rest > halfway || (rest == halfway && (kept & 1u))) ? 1u : 0u);
            return static_cast<std::uint16_t>(sign | rounded);  // a carry into bit 10 is the smallest normal: correct
        }
        // Normal: rebias 127 -> 15 and round the 13 dropped bits to even; a carry out of the
        // mantissa bumps the exponent, which is exactly the right result.
        std::uint32_t const rebased = magnitude - (112u << 23);
        std::uint32_t const kept = rebased >> 13, rest = rebased & 0x1fffu;
        std::uint32_t const rounded = kept + ((rest > 0x1000u || (rest == 0x1000u && (kept & 1u))) ? 1u : 0u);
        return static_cast<std::uint16_t>(sign | rounded);
    }

    /**
     * An IEEE binary16 value in storage: K/V rows are kept as float16 and computed on as
     * float. A distinct type (not `std::uint16_t`) so that kernels overload on it, and
     * layout-compatible with `_Float16`, `__fp16`, `Eigen::half` and ggml's `ggml_fp16_t`,
     * so an engine's fp16 cache is viewed in place.
     */
    struct float16
    {
        std::uint16_t bits;
    };
    static_assert(sizeof(float16) == 2, "float16 must be two bytes, like the caches it views");

    /// The float a stored element stands for (exact).
    inline float to_float(float x) noexcept { return x; }
    inline float to_float(float16 x) noexcept { return half_to_float(x.bits); }

    /// The storage element nearest to `f` (round to nearest even for float16).
    template <class T>
    T from_float(float f) noexcept;
    template <>
    inline float from_float<float>(float f) noexcept
    {
        return f;
    }
    template <>
    inline float16 from_float<float16>(float f) noexcept
    {
        return {float_to_half(f)};
    }

    /// `f` as a storage element of type T would hold it: f itself for float, the nearest
    /// binary16 (as a float) for float16.
    template <class T>
    float round_to(float f) noexcept
    {
        return to_float(from_float<T>(f));
    }
}  // namespace deltaattn

#endif  // DELTAATTN_FP16_HPP
