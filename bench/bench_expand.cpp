// What one register of a compressed delta row costs to read, per form, on this CPU.
//
// A decode step's delta rows are read a register of channels (a *group*) at a time: the
// group's mask says which lanes hold a stored delta, the packed values follow in channel
// order, and each group feeds four FMAs (four query heads of a KV group). Every case
// below runs exactly that loop over the same masks and packed values and differs only in
// how a group becomes a register:
//
//   expand/load/...               a plain load at the packed pointer (wrong lanes, right
//                                 bytes): the floor every expansion is measured against
//   expand/kernel/...             what the decode kernel runs on this CPU (the label says)
//   expand/generic/...            the portable lane loop
//   expand/avx512_vexpandps/...   load + register vexpandps (kernels/arch/expand_form.hpp)
//   expand/avx512_permute/...     load + vpopcntd indices + vpermps (builds with VPOPCNTDQ)
//   expand/avx512_permute_in_word/ the same, the mask bits read from memory (the by-word
//                                 decode kernels' form)
//   expand/avx512_expand_load/... vexpandps from memory (fp32; never chosen)
//   expand/avx512_masked_load/... masked 16-bit load + vcvtph2ps + vexpandps (fp16; ditto)
//
// Names: expand/<form>/<f32|f16>/kept:<% of lanes stored>. Counter time_per_group is in
// seconds; bench/report.py prints it with each form's ratio to expand/load.
// 4 M groups: the packed values (10-40 MB) stream from memory, as a decode step's do.
#include <deltaattn/deltaattn.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace
{
    using namespace deltaattn;
    using arch = default_arch;
    using ops = arch_traits<arch>;
    using reg = ops::reg;
    constexpr std::size_t width = ops::width, groups = std::size_t(1) << 22;

    /// Masks of `groups` groups, each lane stored with probability kept/100, and their
    /// packed values (as T), padded for the register kernels.
    template <class T>
    struct compressed_groups
    {
        std::vector<std::uint16_t> masks;
        std::vector<T> packed;

        explicit compressed_groups(int kept)
        {
            std::mt19937 rng(1234);
            std::bernoulli_distribution stored(kept / 100.0);
            std::uniform_real_distribution<float> value(-1.0f, 1.0f);
            masks.resize(groups);
            for (auto& m : masks)
                for (std::size_t l = 0; l < width; ++l)
                    m = static_cast<std::uint16_t>(m | (stored(rng) ? 1u << l : 0u));
            std::size_t count = 0;
            for (auto m : masks)
                count += static_cast<std::size_t>(__builtin_popcount(m));
            packed.resize(count + kernels::expand_padding);
            for (auto& v : packed)
                v = from_float<T>(value(rng));
        }
    };

    template <class T>
    compressed_groups<T> const& data(int kept)
    {
        static compressed_groups<T> const by_kept[] = {compressed_groups<T>(20), compressed_groups<T>(40), compressed_groups<T>(60)};
        return by_kept[kept / 20 - 1];
    }

    /// The loop of a decode step's delta keys, over every group, with `expand` making the
    /// group's register.
    template <class T, class Expand>
    void run_groups(benchmark::State& state, int kept, Expand expand)
    {
        auto const& in = data<T>(kept);
        reg const q0 = ops::broadcast(0.5f), q1 = ops::broadcast(0.25f), q2 = ops::broadcast(-0.5f), q3 = ops::broadcast(2.0f);
        for (auto _ : state)
        {
            reg a0 = ops::zero(), a1 = ops::zero(), a2 = ops::zero(), a3 = ops::zero();
            T const* p = in.packed.data();
            for (std::size_t g0 = 0; g0 < groups; g0 += 4)  // four groups at a time (an AVX-512 mask word), unrolled as the kernels do
                DELTAATTN_UNROLL
                for (std::size_t g = g0; g < g0 + 4; ++g)
                {
                    reg delta;
                    if constexpr (std::is_invocable<Expand, std::uint64_t const*, unsigned, T const*&>::value)  // bits from memory
                        delta = expand(reinterpret_cast<std::uint64_t const*>(in.masks.data() + g0), unsigned(g - g0), p);
                    else
                        delta = expand(std::uint32_t(in.masks[g]), p);
                    a0 = ops::fma(q0, delta, a0);
                    a1 = ops::fma(q1, delta, a1);
                    a2 = ops::fma(q2, delta, a2);
                    a3 = ops::fma(q3, delta, a3);
                }
            benchmark::DoNotOptimize(ops::add(ops::add(a0, a1), ops::add(a2, a3)));
        }
        using counter = benchmark::Counter;
        state.counters["time_per_group"] = counter(static_cast<double>(groups), counter::kIsIterationInvariantRate | counter::kInvert);
        state.counters["packed_bytes_per_s"] = counter(static_cast<double>(sizeof(T) * (in.packed.size() - kernels::expand_padding)),
                                                       counter::kIsIterationInvariantRate);
        std::string kernel = kernels::expand_kernel_name<arch>();
        if constexpr (kernels::has_fast_expand<arch>())
            kernel = std::string("avx512 ") + kernels::expand_form_name(kernels::with_expand_form<arch>([](auto form) { return decltype(form)::value; }));
        state.SetLabel(std::string(active_arch_name()) + ", decode uses " + kernel);
    }

    template <class T>
    T const* advanced(std::uint32_t bits, T const*& p)
    {
        T const* at = p;
        p += __builtin_popcount(bits & ((1u << width) - 1u));
        return at;
    }

    template <class T>
    void plain_load(benchmark::State& state, int kept)
    {
        run_groups<T>(state, kept, [](std::uint32_t bits, T const*& p) { return ops::load(advanced(bits, p)); });
    }

    /// What the decode kernel runs here: on AVX-512, the form detected for this CPU; on
    /// other archs, the arch's expand_group kernel (fp32) or the lane loop (fp16).
    template <class T>
    void kernel(benchmark::State& state, int kept)
    {
        kernels::with_expand_form<arch>([&](auto form) {
            run_groups<T>(state, kept, [](std::uint32_t bits, T const*& p) {
                if constexpr (std::is_same<T, float>::value && !kernels::has_fast_expand<arch>())
                    return kernels::expand_group<arch>(bits, p);  // the LUT kernels where there is no AVX-512
                else
                    return kernels::expand_lanes<arch, decltype(form)::value>(bits, p);
            });
        });
    }

    /// One AVX-512 form, whatever this CPU would choose.
    template <class T, kernels::expand_form Form>
    void avx512_form(benchmark::State& state, int kept)
    {
        run_groups<T>(state, kept, [](std::uint32_t bits, T const*& p) { return kernels::expand_lanes<arch, Form>(bits, p); });
    }

#if defined(__AVX512VPOPCNTDQ__)
    /// The permute form with each group's bits read from its mask word in memory (four
    /// groups of 16 bits per 64-bit word, as the masks array lays them out).
    template <class T>
    void avx512_permute_in_word(benchmark::State& state, int kept)
    {
        run_groups<T>(state, kept, [](std::uint64_t const* word, unsigned g, T const*& p) {
            return kernels::expand_kernel<kernels::expand_isa::avx512>::run_permute_in_word<arch>(word, g, p);
        });
    }
#endif

    template <class T>
    void generic(benchmark::State& state, int kept)
    {
        run_groups<T>(state, kept, [](std::uint32_t bits, T const*& p) { return kernels::expand_kernel<kernels::expand_isa::generic>::run<arch>(bits, p); });
    }

    int register_all()
    {
        for (int kept : {20, 40, 60})
        {
            std::string const f32 = "/f32/kept:" + std::to_string(kept), f16 = "/f16/kept:" + std::to_string(kept);
            benchmark::RegisterBenchmark(("expand/load" + f32).c_str(), plain_load<float>, kept);
            benchmark::RegisterBenchmark(("expand/kernel" + f32).c_str(), kernel<float>, kept);
            benchmark::RegisterBenchmark(("expand/generic" + f32).c_str(), generic<float>, kept);
            benchmark::RegisterBenchmark(("expand/load" + f16).c_str(), plain_load<float16>, kept);
            benchmark::RegisterBenchmark(("expand/kernel" + f16).c_str(), kernel<float16>, kept);
            benchmark::RegisterBenchmark(("expand/generic" + f16).c_str(), generic<float16>, kept);
#if defined(__AVX512F__)
            if constexpr (kernels::has_fast_expand<arch>())
            {
                using form = kernels::expand_form;
                benchmark::RegisterBenchmark(("expand/avx512_vexpandps" + f32).c_str(), avx512_form<float, form::vexpandps>, kept);
                benchmark::RegisterBenchmark(("expand/avx512_vexpandps" + f16).c_str(), avx512_form<float16, form::vexpandps>, kept);
                if constexpr (kernels::has_permute_expand<arch>())
                {
                    benchmark::RegisterBenchmark(("expand/avx512_permute" + f32).c_str(), avx512_form<float, form::permute>, kept);
                    benchmark::RegisterBenchmark(("expand/avx512_permute" + f16).c_str(), avx512_form<float16, form::permute>, kept);
#if defined(__AVX512VPOPCNTDQ__)
                    benchmark::RegisterBenchmark(("expand/avx512_permute_in_word" + f32).c_str(), avx512_permute_in_word<float>, kept);
                    benchmark::RegisterBenchmark(("expand/avx512_permute_in_word" + f16).c_str(), avx512_permute_in_word<float16>, kept);
#endif
                }
                using avx512 = kernels::expand_kernel<kernels::expand_isa::avx512>;
                benchmark::RegisterBenchmark(("expand/avx512_expand_load" + f32).c_str(), [](benchmark::State& s, int k) {
                    run_groups<float>(s, k, [](std::uint32_t bits, float const*& p) { return avx512::run_expand_load<arch>(bits, p); });
                }, kept);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
                benchmark::RegisterBenchmark(("expand/avx512_masked_load" + f16).c_str(), [](benchmark::State& s, int k) {
                    run_groups<float16>(s, k, [](std::uint32_t bits, float16 const*& p) { return avx512::run_masked_load<arch>(bits, p); });
                }, kept);
#endif
            }
#endif
        }
        return 0;
    }

    int const registered = register_all();
}  // namespace

