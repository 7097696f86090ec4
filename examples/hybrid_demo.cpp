// deltaattn demo: dense vs hybrid delta attention on an LLM-like workload.
//
// Builds temporally correlated q/k/v (AR(1) latents, RoPE applied, GQA) in memory,
// runs a prefill and then decode steps with both dense and hybrid attention, and
// prints what a user weighs: attention sparsity, the output error against dense,
// K-cache bytes per token, and the time ratio measured side by side in this run.
//
//   deltaattn_demo [--positions N] [--prompt P] [--q-heads H] [--kv-heads H] [--dim D]
//                  [--window W] [--sinks S] [--policy fixed|relative|target|block]
//                  [--theta X] [--ratio R] [--sparsity RHO] [--group G] [--repeats N] [--threads T]
#include <deltaattn/deltaattn.hpp>
#include <deltaattn/synthetic.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace
{
    using namespace deltaattn;
    using clock_type = std::chrono::steady_clock;

    struct settings
    {
        workload_shape shape{2048, 8, 2, 128};
        std::size_t prompt = 1536;
        hybrid_options options{};
        std::string policy = "relative";
        float theta = 0.3f, ratio = 0.2f, sparsity = 0.6f;
        std::size_t group = 8;
        int repeats = 5;
        std::size_t threads = 1;
        float value_theta = -1.0f;  ///< >= 0: delta values with fixed θ_v (SPEC §6.1); else values exact
        bool fp16 = false;          ///< binary16 K/V: layer_kv_cache_f16, and dense on binary16 K/V
    };

    settings parse(int argc, char** argv)
    {
        settings s;
        s.options.sinks = 4;
        s.options.window = 64;
        for (int i = 1; i < argc; ++i)
        {
            std::string const flag = argv[i];
            if (flag == "--help" || flag == "-h")
            {
                std::printf("usage: %s [--positions N] [--prompt P] [--q-heads H] [--kv-heads H] [--dim D] [--window W] [--sinks S]\n"
                            "          [--policy fixed|relative|target|block] [--theta X] [--ratio R] [--sparsity RHO] [--group G] [--repeats N]\n"
                            "          [--threads T] [--value-theta XV [--fp16]]\n",
                            argv[0]);
                std::exit(0);
            }
            if (flag == "--fp16")
            {
                s.fp16 = true;
                continue;
            }
            if (i + 1 >= argc)
                throw std::invalid_argument(flag + " needs a value");
            char const* value = argv[++i];
            auto const size = [&] { return static_cast<std::size_t>(std::stoull(value)); };
            if (flag == "--positions") s.shape.positions = size();
            else if (flag == "--prompt") s.prompt = size();
            else if (flag == "--q-heads") s.shape.q_heads = size();
            else if (flag == "--kv-heads") s.shape.kv_heads = size();
            else if (flag == "--dim") s.shape.dim = size();
            else if (flag == "--window") s.options.window = size();
            else if (flag == "--sinks") s.options.sinks = size();
            else if (flag == "--policy") s.policy = value;
            else if (flag == "--theta") s.theta = std::stof(value);
            else if (flag == "--ratio") s.ratio = std::stof(value);
            else if (flag == "--sparsity") s.sparsity = std::stof(value);
            else if (flag == "--group") s.group = size();
            else if (flag == "--repeats") s.repeats = std::max(1, std::stoi(value));
            else if (flag == "--threads") s.threads = std::max<std::size_t>(1, size());
            else if (flag == "--value-theta") s.value_theta = std::stof(value);
            else throw std::invalid_argument("unknown flag " + flag);
        }
        s.prompt = std::min(s.prompt, s.shape.positions);
        if (s.fp16 && s.value_theta < 0.0f)
            throw std::invalid_argument("--fp16: needs --value-theta (binary16 storage is a K+V cache, layer_kv_cache_f16)");
        return s;
    }

    delta_policy make_policy(settings const& s) { return policy_from_name(s.policy, {s.theta, s.ratio, s.sparsity, s.group}); }

    double seconds_since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

    double median(std::vector<double> v)
    {
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    }

    struct run_result
    {
        std::vector<float> out;
        attention_stats stats;
        double prefill_s = 0, decode_s = 0;
    };

    /// Prefill of the prompt, then one decode step per remaining position, on K/V `k`, `v`
    /// (the workload's, as float or float16).
    template <class T>
    run_result run_dense(qkv_data const& in, tensor_view<const T> k, tensor_view<const T> v, std::size_t prompt, parallel_executor const& executor)
    {
        run_result r;
        auto const out = in.make_output(r.out);
        attention_workspace ws;
        auto t0 = clock_type::now();
        dense_attention(in.q_view().slice_positions(0, prompt), k.slice_positions(0, prompt), v.slice_positions(0, prompt),
                        out.slice_positions(0, prompt), 0.0f, ws, nullptr, executor);
        r.prefill_s = seconds_since(t0);
        t0 = clock_type::now();
        for (std::size_t i = prompt; i < in.shape.positions; ++i)
            dense_decode(in.q_view().slice_positions(i, 1), k.slice_positions(0, i + 1), v.slice_positions(0, i + 1), out.slice_positions(i, 1), 0.0f,
                         ws, executor);
        r.decode_s = seconds_since(t0);
        return r;
    }

    /// Prefill of the prompt, then decode steps: delta keys (the engine keeps dense
    /// values), or delta keys and values (`value_policy`, a layer_kv_cache).
    run_result run_hybrid(qkv_data const& in, std::size_t prompt, hybrid_options const& options, delta_policy const& policy,
                          delta_policy const* value_policy, bool fp16, parallel_executor const& executor, std::size_t& cache_bytes)
    {
        run_result r;
        auto const out = in.make_output(r.out);
        auto const n = in.shape.positions;
        auto const run = [&](auto& cache, bool values_owned) {
            cache.set_executor(executor);
            auto t0 = clock_type::now();
            cache.prefill(in.q_view().slice_positions(0, prompt), in.k_view().slice_positions(0, prompt), in.v_view().slice_positions(0, prompt),
                          out.slice_positions(0, prompt), &r.stats);
            r.prefill_s = seconds_since(t0);
            t0 = clock_type::now();
            for (std::size_t i = prompt; i < n; ++i)  // values: the step's own, or every position so far
                cache.decode(in.q_view().slice_positions(i, 1), in.k_view().slice_positions(i, 1),
                             in.v_view().slice_positions(values_owned ? i : 0, values_owned ? 1 : i + 1), out.slice_positions(i, 1), &r.stats);
            r.decode_s = seconds_since(t0);
            cache_bytes = cache.bytes();
        };
        if (value_policy && fp16)
        {
            layer_kv_cache_f16 cache(in.shape.kv_heads, in.shape.dim, n, options, policy, *value_policy);
            run(cache, true);
        }
        else if (value_policy)
        {
            layer_kv_cache cache(in.shape.kv_heads, in.shape.dim, n, options, policy, *value_policy);
            run(cache, true);
        }
        else
        {
            layer_key_cache cache(in.shape.kv_heads, in.shape.dim, n, options, policy);
            run(cache, false);
        }
        return r;
    }

    void print_errors(char const* stage, std::vector<float> const& dense, std::vector<float> const& hybrid, std::size_t from, std::size_t to)
    {
        double max_abs = 0, diff2 = 0, ref2 = 0;
        for (std::size_t i = from; i < to; ++i)
        {
            double const d = static_cast<double>(hybrid[i]) - dense[i];
            max_abs = std::max(max_abs, std::fabs(d));
            diff2 += d * d;
            ref2 += static_cast<double>(dense[i]) * dense[i];
        }
        std::printf("  %-8s max |hybrid - dense| = %.3e   relative (Frobenius) error = %.3e\n", stage, max_abs, std::sqrt(diff2 / std::max(ref2, 1e-300)));
    }
}  // namespace

