// Attention kernels against the double-precision oracle (SPEC.md §9), on every arch
// this binary is built for, over the sizes of DESIGN.md.
#include "catch.hpp"
#include "tester.hpp"

using namespace deltaattn_test;

namespace
{

    template <class Arch>
    std::vector<float> run_hybrid(qkv_data const& in, attention_case const& c, attention_stats* stats = nullptr)
    {
        std::vector<float> out;
        hybrid_attention<Arch>(in.q_view(), in.k_view(), in.v_view(), in.make_output(out), c.options, c.policy, stats);
        return out;
    }

    /// Prefill of `prompt` positions, then one decode step per remaining position.
    template <class Arch>
    std::vector<float> run_prefill_then_decode(qkv_data const& in, attention_case const& c, std::size_t prompt, attention_stats& stats)
    {
        std::vector<float> out;
        auto const out_view = in.make_output(out);
        layer_key_cache cache(c.kv_heads, c.dim, c.positions, c.options, c.policy);
        cache.prefill<Arch>(in.q_view().slice_positions(0, prompt), in.k_view().slice_positions(0, prompt),
                            in.v_view().slice_positions(0, prompt), out_view.slice_positions(0, prompt), &stats);
        for (std::size_t i = prompt; i < c.positions; ++i)
            cache.decode<Arch>(in.q_view().slice_positions(i, 1), in.k_view().slice_positions(i, 1), in.v_view().slice_positions(0, i + 1),
                               out_view.slice_positions(i, 1), &stats);
        return out;
    }

    delta_policy const policies[] = {fixed_threshold{0.3f}, relative_threshold{0.4f}, target_sparsity{0.6f},
                                     block_threshold{4, 0.3f}, block_threshold{8, 0.3f}, block_threshold{16, 0.2f}};
}  // namespace

TEMPLATE_LIST_TEST_CASE("dense attention matches the oracle", "[dense]", tested_archs)
{
    std::size_t const dim = GENERATE(32, 64, 80, 96, 128, 256);
    std::size_t const group = GENERATE(1, 2, 4, 8);
    std::size_t const positions = GENERATE(1, 2, 3, 7, 15, 16, 17, 33, 65);
    attention_case c;
    c.positions = positions;
    c.dim = dim;
    c.kv_heads = 2;
    c.q_heads = 2 * group;
    c.kind = positions % 2 ? input_kind::white_noise : input_kind::llm_like;
    INFO(arch_name<TestType>() << " " << c.describe());
    auto const in = c.inputs();
    auto const expected = oracle_dense(in);
    CHECK(max_abs_diff(run_dense<TestType>(in), expected) <= tolerance(expected));
}

TEMPLATE_LIST_TEST_CASE("dense decode step equals the prefill row of the same position", "[dense]", tested_archs)
{
    // Whole registers per row take the tiled key dots on 32-register archs, four heads a
    // tile (GQA 6: a tile and two heads alone); the other shapes, the head-by-head loop.
    attention_case c;
    c.positions = 50;
    c.dim = GENERATE(32, 80, 128);
    c.kv_heads = 2;
    c.q_heads = 2 * GENERATE(1, 2, 4, 6, 8);
    auto const in = c.inputs();
    auto const expected = oracle_dense(in);
    std::size_t const row = c.q_heads * c.dim;
    for (std::size_t i : {0u, 1u, 31u, 32u, 49u})
    {
        std::vector<float> out(row);
        attention_workspace ws;
        dense_decode<TestType>(in.q_view().slice_positions(i, 1), in.k_view().slice_positions(0, i + 1),
                               in.v_view().slice_positions(0, i + 1), make_token_major(out.data(), 1, c.q_heads, c.dim), 0.0f, ws);
        std::vector<float> const want(expected.begin() + static_cast<std::ptrdiff_t>(i * row), expected.begin() + static_cast<std::ptrdiff_t>((i + 1) * row));
        INFO(arch_name<TestType>() << " " << c.describe() << " position " << i);
        CHECK(max_abs_diff(out, want) <= tolerance(want));
    }
}

