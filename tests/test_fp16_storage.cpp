// fp16 storage of K and V (float16 rows, fp32 compute), on every arch of the suite:
//  - the vector widening load equals half_to_float on all 65,536 halves;
//  - dense attention on float16 K/V views equals the oracle on the widened rows, and
//    stays within the analytic bound of fp16 rounding from the fp32 result;
//  - layer_kv_cache_f16 (prefill in chunks, then decode steps) equals the oracle of
//    fp16 storage (reference::hybrid_attention<float16>); its bytes are the analytic
//    count; it refuses keys that overflow binary16, changing nothing;
//  - the one-call hybrid_attention on float16 K/V views (keys only, keys and values)
//    equals that oracle on the widened halves, and refuses a non-finite half by name.
#include "catch.hpp"
#include "tester.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

using namespace deltaattn_test;

namespace
{
    /// The same inputs with K and V as binary16 would hold them (as floats).
    qkv_data widened(qkv_data in)
    {
        in.k = rounded_to_half(in.k);
        in.v = rounded_to_half(in.v);
        return in;
    }

    template <class Arch>
    std::vector<float> run_dense_f16(qkv_data const& in, std::size_t queries)
    {
        auto const k16 = to_halves(in.k), v16 = to_halves(in.v);
        auto const& s = in.shape;
        auto const k = make_token_major(k16.data(), s.positions, s.kv_heads, s.dim), v = make_token_major(v16.data(), s.positions, s.kv_heads, s.dim);
        std::vector<float> out;
        auto const all = in.make_output(out);
        std::size_t const first = s.positions - queries;
        attention_workspace ws;
        dense_attention<Arch>(in.q_view().slice_positions(first, queries), k, v, all.slice_positions(first, queries), 0.0f, ws);
        return out;
    }

    /// Prefill of the first `prompt` positions in chunks of `chunk`, then decode steps.
    template <class Arch>
    std::vector<float> run_kv_f16(qkv_data const& in, attention_case const& c, std::size_t prompt, std::size_t chunk, layer_kv_cache_f16& cache)
    {
        std::vector<float> out;
        auto const view = in.make_output(out);
        for (std::size_t p = 0; p < c.positions;)
        {
            std::size_t const n = p < prompt ? std::min(chunk, prompt - p) : 1;
            auto const q = in.q_view().slice_positions(p, n), k = in.k_view().slice_positions(p, n), v = in.v_view().slice_positions(p, n);
            if (p < prompt)
                cache.prefill<Arch>(q, k, v, view.slice_positions(p, n));
            else
                cache.decode<Arch>(q, k, v, view.slice_positions(p, n));
            p += n;
        }
        return out;
    }

    std::vector<float> oracle_kv_f16(qkv_data const& in, attention_case const& c, delta_policy const& value_policy)
    {
        std::vector<float> out;
        auto view = in.make_output(out);
        reference::hybrid_attention<float16>(in.q_view(), in.k_view(), in.v_view(), view, c.options, c.policy, value_policy);
        return out;
    }
}  // namespace

TEMPLATE_LIST_TEST_CASE("a float16 register load widens exactly like half_to_float", "[fp16]", tested_archs)
{
    using ops = arch_traits<TestType>;
    constexpr std::size_t w = ops::width;
    std::vector<float16> all(65536 + w);
    for (std::size_t i = 0; i < all.size(); ++i)
        all[i].bits = static_cast<std::uint16_t>(i);
    std::size_t mismatches = 0;
    for (std::size_t i0 = 1; i0 < 65536; i0 += w)  // from 1: misaligned loads too
    {
        alignas(64) float lanes[w];
        ops::store(lanes, ops::load(all.data() + i0));
        for (std::size_t l = 0; l < w; ++l)
        {
            float const expected = half_to_float(all[i0 + l].bits);
            bool const same = std::isnan(expected) ? std::isnan(lanes[l]) : std::memcmp(&expected, &lanes[l], sizeof(float)) == 0;
            mismatches += same ? 0 : 1;
        }
    }
    INFO(arch_name<TestType>());
    CHECK(mismatches == 0);
}