// ---- the decode kernels' delta loops, from L2 and from memory ---------------------------
//
// delta_rows/<scores|values>/<f32|f16>/kept:<k>: channel_delta_scores (q·k̂ prefix sums,
// GQA 4) and channel_delta_values (suffix sums of p·Δv) over 1024 delta rows of d 128,
// target sparsity 1 - k%, a cache that stays in L2. time_per_group is per 16-channel
// register of the rows, so it compares with the expand/ cases: the difference is what the
// loops add around the expansion and its four FMAs.
// delta_rows/<scores|values>_streamed/<f32|f16>/kept:40: the same loops over 16384 rows in
// 64 copies of the cache (160-290 MB), one per call in turn, so the rows come from memory
// as a long context's do; against the L2 cases, what the loops' prefetches leave exposed.
namespace
{
    template <class T>
    struct delta_rows_case
    {
        static constexpr std::size_t d = 128, heads = 4;
        std::size_t n;
        std::vector<basic_delta_cache<T>> copies;
        std::vector<float> q, start, p, scores, out, converted;

        delta_rows_case(int kept, std::size_t rows, std::size_t count)
            : n(rows), q(heads * d), start(heads, 0.25f), p(heads * n), scores(heads * n), out(heads * d), converted(d + kernels::expand_padding)
        {
            basic_delta_cache<T> cache(d, n, rows_options(), target_sparsity{1.0f - kept / 100.0f});
            std::mt19937 rng(7);
            std::normal_distribution<float> step(0.0f, 0.1f);
            std::vector<float> keys(n * d), key(d, 0.0f);
            for (std::size_t j = 0; j < n; ++j)  // a random walk: consecutive keys close
                for (std::size_t c = 0; c < d; ++c)
                    keys[j * d + c] = key[c] += step(rng);
            cache.append(matrix_view<const float>{keys.data(), n, d, d});
            copies.assign(count, cache);
            for (auto& x : q)
                x = step(rng);
            for (auto& x : p)
                x = 1.0f / static_cast<float>(n);
        }