TEMPLATE_LIST_TEST_CASE("dense attention reads head-major and token-major layouts alike", "[dense][views]", tested_archs)
{
    attention_case c;
    c.positions = 40;
    auto const in = c.inputs();
    // Copy K and V head-major into a larger capacity, as an engine's cache would hold them.
    std::size_t const capacity = 64;
    std::vector<float> k(c.kv_heads * capacity * c.dim), v(k.size());
    for (std::size_t h = 0; h < c.kv_heads; ++h)
        for (std::size_t p = 0; p < c.positions; ++p)
            for (std::size_t d = 0; d < c.dim; ++d)
            {
                k[(h * capacity + p) * c.dim + d] = in.k_view().at(p, h)[d];
                v[(h * capacity + p) * c.dim + d] = in.v_view().at(p, h)[d];
            }
    std::vector<float> out;
    dense_attention<TestType>(in.q_view(), make_head_major<const float>(k.data(), c.kv_heads, c.positions, c.dim, capacity),
                              make_head_major<const float>(v.data(), c.kv_heads, c.positions, c.dim, capacity), in.make_output(out));
    auto const expected = oracle_dense(in);
    CHECK(max_abs_diff(out, expected) <= tolerance(expected));
}

TEMPLATE_LIST_TEST_CASE("hybrid attention matches the oracle", "[hybrid]", tested_archs)
{
    std::size_t const positions = GENERATE(1, 5, 16, 17, 33, 64, 65, 150);
    std::size_t const window_kind = GENERATE(0, 1, 2, 3);
    std::size_t const sinks = GENERATE(1, 4);
    auto const policy_index = GENERATE(range(0, 6));
    attention_case c;
    c.positions = positions;
    c.options.sinks = sinks;
    // windows 1, n - 1, n (>= n: dense), and a middling one
    std::size_t const windows[] = {1, positions > 1 ? positions - 1 : 1, positions, 8};
    c.options.window = windows[window_kind];
    c.options.keyframe_interval = positions % 2 ? 16 : 0;
    c.policy = policies[policy_index];
    c.kind = positions % 2 ? input_kind::white_noise : input_kind::llm_like;
    INFO(arch_name<TestType>() << " " << c.describe());
    auto const in = c.inputs();
    auto const expected = oracle_hybrid(in, c);
    attention_stats stats;
    CHECK(max_abs_diff(run_hybrid<TestType>(in, c, &stats), expected) <= tolerance(expected));
}

TEMPLATE_LIST_TEST_CASE("hybrid attention over head dims and GQA ratios", "[hybrid]", tested_archs)
{
    std::size_t const dim = GENERATE(32, 64, 80, 96, 128, 256);
    std::size_t const group = GENERATE(1, 2, 4, 8);
    attention_case c;
    c.positions = 70;
    c.dim = dim;
    c.kv_heads = 2;
    c.q_heads = 2 * group;
    c.options.window = 16;
    c.options.sinks = 4;
    c.options.keyframe_interval = 32;
    c.policy = relative_threshold{0.3f};
    INFO(arch_name<TestType>() << " " << c.describe());
    auto const in = c.inputs();
    auto const expected = oracle_hybrid(in, c);
    CHECK(max_abs_diff(run_hybrid<TestType>(in, c), expected) <= tolerance(expected));
}

TEMPLATE_LIST_TEST_CASE("hybrid attention equals dense when theta is 0 or the window covers everything", "[hybrid][property]", tested_archs)
{
    attention_case c;
    c.positions = 120;
    c.options.window = 8;
    c.policy = fixed_threshold{0.0f};
    auto const in = c.inputs();
    auto const dense = run_dense<TestType>(in);
    CHECK(max_abs_diff(run_hybrid<TestType>(in, c), dense) <= tolerance(dense));

    c.policy = fixed_threshold{10.0f};  // everything below threshold...
    c.options.window = c.positions;     // ...but nothing outside the window
    CHECK(max_abs_diff(run_hybrid<TestType>(in, c), dense) <= tolerance(dense));
}

TEMPLATE_LIST_TEST_CASE("hybrid counters equal the analytic counts", "[hybrid][counters]", tested_archs)
{
    std::size_t const sinks = GENERATE(1, 3);
    std::size_t const keyframes = GENERATE(0, 1, 7, 256);
    auto const policy_index = GENERATE(range(0, 6));
    attention_case c;
    c.positions = 90;
    c.options.sinks = sinks;
    c.options.window = 10;
    c.options.keyframe_interval = keyframes;
    c.policy = policies[policy_index];
    INFO(arch_name<TestType>() << " " << c.describe());
    auto const in = c.inputs();
    attention_stats stats;
    run_hybrid<TestType>(in, c, &stats);
    attention_work const want = analytic_work(in, c, 0, c.positions - 1);
    CHECK(stats.prefill.queries == want.queries);
    CHECK(stats.prefill.dense_macs == want.dense_macs);
    CHECK(stats.prefill.hybrid_macs == want.hybrid_macs);
    CHECK(stats.decode.queries == 0);
    delta_stats const deltas = analytic_deltas(in, c);
    CHECK(stats.keys.rows == deltas.rows);
    CHECK(stats.keys.updated == deltas.updated);
    CHECK(stats.kcache_dense_bytes == sizeof(float) * c.positions * c.kv_heads * c.dim);
}