TEMPLATE_LIST_TEST_CASE("dense attention on float16 K/V equals the oracle on the widened rows", "[fp16][dense]", tested_archs)
{
    std::size_t const dim = GENERATE(32, 80, 128);
    std::size_t const group = GENERATE(1, 4);
    std::size_t const positions = GENERATE(1, 17, 70);
    std::size_t const queries = GENERATE(1, 0);  // 0: a whole prefill
    attention_case c;
    c.positions = positions;
    c.dim = dim;
    c.q_heads = 2 * group;
    INFO(arch_name<TestType>() << " " << c.describe() << " queries " << (queries ? queries : positions));
    auto const in = c.inputs();
    std::size_t const n_q = queries ? queries : positions;
    auto const got = run_dense_f16<TestType>(in, n_q);
    auto expected = oracle_dense(widened(in));
    if (n_q < positions)  // only the last position was attended: compare it alone
    {
        std::size_t const row = c.q_heads * dim, skip = (positions - n_q) * row;
        std::fill(expected.begin(), expected.begin() + static_cast<std::ptrdiff_t>(skip), 0.0f);
    }
    CHECK(max_abs_diff(got, expected) <= tolerance(expected));
}

TEMPLATE_LIST_TEST_CASE("dense attention on float16 K/V stays within the fp16 rounding bound of fp32", "[fp16][dense][bound]", tested_archs)
{
    // |k - half(k)| <= 2^-11 |k| per element moves score j by at most
    // e_j = alpha 2^-11 Σ_c |q_c k_jc|, so the probabilities by at most a factor
    // e^{±2 max e_j}: |Δo| <= (e^{2 max e} - 1) max|v| + 2^-11 max|v| (V's own rounding).
    attention_case c;
    c.positions = 200;
    c.dim = 128;
    c.q_heads = 8;
    auto const in = c.inputs();
    auto const got = run_dense_f16<TestType>(in, c.positions);
    auto const fp32 = oracle_dense(in);
    double const alpha = 1.0 / std::sqrt(static_cast<double>(c.dim)), u = std::ldexp(1.0, -11);
    double max_e = 0.0;
    auto const q = in.q_view(), k = in.k_view();
    for (std::size_t i = 0; i < c.positions; ++i)
        for (std::size_t h = 0; h < c.q_heads; ++h)
            for (std::size_t j = 0; j <= i; ++j)
            {
                double e = 0.0;
                for (std::size_t ch = 0; ch < c.dim; ++ch)
                    e += std::fabs(static_cast<double>(q.at(i, h)[ch]) * k.at(j, h / (c.q_heads / c.kv_heads))[ch]);
                max_e = std::max(max_e, alpha * u * e);
            }
    double const max_v = max_abs(in.v);
    double const bound = (std::expm1(2.0 * max_e) + u) * max_v + tolerance(fp32);
    INFO(arch_name<TestType>() << " max score error bound " << max_e << ", output bound " << bound);
    double const diff = max_abs_diff(got, fp32);
    CHECK(diff <= bound);
    CHECK(diff > 0.0);  // fp16 storage really rounds (this data is not fp16-exact)
}

