// Numerics (SPEC.md §8) and determinism: extreme scores, degenerate keys (zero,
// subnormal, constant, alternating), non-finite inputs with and without checking, and
// bit-identical results across runs, caches and threads. Every expectation is the
// oracle's, an analytic value or an analytic count.
#include "catch.hpp"
#include "tester.hpp"

#include <atomic>
#include <cstring>
#include <limits>
#include <numeric>
#include <thread>

using namespace deltaattn_test;

namespace
{
    float const not_a_number = std::numeric_limits<float>::quiet_NaN();
    float const infinity = std::numeric_limits<float>::infinity();
    constexpr float sentinel = 12345.0f;

    float& element(std::vector<float>& x, std::size_t heads, std::size_t dim, std::size_t pos, std::size_t head, std::size_t c)
    {
        return x[(pos * heads + head) * dim + c];
    }

    /// Prefill of `prompt` positions through a layer cache, then a decode step per position left.
    template <class Arch>
    std::vector<float> run_layer(qkv_data const& in, hybrid_options const& options, delta_policy const& policy, std::size_t prompt,
                                 attention_stats* stats = nullptr, parallel_executor const* executor = nullptr)
    {
        std::size_t const n = in.shape.positions;
        std::vector<float> out;
        auto const out_view = in.make_output(out);
        layer_key_cache cache(in.shape.kv_heads, in.shape.dim, n, options, policy);
        if (executor)
            cache.set_executor(*executor);
        if (prompt > 0)
            cache.prefill<Arch>(in.q_view().slice_positions(0, prompt), in.k_view().slice_positions(0, prompt),
                                in.v_view().slice_positions(0, prompt), out_view.slice_positions(0, prompt), stats);
        for (std::size_t i = prompt; i < n; ++i)
            cache.decode<Arch>(in.q_view().slice_positions(i, 1), in.k_view().slice_positions(i, 1), in.v_view().slice_positions(0, i + 1),
                               out_view.slice_positions(i, 1), stats);
        return out;
    }

    std::vector<float> oracle_hybrid(qkv_data const& in, hybrid_options const& options, delta_policy const& policy)
    {
        std::vector<float> out;
        reference::hybrid_attention(in.q_view(), in.k_view(), in.v_view(), in.make_output(out), options, policy);
        return out;
    }

    /// The analytic QK work of all positions (one stage), every KV head.
    attention_work analytic_work(qkv_data const& in, hybrid_options const& options, delta_policy const& policy)
    {
        attention_work w;
        std::size_t const group = in.shape.q_heads / in.shape.kv_heads;
        for (std::size_t h = 0; h < in.shape.kv_heads; ++h)
            w += reference::stage_work(0, in.shape.positions - 1, group, reference::build_delta_rows(in.k_view().head(h), policy), options);
        return w;
    }

    /// Σ_{j∈set} v_j / |set| for one KV head: the output of a softmax whose top scores tie.
    std::vector<double> mean_value(qkv_data const& in, std::size_t kv_head, std::vector<std::size_t> const& positions)
    {
        std::vector<double> mean(in.shape.dim, 0.0);
        for (std::size_t j : positions)
            for (std::size_t c = 0; c < in.shape.dim; ++c)
                mean[c] += in.v_view().at(j, kv_head)[c];
        for (double& m : mean)
            m /= static_cast<double>(positions.size());
        return mean;
    }

    /// max_c |out(i, h)[c] - want[c]|.
    double row_error(std::vector<float> const& out, qkv_data const& in, std::size_t i, std::size_t h, std::vector<double> const& want)
    {
        double worst = 0.0;
        for (std::size_t c = 0; c < in.shape.dim; ++c)
            worst = std::max(worst, std::fabs(static_cast<double>(out[(i * in.shape.q_heads + h) * in.shape.dim + c]) - want[c]));
        return worst;
    }

    bool all_finite(std::vector<float> const& x)
    {
        return std::all_of(x.begin(), x.end(), [](float v) { return std::isfinite(v); });
    }

    bool same_bits(std::vector<float> const& a, std::vector<float> const& b)
    {
        return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
    }

    /// Which output elements of query row (i, h) are NaN / non-finite, as counts.
    std::size_t count_nan(std::vector<float> const& out, qkv_data const& in, std::size_t i, std::size_t h)
    {
        float const* row = out.data() + (i * in.shape.q_heads + h) * in.shape.dim;
        return static_cast<std::size_t>(std::count_if(row, row + in.shape.dim, [](float x) { return std::isnan(x); }));
    }

    std::string named(char const* argument) { return std::string("deltaattn: ") + argument + ":"; }
}  // namespace

// ---- extreme scores ---------------------------------------------------------------

