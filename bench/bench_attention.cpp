// Dense vs hybrid attention, side by side in one run (Google Benchmark).
//
// Every hybrid case has a dense twin on the same data and shape, so their times can be
// compared within one run: bench/report.py pairs them and prints median ratios (these
// machines are shared and noisy: use repetitions and medians, never one number).
//
// Names: <stage>/<variant>/n:<positions>/d:<dim>[/rho:<delta sparsity %>], stage is
// prefill or decode (one step at context n), variant dense, hybrid_k (target delta
// sparsity rho on K) or hybrid_k_block8 (block policy, g = 8).
// Counters: attention_sparsity (SPEC §4), delta_sparsity, bytes of K read per step or
// call, qk_macs/s; the label is the arch.
#include <deltaattn/deltaattn.hpp>
#include <deltaattn/synthetic.hpp>

#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>

namespace
{
    using namespace deltaattn;

    constexpr std::size_t q_heads = 32, kv_heads = 8;  // GQA 4, as Llama-3-8B

    hybrid_options options()
    {
        hybrid_options o;
        o.sinks = 4;
        o.window = 64;
        return o;
    }

    qkv_data const& workload(std::size_t positions, std::size_t dim)
    {
        static std::map<std::pair<std::size_t, std::size_t>, std::unique_ptr<qkv_data>> cache;
        auto& slot = cache[{positions, dim}];
        if (!slot)
            slot = std::make_unique<qkv_data>(make_llm_like({positions, q_heads, kv_heads, dim}));
        return *slot;
    }

    void report(benchmark::State& state, attention_work const& per_call, double delta_sparsity, double k_bytes)
    {
        state.counters["attention_sparsity"] = per_call.sparsity();
        state.counters["delta_sparsity"] = delta_sparsity;
        state.counters["k_bytes_read"] = k_bytes;
        state.counters["qk_macs_per_s"] = benchmark::Counter(static_cast<double>(per_call.hybrid_macs), benchmark::Counter::kIsIterationInvariantRate);
        state.SetLabel(active_arch_name());
    }

    // ---- prefill: the whole sequence, caches built inside the timed call ------------

    void dense_prefill(benchmark::State& state, std::size_t n, std::size_t d)
    {
        auto const& in = workload(n, d);
        std::vector<float> out;
        auto const view = in.make_output(out);
        attention_workspace ws;
        attention_work work;
        for (auto _ : state)
        {
            work = attention_work{};
            dense_attention(in.q_view(), in.k_view(), in.v_view(), view, 0.0f, ws, &work);
            benchmark::DoNotOptimize(out.data());
        }
        report(state, work, 0.0, 4.0 * n * kv_heads * d);
    }

    void hybrid_prefill(benchmark::State& state, std::size_t n, std::size_t d, delta_policy policy)
    {
        auto const& in = workload(n, d);
        std::vector<float> out;
        auto const view = in.make_output(out);
        attention_stats stats;
        for (auto _ : state)
        {
            stats = attention_stats{};
            hybrid_attention(in.q_view(), in.k_view(), in.v_view(), view, options(), policy, &stats);
            benchmark::DoNotOptimize(out.data());
        }
        report(state, stats.prefill, stats.keys.sparsity(), static_cast<double>(stats.kcache_bytes));
    }

    // ---- decode: one step at context n (the cache is built once, outside the timing) --

    void dense_decode_step(benchmark::State& state, std::size_t n, std::size_t d)
    {
        auto const& in = workload(n, d);
        std::vector<float> out(q_heads * d);
        auto const view = make_token_major(out.data(), 1, q_heads, d);
        attention_workspace ws;
        attention_work work;
        for (auto _ : state)
        {
            work = attention_work{};
            dense_attention(in.q_view().slice_positions(n - 1, 1), in.k_view(), in.v_view(), view, 0.0f, ws, &work);
            benchmark::DoNotOptimize(out.data());
        }
        report(state, work, 0.0, 4.0 * n * kv_heads * d);
    }

    void hybrid_decode_step(benchmark::State& state, std::size_t n, std::size_t d, delta_policy policy)
    {
        auto const& in = workload(n, d);
        std::size_t const group = q_heads / kv_heads;
        std::vector<delta_key_cache> caches;
        std::size_t bytes = 0;
        delta_stats deltas;
        for (std::size_t h = 0; h < kv_heads; ++h)
        {
            caches.emplace_back(d, n, options(), policy);
            caches.back().append(in.k_view().head(h));
            bytes += caches.back().bytes();
            deltas += caches.back().stats();
        }
        std::vector<float> out(q_heads * d);
        attention_workspace ws;
        attention_stats stats;
        auto const q = in.q_view().slice_positions(n - 1, 1);
        for (auto _ : state)
        {
            stats = attention_stats{};
            for (std::size_t h = 0; h < kv_heads; ++h)
                hybrid_decode(caches[h], matrix_view<const float>{q.at(0, h * group), group, d, q.head_stride}, in.v_view().head(h),
                              make_matrix_view(out.data() + h * group * d, group, d), ws, &stats);
            benchmark::DoNotOptimize(out.data());
        }
        report(state, stats.decode, deltas.sparsity(), static_cast<double>(bytes));
    }

    std::string shape(std::size_t n, std::size_t d) { return "/n:" + std::to_string(n) + "/d:" + std::to_string(d); }

    int register_all()
    {
        struct level
        {
            char const* name;
            delta_policy policy;
        };
        level const levels[] = {{"hybrid_k/rho:40", target_sparsity{0.4f}},
                                {"hybrid_k/rho:60", target_sparsity{0.6f}},
                                {"hybrid_k/rho:80", target_sparsity{0.8f}},
                                {"hybrid_k_block8", block_threshold{8, 0.45f}}};
        for (std::size_t d : {64, 128})
        {
            for (std::size_t n : {256, 1024, 2048})
            {
                benchmark::RegisterBenchmark(("prefill/dense" + shape(n, d)).c_str(), dense_prefill, n, d)->Unit(benchmark::kMillisecond);
                for (auto const& l : levels)
                    benchmark::RegisterBenchmark((std::string("prefill/") + l.name + shape(n, d)).c_str(), hybrid_prefill, n, d, l.policy)
                        ->Unit(benchmark::kMillisecond);
            }
            for (std::size_t n : {512, 4096, 8192})
            {
                benchmark::RegisterBenchmark(("decode/dense" + shape(n, d)).c_str(), dense_decode_step, n, d)->Unit(benchmark::kMicrosecond);
                for (auto const& l : levels)
                    benchmark::RegisterBenchmark((std::string("decode/") + l.name + shape(n, d)).c_str(), hybrid_decode_step, n, d, l.policy)
                        ->Unit(benchmark::kMicrosecond);
            }
        }
        return 0;
    }

    int const registered = register_all();
}  // namespace