TEMPLATE_LIST_TEST_CASE("layer_kv_cache_f16 equals the oracle of fp16 storage", "[fp16][values][decode]", tested_archs)
{
    std::size_t const prompt = GENERATE(1, 30, 90);
    std::size_t const chunk = GENERATE(7, 90);
    std::size_t const keyframes = GENERATE(0, 16);
    auto const policy_index = GENERATE(0, 1, 2);
    delta_policy const key_policies[] = {relative_threshold{0.3f}, target_sparsity{0.6f}, fixed_threshold{0.0f}};
    delta_policy const value_policies[] = {relative_threshold{0.5f}, block_threshold{8, 0.1f}, fixed_threshold{0.0f}};
    attention_case c;
    c.positions = 90;
    c.q_heads = 8;
    c.dim = 128;
    c.options.sinks = 3;
    c.options.window = 10;
    c.options.keyframe_interval = keyframes;
    c.policy = key_policies[policy_index];
    delta_policy const value_policy = value_policies[policy_index];
    INFO(arch_name<TestType>() << " prompt " << prompt << " chunk " << chunk << " " << c.describe() << " values " << describe(value_policy));
    auto const in = c.inputs();
    layer_kv_cache_f16 cache(c.kv_heads, c.dim, c.positions, c.options, c.policy, value_policy);
    auto const got = run_kv_f16<TestType>(in, c, prompt, chunk, cache);
    auto const expected = oracle_kv_f16(in, c, value_policy);
    CHECK(max_abs_diff(got, expected) <= tolerance(expected));

    // Bytes, analytically: binary16 dense rows (sinks, ring) and packed deltas (the first
    // row's d plus every later update, then the expansion kernels' padding), fp32
    // keyframes and running reference, a mask word per 64 channels and an offset per row.
    std::size_t const n = c.positions, d = c.dim, r = c.options.keyframe_interval, s = c.options.sinks;
    std::size_t const keyframe_rows = 1 + (r == 0 ? 0 : (n - s) / r);
    std::size_t const fixed = 2 * d * (s + c.options.window) + 4 * d * (keyframe_rows + 1) + 8 * ((d + 63) / 64) * n + sizeof(std::size_t) * (n + 1);
    for (std::size_t h = 0; h < c.kv_heads; ++h)
    {
        CHECK(cache.keys(h).bytes() == fixed + 2 * (d + cache.keys(h).stats().updated + deltaattn::kernels::expand_padding));
        CHECK(cache.values(h).bytes() == fixed + 2 * (d + cache.values(h).stats().updated + deltaattn::kernels::expand_padding));
    }
}

TEMPLATE_LIST_TEST_CASE("layer_kv_cache_f16 with every delta kept equals dense attention on the widened rows", "[fp16][property]", tested_archs)
{
    // θ = 0 keeps every changed channel; a delta of two halves that binary16 cannot hold
    // is rounded, and the reference follows, so this is the oracle's property, not an
    // identity: hybrid equals dense to the kernels' tolerance on this data.
    attention_case c;
    c.positions = 80;
    c.options.sinks = 2;
    c.options.window = 8;
    c.policy = fixed_threshold{0.0f};
    auto const in = c.inputs();
    layer_kv_cache_f16 cache(c.kv_heads, c.dim, c.positions, c.options, c.policy, fixed_threshold{0.0f});
    auto const got = run_kv_f16<TestType>(in, c, 40, 40, cache);
    auto const expected = oracle_dense(widened(in));
    INFO(arch_name<TestType>());
    CHECK(max_abs_diff(got, expected) <= 10 * tolerance(expected));
}

TEST_CASE("a float16 cache refuses keys beyond the binary16 range, naming them, and changes nothing", "[fp16][validation]")
{
    hybrid_options o;
    o.sinks = 1;
    o.window = 2;
    o.check_finite = true;
    layer_kv_cache_f16 cache(1, 4, 8, o, fixed_threshold{0.1f}, fixed_threshold{0.1f});
    std::vector<float> k = {1, 2, 3, 4}, v = {1, 1, 1, 1};
    cache.append(make_token_major<const float>(k.data(), 1, 1, 4), make_token_major<const float>(v.data(), 1, 1, 4));
    std::size_t const bytes = cache.bytes();
    k[2] = 70000.0f;  // finite in fp32, infinite as binary16
    auto const kv = make_token_major<const float>(k.data(), 1, 1, 4), vv = make_token_major<const float>(v.data(), 1, 1, 4);
    CHECK_THROWS_WITH(cache.append(kv, vv), Catch::Contains("k") && Catch::Contains("overflows float16"));
    v[0] = -1e6f;
    k[2] = 3.0f;
    CHECK_THROWS_WITH(cache.append(kv, vv), Catch::Contains("v") && Catch::Contains("overflows float16"));
    CHECK(cache.size() == 1);
    CHECK(cache.bytes() == bytes);
}