// d = 16 (alpha = 1/4 exactly), only channel 0 of q non-zero, q[0] = ±256 and key
// channel 0 = 156.25 - m/256: every q·k and every delta product is an integer below
// 2^24, so fp32 scores are exact and equal ±(10000 - m/4), |s| up to 1e4. Head 1 has
// q[0] = -256: the keys with channel 0 = -156.25 (every fifth) score exactly +1e4 and
// all others at most -1e4 + 4, so its output is the plain mean of those keys' values.
TEMPLATE_LIST_TEST_CASE("scores of +-1e4 give the oracle's and the analytic softmax", "[numerics]", tested_archs)
{
    std::size_t const n = 45, d = 16;
    qkv_data in = make_llm_like(workload_shape{n, 2, 1, d}, llm_like_options{});
    std::fill(in.q.begin(), in.q.end(), 0.0f);
    for (std::size_t i = 0; i < n; ++i)
    {
        element(in.q, 2, d, i, 0, 0) = 256.0f;
        element(in.q, 2, d, i, 1, 0) = -256.0f;
        element(in.k, 1, d, i, 0, 0) = i % 5 == 0 ? -156.25f : 156.25f - static_cast<float>((i * 7) % 17) / 256.0f;
    }
    hybrid_options options;
    options.sinks = 2;
    options.window = 4;
    options.keyframe_interval = 8;
    delta_policy const policy = fixed_threshold{2.0f / 256.0f};  // absorbs key changes of up to 2/256

    auto const expected = oracle_hybrid(in, options, policy);
    auto const expected_dense = oracle_dense(in);
    for (std::size_t prompt : {n, std::size_t(10)})
    {
        INFO(arch_name<TestType>() << " prompt " << prompt);
        auto const hybrid = run_layer<TestType>(in, options, policy, prompt);
        REQUIRE(all_finite(hybrid));
        CHECK(max_abs_diff(hybrid, expected) <= tolerance(expected));
        for (std::size_t i = 0; i < n; ++i)
        {
            std::vector<std::size_t> top;
            for (std::size_t j = 0; j <= i; j += 5)
                top.push_back(j);
            CHECK(row_error(hybrid, in, i, 1, mean_value(in, 0, top)) <= 1e-4);
        }
    }
    auto const dense = run_dense<TestType>(in);
    REQUIRE(all_finite(dense));
    CHECK(max_abs_diff(dense, expected_dense) <= tolerance(expected_dense));
}

// All scores equal to -1e4 (or +1e4): exp without the row maximum subtracted would
// underflow to 0/0 (or overflow to inf/inf); with it the softmax is uniform.
TEMPLATE_LIST_TEST_CASE("a row of equal scores of +-1e4 averages the values", "[numerics]", tested_archs)
{
    float const sign = GENERATE(-1.0f, 1.0f);
    std::size_t const n = 40, d = 16;
    qkv_data in = make_llm_like(workload_shape{n, 1, 1, d}, llm_like_options{});
    std::fill(in.q.begin(), in.q.end(), 0.0f);
    for (std::size_t i = 0; i < n; ++i)
    {
        element(in.q, 1, d, i, 0, 0) = sign * 256.0f;
        element(in.k, 1, d, i, 0, 0) = 156.25f;  // score = sign * 1e4 exactly, for every key
    }
    hybrid_options options;
    options.window = 3;
    INFO(arch_name<TestType>() << " scores " << sign * 1e4f);
    for (auto const& out : {run_layer<TestType>(in, options, relative_threshold{0.3f}, n / 2), run_dense<TestType>(in)})
    {
        REQUIRE(all_finite(out));
        for (std::size_t i = 0; i < n; ++i)
        {
            std::vector<std::size_t> all(i + 1);
            std::iota(all.begin(), all.end(), std::size_t(0));
            CHECK(row_error(out, in, i, 0, mean_value(in, 0, all)) <= 1e-5);
        }
    }
}

// ---- degenerate keys --------------------------------------------------------------

TEMPLATE_LIST_TEST_CASE("zero keys: no delta is stored and the softmax is uniform", "[numerics]", tested_archs)
{
    std::size_t const n = 50, d = 32;
    qkv_data in = make_llm_like(workload_shape{n, 2, 1, d}, llm_like_options{});
    for (std::size_t e = 0; e < in.k.size(); ++e)
        in.k[e] = e % 2 ? 0.0f : -0.0f;  // both zeros: -0 - 0 is still no change
    hybrid_options options;
    options.sinks = 2;
    options.window = 5;
    attention_stats stats;
    auto const out = run_layer<TestType>(in, options, fixed_threshold{0.0f}, 20, &stats);
    INFO(arch_name<TestType>());
    CHECK(stats.keys.rows == n - 1);
    CHECK(stats.keys.updated == 0);
    CHECK(stats.keys.sparsity() == 1.0);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t h = 0; h < 2; ++h)
        {
            std::vector<std::size_t> all(i + 1);
            std::iota(all.begin(), all.end(), std::size_t(0));
            CHECK(row_error(out, in, i, h, mean_value(in, 0, all)) <= 1e-5);
        }
}

