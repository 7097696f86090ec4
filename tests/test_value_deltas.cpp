// The delta value matrix (SPEC.md §6.1): layer_kv_cache and hybrid_attention with a
// value policy against the oracle, its θ_v bound, θ_v = 0 against the K-only hybrid,
// the PV counters against the analytic counts, and prefill/decode/chunk agreement.
#include "catch.hpp"
#include "tester.hpp"

#include <algorithm>
#include <cmath>

using namespace deltaattn_test;

namespace
{
    /// A case with a value policy too.
    struct kv_case
    {
        attention_case c;
        delta_policy value_policy = fixed_threshold{0.05f};
    };

    std::vector<float> oracle_kv(qkv_data const& in, kv_case const& k)
    {
        std::vector<float> out;
        auto view = in.make_output(out);
        reference::hybrid_attention(in.q_view(), in.k_view(), in.v_view(), view, k.c.options, k.c.policy, k.value_policy);
        return out;
    }

    template <class Arch>
    std::vector<float> run_kv(qkv_data const& in, kv_case const& k, attention_stats* stats = nullptr)
    {
        std::vector<float> out;
        auto view = in.make_output(out);
        hybrid_attention<Arch>(in.q_view(), in.k_view(), in.v_view(), view, k.c.options, k.c.policy, k.value_policy, stats);
        return out;
    }

    /// Prefill of the first `prompt` positions in chunks of `chunk`, then decode steps.
    template <class Arch>
    std::vector<float> run_kv_steps(qkv_data const& in, kv_case const& k, std::size_t prompt, std::size_t chunk, attention_stats& stats)
    {
        std::vector<float> out;
        auto const view = in.make_output(out);
        auto const& c = k.c;
        layer_kv_cache cache(c.kv_heads, c.dim, c.positions, c.options, c.policy, k.value_policy);
        for (std::size_t p = 0; p < c.positions;)
        {
            std::size_t const n = p < prompt ? std::min(chunk, prompt - p) : 1;
            auto const q = in.q_view().slice_positions(p, n), kk = in.k_view().slice_positions(p, n), v = in.v_view().slice_positions(p, n);
            if (p < prompt)
                cache.prefill<Arch>(q, kk, v, view.slice_positions(p, n), &stats);
            else
                cache.decode<Arch>(q, kk, v, view.slice_positions(p, n), &stats);
            p += n;
        }
        return out;
    }

    attention_work analytic_kv_work(qkv_data const& in, kv_case const& k, std::size_t first, std::size_t last)
    {
        attention_work w;
        auto const& c = k.c;
        for (std::size_t h = 0; h < c.kv_heads; ++h)
        {
            auto const keys = reference::build_delta_rows(in.k_view().head(h), c.policy);
            auto const values = reference::build_delta_rows(in.v_view().head(h), k.value_policy);
            w += reference::stage_work(first, last, c.q_heads / c.kv_heads, keys, c.options, &values);
        }
        return w;
    }

    delta_policy const value_policies[] = {fixed_threshold{0.05f}, relative_threshold{0.3f}, target_sparsity{0.6f}, block_threshold{8, 0.1f},
                                           fixed_threshold{0.0f}};
}  // namespace

TEMPLATE_LIST_TEST_CASE("delta values match the oracle", "[values]", tested_archs)
{
    std::size_t const positions = GENERATE(1, 7, 33, 64, 97);
    std::size_t const window = GENERATE(1, 8, 200);
    std::size_t const sinks = GENERATE(1, 3);
    std::size_t const keyframes = GENERATE(0, 1, 16);
    auto const value_index = GENERATE(range(0, 5));
    kv_case k;
    k.c.positions = positions;
    k.c.options.sinks = sinks;
    k.c.options.window = window;
    k.c.options.keyframe_interval = keyframes;
    k.c.policy = relative_threshold{0.2f};
    k.c.kind = positions % 2 ? input_kind::white_noise : input_kind::llm_like;
    k.value_policy = value_policies[value_index];
    INFO(arch_name<TestType>() << " " << k.c.describe() << " values " << describe(k.value_policy));
    auto const in = k.c.inputs();
    auto const expected = oracle_kv(in, k);
    CHECK(max_abs_diff(run_kv<TestType>(in, k), expected) <= tolerance(expected));
}