// A decode step dots exact keys along channels, a prefill block across query lanes:
// the same function within SPEC.md §9's tolerance, not the same bits.
TEMPLATE_LIST_TEST_CASE("prefill then decode equals one prefill", "[hybrid][decode]", tested_archs)
{
    std::size_t const prompt = GENERATE(1, 2, 9, 40, 79);
    std::size_t const group = GENERATE(1, 4);
    attention_case c;
    c.positions = 80;
    c.q_heads = 2 * group;
    c.options.sinks = 2;
    c.options.window = 12;
    c.options.keyframe_interval = 20;
    c.policy = block_threshold{8, 0.25f};
    INFO(arch_name<TestType>() << " prompt " << prompt << " " << c.describe());
    auto const in = c.inputs();
    attention_stats one_stats, split_stats;
    auto const one = run_hybrid<TestType>(in, c, &one_stats);
    auto const split = run_prefill_then_decode<TestType>(in, c, prompt, split_stats);
    CHECK(max_abs_diff(split, one) <= tolerance(one));

    auto const expected = oracle_hybrid(in, c);
    CHECK(max_abs_diff(split, expected) <= tolerance(expected));

    // The same work, split between the stages at the prompt boundary.
    CHECK(split_stats.prefill.hybrid_macs == analytic_work(in, c, 0, prompt - 1).hybrid_macs);
    if (prompt < c.positions)
        CHECK(split_stats.decode.hybrid_macs == analytic_work(in, c, prompt, c.positions - 1).hybrid_macs);
    CHECK(split_stats.both().hybrid_macs == one_stats.prefill.hybrid_macs);
}

TEMPLATE_LIST_TEST_CASE("chunked prefill equals one prefill", "[hybrid][decode]", tested_archs)
{
    std::size_t const chunk = GENERATE(1, 3, 12, 13, 31);
    attention_case c;
    c.positions = 75;
    c.options.sinks = 3;
    c.options.window = 12;
    c.policy = target_sparsity{0.5f};
    auto const in = c.inputs();
    auto const one = run_hybrid<TestType>(in, c);
    std::vector<float> out;
    auto const out_view = in.make_output(out);
    layer_key_cache cache(c.kv_heads, c.dim, c.positions, c.options, c.policy);
    for (std::size_t p = 0; p < c.positions; p += chunk)
    {
        std::size_t const n = std::min(chunk, c.positions - p);
        cache.prefill<TestType>(in.q_view().slice_positions(p, n), in.k_view().slice_positions(p, n), in.v_view().slice_positions(0, p + n),
                                out_view.slice_positions(p, n));
    }
    INFO(arch_name<TestType>() << " chunk " << chunk);
    CHECK(max_abs_diff(out, one) <= tolerance(one));
}

TEMPLATE_LIST_TEST_CASE("queries that start after the first key", "[hybrid][dense]", tested_archs)
{
    attention_case c;
    c.positions = 60;
    c.options.window = 6;
    auto const in = c.inputs();
    std::size_t const skip = 25;
    std::vector<float> q_tail(in.q.begin() + static_cast<std::ptrdiff_t>(skip * c.q_heads * c.dim), in.q.end());
    auto const q_view = make_token_major<const float>(q_tail.data(), c.positions - skip, c.q_heads, c.dim);

    std::vector<float> hybrid_out(q_tail.size()), dense_out(q_tail.size()), want_hybrid(q_tail.size()), want_dense(q_tail.size());
    auto const view = [&](std::vector<float>& o) { return make_token_major(o.data(), c.positions - skip, c.q_heads, c.dim); };
    hybrid_attention<TestType>(q_view, in.k_view(), in.v_view(), view(hybrid_out), c.options, c.policy);
    dense_attention<TestType>(q_view, in.k_view(), in.v_view(), view(dense_out));
    reference::hybrid_attention(q_view, in.k_view(), in.v_view(), view(want_hybrid), c.options, c.policy);
    reference::dense_attention(q_view, in.k_view(), in.v_view(), view(want_dense));
    CHECK(max_abs_diff(hybrid_out, want_hybrid) <= tolerance(want_hybrid));
    CHECK(max_abs_diff(dense_out, want_dense) <= tolerance(want_dense));
}

