// binary16 <-> binary32 (fp16.hpp): checked on every half against an analytic decode,
// on every rounding boundary between adjacent halves, and against the CPU's own
// conversion instruction where the build has one (F16C on x86, NEON's vcvt on aarch64).
#include "catch.hpp"

#include <deltaattn/fp16.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>

#if defined(__F16C__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

using deltaattn::float_to_half;
using deltaattn::half_to_float;

namespace
{
    /// (-1)^s * 2^(e-15) * (1 + m/1024), or the subnormal/special forms: the textbook decode.
    double decode(std::uint16_t h)
    {
        int const sign = h >> 15, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
        double const magnitude = exponent == 0 ? std::ldexp(mantissa, -24)
                                 : exponent == 31 ? (mantissa ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity())
                                                  : std::ldexp(1024 + mantissa, exponent - 25);
        return sign ? -magnitude : magnitude;
    }

    bool is_nan_half(std::uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0; }

    /// The conversion instruction of this build's CPU, if it has one.
    bool hardware_float_to_half(float f, std::uint16_t& h)
    {
#if defined(__F16C__)
        h = static_cast<std::uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
        return true;
#elif defined(__aarch64__)
        float16_t const x = vget_lane_f16(vcvt_f16_f32(vdupq_n_f32(f)), 0);
        std::memcpy(&h, &x, sizeof h);
        return true;
#else
        (void)f, (void)h;
        return false;
#endif
    }
}  // namespace

TEST_CASE("every half decodes to its textbook value and converts back to itself", "[fp16]")
{
    for (std::uint32_t i = 0; i <= 0xffff; ++i)
    {
        auto const h = static_cast<std::uint16_t>(i);
        float const f = half_to_float(h);
        if (is_nan_half(h))
        {
            REQUIRE(std::isnan(f));
            REQUIRE(is_nan_half(float_to_half(f)));
            continue;
        }
        REQUIRE(static_cast<double>(f) == decode(h));
        REQUIRE(std::signbit(f) == ((h & 0x8000) != 0));
        REQUIRE(float_to_half(f) == h);
    }
}

TEST_CASE("floats between two halves round to the nearer, ties to even, overflow to infinity", "[fp16]")
{
    // Every adjacent pair of finite halves of one sign (0x0000..0x7bff, and the last one
    // with infinity's would-be neighbour 65536): the midpoint is a float exactly.
    for (std::uint32_t i = 0; i < 0x7c00; ++i)
    {
        auto const lo = static_cast<std::uint16_t>(i), hi = static_cast<std::uint16_t>(i + 1);
        double const upper = i + 1 == 0x7c00 ? 65536.0 : decode(hi);
        auto const mid = static_cast<float>((decode(lo) + upper) / 2);
        REQUIRE(static_cast<double>(mid) == (decode(lo) + upper) / 2);
        std::uint16_t const even = (lo & 1) ? hi : lo;
        INFO("between halves " << lo << " and " << hi);
        REQUIRE(float_to_half(mid) == even);
        REQUIRE(float_to_half(std::nextafter(mid, 0.0f)) == lo);
        REQUIRE(float_to_half(std::nextafter(mid, 1e30f)) == hi);
        REQUIRE(float_to_half(-mid) == (even | 0x8000));
    }
    CHECK(float_to_half(1e30f) == 0x7c00);
    CHECK(float_to_half(-std::numeric_limits<float>::infinity()) == 0xfc00);
    CHECK(float_to_half(std::numeric_limits<float>::denorm_min()) == 0x0000);
    CHECK(float_to_half(-0.0f) == 0x8000);
}

TEST_CASE("float to half agrees with the CPU's conversion instruction", "[fp16]")
{
    std::uint16_t probe = 0;
    if (!hardware_float_to_half(1.0f, probe))
    {
        WARN("SKIPPED: this build has no hardware half conversion (F16C / aarch64 NEON) to compare with");
        return;
    }
    std::mt19937 rng(7);
    std::uniform_int_distribution<std::uint32_t> any_bits;
    std::uniform_real_distribution<float> near_range(-70000.0f, 70000.0f);
    for (int i = 0; i < 250000; ++i)  // (the qemu suites emulate the instruction: keep it short)
    {
        float f;
        if (i % 2)
        {
            std::uint32_t const bits = any_bits(rng);
            std::memcpy(&f, &bits, sizeof f);
        }
        else
            f = near_range(rng) * std::ldexp(1.0f, -static_cast<int>(rng() % 40));
        std::uint16_t expected = 0;
        hardware_float_to_half(f, expected);
        if (std::isnan(f))
        {
            REQUIRE(is_nan_half(float_to_half(f)));
            continue;
        }
        INFO("float bits " << std::hexfloat << f);
        REQUIRE(float_to_half(f) == expected);
    }
}