TEMPLATE_LIST_TEST_CASE("delta values over head dims and GQA ratios", "[values]", tested_archs)
{
    std::size_t const dim = GENERATE(32, 80, 128);
    std::size_t const group = GENERATE(1, 4, 8);
    kv_case k;
    k.c.positions = 70;
    k.c.dim = dim;
    k.c.q_heads = 2 * group;
    k.c.options.sinks = 4;
    k.c.options.window = 16;
    k.c.options.keyframe_interval = 32;
    k.c.policy = relative_threshold{0.3f};
    k.value_policy = relative_threshold{0.3f};
    INFO(arch_name<TestType>() << " " << k.c.describe());
    auto const in = k.c.inputs();
    auto const expected = oracle_kv(in, k);
    CHECK(max_abs_diff(run_kv<TestType>(in, k), expected) <= tolerance(expected));
}

TEMPLATE_LIST_TEST_CASE("theta_v = 0 gives the K-only hybrid", "[values][property]", tested_archs)
{
    kv_case k;
    k.c.positions = 100;
    k.c.options.sinks = 2;
    k.c.options.window = 8;
    k.c.options.keyframe_interval = 24;
    k.c.policy = fixed_threshold{0.1f};
    k.value_policy = fixed_threshold{0.0f};
    auto const in = k.c.inputs();
    std::vector<float> key_only;
    auto view = in.make_output(key_only);
    hybrid_attention<TestType>(in.q_view(), in.k_view(), in.v_view(), view, k.c.options, k.c.policy);
    CHECK(max_abs_diff(run_kv<TestType>(in, k), key_only) <= tolerance(key_only));
}

TEMPLATE_LIST_TEST_CASE("with a fixed theta_v each output channel moves by at most theta_v", "[values][bound]", tested_archs)
{
    float const theta_v = GENERATE(0.01f, 0.1f, 0.5f);
    kv_case k;
    k.c.positions = 120;
    k.c.options.window = 4;
    k.c.options.keyframe_interval = GENERATE(0u, 32u);
    k.c.policy = fixed_threshold{0.2f};
    k.value_policy = fixed_threshold{theta_v};
    auto const in = k.c.inputs();
    // Against the K-only hybrid: the same probabilities, values v̂ instead of v.
    std::vector<float> key_only;
    auto view = in.make_output(key_only);
    reference::hybrid_attention(in.q_view(), in.k_view(), in.v_view(), view, k.c.options, k.c.policy);
    auto const got = run_kv<TestType>(in, k);
    INFO(arch_name<TestType>() << " theta_v " << theta_v);
    CHECK(max_abs_diff(got, key_only) <= theta_v + tolerance(key_only));
    CHECK(max_abs_diff(got, key_only) > 0.0f);  // the delta values did change something
}

TEMPLATE_LIST_TEST_CASE("value counters equal the analytic counts", "[values][counters]", tested_archs)
{
    std::size_t const sinks = GENERATE(1, 3);
    std::size_t const keyframes = GENERATE(0, 1, 7, 256);
    auto const value_index = GENERATE(range(0, 5));
    kv_case k;
    k.c.positions = 90;
    k.c.options.sinks = sinks;
    k.c.options.window = 10;
    k.c.options.keyframe_interval = keyframes;
    k.c.policy = block_threshold{8, 0.2f};
    k.value_policy = value_policies[value_index];
    INFO(arch_name<TestType>() << " " << k.c.describe() << " values " << describe(k.value_policy));
    auto const in = k.c.inputs();
    attention_stats stats;
    run_kv<TestType>(in, k, &stats);
    attention_work const want = analytic_kv_work(in, k, 0, k.c.positions - 1);
    CHECK(stats.prefill.queries == want.queries);
    CHECK(stats.prefill.hybrid_macs == want.hybrid_macs);
    CHECK(stats.prefill.dense_pv_macs == want.dense_pv_macs);
    CHECK(stats.prefill.hybrid_pv_macs == want.hybrid_pv_macs);
    delta_stats values;
    for (std::size_t h = 0; h < k.c.kv_heads; ++h)
        values += reference::delta_statistics(reference::build_delta_rows(in.v_view().head(h), k.value_policy));
    CHECK(stats.values.updated == values.updated);
    CHECK(stats.values.rows == values.rows);
    CHECK(stats.vcache_dense_bytes == sizeof(float) * k.c.positions * k.c.kv_heads * k.c.dim);
}