TEMPLATE_LIST_TEST_CASE("scores near 1e4 do not overflow the softmax", "[numerics]", tested_archs)
{
    attention_case c;
    c.positions = 40;
    c.kind = input_kind::white_noise;
    c.q_scale = 4000.0f;  // score std ~ 4000: the largest reach ~1e4
    c.options.window = 4;
    c.policy = fixed_threshold{0.0f};
    auto const in = c.inputs();
    auto const expected = oracle_dense(in);
    auto const dense = run_dense<TestType>(in);
    auto const hybrid = run_hybrid<TestType>(in, c);
    CHECK(max_abs_diff(dense, expected) <= tolerance(expected));
    CHECK(max_abs_diff(hybrid, expected) <= 1e-3f * std::max(1.0f, max_abs(expected)));
    CHECK(std::all_of(hybrid.begin(), hybrid.end(), [](float x) { return std::isfinite(x); }));
}

TEST_CASE("an empty sequence is valid and writes nothing", "[hybrid][dense]")
{
    std::vector<float> none;
    auto const empty = make_token_major<const float>(none.data(), 0, 4, 64);
    auto const out = make_token_major(none.data(), 0, 4, 64);
    auto const kv = make_token_major<const float>(none.data(), 0, 2, 64);
    attention_stats stats;
    REQUIRE_NOTHROW(dense_attention(empty, kv, kv, out));
    REQUIRE_NOTHROW(hybrid_attention(empty, kv, kv, out, hybrid_options{}, fixed_threshold{0.1f}, &stats));
    CHECK(stats.prefill.queries == 0);
    CHECK(stats.prefill.sparsity() == 0.0);
}

TEMPLATE_LIST_TEST_CASE("per-head append + hybrid_decode matches the oracle and the layer cache", "[hybrid][decode]", tested_archs)
{
    attention_case c;
    c.positions = 70;
    c.q_heads = 4;
    c.kv_heads = 2;
    c.options.sinks = 2;
    c.options.window = 9;
    c.options.keyframe_interval = 16;
    c.policy = relative_threshold{0.3f};
    auto const in = c.inputs();
    auto const expected = oracle_hybrid(in, c);
    attention_stats layer_stats;
    auto const layer = run_prefill_then_decode<TestType>(in, c, 1, layer_stats);

    std::size_t const group = c.q_heads / c.kv_heads;
    std::vector<float> out(in.q.size());
    auto const out_view = make_token_major(out.data(), c.positions, c.q_heads, c.dim);
    attention_workspace ws;
    attention_stats stats;
    for (std::size_t h = 0; h < c.kv_heads; ++h)
    {
        delta_key_cache cache(c.dim, c.positions, c.options, c.policy);
        for (std::size_t i = 0; i < c.positions; ++i)
        {
            cache.append(in.k_view().at(i, h));
            hybrid_decode<TestType>(cache, matrix_view<const float>{in.q_view().at(i, h * group), group, c.dim, in.q_view().head_stride},
                                    in.v_view().head(h).slice_rows(0, i + 1),
                                    matrix_view<float>{out_view.at(i, h * group), group, c.dim, out_view.head_stride}, ws, &stats);
        }
    }
    INFO(arch_name<TestType>() << " " << c.describe());
    CHECK(max_abs_diff(out, expected) <= tolerance(expected));
    CHECK(max_abs_diff(out, layer) == 0.0f);
    CHECK(stats.decode.hybrid_macs == analytic_work(in, c, 0, c.positions - 1).hybrid_macs);
}