TEMPLATE_LIST_TEST_CASE("per-head hybrid_decode on float16 caches matches the fp16 oracle, keys only and keys+values", "[fp16][decode]",
                        tested_archs)
{
    bool const delta_values = GENERATE(false, true);
    attention_case c;
    c.positions = 120;
    c.q_heads = 8;
    c.dim = GENERATE(128, 96);  // whole 64-channel mask words, and a last word of 32 channels
    c.options.sinks = 4;
    c.options.window = 16;
    c.options.keyframe_interval = 32;
    c.policy = relative_threshold{0.4f};
    delta_policy const value_policy = relative_threshold{0.6f};
    INFO(arch_name<TestType>() << " " << c.describe() << (delta_values ? " delta values" : " values exact"));
    auto const in = c.inputs();
    std::vector<float> expected;
    auto const oracle_out = in.make_output(expected);
    if (delta_values)
        reference::hybrid_attention<float16>(in.q_view(), in.k_view(), in.v_view(), oracle_out, c.options, c.policy, value_policy);
    else
        reference::hybrid_attention<float16>(in.q_view(), in.k_view(), in.v_view(), oracle_out, c.options, c.policy);

    std::size_t const group = c.q_heads / c.kv_heads, last = c.positions - 1, row = c.q_heads * c.dim;
    auto const v16 = to_halves(in.v);
    auto const v = make_token_major(v16.data(), c.positions, c.kv_heads, c.dim);
    std::vector<float> got(row);
    attention_workspace ws;
    for (std::size_t h = 0; h < c.kv_heads; ++h)
    {
        delta_key_cache_f16 keys(c.dim, c.positions, c.options, c.policy, "k"), values(c.dim, c.positions, c.options, value_policy, "v");
        keys.append(in.k_view().head(h));
        values.append(in.v_view().head(h));
        matrix_view<const float> const q{in.q_view().at(last, h * group), group, c.dim, static_cast<std::ptrdiff_t>(c.dim)};
        auto const out = make_matrix_view(got.data() + h * group * c.dim, group, c.dim);
        if (delta_values)
            hybrid_decode<TestType>(keys, values, q, out, ws);
        else
            hybrid_decode<TestType>(keys, q, v.head(h), out, ws);
    }
    std::vector<float> const expected_last(expected.end() - static_cast<std::ptrdiff_t>(row), expected.end());
    CHECK(max_abs_diff(got, expected_last) <= tolerance(expected_last));
}

TEMPLATE_LIST_TEST_CASE("layer_key_cache_f16 over a binary16 V cache equals the fp16 oracle, in chunks and decode steps", "[fp16][hybrid][decode]",
                        tested_archs)
{
    std::size_t const prompt = GENERATE(1, 33, 80);
    std::size_t const chunk = GENERATE(9, 80);
    attention_case c;
    c.positions = 80;
    c.q_heads = 8;
    c.dim = 96;
    c.options.sinks = 2;
    c.options.window = 12;
    c.options.keyframe_interval = 24;
    c.policy = relative_threshold{0.35f};
    INFO(arch_name<TestType>() << " prompt " << prompt << " chunk " << chunk << " " << c.describe());
    auto const in = c.inputs();
    std::vector<float> expected;
    auto const oracle_out = in.make_output(expected);
    reference::hybrid_attention<float16>(in.q_view(), in.k_view(), in.v_view(), oracle_out, c.options, c.policy);

    auto const v16 = to_halves(in.v);
    auto const v = make_token_major(v16.data(), c.positions, c.kv_heads, c.dim);  // the engine's fp16 V cache
    layer_key_cache_f16 cache(c.kv_heads, c.dim, c.positions, c.options, c.policy);
    std::vector<float> got;
    auto const out = in.make_output(got);
    attention_stats stats;
    for (std::size_t p = 0; p < c.positions;)
    {
        std::size_t const n = p < prompt ? std::min(chunk, prompt - p) : 1;
        auto const q = in.q_view().slice_positions(p, n), k = in.k_view().slice_positions(p, n);
        if (p < prompt)
            cache.prefill<TestType>(q, k, v.slice_positions(0, p + n), out.slice_positions(p, n), &stats);
        else
            cache.decode<TestType>(q, k, v.slice_positions(0, p + 1), out.slice_positions(p, n), &stats);
        p += n;
    }
    CHECK(max_abs_diff(got, expected) <= tolerance(expected));
    CHECK(stats.kcache_dense_bytes == sizeof(float16) * c.positions * c.dim * c.kv_heads);
    CHECK(stats.kcache_bytes == cache.bytes());
}