TEMPLATE_LIST_TEST_CASE("with values exact, PV work is the dense count", "[values][counters]", tested_archs)
{
    attention_case c;
    c.positions = 50;
    c.options.window = 6;
    auto const in = c.inputs();
    attention_stats stats;
    std::vector<float> out;
    hybrid_attention<TestType>(in.q_view(), in.k_view(), in.v_view(), in.make_output(out), c.options, c.policy, &stats);
    CHECK(stats.prefill.hybrid_pv_macs == stats.prefill.dense_pv_macs);
    CHECK(stats.prefill.dense_pv_macs == stats.prefill.dense_macs);
    CHECK(stats.prefill.value_sparsity() == 0.0);
    CHECK(stats.prefill.total_sparsity() == Approx(stats.prefill.sparsity() / 2));
}

TEMPLATE_LIST_TEST_CASE("delta values: chunked prefill and decode steps equal the oracle", "[values][decode]", tested_archs)
{
    std::size_t const prompt = GENERATE(1, 9, 40, 80);
    std::size_t const chunk = GENERATE(3, 16, 80);
    std::size_t const group = GENERATE(1, 4);
    kv_case k;
    k.c.positions = 80;
    k.c.q_heads = 2 * group;
    k.c.options.sinks = 2;
    k.c.options.window = 12;
    k.c.options.keyframe_interval = 20;
    k.c.policy = block_threshold{8, 0.25f};
    k.value_policy = relative_threshold{0.25f};
    INFO(arch_name<TestType>() << " prompt " << prompt << " chunk " << chunk << " " << k.c.describe());
    auto const in = k.c.inputs();
    attention_stats stats;
    auto const got = run_kv_steps<TestType>(in, k, prompt, chunk, stats);
    auto const expected = oracle_kv(in, k);
    CHECK(max_abs_diff(got, expected) <= tolerance(expected));
    // The same work, split between the stages at the prompt boundary.
    attention_work const prefill = analytic_kv_work(in, k, 0, prompt - 1);
    CHECK(stats.prefill.hybrid_pv_macs == prefill.hybrid_pv_macs);
    if (prompt < k.c.positions)
        CHECK(stats.decode.hybrid_pv_macs == analytic_kv_work(in, k, prompt, k.c.positions - 1).hybrid_pv_macs);
}

TEMPLATE_LIST_TEST_CASE("a layer_kv_cache rejects bad input by name and changes nothing", "[values][validation]", tested_archs)
{
    kv_case k;
    k.c.positions = 12;
    k.c.options.check_finite = true;
    auto const in = k.c.inputs();
    layer_kv_cache cache(k.c.kv_heads, k.c.dim, 10, k.c.options, k.c.policy, k.value_policy);
    std::vector<float> out(in.q.size(), 5.0f);
    auto const view = make_token_major(out.data(), k.c.positions, k.c.q_heads, k.c.dim);
    auto const q = in.q_view(), kk = in.k_view(), v = in.v_view();
    cache.prefill<TestType>(q.slice_positions(0, 4), kk.slice_positions(0, 4), v.slice_positions(0, 4), view.slice_positions(0, 4));
    std::size_t const bytes = cache.bytes();
    std::vector<float> const written(out.begin(), out.end());

    // v with the wrong number of positions, past the capacity, non-finite
    CHECK_THROWS_WITH(cache.prefill<TestType>(q.slice_positions(4, 2), kk.slice_positions(4, 2), v.slice_positions(4, 1), view.slice_positions(4, 2)),
                      contains("deltaattn: v:"));
    CHECK_THROWS_WITH(cache.prefill<TestType>(q.slice_positions(4, 8), kk.slice_positions(4, 8), v.slice_positions(4, 8), view.slice_positions(4, 8)),
                      contains("deltaattn: k:") && contains("capacity"));
    qkv_data dirty = in;
    dirty.v[5 * k.c.kv_heads * k.c.dim + 3] = std::nanf("");
    CHECK_THROWS_WITH(cache.decode<TestType>(q.slice_positions(4, 1), kk.slice_positions(4, 1), dirty.v_view().slice_positions(5, 1),
                                             view.slice_positions(4, 1)),
                      contains("deltaattn: v:"));
    CHECK(cache.size() == 4);
    CHECK(cache.bytes() == bytes);
    CHECK(out == written);
}