TEMPLATE_LIST_TEST_CASE("subnormal keys: construction is bit-exact and attention is uniform", "[numerics]", tested_archs)
{
    std::size_t const n = 60, d = 24;
    qkv_data in = make_llm_like(workload_shape{n, 2, 1, d}, llm_like_options{});
    std::uint32_t state = 12345u;
    bool subnormal = true;
    for (float& x : in.k)
    {
        state = state * 1664525u + 1013904223u;
        std::uint32_t const bits = (state & 0x80000000u) | std::max<std::uint32_t>(1u, (state >> 4) & 0x007fffffu);  // exponent 0
        std::memcpy(&x, &bits, sizeof x);
        subnormal = subnormal && std::fpclassify(x) == FP_SUBNORMAL;
    }
    REQUIRE(subnormal);
    // theta 0 stores every change; the smallest subnormal as theta absorbs 1-ulp changes.
    float const theta = GENERATE(0.0f, std::numeric_limits<float>::denorm_min(), 1e-39f);
    delta_policy const policy = fixed_threshold{theta};
    INFO(arch_name<TestType>() << " theta " << theta);

    auto const keys = in.k_view().head(0);
    auto const want = reference::build_delta_rows(keys, policy);
    delta_key_cache cache(d, n, hybrid_options{}, policy);
    cache.append(keys);
    bool exact = true;
    for (std::size_t j = 0; j < n; ++j)
    {
        delta_row const row = cache.delta(j);
        std::size_t packed = 0;
        for (std::size_t c = 0; c < d; ++c)
        {
            bool const updated = row.mask[c / 64] >> (c % 64) & 1u;
            exact = exact && updated == (want.updated_row(j)[c] != 0);
            if (updated)
                exact = exact && std::memcmp(&row.values[packed++], &want.delta_row(j)[c], sizeof(float)) == 0;
        }
    }
    CHECK(exact);
    CHECK(std::memcmp(cache.reference_row(), want.reference_row(n - 1), d * sizeof(float)) == 0);

    // Scores of ~1e-38: every exp is 1 to fp32, the output the running mean of the values.
    hybrid_options options;
    options.window = 4;
    auto const out = run_layer<TestType>(in, options, policy, 30);
    auto const expected = oracle_hybrid(in, options, policy);
    CHECK(max_abs_diff(out, expected) <= tolerance(expected));
    for (std::size_t i = 0; i < n; i += 7)
    {
        std::vector<std::size_t> all(i + 1);
        std::iota(all.begin(), all.end(), std::size_t(0));
        CHECK(row_error(out, in, i, 1, mean_value(in, 0, all)) <= 1e-5);
    }
}

// Constant keys: every error is exactly 0, so threshold policies store no delta at
// all (delta sparsity exactly 1) and k̂ = k: hybrid is dense. The target policy stores
// its quota of channels regardless ("updated" is structural), each delta exactly 0.
TEMPLATE_LIST_TEST_CASE("constant keys: delta sparsity 1, hybrid equals dense", "[numerics]", tested_archs)
{
    delta_policy const policy = GENERATE(as<delta_policy>{}, fixed_threshold{0.0f}, fixed_threshold{0.1f}, relative_threshold{0.3f},
                                         block_threshold{8, 0.0f}, target_sparsity{0.75f});
    std::size_t const n = 100, d = 64, kv_heads = 2;
    qkv_data in = make_llm_like(workload_shape{n, 4, kv_heads, d}, llm_like_options{});
    for (std::size_t i = 1; i < n; ++i)
        std::copy(in.k.begin(), in.k.begin() + static_cast<std::ptrdiff_t>(kv_heads * d), in.k.begin() + static_cast<std::ptrdiff_t>(i * kv_heads * d));
    hybrid_options options;
    options.sinks = 3;
    options.window = 8;
    options.keyframe_interval = 32;
    INFO(arch_name<TestType>() << " " << describe(policy));

    attention_stats stats;
    auto const hybrid = run_layer<TestType>(in, options, policy, 60, &stats);
    auto const dense = run_dense<TestType>(in);
    auto const expected = oracle_hybrid(in, options, policy);
    CHECK(max_abs_diff(hybrid, expected) <= tolerance(expected));
    CHECK(max_abs_diff(hybrid, dense) <= tolerance(dense));

    CHECK(stats.keys.rows == kv_heads * (n - 1));
    if (auto const* target = std::get_if<target_sparsity>(&policy))
    {
        auto const kept = static_cast<std::uint64_t>(std::llround((1.0 - static_cast<double>(target->sparsity)) * d));
        CHECK(stats.keys.updated == kv_heads * (n - 1) * kept);
        delta_key_cache cache(d, n, options, policy);
        cache.append(in.k_view().head(0));
        bool zero = true;
        for (std::size_t j = 1; j < n; ++j)
            for (std::size_t e = 0; e < cache.delta(j).nnz; ++e)
                zero = zero && cache.delta(j).values[e] == 0.0f;
        CHECK(zero);
    }
    else
    {
        CHECK(stats.keys.updated == 0);
        CHECK(stats.keys.sparsity() == 1.0);
    }
    attention_work const want = analytic_work(in, options, policy);
    CHECK((stats.prefill + stats.decode).hybrid_macs == want.hybrid_macs);
    CHECK((stats.prefill + stats.decode).dense_macs == want.dense_macs);
}

