/**
 * @file tests/fuzz/fuzz_support.hpp
 * What the libFuzzer harnesses share: a reader that turns the fuzzer's bytes into
 * sizes, choices and floats (edge values included), the list of arches the harness
 * binary can run, and a failure report that makes libFuzzer keep the input.
 *
 * Every read is total: past the end of the input a read returns 0, so any byte string,
 * even an empty one, decodes to some valid case. The harness then decides what the
 * library must do with it (compute it, or reject it by name).
 */
#ifndef DELTAATTN_TESTS_FUZZ_SUPPORT_HPP
#define DELTAATTN_TESTS_FUZZ_SUPPORT_HPP

#include <deltaattn/deltaattn.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace deltaattn_fuzz
{
    using namespace deltaattn;

    /// Consumes the fuzzer's input from the front.
    class byte_reader
    {
    public:
        byte_reader(std::uint8_t const* data, std::size_t size) noexcept : m_data(data), m_left(size) {}

        std::uint8_t byte() noexcept
        {
            if (m_left == 0)
                return 0;
            --m_left;
            return *m_data++;
        }

        std::uint32_t word() noexcept
        {
            std::uint32_t w = 0;
            for (int i = 0; i < 4; ++i)
                w = w << 8 | byte();
            return w;
        }

        bool flag() noexcept { return byte() & 1u; }

        /// A value in [lo, hi] (inclusive), from one byte (two when the range needs it).
        std::size_t pick(std::size_t lo, std::size_t hi) noexcept
        {
            std::size_t const span = hi - lo + 1;
            std::size_t raw = byte();
            if (span > 256)
                raw = raw << 8 | byte();
            return lo + raw % span;
        }

        std::size_t left() const noexcept { return m_left; }

    private:
        std::uint8_t const* m_data;
        std::size_t m_left;
    };

    inline float from_bits(std::uint32_t bits) noexcept
    {
        float f;
        std::memcpy(&f, &bits, sizeof f);
        return f;
    }

    inline std::uint32_t to_bits(float f) noexcept
    {
        std::uint32_t bits;
        std::memcpy(&bits, &f, sizeof bits);
        return bits;
    }

    /// Bit-for-bit equality (tells -0 from 0 and compares NaN payloads).
    inline bool same_bits(float a, float b) noexcept { return to_bits(a) == to_bits(b); }

    /// A non-finite value: NaN, +Inf or -Inf.
    inline float non_finite(std::uint8_t which) noexcept
    {
        switch (which % 3)
        {
        case 0: return std::numeric_limits<float>::quiet_NaN();
        case 1: return std::numeric_limits<float>::infinity();
        default: return -std::numeric_limits<float>::infinity();
        }
    }

    /**
     * A float for a delta construction input. Mostly values on a grid of 1/8 (so that
     * errors |e| land exactly on dyadic thresholds and |e| ties are common: the `>`
     * boundary and the target policy's tie order get exercised), often a repeat of the
     * previous row's value (a zero error), and every edge class: ±0, subnormals, any
     * bit pattern (tiny, huge), ±FLT_MAX. Non-finite values only if `allow_non_finite`.
     */
    inline float edge_float(byte_reader& in, float previous, bool allow_non_finite) noexcept
    {
        std::uint8_t const kind = in.byte();
        if (kind < 144)
            return static_cast<float>(static_cast<std::int8_t>(in.byte())) * 0.125f;
        if (kind < 184)
            return previous;
        if (kind < 200)
            return kind & 1u ? -0.0f : 0.0f;
        if (kind < 216)  // subnormal: exponent field 0, mantissa non-zero
            return from_bits((kind & 1u ? 0x80000000u : 0u) | std::max<std::uint32_t>(1u, in.word() & 0x007fffffu));
        if (kind < 236)
        {
            float const any = from_bits(in.word());
            return std::isfinite(any) || allow_non_finite ? any : 1.0f;
        }
        if (kind < 248)
        {
            float const huge[] = {std::numeric_limits<float>::max(), 3.0e38f, 1.0e38f, 1.0e30f};
            return (kind & 1u ? -1.0f : 1.0f) * huge[(kind >> 1) % 4];
        }
        return allow_non_finite ? non_finite(kind) : 2.0f;
    }

    /**
     * A float of unit scale for attention inputs (SPEC.md §9's tolerance is for inputs
     * of unit scale): a grid of 1/64 in [-2, 2), repeats of the previous row's value
     * (temporal structure, so deltas are sparse), ±0 and subnormals.
     */
    inline float unit_float(byte_reader& in, float previous) noexcept
    {
        std::uint8_t const kind = in.byte();
        if (kind < 128)
            return static_cast<float>(static_cast<std::int8_t>(in.byte())) / 64.0f;
        if (kind < 224)
            return previous;
        if (kind < 240)
            return kind & 1u ? -0.0f : 0.0f;
        return from_bits((kind & 1u ? 0x80000000u : 0u) | std::max<std::uint32_t>(1u, in.word() & 0x007fffffu));
    }

    /// `x` as (positions + 1) rows of `row` floats of unit scale, each mostly a repeat of
    /// the row before (temporal structure): the attention harnesses' q, k and v.
    inline void fill_unit_rows(byte_reader& in, std::vector<float>& x, std::size_t positions, std::size_t row)
    {
        x.assign((positions + 1) * row, 0.0f);
        for (std::size_t p = 0; p < positions + 1; ++p)
            for (std::size_t e = 0; e < row; ++e)
                x[p * row + e] = unit_float(in, p == 0 ? 0.0f : x[(p - 1) * row + e]);
    }

    /// One step of an attention schedule: a prefill chunk of `rows` positions, or a decode step.
    struct schedule_step
    {
        bool decode;
        std::size_t rows;
    };

    /// The prompt [0, prompt) in chunks, then mostly decode steps with a chunk now and then
    /// (chunks may follow decode steps), up to `positions`.
    inline std::vector<schedule_step> decode_schedule(byte_reader& in, std::size_t prompt, std::size_t positions)
    {
        std::vector<schedule_step> steps;
        for (std::size_t p = 0; p < prompt;)
        {
            std::size_t const rows = std::min(in.pick(1, prompt), prompt - p);
            steps.push_back({false, rows});
            p += rows;
        }
        for (std::size_t p = prompt; p < positions;)
        {
            std::uint8_t const b = in.byte();
            std::size_t const rows = b < 200 ? 1 : std::min<std::size_t>(1 + b % 4, positions - p);
            steps.push_back({b < 200, rows});
            p += rows;
        }
        return steps;
    }

    /// Every arch this binary's flags allow, the scalar path first. Built with
    /// -march=native on an AVX-512 machine, that is the scalar, SSE2, AVX2+FMA and
    /// AVX-512 kernels in one binary (the AVX-512 decode path is its own code).
    using fuzzed_archs = std::tuple<scalar,
#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
                                    xsimd::sse2, xsimd::fma3<xsimd::avx2>,
#elif defined(__AVX2__) && defined(__FMA__)
                                    xsimd::sse2,
#endif
                                    default_arch>;

    /// Calls f(static_cast<Arch*>(nullptr)) for every arch of `fuzzed_archs` (the
    /// scalar path twice when the default arch is scalar: harmless).
    template <class F, std::size_t... I>
    void for_each_arch_impl(F&& f, std::index_sequence<I...>)
    {
        (f(static_cast<std::tuple_element_t<I, fuzzed_archs>*>(nullptr)), ...);
    }

    template <class F>
    void for_each_arch(F&& f)
    {
        for_each_arch_impl(f, std::make_index_sequence<std::tuple_size<fuzzed_archs>::value>{});
    }

    /// A broken property: print what and the case, then abort so libFuzzer saves the input.
    [[noreturn]] inline void fail(std::string const& what, std::string const& context)
    {
        std::fprintf(stderr, "\nFUZZ PROPERTY BROKEN: %s\n  case: %s\n", what.c_str(), context.c_str());
        std::fflush(stderr);
        std::abort();
    }

    inline void check(bool ok, std::string const& what, std::string const& context)
    {
        if (!ok)
            fail(what, context);
    }

    /// The SPEC.md §9 check: finite, and max|got - want| <= 1e-4 max(1, max|want|).
    inline void check_close(std::vector<float> const& got, std::vector<float> const& want, std::string const& what, std::string const& context)
    {
        check(got.size() == want.size(), what + ": wrong output size", context);
        float scale = 1.0f, worst = 0.0f;
        std::size_t worst_at = 0;
        for (float w : want)
            scale = std::max(scale, std::fabs(w));
        for (std::size_t i = 0; i < got.size(); ++i)
        {
            check(std::isfinite(got[i]), what + ": non-finite output at element " + std::to_string(i), context);
            float const diff = std::fabs(got[i] - want[i]);
            if (diff > worst)
            {
                worst = diff;
                worst_at = i;
            }
        }
        if (worst > 1e-4f * scale)
        {
            std::ostringstream s;
            s << what << ": max|got - oracle| = " << worst << " at element " << worst_at << " (got " << got[worst_at] << ", oracle "
              << want[worst_at] << "), tolerance " << 1e-4f * scale;
            fail(s.str(), context);
        }
    }

    /// With DELTAATTN_FUZZ_VERBOSE set, prints each decoded case (to triage a corpus).
    inline void trace_case(std::string const& context)
    {
        static bool const verbose = std::getenv("DELTAATTN_FUZZ_VERBOSE") != nullptr;
        if (verbose)
            std::fprintf(stderr, "case: %s\n", context.c_str());
    }

    /// Does `e` say what deltaattn's errors say: "deltaattn: <argument>: ..."?
    inline bool names(std::invalid_argument const& e, char const* argument)
    {
        return std::string(e.what()).find(std::string("deltaattn: ") + argument + ":") != std::string::npos;
    }
}  // namespace deltaattn_fuzz

#endif  // DELTAATTN_TESTS_FUZZ_SUPPORT_HPP