        static hybrid_options rows_options()
        {
            hybrid_options o;
            o.sinks = 4;
            return o;
        }

        std::size_t groups() const { return (n - rows_options().sinks) * (d / width); }

        /// One call of the key or value loop over copy c.
        template <bool Values>
        void run(std::size_t c)
        {
            float const* qh[heads] = {q.data(), q.data() + d, q.data() + 2 * d, q.data() + 3 * d};
            std::size_t const first = rows_options().sinks;
            kernels::with_expand_form<arch>([&](auto form) {
                if constexpr (Values)
                    return kernels::channel_delta_values<arch, decltype(form)::value>(copies[c], p.data(), n, heads, first, n, out.data(),
                                                                                    converted.data());
                else
                    return kernels::channel_delta_scores<arch, decltype(form)::value>(copies[c], qh, heads, start.data(), first, n, scores.data(),
                                                                                    n, converted.data());
            });
        }
    };

    template <class T, bool Values>
    void time_delta_rows(benchmark::State& state, delta_rows_case<T>& in)
    {
        for (std::size_t c = 0; c < in.copies.size(); ++c)  // each copy read once first (a cache a step reads is never cold)
            in.template run<Values>(c);
        std::size_t i = 0;
        for (auto _ : state)
            in.template run<Values>(i++ % in.copies.size());
        benchmark::DoNotOptimize(in.scores.data());
        benchmark::DoNotOptimize(in.out.data());
        using counter = benchmark::Counter;
        state.counters["time_per_group"] = counter(static_cast<double>(in.groups()), counter::kIsIterationInvariantRate | counter::kInvert);
        state.SetLabel(std::string(active_arch_name()));
    }