// Keys alternating k_j = base ± a·sign (per channel): every error is 2a, above theta,
// so every delta row is fully updated (delta sparsity 0), and a delta cell costs as
// much as an exact one: attention sparsity is never positive (keyframes and the base
// row only add work). k̂ = k, so hybrid is dense.
TEMPLATE_LIST_TEST_CASE("alternating keys: no sparsity, hybrid equals dense", "[numerics]", tested_archs)
{
    delta_policy const policy = GENERATE(as<delta_policy>{}, fixed_threshold{0.5f}, relative_threshold{0.1f}, block_threshold{16, 0.9f});
    std::size_t const sinks = GENERATE(1, 4);
    std::size_t const keyframes = GENERATE(0, 16);
    std::size_t const n = 90, d = 32;
    float const half_amplitude = 0.5f;  // |k_j - k_{j-1}| = 1 in every channel
    qkv_data in = make_llm_like(workload_shape{n, 2, 1, d}, llm_like_options{});
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t c = 0; c < d; ++c)
        {
            float const base = 0.25f * static_cast<float>(c % 5) - 0.5f;  // |k| <= 1.5: rms well below 10
            float const sign = (c % 3 == 0) ? -1.0f : 1.0f;
            element(in.k, 1, d, i, 0, c) = base + (i % 2 ? half_amplitude : -half_amplitude) * sign;
        }
    hybrid_options options;
    options.sinks = sinks;
    options.window = 6;
    options.keyframe_interval = keyframes;
    INFO(arch_name<TestType>() << " " << describe(policy) << " sinks " << sinks << " keyframes " << keyframes);

    attention_stats stats;
    auto const hybrid = run_layer<TestType>(in, options, policy, n);
    auto const decoded = run_layer<TestType>(in, options, policy, 1, &stats);
    auto const dense = run_dense<TestType>(in);
    auto const expected = oracle_hybrid(in, options, policy);
    CHECK(max_abs_diff(hybrid, expected) <= tolerance(expected));
    CHECK(max_abs_diff(decoded, expected) <= tolerance(expected));
    CHECK(max_abs_diff(hybrid, dense) <= tolerance(dense));

    CHECK(stats.keys.updated == (n - 1) * d);
    CHECK(stats.keys.sparsity() == 0.0);
    attention_work const work = stats.prefill + stats.decode;
    CHECK(work.hybrid_macs == analytic_work(in, options, policy).hybrid_macs);
    CHECK(work.sparsity() <= 0.0);
    if (sinks == 1 && keyframes == 0)
        CHECK(work.hybrid_macs == work.dense_macs);  // nothing skipped, nothing added
}

// ---- non-finite inputs, checking on -------------------------------------------------

