// Dense vs hybrid attention, side by side in one run (Google Benchmark).
//
// Each hybrid case has a dense twin on the same data; compare their times within one
// run (these machines are shared and noisy: use --benchmark_repetitions and medians).
// Counters: attention sparsity (SPEC §4), query-key MACs per second, the arch.
#include <deltaattn/deltaattn.hpp>
#include <deltaattn/synthetic.hpp>

#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <tuple>

namespace
{
    using namespace deltaattn;

    /// 32 query heads would be a real 8B model; 8 over 2 KV heads keeps runs short on 2 cores.
    workload_shape shape_for(std::size_t positions) { return {positions, 8, 2, 128}; }

    hybrid_options demo_options()
    {
        hybrid_options o;
        o.sinks = 4;
        o.window = 64;
        return o;
    }

    delta_policy const demo_policy = relative_threshold{0.35f};

    qkv_data const& workload(std::size_t positions)
    {
        static std::map<std::size_t, std::unique_ptr<qkv_data>> cache;
        auto& slot = cache[positions];
        if (!slot)
            slot = std::make_unique<qkv_data>(make_llm_like(shape_for(positions)));
        return *slot;
    }

    void label(benchmark::State& state, qk_work const& work, std::size_t calls)
    {
        state.counters["attention_sparsity"] = work.sparsity();
        state.counters["qk_macs_per_s"] = benchmark::Counter(static_cast<double>(work.hybrid_macs) / static_cast<double>(calls) *
                                                                 static_cast<double>(state.iterations()),
                                                             benchmark::Counter::kIsRate);
        state.SetLabel(active_arch_name());
    }

    void dense_prefill(benchmark::State& state)
    {
        auto const& in = workload(static_cast<std::size_t>(state.range(0)));
        std::vector<float> out;
        auto const out_view = in.make_output(out);
        attention_workspace ws;
        qk_work work;
        for (auto _ : state)
        {
            dense_attention(in.q_view(), in.k_view(), in.v_view(), out_view, 0.0f, ws, &work);
            benchmark::DoNotOptimize(out.data());
        }
        label(state, work, state.iterations());
    }

    void hybrid_prefill(benchmark::State& state)
    {
        auto const& in = workload(static_cast<std::size_t>(state.range(0)));
        std::vector<float> out;
        auto const out_view = in.make_output(out);
        attention_stats stats;
        for (auto _ : state)
        {
            hybrid_attention(in.q_view(), in.k_view(), in.v_view(), out_view, demo_options(), demo_policy, &stats);
            benchmark::DoNotOptimize(out.data());
        }
        label(state, stats.prefill, state.iterations());
    }

    void dense_decode_step(benchmark::State& state)
    {
        auto const& in = workload(static_cast<std::size_t>(state.range(0)));
        std::size_t const last = in.shape.positions - 1;
        std::vector<float> out(in.shape.q_heads * in.shape.dim);
        auto const out_view = make_token_major(out.data(), 1, in.shape.q_heads, in.shape.dim);
        attention_workspace ws;
        qk_work work;
        for (auto _ : state)
        {
            dense_decode(in.q_view().slice_positions(last, 1), in.k_view(), in.v_view(), out_view, 0.0f, ws);
            benchmark::DoNotOptimize(out.data());
        }
        work.queries = in.shape.q_heads;
        work.dense_macs = work.hybrid_macs = in.shape.q_heads * in.shape.positions * in.shape.dim;
        label(state, work, 1);
    }

    void hybrid_decode_step(benchmark::State& state)
    {
        auto const& in = workload(static_cast<std::size_t>(state.range(0)));
        std::size_t const last = in.shape.positions - 1, group = in.shape.q_heads / in.shape.kv_heads;
        std::vector<delta_key_cache> caches;
        for (std::size_t h = 0; h < in.shape.kv_heads; ++h)
        {
            caches.emplace_back(in.shape.dim, in.shape.positions, demo_options(), demo_policy);
            caches.back().append(in.k_view().head(h));
        }
        std::vector<float> out(in.shape.q_heads * in.shape.dim);
        attention_workspace ws;
        attention_stats stats;
        for (auto _ : state)
        {
            stats = attention_stats{};
            for (std::size_t h = 0; h < in.shape.kv_heads; ++h)
            {
                auto const q = in.q_view().slice_positions(last, 1);
                hybrid_decode(caches[h], make_matrix_view(q.at(0, h * group), group, in.shape.dim), in.v_view().head(h),
                              make_matrix_view(out.data() + h * group * in.shape.dim, group, in.shape.dim), ws, &stats);
            }
            benchmark::DoNotOptimize(out.data());
        }
        label(state, stats.decode, 1);
    }
}  // namespace

BENCHMARK(dense_prefill)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond);
BENCHMARK(hybrid_prefill)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond);
BENCHMARK(dense_decode_step)->Arg(512)->Arg(4096)->Unit(benchmark::kMicrosecond);
BENCHMARK(hybrid_decode_step)->Arg(512)->Arg(4096)->Unit(benchmark::kMicrosecond);