TEMPLATE_LIST_TEST_CASE("a layer's decode step over per-head key caches equals the per-head steps, for any thread count", "[hybrid][decode][threads]",
                        tested_archs)
{
    attention_case c;
    c.positions = 90;
    c.q_heads = 8;
    c.kv_heads = 4;
    c.options.sinks = 2;
    c.options.window = 9;
    c.options.keyframe_interval = 16;
    c.policy = relative_threshold{0.3f};
    auto const in = c.inputs();
    std::size_t const group = c.q_heads / c.kv_heads;
    std::vector<delta_key_cache> caches;
    for (std::size_t h = 0; h < c.kv_heads; ++h)
        caches.emplace_back(c.dim, c.positions + 1, c.options, c.policy);  // (room for one more: the uneven case below)
    std::vector<float> per_head(c.q_heads * c.dim), layer(per_head.size());
    attention_workspace ws;
    thread_pool two(2), three(3);
    parallel_executor const executors[] = {{}, two.executor(), three.executor()};
    for (std::size_t i = 0; i < c.positions; ++i)
    {
        for (std::size_t h = 0; h < c.kv_heads; ++h)
            caches[h].append(in.k_view().at(i, h));
        if (emulated_build && i % 8 != 7 && i + 1 != c.positions)
            continue;  // under qemu: every 8th step (the caches still grow every step)
        for (std::size_t h = 0; h < c.kv_heads; ++h)
        {
            hybrid_decode<TestType>(caches[h], matrix_view<const float>{in.q_view().at(i, h * group), group, c.dim, in.q_view().head_stride},
                                    in.v_view().head(h).slice_rows(0, i + 1), make_matrix_view(per_head.data() + h * group * c.dim, group, c.dim), ws);
        }
        auto const q = in.q_view().slice_positions(i, 1);
        auto const out = make_token_major(layer.data(), 1, c.q_heads, c.dim);
        for (auto const& executor : executors)
        {
            INFO(arch_name<TestType>() << " position " << i << ", " << executor.workers << " threads");
            std::fill(layer.begin(), layer.end(), 0.0f);
            attention_stats stats;
            hybrid_decode<TestType>(caches, q, in.v_view().slice_positions(0, i + 1), out, ws, &stats, executor);
            CHECK(max_abs_diff(layer, per_head) == 0.0f);
            CHECK(stats.decode.hybrid_macs == analytic_work(in, c, i, i).hybrid_macs);
        }
    }

    // Bad input: named, nothing written.
    std::fill(layer.begin(), layer.end(), -1.0f);
    auto const q = in.q_view().slice_positions(c.positions - 1, 1);
    auto const out = make_token_major(layer.data(), 1, c.q_heads, c.dim);
    auto const v = in.v_view();
    CHECK_THROWS_WITH(hybrid_decode<TestType>(std::vector<delta_key_cache>{}, q, v, out, ws), Catch::Contains("caches"));
    CHECK_THROWS_WITH(hybrid_decode<TestType>(caches, q, v.slice_positions(0, 5), out, ws), Catch::Contains("v:"));
    CHECK_THROWS_WITH(hybrid_decode<TestType>(caches, in.q_view().slice_positions(0, 2), v, out, ws), Catch::Contains("q:"));
    std::vector<delta_key_cache> uneven = caches;
    uneven.back().append(in.k_view().at(0, 0));
    CHECK_THROWS_WITH(hybrid_decode<TestType>(uneven, q, v, out, ws), Catch::Contains("caches"));
    CHECK(std::all_of(layer.begin(), layer.end(), [](float x) { return x == -1.0f; }));
}

TEST_CASE("attention_stats += adds every field, so stats of layers sum to the stats of the model", "[counters]")
{
    // Two layers' caches on different data: the sum of their stats, field by field.
    attention_case c;
    c.options.sinks = 2;
    c.options.window = 8;
    auto const a = c.inputs();
    c.seed = 2;
    auto const b = c.inputs();
    attention_stats sa, sb;
    std::vector<float> out;
    layer_kv_cache la(c.kv_heads, c.dim, c.positions, c.options, c.policy, relative_threshold{0.4f});
    layer_kv_cache lb(c.kv_heads, c.dim, c.positions, c.options, c.policy, relative_threshold{0.4f});
    la.prefill(a.q_view(), a.k_view(), a.v_view(), a.make_output(out), &sa);
    lb.prefill(b.q_view().slice_positions(0, 40), b.k_view().slice_positions(0, 40), b.v_view().slice_positions(0, 40),
               b.make_output(out).slice_positions(0, 40), &sb);
    lb.decode(b.q_view().slice_positions(40, 1), b.k_view().slice_positions(40, 1), b.v_view().slice_positions(40, 1),
              b.make_output(out).slice_positions(40, 1), &sb);
    attention_stats sum = sa;
    sum += sb;
    CHECK(sum.prefill.hybrid_macs == sa.prefill.hybrid_macs + sb.prefill.hybrid_macs);
    CHECK(sum.prefill.hybrid_pv_macs == sa.prefill.hybrid_pv_macs + sb.prefill.hybrid_pv_macs);
    CHECK(sum.decode.dense_macs == sa.decode.dense_macs + sb.decode.dense_macs);
    CHECK(sum.decode.queries == sb.decode.queries);
    CHECK(sum.keys.updated == sa.keys.updated + sb.keys.updated);
    CHECK(sum.values.updated == sa.values.updated + sb.values.updated);
    CHECK(sum.kcache_bytes == la.key_bytes() + lb.key_bytes());
    CHECK(sum.vcache_bytes == la.value_bytes() + lb.value_bytes());
    CHECK(sum.kcache_dense_bytes == sa.kcache_dense_bytes + sb.kcache_dense_bytes);
    CHECK(sum.vcache_dense_bytes == sizeof(float) * c.dim * c.kv_heads * (c.positions + 41));
}