TEMPLATE_LIST_TEST_CASE("a decode step with NaN/Inf is rejected by name and changes nothing", "[numerics][validation]", tested_archs)
{
    char const* const argument = GENERATE("q", "k", "v", "earlier v");
    float const bad = GENERATE(as<float>{}, not_a_number, infinity, -infinity);
    std::size_t const n = 30, prompt = 20, d = 16;
    qkv_data clean = make_llm_like(workload_shape{n, 4, 2, d}, llm_like_options{});
    hybrid_options options;
    options.window = 4;
    options.check_finite = true;
    delta_policy const policy = relative_threshold{0.3f};
    INFO(arch_name<TestType>() << " " << argument << " = " << bad);

    // Step `prompt` gets the bad element; the clean twin never sees it.
    qkv_data dirty = clean;
    std::string const which = argument;
    if (which == "q")
        element(dirty.q, 4, d, prompt, 3, 5) = bad;
    else if (which == "k")
        element(dirty.k, 2, d, prompt, 1, 5) = bad;
    else if (which == "v")
        element(dirty.v, 2, d, prompt, 0, 5) = bad;
    else
        element(dirty.v, 2, d, 3, 1, 0) = bad;  // a value the prefill already used
    char const* const name = which == "earlier v" ? "v" : argument;

    layer_key_cache cache(2, d, n, options, policy), twin(2, d, n, options, policy);
    std::vector<float> out(clean.q.size(), sentinel), twin_out(clean.q.size(), sentinel);
    auto const view = make_token_major(out.data(), n, 4, d), twin_view = make_token_major(twin_out.data(), n, 4, d);
    cache.prefill<TestType>(clean.q_view().slice_positions(0, prompt), clean.k_view().slice_positions(0, prompt),
                            clean.v_view().slice_positions(0, prompt), view.slice_positions(0, prompt));
    twin.prefill<TestType>(clean.q_view().slice_positions(0, prompt), clean.k_view().slice_positions(0, prompt),
                           clean.v_view().slice_positions(0, prompt), twin_view.slice_positions(0, prompt));
    std::size_t const bytes = cache.bytes();
    CHECK_THROWS_WITH(cache.decode<TestType>(dirty.q_view().slice_positions(prompt, 1), dirty.k_view().slice_positions(prompt, 1),
                                             dirty.v_view().slice_positions(0, prompt + 1), view.slice_positions(prompt, 1)),
                      contains(named(name)) && contains("non-finite"));
    CHECK(cache.size() == prompt);
    CHECK(cache.bytes() == bytes);
    CHECK(std::all_of(out.begin() + static_cast<std::ptrdiff_t>(prompt * 4 * d), out.end(), [](float x) { return x == sentinel; }));

    // The cache carries on exactly as the twin that never saw the bad step.
    for (std::size_t i = prompt; i < n; ++i)
    {
        cache.decode<TestType>(clean.q_view().slice_positions(i, 1), clean.k_view().slice_positions(i, 1), clean.v_view().slice_positions(0, i + 1),
                               view.slice_positions(i, 1));
        twin.decode<TestType>(clean.q_view().slice_positions(i, 1), clean.k_view().slice_positions(i, 1), clean.v_view().slice_positions(0, i + 1),
                              twin_view.slice_positions(i, 1));
    }
    CHECK(same_bits(out, twin_out));
}

TEMPLATE_LIST_TEST_CASE("per-head append and hybrid_decode reject NaN/Inf by name", "[numerics][validation]", tested_archs)
{
    float const bad = GENERATE(as<float>{}, not_a_number, infinity, -infinity);
    std::size_t const n = 12, d = 8, heads = 2;
    qkv_data in = make_llm_like(workload_shape{n, heads, 1, d}, llm_like_options{});
    hybrid_options options;
    options.window = 3;
    options.check_finite = true;
    delta_key_cache cache(d, n, options, fixed_threshold{0.1f});
    for (std::size_t i = 0; i < 5; ++i)
        cache.append(in.k_view().at(i, 0));
    std::size_t const bytes = cache.bytes();
    std::vector<float> key(in.k_view().at(5, 0), in.k_view().at(5, 0) + d);
    key[d - 1] = bad;
    INFO(arch_name<TestType>() << " " << bad);
    CHECK_THROWS_WITH(cache.append(key.data()), contains(named("k")) && contains("non-finite"));
    CHECK_THROWS_WITH(cache.append(make_matrix_view<const float>(key.data(), 1, d)), contains(named("k")) && contains("non-finite"));
    CHECK(cache.size() == 5);
    CHECK(cache.bytes() == bytes);

    attention_workspace ws;
    std::vector<float> q(in.q_view().at(4, 0), in.q_view().at(4, 0) + heads * d), out(heads * d, sentinel);
    q[3] = bad;
    CHECK_THROWS_WITH(hybrid_decode<TestType>(cache, make_matrix_view<const float>(q.data(), heads, d), in.v_view().head(0).slice_rows(0, 5),
                                              make_matrix_view(out.data(), heads, d), ws),
                      contains(named("q")));
    std::vector<float> v(in.v.begin(), in.v.begin() + static_cast<std::ptrdiff_t>(5 * d));
    v[2 * d + 1] = bad;
    CHECK_THROWS_WITH(hybrid_decode<TestType>(cache, in.q_view().head(0).slice_rows(4, 1), make_matrix_view<const float>(v.data(), 5, d),
                                              make_matrix_view(out.data(), 1, d), ws),
                      contains(named("v")));
    CHECK(std::all_of(out.begin(), out.end(), [](float x) { return x == sentinel; }));
}

