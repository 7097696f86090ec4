/**
 * @file tools/eval_core.hpp
 * What `deltaattn-eval run` computes, as a function tests can call: hybrid attention of
 * Q, K, V (prefill of the first `prompt` positions, then decode steps on the same cache,
 * SPEC.md §3 either way), dense attention of the same data, and the figures users
 * compare them by (sparsities, errors, the §3 score bound, cache bytes, times).
 */
#ifndef DELTAATTN_TOOLS_EVAL_CORE_HPP
#define DELTAATTN_TOOLS_EVAL_CORE_HPP

#include <deltaattn/deltaattn.hpp>
#include <deltaattn/reference/reference.hpp>
#include <deltaattn/synthetic.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace deltaattn_tools
{
    using namespace deltaattn;

    struct eval_settings
    {
        hybrid_options options{};
        delta_policy policy = fixed_threshold{0.1f};
        std::optional<float> value_theta;  ///< delta values with a fixed θ_v (SPEC §6.1); none: values exact
        std::size_t prompt = std::numeric_limits<std::size_t>::max();  ///< positions < prompt: one prefill; clamped to n
        std::size_t threads = 1;
        /// Quantized far context (SPEC §10) instead of thresholded deltas: keys coded with
        /// `key_codec`, values with `value_codec` (none: exact). `policy` is then unused.
        std::optional<quant_codec> key_codec, value_codec;
        /// Also report llama.cpp-style block quantization (this codec, R = 1, on K and V
        /// at every position but the diagonal: sinks 1, window 1) on the same input.
        std::optional<quant_codec> baseline;
        /// Binary16 storage: the _f16 caches, timed against the dense step on binary16 K/V
        /// (the storage an engine would compare with); errors still against fp32 dense.
        bool f16 = false;
    };

    /// The error of a baseline codec applied without exact sets.
    struct baseline_figures
    {
        double bits_per_value = 0, max_abs_error = 0, rel_error = 0;
    };

    struct head_figures
    {
        double attention_sparsity = 0, max_abs_error = 0, rel_error = 0;
    };

    /// Seconds spent in each stage: the prefill of [0, prompt), then the decode steps.
    struct stage_seconds
    {
        double prefill = 0, decode = 0;
        double total() const noexcept { return prefill + decode; }
    };

    struct eval_result
    {
        std::size_t prompt = 0;
        attention_stats stats;
        std::vector<float> out;             ///< hybrid output, n x Hq x d
        double max_abs_error = 0, rel_error = 0;
        double score_bound = 0;             ///< NaN when the policy has none (target sparsity)
        double kcache_bytes_per_token = 0, kcache_dense_bytes_per_token = 0;
        double vcache_bytes_per_token = 0, vcache_dense_bytes_per_token = 0;
        double time_dense_s = 0, time_hybrid_s = 0;  ///< both stages
        stage_seconds dense_time, hybrid_time;         ///< per stage
        std::vector<head_figures> per_head;  ///< per query head
        /// With f16: the dense step on binary16 K/V against fp32 dense (the rounding alone,
        /// the part of rel_error no delta policy causes); 0 for fp32 storage.
        double storage_max_abs_error = 0, storage_rel_error = 0;
        double bits_per_value = 0, value_bits_per_value = 0;  ///< quant: stored bits of a far K (V) value
        std::optional<baseline_figures> baseline;
    };

    namespace eval_detail
    {
        using clock_type = std::chrono::steady_clock;
        inline double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

        /// Max |a - b| and the Frobenius relative error ||a - b|| / ||b|| over the elements
        /// `at(i)` for i in [0, count).
        struct error_figures
        {
            double max_abs, relative;
        };

        template <class At>
        error_figures errors(std::vector<float> const& a, std::vector<float> const& b, std::size_t count, At&& at)
        {
            double max_abs = 0, diff2 = 0, ref2 = 0;
            for (std::size_t i = 0; i < count; ++i)
            {
                double const x = a[at(i)], y = b[at(i)];
                max_abs = std::max(max_abs, std::fabs(x - y));
                diff2 += (x - y) * (x - y);
                ref2 += y * y;
            }
            return {max_abs, ref2 > 0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2)};
        }

        /// Attention sparsity (SPEC §4) of one KV head's queries at every position, from
        /// its delta rows: the analytic count of reference/counts.hpp, in O(n) with prefix sums.
        inline double head_sparsity(reference::delta_rows const& rows, hybrid_options const& o)
        {
            std::size_t const n = rows.rows, d = rows.dim, S = o.sinks, W = o.window;
            std::vector<double> cost(n + 1, 0.0);  // cost[j + 1] = Σ_{m <= j} (d at keyframes, else nnz)
            for (std::size_t j = 0; j < n; ++j)
                cost[j + 1] = cost[j] + static_cast<double>(reference::is_restart_keyframe(j, o) ? d : rows.updated_count(j));
            double dense = 0, hybrid = 0;
            for (std::size_t i = 0; i < n; ++i)
            {
                dense += static_cast<double>((i + 1) * d);
                if (i < S + W)
                    hybrid += static_cast<double>((i + 1) * d);
                else
                    hybrid += static_cast<double>((S + W) * d) + cost[i - W + 1] - cost[S] + (S > 1 ? static_cast<double>(d) : 0.0);
            }
            return dense > 0 ? 1.0 - hybrid / dense : 0.0;
        }

        /// SPEC §3's bound max_{i, j in D_i} α Σ_c |q_i[c]| θ_j over every query head.
        inline double score_bound(qkv_data const& in, std::vector<reference::delta_rows> const& rows, hybrid_options const& o)
        {
            std::size_t const n = in.shape.positions, d = in.shape.dim, group = in.shape.q_heads / in.shape.kv_heads;
            double const alpha = effective_scale(o.scale, d);
            double bound = 0;
            for (std::size_t kv = 0; kv < in.shape.kv_heads; ++kv)
            {
                double theta_max = -1;  // max θ_j over j in [S, i - W], grown with i
                for (std::size_t i = o.sinks + o.window; i < n; ++i)
                {
                    double const theta = rows[kv].theta[i - o.window];
                    if (std::isnan(theta))
                        return std::numeric_limits<double>::quiet_NaN();
                    theta_max = std::max(theta_max, theta);
                    for (std::size_t h = kv * group; h < (kv + 1) * group; ++h)
                    {
                        float const* q = in.q_view().at(i, h);
                        double l1 = 0;
                        for (std::size_t c = 0; c < d; ++c)
                            l1 += std::fabs(static_cast<double>(q[c]));
                        bound = std::max(bound, alpha * l1 * theta_max);
                    }
                }
            }
            return bound;
        }

        /// SPEC §10's score bound over every query head: max_i α Σ_c |q_i[c]| max_{j in D_i}
        /// s_j[c] / 2, which bounds max_{i, j in D_i} α Σ_c |q_i[c]| s_j[c] / 2 from above.
        inline double quant_score_bound(qkv_data const& in, quant_codec const& codec, hybrid_options const& o)
        {
            std::size_t const n = in.shape.positions, d = in.shape.dim, group = in.shape.q_heads / in.shape.kv_heads;
            double const alpha = effective_scale(o.scale, d);
            double bound = 0;
            for (std::size_t kv = 0; kv < in.shape.kv_heads; ++kv)
            {
                reference::quant_rows const rows = reference::build_quant_rows(in.k_view().head(kv), codec);
                std::vector<double> s_max(d, 0.0);  // max s_j[c] over j in [S, i - W], grown with i
                std::vector<double> k_max(d, 0.0);  // max |k̂_j[c]| over the same rows (int8 queries)
                for (std::size_t i = o.sinks + o.window; i < n; ++i)
                {
                    for (std::size_t c = 0; c < d; ++c)
                    {
                        s_max[c] = std::max(s_max[c], static_cast<double>(rows.scale_row(i - o.window)[c]));
                        k_max[c] = std::max(k_max[c], std::fabs(static_cast<double>(rows.reference_row(i - o.window)[c])));
                    }
                    for (std::size_t h = kv * group; h < (kv + 1) * group; ++h)
                    {
                        float const* q = in.q_view().at(i, h);
                        std::vector<float> s_q;
                        if (codec.int8_queries)  // (every query counted as a decode step: an upper bound)
                            reference::int8_query(q, d, &s_q);
                        double b = 0;
                        for (std::size_t c = 0; c < d; ++c)
                            b += std::fabs(static_cast<double>(q[c])) * s_max[c] / 2 + (codec.int8_queries ? k_max[c] * s_q[c] / 2 : 0.0);
                        bound = std::max(bound, alpha * b);
                    }
                }
            }
            return bound;
        }

        /// Prefill of [0, prompt) then decode steps, on a cache of any kind; `v` is what its
        /// calls take (fp32 values it stores itself, or the engine's V cache it reads in
        /// place, then every position so far). Returns the seconds of each stage.
        template <class Cache, class V>
        stage_seconds run_cache(Cache& cache, qkv_data const& in, tensor_view<const V> v, std::size_t prompt, bool values_owned, tensor_view<float> out,
                                attention_stats& stats)
        {
            stage_seconds t;
            auto const t0 = clock_type::now();
            std::size_t const n = in.shape.positions;
            if (prompt > 0)
                cache.prefill(in.q_view().slice_positions(0, prompt), in.k_view().slice_positions(0, prompt), v.slice_positions(0, prompt),
                              out.slice_positions(0, prompt), &stats);
            t.prefill = since(t0);
            auto const t1 = clock_type::now();
            for (std::size_t i = prompt; i < n; ++i)  // values: the step's own, or every position so far
                cache.decode(in.q_view().slice_positions(i, 1), in.k_view().slice_positions(i, 1),
                             v.slice_positions(values_owned ? i : 0, values_owned ? 1 : i + 1), out.slice_positions(i, 1), &stats);
            t.decode = prompt < n ? since(t1) : 0.0;
            return t;
        }

        /// K or V rounded to binary16, token-major as `qkv_data` holds them.
        inline std::vector<float16> halves_of(std::vector<float> const& x)
        {
            std::vector<float16> h(x.size());
            std::transform(x.begin(), x.end(), h.begin(), from_float<float16>);
            return h;
        }

        /// Dense attention on K/V views of element T with the evaluation's schedule: a
        /// prefill of [0, prompt), then decode steps. Returns the seconds of each stage.
        template <class T>
        stage_seconds dense_schedule(qkv_data const& in, tensor_view<const T> k, tensor_view<const T> v, std::size_t prompt, float scale,
                                     parallel_executor const& executor, tensor_view<float> out)
        {
            attention_workspace ws;
            stage_seconds t;
            auto const t0 = clock_type::now();
            if (prompt > 0)
                dense_attention(in.q_view().slice_positions(0, prompt), k.slice_positions(0, prompt), v.slice_positions(0, prompt),
                                out.slice_positions(0, prompt), scale, ws, nullptr, executor);
            t.prefill = since(t0);
            auto const t1 = clock_type::now();
            for (std::size_t i = prompt; i < in.shape.positions; ++i)
                dense_attention(in.q_view().slice_positions(i, 1), k.slice_positions(0, i + 1), v.slice_positions(0, i + 1), out.slice_positions(i, 1),
                                scale, ws, nullptr, executor);
            t.decode = prompt < in.shape.positions ? since(t1) : 0.0;
            return t;
        }
    }  // namespace eval_detail

    /// Dense attention of the same data and schedule (a prefill of [0, prompt), then decode
    /// steps): the baseline every figure is measured against.
    struct dense_baseline
    {
        std::vector<float> out;  ///< fp32 dense: what every error is measured against
        double seconds = 0;      ///< both stages of the dense step on the storage's K/V
        stage_seconds stages;
        std::size_t prompt = 0;
        float scale = 0;
        bool f16 = false;
        std::vector<float> storage_out;  ///< with f16: dense on binary16 K/V
    };

    /// Dense attention of `in`: fp32, and with `f16` also on binary16 K/V, which is then
    /// the one timed (hybrid on binary16 caches is compared with dense on binary16 K/V).
    inline dense_baseline run_dense(qkv_data const& in, std::size_t prompt, float scale, std::size_t threads, bool f16 = false)
    {
        dense_baseline b;
        b.prompt = std::min(prompt, in.shape.positions);
        b.scale = scale;
        b.f16 = f16;
        thread_pool pool(std::max<std::size_t>(1, threads));
        parallel_executor const executor = pool.executor();
        b.stages = eval_detail::dense_schedule(in, in.k_view(), in.v_view(), b.prompt, scale, executor, in.make_output(b.out));
        if (f16)
        {
            std::vector<float16> const k = eval_detail::halves_of(in.k), v = eval_detail::halves_of(in.v);
            auto const& shape = in.shape;
            b.stages = eval_detail::dense_schedule(in, make_token_major(k.data(), shape.positions, shape.kv_heads, shape.dim),
                                                   make_token_major(v.data(), shape.positions, shape.kv_heads, shape.dim), b.prompt, scale, executor,
                                                   in.make_output(b.storage_out));
        }
        b.seconds = b.stages.total();
        return b;
    }

    /// Checks `in` and `s` (SPEC §8, errors name the argument), then runs hybrid attention
    /// and compares it with `dense`, or with a dense run of its own when none is given (a
    /// sweep passes one baseline to all its points).
    inline eval_result evaluate(qkv_data const& in, eval_settings const& s, dense_baseline const* given = nullptr)
    {
        std::size_t const n = in.shape.positions, d = in.shape.dim, hq = in.shape.q_heads, hkv = in.shape.kv_heads;
        eval_result r;
        auto const out = in.make_output(r.out);  // the hybrid output, and the view the checks need
        if (s.key_codec)
            detail::check_sequence(in.q_view(), in.k_view(), in.v_view(), out, s.options);
        else
            detail::check_sequence(in.q_view(), in.k_view(), in.v_view(), out, s.options, s.policy);
        if (s.value_theta)
            validate_policy(fixed_threshold{*s.value_theta}, d);

        if (s.key_codec)
            validate_codec(*s.key_codec, d, "bits", "scale_group");
        if (s.value_codec)
            validate_codec(*s.value_codec, d, "value_bits", "scale_group");
        if (s.baseline)
            validate_codec(*s.baseline, d, "baseline", "baseline");
        r.prompt = std::min(s.prompt, n);
        DELTAATTN_REQUIRE(!given || (given->prompt == r.prompt && given->scale == s.options.scale && given->out.size() == r.out.size() &&
                                     given->f16 == s.f16),
                          "dense", "the baseline was run with another prompt, scale, shape or storage");
        dense_baseline const own = given ? dense_baseline{} : run_dense(in, r.prompt, s.options.scale, s.threads, s.f16);
        dense_baseline const& base = given ? *given : own;
        std::vector<float> const& dense = base.out;
        r.dense_time = base.stages;

        thread_pool pool(s.threads);
        parallel_executor const executor = pool.executor();
        std::vector<float16> const v16 = s.f16 && !s.key_codec && !s.value_theta ? eval_detail::halves_of(in.v) : std::vector<float16>{};
        auto const run_hybrid = [&](auto element) {  // on caches of this storage element
            using T = decltype(element);
            if (s.key_codec)
            {
                basic_layer_quant_cache<T> cache(hkv, d, std::max<std::size_t>(n, 1), s.options, *s.key_codec, s.value_codec);
                cache.set_executor(executor);
                r.hybrid_time = eval_detail::run_cache(cache, in, in.v_view(), r.prompt, true, out, r.stats);
            }
            else if (s.value_theta)
            {
                basic_layer_kv_cache<T> cache(hkv, d, std::max<std::size_t>(n, 1), s.options, s.policy, fixed_threshold{*s.value_theta});
                cache.set_executor(executor);
                r.hybrid_time = eval_detail::run_cache(cache, in, in.v_view(), r.prompt, true, out, r.stats);
            }
            else
            {
                basic_layer_key_cache<T> cache(hkv, d, std::max<std::size_t>(n, 1), s.options, s.policy);
                cache.set_executor(executor);
                tensor_view<const T> v = [&] {  // the engine's V cache, read in place: binary16 with f16
                    if constexpr (std::is_same<T, float16>::value)
                        return make_token_major(v16.data(), n, hkv, d);
                    else
                        return in.v_view();
                }();
                r.hybrid_time = eval_detail::run_cache(cache, in, v, r.prompt, false, out, r.stats);
            }
        };
        if (s.f16)
            run_hybrid(float16{});
        else
            run_hybrid(0.0f);
        if (s.key_codec)
        {
            r.bits_per_value = s.key_codec->bits_per_value(d);
            r.value_bits_per_value = s.value_codec ? s.value_codec->bits_per_value(d) : 8.0 * (s.f16 ? sizeof(float16) : sizeof(float));
        }
        r.time_dense_s = r.dense_time.total();
        r.time_hybrid_s = r.hybrid_time.total();

        double const tokens = static_cast<double>(std::max<std::size_t>(n, 1));
        r.kcache_bytes_per_token = static_cast<double>(r.stats.kcache_bytes) / tokens;
        r.kcache_dense_bytes_per_token = static_cast<double>((s.f16 ? sizeof(float16) : sizeof(float)) * hkv * d);
        bool const values_cached = s.value_theta || s.key_codec;
        r.vcache_bytes_per_token = values_cached ? static_cast<double>(r.stats.vcache_bytes) / tokens : r.kcache_dense_bytes_per_token;
        r.vcache_dense_bytes_per_token = r.kcache_dense_bytes_per_token;

        eval_detail::error_figures const all = eval_detail::errors(r.out, dense, r.out.size(), [](std::size_t i) { return i; });
        r.max_abs_error = all.max_abs;
        r.rel_error = all.relative;
        if (s.f16)
        {
            eval_detail::error_figures const storage = eval_detail::errors(base.storage_out, dense, dense.size(), [](std::size_t i) { return i; });
            r.storage_max_abs_error = storage.max_abs;
            r.storage_rel_error = storage.relative;
        }
        std::vector<reference::delta_rows> rows;
        if (s.key_codec)
            r.score_bound = eval_detail::quant_score_bound(in, *s.key_codec, s.options);
        else
        {
            for (std::size_t kv = 0; kv < hkv; ++kv)  // the rows the caches keep
                rows.push_back(s.f16 ? reference::build_delta_rows<float16>(in.k_view().head(kv), s.policy)
                                     : reference::build_delta_rows(in.k_view().head(kv), s.policy));
            r.score_bound = eval_detail::score_bound(in, rows, s.options);
        }
        for (std::size_t h = 0; h < hq; ++h)
        {
            head_figures f;
            // (quant: attention sparsity does not apply, SPEC §10)
            f.attention_sparsity = s.key_codec ? 0.0 : eval_detail::head_sparsity(rows[h / (hq / hkv)], s.options);
            eval_detail::error_figures const head =
                eval_detail::errors(r.out, dense, n * d, [&](std::size_t e) { return ((e / d) * hq + h) * d + e % d; });
            f.max_abs_error = head.max_abs;
            f.rel_error = head.relative;
            r.per_head.push_back(f);
        }
        if (s.baseline)
        {
            hybrid_options every = s.options;
            every.sinks = every.window = 1;
            std::vector<float> coded;
            auto const coded_view = in.make_output(coded);
            quant_attention(in.q_view(), in.k_view(), in.v_view(), coded_view, every, *s.baseline, s.baseline, nullptr, executor);
            eval_detail::error_figures const e = eval_detail::errors(coded, dense, coded.size(), [](std::size_t i) { return i; });
            r.baseline = baseline_figures{s.baseline->bits_per_value(d), e.max_abs, e.relative};
        }
        return r;
    }
}  // namespace deltaattn_tools

#endif  // DELTAATTN_TOOLS_EVAL_CORE_HPP