TEMPLATE_LIST_TEST_CASE("per-head hybrid_decode on delta K and V caches matches the oracle and the layer cache", "[values][decode]", tested_archs)
{
    kv_case k;
    k.c.positions = 60;
    k.c.dim = GENERATE(32, 64, 80, 96, 128);  // decode kernels differ below, at and past 64-channel words
    k.c.q_heads = GENERATE(4, 12);         // 2 and 6 heads per KV head: one or two passes of four
    k.c.kv_heads = 2;
    k.c.options.sinks = 3;
    k.c.options.window = 7;
    k.c.options.keyframe_interval = 16;
    k.c.policy = relative_threshold{0.3f};
    k.value_policy = fixed_threshold{0.08f};
    auto const in = k.c.inputs();
    std::size_t const group = k.c.q_heads / k.c.kv_heads, d = k.c.dim;
    std::vector<float> out(in.q.size(), 0.0f);
    attention_workspace ws;
    attention_stats stats;
    for (std::size_t h = 0; h < k.c.kv_heads; ++h)
    {
        delta_key_cache keys(d, k.c.positions, k.c.options, k.c.policy);
        delta_value_cache values(d, k.c.positions, k.c.options, k.value_policy, "v");
        for (std::size_t i = 0; i < k.c.positions; ++i)
        {
            keys.append(in.k_view().at(i, h));
            values.append(in.v_view().at(i, h));
            auto const q = in.q_view().slice_positions(i, 1);
            float* o = out.data() + (i * k.c.q_heads + h * group) * d;
            hybrid_decode<TestType>(keys, values, matrix_view<const float>{q.at(0, h * group), group, d, q.head_stride}, make_matrix_view(o, group, d), ws,
                                    &stats);
        }
    }
    auto const expected = oracle_kv(in, k);
    INFO(arch_name<TestType>() << " " << k.c.describe());
    CHECK(max_abs_diff(out, expected) <= tolerance(expected));
    CHECK(stats.decode.hybrid_macs == analytic_kv_work(in, k, 0, k.c.positions - 1).hybrid_macs);
    CHECK(stats.decode.hybrid_pv_macs == analytic_kv_work(in, k, 0, k.c.positions - 1).hybrid_pv_macs);

    attention_stats layer_stats;
    auto const layer = run_kv_steps<TestType>(in, k, 0, 1, layer_stats);
    CHECK(max_abs_diff(out, layer) <= tolerance(layer));
}

TEMPLATE_LIST_TEST_CASE("per-head hybrid_decode rejects a value cache that does not match", "[values][validation]", tested_archs)
{
    hybrid_options o;
    o.window = 4;
    delta_key_cache keys(16, 8, o, fixed_threshold{0.1f});
    hybrid_options other = o;
    other.window = 5;
    delta_value_cache shorter(16, 8, o, fixed_threshold{0.1f}, "v"), wider_window(16, 8, other, fixed_threshold{0.1f}, "v");
    std::vector<float> row(16, 1.0f), q(16, 1.0f), out(16, 3.0f);
    keys.append(row.data());
    wider_window.append(row.data());
    attention_workspace ws;
    auto const qv = make_matrix_view<const float>(q.data(), 1, 16);
    auto const ov = make_matrix_view(out.data(), 1, 16);
    CHECK_THROWS_WITH(hybrid_decode<TestType>(keys, shorter, qv, ov, ws), contains("deltaattn: values:") && contains("size 0"));
    CHECK_THROWS_WITH(hybrid_decode<TestType>(keys, wider_window, qv, ov, ws), contains("deltaattn: values:") && contains("window"));
    CHECK(std::all_of(out.begin(), out.end(), [](float x) { return x == 3.0f; }));
}
