// What one code row of a quantized far context (SPEC.md §10) costs in each pass of a
// decode step, on a cache that stays in L2, so the passes' compute shows without the
// memory system's noise (a whole step, streamed, is decode/quant_kv/...).
//
//   quant_rows/key_dots/bits:B       code_row_dots: q·(s ⊙ c) with fp32 queries
//   quant_rows/key_dots_int8/bits:B  code_row_dots_int8: the same with int8 queries
//   quant_rows/values/bits:B         code_row_values: Σ P (s ⊙ c) into the outputs
//
// Each case runs the kernel over 1024 code rows of d 128, 32-channel scale groups, for
// the 4 query heads of one KV head (the decode benchmarks' GQA 4), with the workspace
// a decode step would use. Counter time_per_row is in seconds per code row (all 4 heads
// of it); compare cases of one run.
#include <deltaattn/deltaattn.hpp>

#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

namespace
{
    using namespace deltaattn;
    using arch = default_arch;

    constexpr std::size_t rows = 1024, dim = 128, heads = 4;

    enum class pass
    {
        key_dots,
        key_dots_int8,
        values
    };

    /// A cache of `rows` coded rows (positions 1..rows, between one sink, the base row, and
    /// a window of one) of a random walk, with its queries, weights, scores and scratch.
    struct code_rows_case
    {
        basic_quant_cache<float> cache;
        std::vector<float> q, p, scores;
        aligned_vector<float> scratch;
        aligned_vector<std::int32_t> words;

        explicit code_rows_case(unsigned bits, bool int8_queries)
            : cache(dim, rows + 2, cache_options(), codec(bits, int8_queries)), q(heads * dim), p(heads * (rows + 1)), scores(heads * (rows + 1))
        {
            std::mt19937 rng(11);
            std::normal_distribution<float> step(0.0f, 0.1f);
            std::vector<float> keys((rows + 2) * dim), key(dim, 0.0f);
            for (std::size_t j = 0; j < rows + 2; ++j)  // consecutive rows close, as keys are
                for (std::size_t c = 0; c < dim; ++c)
                    keys[j * dim + c] = key[c] += step(rng);
            cache.append(matrix_view<const float>{keys.data(), rows + 2, dim, dim});
            for (auto& x : q)
                x = step(rng);
            for (auto& x : p)
                x = 1.0f / rows;
            scratch.assign(kernels::quant_scratch_floats(heads, dim, cache.codec()), 0.0f);
            words.assign(kernels::quant_scratch_words(heads, dim, cache.codec()), 0);
        }

        static hybrid_options cache_options()
        {
            hybrid_options o;
            o.sinks = 1;
            o.window = 1;
            return o;
        }

        static quant_codec codec(unsigned bits, bool int8_queries)
        {
            quant_codec c{bits, 32, 256};
            c.int8_queries = int8_queries;
            return c;
        }
    };

    template <unsigned Bits>
    void code_rows(benchmark::State& state, pass which)
    {
        static code_rows_case cases[] = {code_rows_case(Bits, false), code_rows_case(Bits, true)};
        code_rows_case& in = cases[which == pass::key_dots_int8 ? 1 : 0];
        kernels::code_spans<arch, Bits> const layout(in.cache.codec(), dim);
        std::size_t const first = 1, end = rows + 1, stride = rows + 1;
        float const* qh[heads] = {in.q.data(), in.q.data() + dim, in.q.data() + 2 * dim, in.q.data() + 3 * dim};
        float* const permuted = in.scratch.data();  // queries (or their int8 lane scales), then outputs
        float* const scales = in.scratch.data() + 2 * heads * layout.padded;
        if (which == pass::key_dots_int8)
            kernels::prepare_int8_queries(layout, qh, heads, in.words.data(), permuted, in.scratch.data() + heads * layout.padded);
        else if (which == pass::key_dots)
            kernels::permute_queries(layout, qh, heads, permuted);
        for (auto _ : state)
        {
            switch (which)
            {
            case pass::key_dots:
                kernels::code_row_dots<arch, Bits, heads>(in.cache, layout, permuted, first, end, in.scores.data(), stride, scales);
                break;
            case pass::key_dots_int8:
                kernels::code_row_dots_int8<arch, Bits, heads>(in.cache, layout, in.words.data(), permuted, first, end, in.scores.data(), stride, scales);
                break;
            case pass::values:
                kernels::code_row_values<arch, Bits, heads>(in.cache, layout, in.p.data(), stride, first, end, permuted + heads * layout.padded, scales);
                break;
            }
            benchmark::DoNotOptimize(in.scores.data());
            benchmark::DoNotOptimize(in.scratch.data());
            benchmark::ClobberMemory();
        }
        using counter = benchmark::Counter;
        state.counters["time_per_row"] = counter(static_cast<double>(rows), counter::kIsIterationInvariantRate | counter::kInvert);
        state.SetLabel(std::string(active_arch_name()));
    }

    int register_code_rows()
    {
        struct named
        {
            char const* name;
            pass which;
        };
        for (named const& p : {named{"key_dots", pass::key_dots}, named{"key_dots_int8", pass::key_dots_int8}, named{"values", pass::values}})
            for (unsigned bits : {3u, 4u, 8u})
            {
                std::string const name = std::string("quant_rows/") + p.name + "/bits:" + std::to_string(bits);
                auto const run = bits == 3 ? code_rows<3> : bits == 4 ? code_rows<4> : code_rows<8>;
                benchmark::RegisterBenchmark(name.c_str(), run, p.which)->Unit(benchmark::kMicrosecond);
            }
        return 0;
    }

    int const registered = register_code_rows();
}  // namespace
