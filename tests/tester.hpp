/**
 * @file tests/tester.hpp
 * The shared tester: builds a case's inputs, runs a kernel, compares it with the
 * double-precision oracle at SPEC.md §9's tolerance.
 */
#ifndef DELTAATTN_TESTS_TESTER_HPP
#define DELTAATTN_TESTS_TESTER_HPP

#include <deltaattn/deltaattn.hpp>
#include <deltaattn/reference/reference.hpp>
#include <deltaattn/synthetic.hpp>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

namespace deltaattn_test
{
#if defined(DELTAATTN_TEST_EMULATED)
    /// Built to run under an emulator (qemu, 20-50x slower): the heaviest sweeps run a
    /// sample (tests/CMakeLists.txt); natively they run whole.
    constexpr bool emulated_build = true;
#else
    constexpr bool emulated_build = false;
#endif

    using namespace deltaattn;

    /// Every path this binary is built for: the scalar fallback and the flags' default.
    /// Under an emulator, the flags' default only (the NEON path): the scalar path runs
    /// natively in every x86 suite, with and without hardware FMA.
    using tested_archs = std::conditional_t<std::is_same<default_arch, scalar>::value || emulated_build, std::tuple<default_arch>, std::tuple<scalar, default_arch>>;

    /// Appends T to the tuple unless it is already there.
    template <class Tuple, class T>
    struct append_unique;
    template <class... Ts, class T>
    struct append_unique<std::tuple<Ts...>, T>
    {
        using type = std::conditional_t<(std::is_same<Ts, T>::value || ...), std::tuple<Ts...>, std::tuple<Ts..., T>>;
    };

    /// Every xsimd arch with float registers that this TU's flags allow.
    using compiled_xsimd_archs = std::tuple<
#if defined(__SSE2__)
        xsimd::sse2,
#endif
#if defined(__SSSE3__)
        xsimd::ssse3,
#endif
#if defined(__SSE4_2__)
        xsimd::sse4_2,
#endif
#if defined(__AVX2__)
        xsimd::avx2,
#endif
#if defined(__AVX2__) && defined(__FMA__)
        xsimd::fma3<xsimd::avx2>,
#endif
#if defined(__AVX512F__)
        xsimd::avx512f,
#endif
#if defined(__AVX512F__) && defined(__AVX512CD__) && defined(__AVX512DQ__) && defined(__AVX512BW__)
        xsimd::avx512bw,
#endif
#if defined(__ARM_NEON)
        xsimd::neon,
#endif
#if defined(__ARM_NEON) && defined(__aarch64__)
        xsimd::neon64,
#endif
        deltaattn::scalar>;

    /// The above plus default_arch, whatever it is (e.g. a newer xsimd's arch): the archs
    /// whose per-ISA kernels (expansion, code dots) a test checks against the generic one.
    using every_compiled_arch = append_unique<compiled_xsimd_archs, deltaattn::default_arch>::type;

    enum class input_kind
    {
        llm_like,
        white_noise
    };

    /// One attention problem: shapes, hybrid options, policy, inputs.
    struct attention_case
    {
        std::size_t positions = 64, q_heads = 4, kv_heads = 2, dim = 64;
        hybrid_options options{};
        delta_policy policy = fixed_threshold{0.1f};
        input_kind kind = input_kind::llm_like;
        std::uint64_t seed = 1;
        float q_scale = 1.0f;

        std::string describe() const
        {
            std::ostringstream s;
            s << "n=" << positions << " Hq=" << q_heads << " Hkv=" << kv_heads << " d=" << dim << " sinks=" << options.sinks
              << " window=" << options.window << " keyframes=" << options.keyframe_interval << " " << deltaattn::describe(policy) << " "
              << (kind == input_kind::llm_like ? "llm-like" : "white-noise") << " q_scale=" << q_scale;
            return s.str();
        }

        qkv_data inputs() const
        {
            workload_shape shape{positions, q_heads, kv_heads, dim};
            if (kind == input_kind::white_noise)
            {
                qkv_data data = make_white_noise(shape, seed);
                for (float& x : data.q)
                    x *= q_scale;
                return data;
            }
            llm_like_options o;
            o.seed = seed;
            o.q_scale = q_scale;
            return make_llm_like(shape, o);
        }
    };

    inline float max_abs(std::vector<float> const& x)
    {
        float m = 0.0f;
        for (float v : x)
            m = std::max(m, std::fabs(v));
        return m;
    }

    inline float max_abs_diff(std::vector<float> const& a, std::vector<float> const& b)
    {
        float m = a.size() == b.size() ? 0.0f : std::numeric_limits<float>::infinity();
        for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i)
        {
            float const d = std::fabs(a[i] - b[i]);
            m = std::isnan(d) ? std::numeric_limits<float>::infinity() : std::max(m, d);
        }
        return m;
    }

    /// `x` as binary16 storage.
    inline std::vector<float16> to_halves(std::vector<float> const& x)
    {
        std::vector<float16> h(x.size());
        std::transform(x.begin(), x.end(), h.begin(), from_float<float16>);
        return h;
    }

    /// `x` as binary16 holds it, widened back to float.
    inline std::vector<float> rounded_to_half(std::vector<float> x)
    {
        std::transform(x.begin(), x.end(), x.begin(), round_to<float16>);
        return x;
    }

    /// SPEC.md §9: max|Δo| <= 1e-4 * max(1, max|o|).
    inline float tolerance(std::vector<float> const& reference_out) { return 1e-4f * std::max(1.0f, max_abs(reference_out)); }

    inline std::vector<float> oracle_dense(qkv_data const& in, float scale = 0.0f)
    {
        std::vector<float> out;
        auto view = in.make_output(out);
        reference::dense_attention(in.q_view(), in.k_view(), in.v_view(), view, scale);
        return out;
    }

    inline std::vector<float> oracle_hybrid(qkv_data const& in, attention_case const& c)
    {
        std::vector<float> out;
        auto view = in.make_output(out);
        reference::hybrid_attention(in.q_view(), in.k_view(), in.v_view(), view, c.options, c.policy);
        return out;
    }

    /// The analytic QK work of a stage (query rows at positions [first, last]), all heads.
    /// dense_attention of the whole sequence `in` on `Arch`.
    template <class Arch>
    std::vector<float> run_dense(qkv_data const& in)
    {
        std::vector<float> out;
        dense_attention<Arch>(in.q_view(), in.k_view(), in.v_view(), in.make_output(out));
        return out;
    }

    inline attention_work analytic_work(qkv_data const& in, attention_case const& c, std::size_t first, std::size_t last)
    {
        attention_work w;
        std::size_t const group = c.q_heads / c.kv_heads;
        for (std::size_t h = 0; h < c.kv_heads; ++h)
        {
            auto const rows = reference::build_delta_rows(in.k_view().head(h), c.policy);
            w += reference::stage_work(first, last, group, rows, c.options);
        }
        return w;
    }

    inline delta_stats analytic_deltas(qkv_data const& in, attention_case const& c)
    {
        delta_stats s;
        for (std::size_t h = 0; h < c.kv_heads; ++h)
            s += reference::delta_statistics(reference::build_delta_rows(in.k_view().head(h), c.policy));
        return s;
    }
}  // namespace deltaattn_test

#endif  // DELTAATTN_TESTS_TESTER_HPP