TEMPLATE_LIST_TEST_CASE("one-call hybrid_attention on float16 K/V equals the fp16 oracle, keys only and keys and values", "[fp16][hybrid]",
                        tested_archs)
{
    std::size_t const queries = GENERATE(1, 37, 70);  // a decode step, a tail, the whole sequence
    bool const with_values = GENERATE(false, true);
    attention_case c;
    c.positions = 70;
    c.q_heads = 8;
    c.dim = 64;
    c.options.sinks = 2;
    c.options.window = 9;
    c.options.keyframe_interval = 20;
    c.policy = relative_threshold{0.35f};
    delta_policy const value_policy = relative_threshold{0.5f};
    INFO(arch_name<TestType>() << " queries " << queries << (with_values ? " keys and values " : " keys only ") << c.describe());
    auto const in = c.inputs();
    auto const k16 = to_halves(in.k), v16 = to_halves(in.v);
    auto const k = make_token_major<const float16>(k16.data(), c.positions, c.kv_heads, c.dim);
    auto const v = make_token_major<const float16>(v16.data(), c.positions, c.kv_heads, c.dim);
    auto const halves = widened(in);  // what the halves hold, as floats: the oracle's input
    std::size_t const first = c.positions - queries;
    auto const q = in.q_view().slice_positions(first, queries);
    std::vector<float> got, expected;
    auto const got_view = in.make_output(got).slice_positions(first, queries);
    auto const expected_view = in.make_output(expected).slice_positions(first, queries);
    attention_stats stats;
    if (with_values)
    {
        hybrid_attention<TestType>(q, k, v, got_view, c.options, c.policy, value_policy, &stats);
        reference::hybrid_attention<float16>(q, halves.k_view(), halves.v_view(), expected_view, c.options, c.policy, value_policy);
        CHECK(stats.vcache_dense_bytes == sizeof(float16) * c.positions * c.dim * c.kv_heads);
    }
    else
    {
        hybrid_attention<TestType>(q, k, v, got_view, c.options, c.policy, &stats);
        reference::hybrid_attention<float16>(q, halves.k_view(), halves.v_view(), expected_view, c.options, c.policy);
    }
    CHECK(max_abs_diff(got, expected) <= tolerance(expected));
    CHECK(stats.kcache_dense_bytes == sizeof(float16) * c.positions * c.dim * c.kv_heads);
    CHECK(stats.prefill.queries == queries * c.q_heads);
}

TEST_CASE("one-call hybrid_attention on float16 K/V refuses a non-finite half by name and writes nothing", "[fp16][validation]")
{
    hybrid_options o;
    o.sinks = 1;
    o.window = 2;
    o.check_finite = true;
    std::size_t const n = 6, d = 4;
    std::vector<float> q(n * d, 0.5f), out(n * d, -7.0f);
    std::vector<float16> k(n * d, from_float<float16>(0.25f)), v(n * d, from_float<float16>(1.0f));
    auto const qv = make_token_major<const float>(q.data(), n, 1, d);
    auto const kv = make_token_major<const float16>(k.data(), n, 1, d), vv = make_token_major<const float16>(v.data(), n, 1, d);
    auto const ov = make_token_major(out.data(), n, 1, d);
    k[9] = float16{0x7C00};  // +infinity
    CHECK_THROWS_WITH(hybrid_attention(qv, kv, vv, ov, o, fixed_threshold{0.1f}), Catch::Contains("k") && Catch::Contains("non-finite"));
    k[9] = from_float<float16>(0.25f);
    v[13] = float16{0x7E00};  // NaN
    CHECK_THROWS_WITH(hybrid_attention(qv, kv, vv, ov, o, fixed_threshold{0.1f}, fixed_threshold{0.1f}), Catch::Contains("v") && Catch::Contains("non-finite"));
    CHECK(std::all_of(out.begin(), out.end(), [](float x) { return x == -7.0f; }));
}
