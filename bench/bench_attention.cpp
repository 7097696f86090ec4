// Dense vs hybrid attention, side by side in one run (Google Benchmark).
//
// Every hybrid case has a dense twin on the same data and shape, so their times can be
// compared within one run: bench/report.py pairs them and prints median ratios (these
// machines are shared and noisy: use repetitions and medians, never one number).
//
// Names: <stage>/<variant>[/rho:<delta sparsity %>]/n:<positions>/d:<dim>, stage is
// prefill or decode (one step at context n), variant dense, hybrid_k (delta K, target
// delta sparsity rho), hybrid_kv (delta K and V, the same rho on both), or
// hybrid_k_block8 / hybrid_kv_block8 (block policy, g = 8); decode also has
// quant_k/bits:B and quant_kv/bits:B (SPEC.md §10: K, or K and V, coded in B bits with
// 32-channel groups; the sinks and window exact in the case's storage; /q:int8 after B:
// the keys' codes dotted with int8 queries), and prefill
// quant_kv/bits:B (d 128, n >= 1024; codes built inside the timed call). Decode cases also run on
// binary16 storage (`/kv:f16` after d: float16 K/V views for dense, delta_key_cache_f16
// for hybrid), paired with the dense case of the same storage; report.py also pairs
// each f16 dense case with the fp32 one (variant dense_f16).
// paired/decode/<variant>/rho:<r>/n:<n>/d:<d>[/kv:f16]: the hybrid step and the dense
// step of the same storage run in turn, each timed (paired_decode_steps): the counter
// `speedup` is the median of the pairs' ratios, steadier on a noisy host than two cases
// (d 128 at n 1024, 4096 and 16384; d 96 at n 4096, rho 60).
// memory/read[/t:T] is the roofline: a plain read of 512 MiB, for the GB/s a decode
// step can hope for.
// Counters: attention_sparsity, value_sparsity, total_sparsity (SPEC §4, §6.1),
// delta_sparsity (of K), cache bytes (K + V) per step or call, cache_bytes_per_s,
// macs_per_s (QK + PV); the label is the arch.
//
// Rotation: a decode step reads little data once, so repeated on the same buffers it
// would run from the last-level cache (300 MiB here) and overstate the bandwidth. Each
// decode case therefore spreads its K/V (dense copies or delta caches) over
// DELTAATTN_BENCH_ROTATE_MB (default 512) of copies, one per step in turn; 0 means a
// single, cache-warm copy. The counter `copies` tells how many a case used.
//
// Threads: DELTAATTN_BENCH_THREADS=T (default 1) runs every case on a pool of T workers
// (prefill: KV head x query block tasks; decode: one task per KV head) and adds /t:T to
// the names, so report.py pairs dense and hybrid of the same thread count.
#include <deltaattn/deltaattn.hpp>
#include <deltaattn/synthetic.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

namespace
{
    using namespace deltaattn;

    constexpr std::size_t q_heads = 32, kv_heads = 8;  // GQA 4, as Llama-3-8B

    std::size_t bench_threads()
    {
        char const* env = std::getenv("DELTAATTN_BENCH_THREADS");
        long const t = env ? std::strtol(env, nullptr, 10) : 1;
        return t > 1 ? static_cast<std::size_t>(t) : 1;
    }

    /// Bytes every decode case spreads its K/V over (see the file comment).
    double rotate_bytes()
    {
        char const* env = std::getenv("DELTAATTN_BENCH_ROTATE_MB");
        long const mb = env ? std::strtol(env, nullptr, 10) : 512;
        return mb > 0 ? static_cast<double>(mb) * (1 << 20) : 0.0;
    }