int main(int argc, char** argv)
try
{
    settings const s = parse(argc, argv);
    delta_policy const policy = make_policy(s);
    delta_policy const value_policy = fixed_threshold{s.value_theta};
    bool const delta_values = s.value_theta >= 0.0f;
    qkv_data const in = make_llm_like(s.shape);
    std::size_t const n = s.shape.positions, d = s.shape.dim;

    std::printf("deltaattn %d.%d.%d demo  arch=%s\n", DELTAATTN_VERSION_MAJOR, DELTAATTN_VERSION_MINOR, DELTAATTN_VERSION_PATCH, active_arch_name());
    std::printf("workload: LLM-like (AR(1) latents + RoPE), %zu positions (prompt %zu, %zu decode steps), %zu query / %zu KV heads, head dim %zu\n",
                n, s.prompt, n - s.prompt, s.shape.q_heads, s.shape.kv_heads, d);
    std::printf("hybrid:   keys %s, values %s, sinks %zu, window %zu, keyframe every %zu; %zu thread(s); K/V stored as %s\n\n",
                describe(policy).c_str(), delta_values ? describe(value_policy).c_str() : "exact", s.options.sinks, s.options.window,
                s.options.keyframe_interval, s.threads, s.fp16 ? "binary16 (dense too)" : "fp32");
    // With --fp16 the dense baseline reads binary16 K/V too, like an engine's fp16 cache.
    std::vector<float16> k16, v16;
    if (s.fp16)
        for (auto [from, to] : {std::make_pair(&in.k, &k16), std::make_pair(&in.v, &v16)})
        {
            to->resize(from->size());
            std::transform(from->begin(), from->end(), to->begin(), from_float<float16>);
        }
    auto const view16 = [&](std::vector<float16> const& x) { return make_token_major<const float16>(x.data(), n, s.shape.kv_heads, d); };
    thread_pool pool(s.threads);
    parallel_executor const executor = pool.executor();

    // Dense and hybrid alternate, so both see the same machine state; medians of repeats.
    std::vector<double> dense_prefill, dense_decode_t, hybrid_prefill, hybrid_decode_t;
    run_result dense, hybrid;
    std::size_t cache_bytes = 0;
    for (int r = 0; r < s.repeats; ++r)
    {
        dense = s.fp16 ? run_dense(in, view16(k16), view16(v16), s.prompt, executor) : run_dense(in, in.k_view(), in.v_view(), s.prompt, executor);
        hybrid = run_hybrid(in, s.prompt, s.options, policy, delta_values ? &value_policy : nullptr, s.fp16, executor, cache_bytes);
        dense_prefill.push_back(dense.prefill_s);
        dense_decode_t.push_back(dense.decode_s);
        hybrid_prefill.push_back(hybrid.prefill_s);
        hybrid_decode_t.push_back(hybrid.decode_s);
    }

    attention_stats const& st = hybrid.stats;
    std::printf("sparsity (SPEC §4)\n");
    std::printf("  attention sparsity   prefill %5.1f%%   decode %5.1f%%   both %5.1f%%\n", 100 * st.prefill.sparsity(), 100 * st.decode.sparsity(),
                100 * st.both().sparsity());
    if (delta_values)
        std::printf("  value sparsity       prefill %5.1f%%   decode %5.1f%%   (total, QK + PV: %5.1f%%)\n", 100 * st.prefill.value_sparsity(),
                    100 * st.decode.value_sparsity(), 100 * st.both().total_sparsity());
    std::printf("  delta sparsity       %5.1f%% of key channels unchanged", 100 * st.keys.sparsity());
    if (delta_values)
        std::printf(", %5.1f%% of value channels", 100 * st.values.sparsity());
    std::printf("\n\n");

    std::size_t const row = s.shape.q_heads * d;
    std::printf("accuracy against dense attention (same data%s)\n", s.fp16 ? ", binary16 K/V" : "");
    print_errors("prefill", dense.out, hybrid.out, 0, s.prompt * row);
    if (s.prompt < n)
        print_errors("decode", dense.out, hybrid.out, s.prompt * row, n * row);
    double const element = s.fp16 ? 2.0 : 4.0;
    double const dense_bytes = (delta_values ? 2.0 : 1.0) * element * d * s.shape.kv_heads;  // per token
    std::printf("\nmemory\n  %s cache bytes/token  delta %.1f   dense %s %.1f   (ratio %.2f)\n\n", delta_values ? "K+V" : "K",
                static_cast<double>(cache_bytes) / n, s.fp16 ? "fp16" : "fp32", dense_bytes, static_cast<double>(cache_bytes) / (dense_bytes * n));

    std::printf("time (median of %d, dense and hybrid alternating; hybrid includes building the delta cache)\n", s.repeats);
    double const dp = median(dense_prefill), hp = median(hybrid_prefill);
    std::printf("  prefill  dense %8.2f ms   hybrid %8.2f ms   realized speedup %.2fx\n", 1e3 * dp, 1e3 * hp, dp / hp);
    if (s.prompt < n)
    {
        double const dd = median(dense_decode_t), hd = median(hybrid_decode_t);
        double const steps = static_cast<double>(n - s.prompt);
        std::printf("  decode   dense %8.3f ms/step  hybrid %8.3f ms/step  realized speedup %.2fx\n", 1e3 * dd / steps, 1e3 * hd / steps, dd / hd);
    }
    return 0;
}
catch (std::exception const& e)
{
    std::fprintf(stderr, "deltaattn_demo: %s\n", e.what());
    return 2;
}