// ---- non-finite inputs, checking off: what happens, asserted ------------------------
// Documented behaviour (checking off is the caller's promise that inputs are finite):
// no crash, no rejection, and a NaN reaches exactly the outputs the oracle's would:
//  - NaN in q_i (head h): output (i, h) is all NaN, nothing else changes;
//  - NaN in v_j channel c: channel c of every output at positions >= j of that KV
//    group is NaN, every other element is unchanged; in a prefill channel c of rows
//    before j may be NaN too (0·NaN in a block's p·v update), nothing else;
//  - NaN in k_j: NaN exactly where the oracle has it. With a fixed or relative
//    threshold that is the rows where key j is exact (j <= i < j + window, and every
//    later row if j is a sink, k_0 included): |NaN| > θ is false, so no NaN delta is
//    stored, k̂ stays finite and rows where j is a delta cell match the oracle.
//  - Inf in q_i: output (i, h) is NaN (inf - inf in the softmax), nothing else changes.
//  - Inf in v_j channel c: channel c of the outputs at positions >= j is non-finite,
//    everything else unchanged.
//  - Inf in k_j with q·(+inf) = +inf for every query: every row from j on is NaN,
//    as the oracle's; earlier rows are unchanged. (With q[c] < 0 the oracle's delta
//    cell scores -inf and its rows stay finite, but the kernels' prefix sums meet
//    +inf - inf and give NaN: infinite keys are outside SPEC.md §9's contract.)

namespace
{
    struct poisoned
    {
        qkv_data clean, dirty;
        hybrid_options options;
        delta_policy policy = fixed_threshold{0.2f};
        static constexpr std::size_t n = 24, q_heads = 6, kv_heads = 2, d = 12, group = q_heads / kv_heads;

        poisoned() : clean(make_llm_like(workload_shape{n, q_heads, kv_heads, d}, llm_like_options{})), dirty(clean)
        {
            options.sinks = 2;
            options.window = 4;
            options.keyframe_interval = 0;
        }
    };

    /// Whether f(i, h, c, element index) holds for every output element of `in`'s shape.
    template <class F>
    bool all_elements(qkv_data const& in, F&& f)
    {
        for (std::size_t i = 0; i < in.shape.positions; ++i)
            for (std::size_t h = 0; h < in.shape.q_heads; ++h)
                for (std::size_t c = 0; c < in.shape.dim; ++c)
                    if (!f(i, h, c, (i * in.shape.q_heads + h) * in.shape.dim + c))
                        return false;
        return true;
    }

    bool bits_equal(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }
}  // namespace

TEMPLATE_LIST_TEST_CASE("unchecked NaN/Inf in a query poisons only its own output row", "[numerics][nonfinite]", tested_archs)
{
    float const bad = GENERATE(as<float>{}, not_a_number, infinity, -infinity);
    std::size_t const prompt = GENERATE(std::size_t(24), std::size_t(9));
    poisoned p;
    std::size_t const bad_pos = 13, bad_head = 4;
    element(p.dirty.q, p.q_heads, p.d, bad_pos, bad_head, 7) = bad;
    INFO(arch_name<TestType>() << " " << bad << " prompt " << prompt);
    auto const clean = run_layer<TestType>(p.clean, p.options, p.policy, prompt);
    auto const dirty = run_layer<TestType>(p.dirty, p.options, p.policy, prompt);
    CHECK(count_nan(dirty, p.dirty, bad_pos, bad_head) == p.d);
    CHECK(all_elements(p.clean, [&](std::size_t i, std::size_t h, std::size_t, std::size_t e) {
        return (i == bad_pos && h == bad_head) || bits_equal(dirty[e], clean[e]);
    }));
}

TEMPLATE_LIST_TEST_CASE("unchecked NaN/Inf in a value poisons its channel from its position on", "[numerics][nonfinite]", tested_archs)
{
    float const bad = GENERATE(as<float>{}, not_a_number, infinity);
    poisoned p;
    std::size_t const bad_pos = 10, bad_kv = 1, bad_channel = 3;
    element(p.dirty.v, p.kv_heads, p.d, bad_pos, bad_kv, bad_channel) = bad;
    INFO(arch_name<TestType>() << " " << bad);
    // Decode steps from the first position: every output is computed before later values exist.
    auto const clean = run_layer<TestType>(p.clean, p.options, p.policy, 1);
    auto const dirty = run_layer<TestType>(p.dirty, p.options, p.policy, 1);
    CHECK(all_elements(p.clean, [&](std::size_t i, std::size_t h, std::size_t c, std::size_t e) {
        bool const reached = i >= bad_pos && h / p.group == bad_kv && c == bad_channel;
        return reached ? !std::isfinite(dirty[e]) && (std::isnan(bad) ? std::isnan(dirty[e]) : true) : bits_equal(dirty[e], clean[e]);
    }));
    // A prefill reaches the same outputs at and after the position.
    auto const prefilled = run_layer<TestType>(p.dirty, p.options, p.policy, p.n);
    auto const clean_prefilled = run_layer<TestType>(p.clean, p.options, p.policy, p.n);
    CHECK(all_elements(p.clean, [&](std::size_t i, std::size_t h, std::size_t c, std::size_t e) {
        // Before the position, only the bad channel may differ: a prefill updates p·v for
        // a block of query rows at once, and 0·NaN = NaN reaches rows of the block that
        // cannot see the value (documented in docs/guarantees.md).
        if (i < bad_pos)
            return (h / p.group == bad_kv && c == bad_channel) || bits_equal(prefilled[e], clean_prefilled[e]);
        bool const reached = h / p.group == bad_kv && c == bad_channel;
        return reached ? !std::isfinite(prefilled[e]) : bits_equal(prefilled[e], clean_prefilled[e]);
    }));
}