    /// Copies of `bytes` each that fill the rotation (at least one).
    std::size_t copies_for(double bytes)
    {
        return std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(rotate_bytes() / std::max(bytes, 1.0))));
    }

    /**
     * The timed loop of a decode case over `copies` rotated copies of its cache:
     * `step(c)` runs one step on copy c. Every copy is read once first, untimed: on the
     * VMs measured here, memory written during a case's set-up (seconds of it) and not
     * touched since reads several times slower the first time round (a K-only fp32 step
     * at n 16384 ran 16–85 ms over 3–14 iterations, 8.8–10.8 ms over hundreds), and an
     * engine's cache is read every step, never cold like that.
     */
    template <class Step>
    void rotate_steps(benchmark::State& state, std::size_t copies, Step const& step)
    {
        for (std::size_t c = 0; c < copies; ++c)
            step(c);
        std::size_t i = 0;
        for (auto _ : state)
            step(i++ % copies);
    }

    /// The pool every case runs on (the calling thread only, by default).
    parallel_executor executor()
    {
        static thread_pool pool(bench_threads());
        return pool.executor();
    }

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

    /// `cache_bytes`: the K and V bytes a call reads (dense: the whole fp32 K and V; hybrid:
    /// the delta caches, plus the dense V it reads when values are exact).
    void report(benchmark::State& state, attention_work const& per_call, double delta_sparsity, double cache_bytes)
    {
        using counter = benchmark::Counter;
        state.counters["attention_sparsity"] = per_call.sparsity();
        state.counters["value_sparsity"] = per_call.value_sparsity();
        state.counters["total_sparsity"] = per_call.total_sparsity();
        state.counters["delta_sparsity"] = delta_sparsity;
        state.counters["cache_bytes"] = cache_bytes;
        state.counters["cache_bytes_per_s"] = counter(cache_bytes, counter::kIsIterationInvariantRate);
        state.counters["macs_per_s"] = counter(static_cast<double>(per_call.hybrid_macs + per_call.hybrid_pv_macs), counter::kIsIterationInvariantRate);
        state.SetLabel(active_arch_name());
    }

    template <class T = float>
    double dense_bytes(std::size_t n, std::size_t d)
    {
        return 2.0 * sizeof(T) * n * kv_heads * d;
    }

    /// The workload's keys or values (`x` = in.k or in.v) as storage T: `copies` copies,
    /// token-major, for decode steps to rotate over. Each view starts on a cache line, as
    /// an engine's tensor buffers do, so the dense steps' rows do not straddle lines
    /// either (the caches' rows do not): a plain vector, padded, read from its first
    /// aligned element. (Copies from an over-aligned allocator instead ran the fp32 n 16384
    /// dense step 15x slower on this VM, in a fresh process only: an effect of where the
    /// allocator placed them, not of the kernel.)
    template <class T>
    class stored_copy
    {
    public:
        explicit stored_copy(std::vector<float> const& x) : m_storage(x.size() + line / sizeof(T))
        {
            auto const address = reinterpret_cast<std::uintptr_t>(m_storage.data());
            m_offset = (line - address % line) % line / sizeof(T);
            std::transform(x.begin(), x.end(), m_storage.begin() + static_cast<std::ptrdiff_t>(m_offset), from_float<T>);
        }
        stored_copy(stored_copy const&) = delete;  // a copy's storage would sit elsewhere
        stored_copy(stored_copy&&) noexcept = default;

        T const* data() const noexcept { return m_storage.data() + m_offset; }

    private:
        static constexpr std::size_t line = detail::cache_line;  // the caches' alignment too
        std::vector<T> m_storage;
        std::size_t m_offset = 0;
    };

    template <class T>
    std::vector<stored_copy<T>> stored_copies(std::vector<float> const& x, std::size_t copies)
    {
        std::vector<stored_copy<T>> out;
        out.reserve(copies);
        for (std::size_t c = 0; c < copies; ++c)
            out.emplace_back(x);
        return out;
    }

    template <class T>
    tensor_view<const T> token_major(qkv_data const& in, stored_copy<T> const& x)
    {
        return make_token_major(x.data(), in.shape.positions, in.shape.kv_heads, in.shape.dim);
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
            dense_attention(in.q_view(), in.k_view(), in.v_view(), view, 0.0f, ws, &work, executor());
            benchmark::DoNotOptimize(out.data());
        }
        report(state, work, 0.0, dense_bytes(n, d));
    }

    /// The whole sequence, delta caches built inside the timed call: keys only, or keys
    /// and values (`delta_values`).
    void hybrid_prefill(benchmark::State& state, std::size_t n, std::size_t d, delta_policy policy, bool delta_values)
    {
        auto const& in = workload(n, d);
        std::vector<float> out;
        auto const view = in.make_output(out);
        attention_stats stats;
        for (auto _ : state)
        {
            stats = attention_stats{};
            if (delta_values)
                hybrid_attention(in.q_view(), in.k_view(), in.v_view(), view, options(), policy, policy, &stats, executor());
            else
                hybrid_attention(in.q_view(), in.k_view(), in.v_view(), view, options(), policy, &stats, executor());
            benchmark::DoNotOptimize(out.data());
        }
        double const bytes = static_cast<double>(stats.kcache_bytes) + (delta_values ? static_cast<double>(stats.vcache_bytes) : dense_bytes(n, d) / 2);
        report(state, stats.prefill, stats.keys.sparsity(), bytes);
    }

    /// The whole sequence into a layer of quantized caches (SPEC.md §10), codes built
    /// inside the timed call: keys in `bits` (32-channel groups), values the same or
    /// (`coded_values` false) exact.
    void quant_prefill(benchmark::State& state, std::size_t n, std::size_t d, unsigned bits, bool coded_values)
    {
        auto const& in = workload(n, d);
        quant_codec const codec{bits, 32, 256};
        std::optional<quant_codec> const value_codec = coded_values ? std::optional<quant_codec>(codec) : std::nullopt;
        std::vector<float> out;
        auto const view = in.make_output(out);
        attention_stats stats;
        double bytes = 0.0;
        for (auto _ : state)
        {
            stats = attention_stats{};
            layer_quant_cache cache(kv_heads, d, n, options(), codec, value_codec);
            cache.set_executor(executor());
            cache.prefill(in.q_view(), in.k_view(), in.v_view(), view, &stats);
            bytes = static_cast<double>(cache.bytes());
            benchmark::DoNotOptimize(out.data());
        }
        report(state, stats.prefill, 0.0, bytes);
    }

    // ---- decode: one step at context n (the cache is built once, outside the timing) --

    /// A dense decode case: the workload's K and V as storage T, in rotated copies.
    template <class T>
    class dense_decode_case
    {
    public:
        dense_decode_case(std::size_t n, std::size_t d)
            : m_in(workload(n, d)), m_bytes(dense_bytes<T>(n, d)), m_copies(copies_for(m_bytes)), m_keys(stored_copies<T>(m_in.k, m_copies)),
              m_values(stored_copies<T>(m_in.v, m_copies)), m_out(q_heads * d)
        {
        }

        std::size_t copies() const noexcept { return m_copies; }

        /// One step on copy c.
        void step(std::size_t c)
        {
            std::size_t const n = m_in.shape.positions, d = m_in.shape.dim;
            m_work = attention_work{};
            dense_attention(m_in.q_view().slice_positions(n - 1, 1), token_major(m_in, m_keys[c]), token_major(m_in, m_values[c]),
                            make_token_major(m_out.data(), 1, q_heads, d), 0.0f, m_ws, &m_work, executor());
            benchmark::DoNotOptimize(m_out.data());
        }

        void add_counters(benchmark::State& state) const
        {
            report(state, m_work, 0.0, m_bytes);
            state.counters["copies"] = static_cast<double>(m_copies);
        }

    private:
        qkv_data const& m_in;
        double m_bytes;
        std::size_t m_copies;
        std::vector<stored_copy<T>> m_keys, m_values;
        std::vector<float> m_out;
        attention_workspace m_ws;
        attention_work m_work;
    };

    /// A hybrid decode case on per-head delta caches in rotated copies: keys only (values
    /// read densely, position-major, as the dense step and a layer read them), or keys and
    /// values (`delta_values`). T: the storage element.
    template <class T>
    class hybrid_decode_case
    {
    public:
        hybrid_decode_case(std::size_t n, std::size_t d, delta_policy policy, bool delta_values)
            : m_in(workload(n, d)), m_delta_values(delta_values), m_pool(executor()), m_ws(m_pool.workers), m_per_worker(m_pool.workers),
              m_out(q_heads * d)
        {
            std::vector<basic_delta_cache<T>> keys, values;
            m_bytes = delta_values ? 0.0 : dense_bytes<T>(n, d) / 2;
            for (std::size_t h = 0; h < kv_heads; ++h)
            {
                keys.emplace_back(d, n, options(), policy, "k");
                keys.back().append(m_in.k_view().head(h));
                m_bytes += static_cast<double>(keys.back().bytes());
                m_deltas += keys.back().stats();
                if (!delta_values)
                    continue;
                values.emplace_back(d, n, options(), policy, "v");
                values.back().append(m_in.v_view().head(h));
                m_bytes += static_cast<double>(values.back().bytes());
            }
            m_copies = copies_for(m_bytes);
            m_keys.assign(m_copies, keys);
            m_values.assign(m_copies, values);
            m_dense_values = stored_copies<T>(delta_values ? std::vector<float>{} : m_in.v, m_copies);
        }

        std::size_t copies() const noexcept { return m_copies; }
        double delta_sparsity() const noexcept { return m_deltas.sparsity(); }

        /// One step on copy c.
        void step(std::size_t c)
        {
            std::size_t const n = m_in.shape.positions, d = m_in.shape.dim, group = q_heads / kv_heads;
            auto const q = m_in.q_view().slice_positions(n - 1, 1);
            std::fill(m_per_worker.begin(), m_per_worker.end(), attention_stats{});
            if (!m_delta_values)  // the layer's step
                hybrid_decode(m_keys[c], q, token_major(m_in, m_dense_values[c]), make_token_major(m_out.data(), 1, q_heads, d), m_ws[0],
                              &m_per_worker[0], m_pool);
            else
                m_pool(kv_heads, [&](std::size_t h, std::size_t worker) {
                    matrix_view<const float> const qh{q.at(0, h * group), group, d, q.head_stride};
                    auto const oh = make_matrix_view(m_out.data() + h * group * d, group, d);
                    hybrid_decode(m_keys[c][h], m_values[c][h], qh, oh, m_ws[worker], &m_per_worker[worker]);
                });
            benchmark::DoNotOptimize(m_out.data());
        }

        /// The last step's work, summed over the workers.
        attention_work work() const
        {
            attention_stats stats;
            for (auto const& w : m_per_worker)
                stats.decode += w.decode;
            return stats.decode;
        }

        void add_counters(benchmark::State& state) const
        {
            report(state, work(), delta_sparsity(), m_bytes);
            state.counters["copies"] = static_cast<double>(m_copies);
        }

    private:
        qkv_data const& m_in;
        bool m_delta_values;
        parallel_executor m_pool;
        double m_bytes = 0.0;
        delta_stats m_deltas;
        std::size_t m_copies = 1;
        std::vector<std::vector<basic_delta_cache<T>>> m_keys, m_values;
        std::vector<stored_copy<T>> m_dense_values;
        std::vector<attention_workspace> m_ws;
        std::vector<attention_stats> m_per_worker;
        std::vector<float> m_out;
    };

    template <class T>
    void dense_decode_step(benchmark::State& state, std::size_t n, std::size_t d)
    {
        dense_decode_case<T> dense(n, d);
        rotate_steps(state, dense.copies(), [&](std::size_t c) { dense.step(c); });
        dense.add_counters(state);
    }

    template <class T>
    void hybrid_decode_step(benchmark::State& state, std::size_t n, std::size_t d, delta_policy policy, bool delta_values)
    {
        hybrid_decode_case<T> hybrid(n, d, policy, delta_values);
        rotate_steps(state, hybrid.copies(), [&](std::size_t c) { hybrid.step(c); });
        hybrid.add_counters(state);
    }

    double median(std::vector<double> x)
    {
        auto const mid = x.begin() + static_cast<std::ptrdiff_t>(x.size() / 2);
        std::nth_element(x.begin(), mid, x.end());
        return *mid;
    }

    /**
     * A hybrid decode step and the dense step of the same storage, in turn (which goes
     * first alternates), each timed on its own: the host's swings (on the VMs measured
     * here the same dense step ran 0.75-1.14x of itself from one run to the next) reach
     * both steps of a pair alike, so the median of the pairs' ratios, `speedup`, is
     * steadier than a ratio of two cases timed seconds apart. Also: the median step times
     * (`dense_us`, `hybrid_us`). The iteration time is the pair's.
     */
    template <class T>
    void paired_decode_steps(benchmark::State& state, std::size_t n, std::size_t d, delta_policy policy, bool delta_values)
    {
        using clock = std::chrono::steady_clock;
        dense_decode_case<T> dense(n, d);
        hybrid_decode_case<T> hybrid(n, d, policy, delta_values);
        for (std::size_t c = 0; c < std::max(dense.copies(), hybrid.copies()); ++c)  // read once first (rotate_steps)
        {
            dense.step(c % dense.copies());
            hybrid.step(c % hybrid.copies());
        }
        std::vector<double> dense_s, hybrid_s, ratios;
        std::size_t i = 0;
        auto const timed = [&](auto& steps) {
            auto const t0 = clock::now();
            steps.step(i % steps.copies());
            return std::chrono::duration<double>(clock::now() - t0).count();
        };
        for (auto _ : state)
        {
            double dense_time = 0.0, hybrid_time = 0.0;
            if (i % 2 == 0)
            {
                dense_time = timed(dense);
                hybrid_time = timed(hybrid);
            }
            else
            {
                hybrid_time = timed(hybrid);
                dense_time = timed(dense);
            }
            dense_s.push_back(dense_time);
            hybrid_s.push_back(hybrid_time);
            ratios.push_back(dense_time / hybrid_time);
            state.SetIterationTime(dense_time + hybrid_time);
            ++i;
        }
        auto const work = hybrid.work();
        state.counters["speedup"] = median(ratios);
        state.counters["dense_us"] = 1e6 * median(dense_s);
        state.counters["hybrid_us"] = 1e6 * median(hybrid_s);
        state.counters["attention_sparsity"] = work.sparsity();
        state.counters["delta_sparsity"] = hybrid.delta_sparsity();
        state.SetLabel(active_arch_name());
    }

    /// One decode step on per-head quantized caches (SPEC.md §10): keys coded with `bits`
    /// (32-channel groups), values coded the same way or (`coded_values` false) kept exact
    /// for every position. T: the exact sets' storage.
    template <class T>
    void quant_decode_step(benchmark::State& state, std::size_t n, std::size_t d, unsigned bits, bool coded_values, bool int8_queries)
    {
        auto const& in = workload(n, d);
        std::size_t const group = q_heads / kv_heads;
        quant_codec const value_coding{bits, 32, 256};
        quant_codec codec = value_coding;
        codec.int8_queries = int8_queries;
        std::optional<quant_codec> const value_codec = coded_values ? std::optional<quant_codec>(value_coding) : std::nullopt;
        std::vector<basic_quant_cache<T>> keys, values;
        double bytes = 0.0;
        for (std::size_t h = 0; h < kv_heads; ++h)
        {
            keys.emplace_back(d, n, options(), codec);
            keys.back().append(in.k_view().head(h));
            values.emplace_back(d, n, options(), value_codec);
            values.back().append(in.v_view().head(h));
            bytes += static_cast<double>(keys.back().bytes() + values.back().bytes());
        }
        std::size_t const copies = copies_for(bytes);
        std::vector<std::vector<basic_quant_cache<T>>> const key_copies(copies, keys), value_copies(copies, values);
        std::vector<float> out(q_heads * d);
        parallel_executor const pool = executor();
        std::vector<attention_workspace> ws(pool.workers);
        std::vector<attention_stats> per_worker(pool.workers);
        auto const q = in.q_view().slice_positions(n - 1, 1);
        rotate_steps(state, copies, [&](std::size_t c) {
            std::fill(per_worker.begin(), per_worker.end(), attention_stats{});
            pool(kv_heads, [&](std::size_t h, std::size_t worker) {
                matrix_view<const float> const qh{q.at(0, h * group), group, d, q.head_stride};
                quant_decode(key_copies[c][h], value_copies[c][h], qh, make_matrix_view(out.data() + h * group * d, group, d), ws[worker],
                             &per_worker[worker]);
            });
            benchmark::DoNotOptimize(out.data());
        });
        attention_stats stats;
        for (auto const& w : per_worker)
            stats.decode += w.decode;
        report(state, stats.decode, 0.0, bytes);
        state.counters["copies"] = static_cast<double>(copies);
        state.counters["bits_per_value"] = codec.bits_per_value(d);
    }

    // ---- the roofline: how fast this machine streams bytes -------------------------

    /// Sums a 512 MiB buffer (well past the last-level cache), split over the pool's
    /// workers like the decode heads: the read bandwidth a decode step can hope for.
    /// report.py prints each decode case's GB/s as a share of it.
    void memory_read(benchmark::State& state)
    {
        using ops = arch_traits<default_arch>;
        constexpr std::size_t w = ops::width, chunks = 64;
        static std::vector<float> const buffer(std::size_t(128) << 20, 1.0f);
        std::size_t const per_chunk = buffer.size() / chunks;
        parallel_executor const pool = executor();
        std::vector<float> sums(chunks);
        for (auto _ : state)
        {
            pool(chunks, [&](std::size_t chunk, std::size_t) {
                float const* p = buffer.data() + chunk * per_chunk;
                typename ops::reg acc[4] = {ops::zero(), ops::zero(), ops::zero(), ops::zero()};
                for (std::size_t i = 0; i + 4 * w <= per_chunk; i += 4 * w)
                    for (std::size_t r = 0; r < 4; ++r)
                        acc[r] = ops::add(acc[r], ops::load(p + i + r * w));
                sums[chunk] = ops::reduce_add(ops::add(ops::add(acc[0], acc[1]), ops::add(acc[2], acc[3])));
            });
            benchmark::DoNotOptimize(sums.data());
        }
        double const bytes = static_cast<double>(buffer.size() * sizeof(float));
        state.counters["cache_bytes"] = bytes;
        state.counters["cache_bytes_per_s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
        state.SetLabel(active_arch_name());
    }

    /// The compute roofline: independent FMA chains on registers, per worker. Twelve
    /// chains cover the FMA latency times the FMA units of every core seen here (4 x 2).
    void compute_fma(benchmark::State& state)
    {
        using ops = arch_traits<default_arch>;
        constexpr std::size_t chains = 12, steps = 1 << 16;
        parallel_executor const pool = executor();
        std::vector<float> sums(pool.workers);
        for (auto _ : state)
        {
            pool(pool.workers, [&](std::size_t task, std::size_t) {
                typename ops::reg acc[chains];
                for (std::size_t c = 0; c < chains; ++c)
                    acc[c] = ops::broadcast(static_cast<float>(c));
                typename ops::reg const a = ops::broadcast(0.999f), b = ops::broadcast(1e-3f);
                for (std::size_t i = 0; i < steps; ++i)
                    for (std::size_t c = 0; c < chains; ++c)
                        acc[c] = ops::fma(acc[c], a, b);
                typename ops::reg total = ops::zero();
                for (auto const& x : acc)
                    total = ops::add(total, x);
                sums[task] = ops::reduce_add(total);
            });
            benchmark::DoNotOptimize(sums.data());
        }
        double const flops = 2.0 * chains * steps * ops::width * pool.workers;
        state.counters["flops_per_s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
        state.SetLabel(active_arch_name());
    }

    std::string shape(std::size_t n, std::size_t d, bool f16 = false)
    {
        std::string const threads = bench_threads() > 1 ? "/t:" + std::to_string(bench_threads()) : "";
        return "/n:" + std::to_string(n) + "/d:" + std::to_string(d) + (f16 ? "/kv:f16" : "") + threads;
    }

    int register_all()
    {
        struct level
        {
            std::string name;
            delta_policy policy;
            bool paired;  // also timed in pairs with dense (paired/decode/...)
        };
        std::vector<level> levels;
        for (char const* variant : {"hybrid_k", "hybrid_kv"})
        {
            for (int rho : {40, 60, 80})
                levels.push_back({std::string(variant) + "/rho:" + std::to_string(rho), target_sparsity{static_cast<float>(rho) / 100.0f}, rho >= 60});
            levels.push_back({std::string(variant) + "_block8", block_threshold{8, 0.45f}, false});
        }
        auto const is_kv = [](level const& l) { return l.name.rfind("hybrid_kv", 0) == 0; };
        std::string const threads = bench_threads() > 1 ? "/t:" + std::to_string(bench_threads()) : "";
        benchmark::RegisterBenchmark(("memory/read" + threads).c_str(), memory_read)->Unit(benchmark::kMillisecond);
        benchmark::RegisterBenchmark(("compute/fma" + threads).c_str(), compute_fma)->Unit(benchmark::kMicrosecond);
        // Short contexts: where the K-only step at 60% crosses the dense step (n 128 to 2048).
        for (std::size_t d : {64, 128})
            for (std::size_t n : {128, 256, 512, 1024, 2048})
            {
                benchmark::RegisterBenchmark(("crossover/dense" + shape(n, d)).c_str(), dense_decode_step<float>, n, d)->Unit(benchmark::kMicrosecond);
                benchmark::RegisterBenchmark(("crossover/hybrid_k/rho:60" + shape(n, d)).c_str(), hybrid_decode_step<float>, n, d, target_sparsity{0.6f}, false)
                    ->Unit(benchmark::kMicrosecond);
            }
        for (std::size_t d : {64, 128})
        {
            for (std::size_t n : {256, 1024, 2048, 4096})
            {
                benchmark::RegisterBenchmark(("prefill/dense" + shape(n, d)).c_str(), dense_prefill, n, d)->Unit(benchmark::kMillisecond);
                for (auto const& l : levels)
                    benchmark::RegisterBenchmark(("prefill/" + l.name + shape(n, d)).c_str(), hybrid_prefill, n, d, l.policy, is_kv(l))
                        ->Unit(benchmark::kMillisecond);
                if (d == 128 && n >= 1024)
                    for (unsigned bits : {3u, 4u, 8u})
                        benchmark::RegisterBenchmark(("prefill/quant_kv/bits:" + std::to_string(bits) + shape(n, d)).c_str(), quant_prefill, n, d, bits, true)
                            ->Unit(benchmark::kMillisecond);
            }
            for (std::size_t n : {512, 1024, 4096, 8192, 16384})
                for (bool f16 : {false, true})
                {
                    auto const quant = f16 ? quant_decode_step<float16> : quant_decode_step<float>;
                    for (unsigned bits : {3u, 4u, 8u})
                        for (bool coded_values : {true, false})
                            for (bool int8_queries : {false, true})
                                if (d == 128 && n >= 1024 && n != 8192)
                                    benchmark::RegisterBenchmark(("decode/quant_" + std::string(coded_values ? "kv" : "k") + "/bits:" + std::to_string(bits) +
                                                                  (int8_queries ? "/q:int8" : "") + shape(n, d, f16))
                                                                     .c_str(),
                                                                 quant, n, d, bits, coded_values, int8_queries)
                                        ->Unit(benchmark::kMicrosecond);
                    auto const dense = f16 ? dense_decode_step<float16> : dense_decode_step<float>;
                    auto const hybrid = f16 ? hybrid_decode_step<float16> : hybrid_decode_step<float>;
                    benchmark::RegisterBenchmark(("decode/dense" + shape(n, d, f16)).c_str(), dense, n, d)->Unit(benchmark::kMicrosecond);
                    for (auto const& l : levels)
                        benchmark::RegisterBenchmark(("decode/" + l.name + shape(n, d, f16)).c_str(), hybrid, n, d, l.policy, is_kv(l))
                            ->Unit(benchmark::kMicrosecond);
                    auto const paired = f16 ? paired_decode_steps<float16> : paired_decode_steps<float>;
                    for (auto const& l : levels)
                        if (l.paired && d == 128 && (n == 1024 || n == 4096 || n == 16384))
                            benchmark::RegisterBenchmark(("paired/decode/" + l.name + shape(n, d, f16)).c_str(), paired, n, d, l.policy, is_kv(l))
                                ->UseManualTime()
                                ->Unit(benchmark::kMicrosecond);
                }
        }
        // Head dim 96 (Phi-3-mini's): not a whole number of 64-channel mask words, so the
        // delta rows go through the row-at-a-time kernels, not the by-word ones.
        for (bool f16 : {false, true})
            for (auto const& l : levels)
                if (l.paired && l.name.find("rho:60") != std::string::npos)
                    benchmark::RegisterBenchmark(("paired/decode/" + l.name + shape(4096, 96, f16)).c_str(),
                                                 f16 ? paired_decode_steps<float16> : paired_decode_steps<float>, 4096, 96, l.policy, is_kv(l))
                        ->UseManualTime()
                        ->Unit(benchmark::kMicrosecond);
        return 0;
    }

    int const registered = register_all();
}  // namespace