    template <class T, bool Values>
    void delta_rows(benchmark::State& state, int kept)
    {
        // Not const: the kernels write the cases' score and output buffers.
        static delta_rows_case<T> by_kept[] = {delta_rows_case<T>(20, 1024, 1), delta_rows_case<T>(40, 1024, 1), delta_rows_case<T>(60, 1024, 1)};
        time_delta_rows<T, Values>(state, by_kept[kept / 20 - 1]);
    }

    template <class T, bool Values>
    void streamed_delta_rows(benchmark::State& state)
    {
        static delta_rows_case<T> rows(40, 16384, 64);
        time_delta_rows<T, Values>(state, rows);
    }

    int register_delta_rows()
    {
        if constexpr (kernels::has_fast_expand<arch>())  // the channel loops run on AVX-512 and AVX2 only
        {
            for (int kept : {20, 40, 60})
            {
                std::string const f32 = "/f32/kept:" + std::to_string(kept), f16 = "/f16/kept:" + std::to_string(kept);
                benchmark::RegisterBenchmark(("delta_rows/scores" + f32).c_str(), delta_rows<float, false>, kept);
                benchmark::RegisterBenchmark(("delta_rows/values" + f32).c_str(), delta_rows<float, true>, kept);
                benchmark::RegisterBenchmark(("delta_rows/scores" + f16).c_str(), delta_rows<float16, false>, kept);
                benchmark::RegisterBenchmark(("delta_rows/values" + f16).c_str(), delta_rows<float16, true>, kept);
            }
            benchmark::RegisterBenchmark("delta_rows/scores_streamed/f32/kept:40", streamed_delta_rows<float, false>);
            benchmark::RegisterBenchmark("delta_rows/values_streamed/f32/kept:40", streamed_delta_rows<float, true>);
            benchmark::RegisterBenchmark("delta_rows/scores_streamed/f16/kept:40", streamed_delta_rows<float16, false>);
            benchmark::RegisterBenchmark("delta_rows/values_streamed/f16/kept:40", streamed_delta_rows<float16, true>);
        }
        return 0;
    }

    int const delta_rows_registered = register_delta_rows();
}  // namespace