TEMPLATE_LIST_TEST_CASE("unchecked NaN in a key poisons the rows where it is exact, as the oracle's", "[numerics][nonfinite]", tested_archs)
{
    std::size_t const bad_pos = GENERATE(0, 1, 7, 15);
    std::size_t const prompt = GENERATE(std::size_t(24), std::size_t(5));
    delta_policy const policy = GENERATE(as<delta_policy>{}, fixed_threshold{0.2f}, relative_threshold{0.3f}, block_threshold{4, 0.2f});
    poisoned p;
    p.policy = policy;
    std::size_t const bad_kv = 0;
    element(p.dirty.k, p.kv_heads, p.d, bad_pos, bad_kv, 5) = not_a_number;
    INFO(arch_name<TestType>() << " NaN key at " << bad_pos << " prompt " << prompt << " " << describe(policy));
    auto const dirty = run_layer<TestType>(p.dirty, p.options, p.policy, prompt);
    auto const expected = oracle_hybrid(p.dirty, p.options, p.policy);

    // NaN exactly where the oracle has NaN, whatever the policy.
    CHECK(all_elements(p.clean, [&](std::size_t, std::size_t, std::size_t, std::size_t e) { return std::isnan(dirty[e]) == std::isnan(expected[e]); }));
    // Per-channel threshold policies never take the NaN into k̂: only the rows where key
    // j is exact are poisoned. (A block policy takes it when another channel of its group
    // updates the group; from then on the delta cell is NaN for every later row.)
    if (!std::holds_alternative<block_threshold>(policy))
    {
        auto const key_is_exact = [&](std::size_t i) {
            return bad_pos <= i && (bad_pos < p.options.sinks || bad_pos + p.options.window > i);
        };
        CHECK(all_elements(p.clean, [&](std::size_t i, std::size_t h, std::size_t, std::size_t e) {
            return std::isnan(dirty[e]) == (h / p.group == bad_kv && key_is_exact(i));
        }));
    }
    std::vector<float> finite_got, finite_want;
    for (std::size_t e = 0; e < expected.size(); ++e)
        if (!std::isnan(expected[e]))
        {
            finite_got.push_back(dirty[e]);
            finite_want.push_back(expected[e]);
        }
    CHECK(max_abs_diff(finite_got, finite_want) <= tolerance(finite_want));
}

TEMPLATE_LIST_TEST_CASE("unchecked +Inf in a key seen with positive queries: NaN from its position on", "[numerics][nonfinite]", tested_archs)
{
    std::size_t const prompt = GENERATE(std::size_t(24), std::size_t(5));
    poisoned p;
    std::size_t const bad_pos = 11, bad_channel = 5;
    for (std::size_t i = 0; i < p.n; ++i)
        for (std::size_t h = 0; h < p.q_heads; ++h)
        {
            float& x = element(p.dirty.q, p.q_heads, p.d, i, h, bad_channel);
            x = std::fabs(x) + 0.125f;  // q[c] > 0: q·k_j = +inf wherever key j counts
        }
    p.clean.q = p.dirty.q;
    element(p.dirty.k, p.kv_heads, p.d, bad_pos, 0, bad_channel) = infinity;
    INFO(arch_name<TestType>() << " prompt " << prompt);
    auto const clean = run_layer<TestType>(p.clean, p.options, p.policy, prompt);
    auto const dirty = run_layer<TestType>(p.dirty, p.options, p.policy, prompt);
    auto const expected = oracle_hybrid(p.dirty, p.options, p.policy);
    CHECK(all_elements(p.clean, [&](std::size_t i, std::size_t h, std::size_t, std::size_t e) {
        if (h / p.group != 0)
            return bits_equal(dirty[e], clean[e]);
        if (i < bad_pos)
            return bits_equal(dirty[e], clean[e]);
        return std::isnan(dirty[e]) && std::isnan(expected[e]);
    }));
}

// ---- determinism --------------------------------------------------------------------

namespace
{
    attention_case determinism_case(std::uint64_t seed)
    {
        attention_case c;
        c.positions = 56;
        c.q_heads = 4;
        c.kv_heads = 2;
        c.dim = 40;
        c.options.sinks = 2;
        c.options.window = 7;
        c.options.keyframe_interval = 16;
        c.policy = relative_threshold{0.3f};
        c.seed = seed;
        return c;
    }
}  // namespace

TEMPLATE_LIST_TEST_CASE("the same inputs give the same bits across runs and independent caches", "[numerics][determinism]", tested_archs)
{
    attention_case const c = determinism_case(3);
    auto const in = c.inputs();
    INFO(arch_name<TestType>());
    auto const first = run_layer<TestType>(in, c.options, c.policy, 20);
    for (int run = 0; run < 3; ++run)
        CHECK(same_bits(run_layer<TestType>(in, c.options, c.policy, 20), first));

    std::vector<float> once, again;
    hybrid_attention<TestType>(in.q_view(), in.k_view(), in.v_view(), in.make_output(once), c.options, c.policy);
    hybrid_attention<TestType>(in.q_view(), in.k_view(), in.v_view(), in.make_output(again), c.options, c.policy);
    CHECK(same_bits(once, again));
    CHECK(same_bits(run_dense<TestType>(in), run_dense<TestType>(in)));

    // Two caches stepped alternately share no state: each gives the bits it gives alone.
    std::vector<float> a_out, b_out;
    auto const a_view = in.make_output(a_out), b_view = in.make_output(b_out);
    layer_key_cache a(c.kv_heads, c.dim, c.positions, c.options, c.policy), b(c.kv_heads, c.dim, c.positions, c.options, c.policy);
    for (std::size_t i = 0; i < c.positions; ++i)
        for (auto* pair : {&a, &b})
            pair->template decode<TestType>(in.q_view().slice_positions(i, 1), in.k_view().slice_positions(i, 1), in.v_view().slice_positions(0, i + 1),
                                   (pair == &a ? a_view : b_view).slice_positions(i, 1));
    auto const alone = run_layer<TestType>(in, c.options, c.policy, 0);
    CHECK(same_bits(a_out, alone));
    CHECK(same_bits(b_out, alone));
}

// docs/guarantees.md, "Thread safety": distinct caches may be used from different threads at once.
// Each thread owns its caches (half of them with a thread_pool of their own too) and
// reads the shared inputs; every result must be the sequential run's, bit for bit.
TEMPLATE_LIST_TEST_CASE("independent caches on concurrent threads give the sequential bits", "[numerics][determinism][threads]", tested_archs)
{
    std::size_t const threads = 4;
    std::vector<attention_case> cases;
    std::vector<qkv_data> inputs;
    for (std::size_t t = 0; t < threads; ++t)
    {
        cases.push_back(determinism_case(t % 2 + 1));  // threads 0, 2 and 1, 3 share their inputs
        inputs.push_back(cases.back().inputs());
    }
    std::vector<std::vector<float>> sequential_hybrid(threads), sequential_dense(threads);
    for (std::size_t t = 0; t < threads; ++t)
    {
        sequential_hybrid[t] = run_layer<TestType>(inputs[t % 2], cases[t].options, cases[t].policy, 16);
        sequential_dense[t] = run_dense<TestType>(inputs[t % 2]);
    }

    std::vector<std::vector<float>> hybrid(threads), dense(threads);
    std::atomic<std::size_t> ready{0};
    std::vector<std::thread> pool;
    for (std::size_t t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            ready.fetch_add(1);
            while (ready.load() < threads)  // start together, to overlap as much as possible
                std::this_thread::yield();
            qkv_data const& in = inputs[t % 2];
            if (t % 2 == 0)
            {
                thread_pool own(2);
                parallel_executor const executor = own.executor();
                hybrid[t] = run_layer<TestType>(in, cases[t].options, cases[t].policy, 16, nullptr, &executor);
            }
            else
                hybrid[t] = run_layer<TestType>(in, cases[t].options, cases[t].policy, 16);
            dense[t] = run_dense<TestType>(in);
        });
    for (auto& thread : pool)
        thread.join();
    for (std::size_t t = 0; t < threads; ++t)
    {
        INFO(arch_name<TestType>() << " thread " << t);
        CHECK(same_bits(hybrid[t], sequential_hybrid[t]));
        CHECK(same_bits(dense[t], sequential_dense[t]));
    }
}
