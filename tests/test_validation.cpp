// Bad input (SPEC.md §8): every rejected case throws std::invalid_argument naming the
// argument, and nothing is written.
#include "catch.hpp"
#include "tester.hpp"

#include <functional>
#include <limits>

using namespace deltaattn_test;

namespace
{
    constexpr float sentinel = 12345.0f;
    float const not_a_number = std::numeric_limits<float>::quiet_NaN();
    float const infinity = std::numeric_limits<float>::infinity();

    struct problem
    {
        attention_case c;
        qkv_data in;
        std::vector<float> out;

        explicit problem(attention_case const& cs) : c(cs), in(cs.inputs()), out(in.q.size(), sentinel) {}

        tensor_view<float> out_view() { return make_token_major(out.data(), c.positions, c.q_heads, c.dim); }
        bool untouched() const
        {
            return std::all_of(out.begin(), out.end(), [](float x) { return x == sentinel; });
        }
    };

    attention_case small_case()
    {
        attention_case c;
        c.positions = 20;
        c.q_heads = 4;
        c.kv_heads = 2;
        c.dim = 32;
        c.options.window = 4;
        return c;
    }

    /// The message names `argument` as deltaattn's errors do: "deltaattn: <argument>: ...".
    std::string named(char const* argument) { return std::string("deltaattn: ") + argument + ":"; }
}  // namespace

TEST_CASE("bad options and policies are rejected by name", "[validation]")
{
    struct bad
    {
        hybrid_options options;
        delta_policy policy;
        char const* argument;
    };
    hybrid_options no_window;
    no_window.window = 0;
    hybrid_options no_sinks;
    no_sinks.sinks = 0;
    hybrid_options nan_scale;
    nan_scale.scale = not_a_number;
    bad const cases[] = {
        {no_window, fixed_threshold{0.1f}, "window"},
        {no_sinks, fixed_threshold{0.1f}, "sinks"},
        {nan_scale, fixed_threshold{0.1f}, "scale"},
        {hybrid_options{}, fixed_threshold{-0.1f}, "theta"},
        {hybrid_options{}, fixed_threshold{not_a_number}, "theta"},
        {hybrid_options{}, fixed_threshold{infinity}, "theta"},
        {hybrid_options{}, relative_threshold{-1.0f}, "ratio"},
        {hybrid_options{}, relative_threshold{not_a_number}, "ratio"},
        {hybrid_options{}, target_sparsity{1.0f}, "sparsity"},
        {hybrid_options{}, target_sparsity{-0.01f}, "sparsity"},
        {hybrid_options{}, target_sparsity{not_a_number}, "sparsity"},
        {hybrid_options{}, block_threshold{2, 0.1f}, "group"},
        {hybrid_options{}, block_threshold{32, 0.1f}, "group"},
        {hybrid_options{}, block_threshold{8, -0.5f}, "theta"},
        {hybrid_options{}, block_threshold{8, not_a_number}, "theta"},
    };
    for (bad const& b : cases)
    {
        INFO(b.argument << " " << describe(b.policy));
        attention_case c = small_case();
        c.options = b.options;
        c.policy = b.policy;
        problem p(c);
        CHECK_THROWS_AS(hybrid_attention(p.in.q_view(), p.in.k_view(), p.in.v_view(), p.out_view(), c.options, c.policy), std::invalid_argument);
        CHECK_THROWS_WITH(hybrid_attention(p.in.q_view(), p.in.k_view(), p.in.v_view(), p.out_view(), c.options, c.policy), contains(named(b.argument)));
        CHECK_THROWS_WITH(delta_key_cache(c.dim, 8, c.options, c.policy), contains(named(b.argument)));
        CHECK_THROWS_WITH(layer_key_cache(c.kv_heads, c.dim, 8, c.options, c.policy), contains(named(b.argument)));
        CHECK(p.untouched());
    }
}

TEST_CASE("block groups must divide the head dimension", "[validation]")
{
    CHECK_THROWS_WITH(delta_key_cache(36, 8, hybrid_options{}, block_threshold{8, 0.1f}), contains(named("group")) && contains("divide"));
    CHECK_NOTHROW(delta_key_cache(36, 8, hybrid_options{}, block_threshold{4, 0.1f}));
}

TEST_CASE("policy names parse to the policy describe() names, with its own parameter", "[validation]")
{
    policy_parameters const p{0.25f, 0.5f, 0.75f, 16};
    for (char const* name : {"fixed", "relative", "target", "block"})
    {
        delta_policy const policy = policy_from_name(name, p);
        INFO(name);
        CHECK(describe(policy).rfind(name, 0) == 0);
    }
    CHECK(std::get<fixed_threshold>(policy_from_name("fixed", p)).theta == 0.25f);
    CHECK(std::get<relative_threshold>(policy_from_name("relative", p)).ratio == 0.5f);
    CHECK(std::get<target_sparsity>(policy_from_name("target", p)).sparsity == 0.75f);
    CHECK(std::get<block_threshold>(policy_from_name("block", p)).group == 16);
    CHECK_THROWS_WITH(policy_from_name("Fixed", p), contains(named("policy")) && contains("got Fixed"));
}

TEST_CASE("a zero head dimension is rejected", "[validation]")
{
    CHECK_THROWS_WITH(delta_key_cache(0, 8, hybrid_options{}, fixed_threshold{0.1f}), contains(named("dim")));
    std::vector<float> buffer(16, sentinel);
    auto const q = make_token_major<const float>(buffer.data(), 2, 2, 0);
    auto const out = make_token_major(buffer.data(), 2, 2, 0);
    CHECK_THROWS_WITH(dense_attention(q, q, q, out), contains(named("dim")));
    CHECK_THROWS_WITH(hybrid_attention(q, q, q, out, hybrid_options{}, fixed_threshold{0.1f}), contains(named("dim")));
}

TEST_CASE("mismatched shapes and head counts are rejected by name", "[validation]")
{
    problem p(small_case());
    auto const& c = p.c;
    auto const q = p.in.q_view();
    auto const k = p.in.k_view();
    auto const v = p.in.v_view();
    auto const out = p.out_view();
    auto const hybrid = [&](tensor_view<const float> qq, tensor_view<const float> kk, tensor_view<const float> vv, tensor_view<float> oo) {
        hybrid_attention(qq, kk, vv, oo, c.options, c.policy);
    };
    auto const dense = [&](tensor_view<const float> qq, tensor_view<const float> kk, tensor_view<const float> vv, tensor_view<float> oo) {
        dense_attention(qq, kk, vv, oo);
    };

    auto k_narrow = k;
    k_narrow.dim = c.dim - 1;
    auto v_narrow = v;
    v_narrow.dim = c.dim - 1;
    auto q_odd_heads = q;
    q_odd_heads.heads = 3;  // 3 % 2 != 0
    auto out_odd_heads = out;
    out_odd_heads.heads = 3;
    auto v_heads = v;
    v_heads.heads = 1;
    auto v_short = v;
    v_short.positions = c.positions - 1;
    auto q_long = q;
    q_long.positions = c.positions + 1;
    auto out_short = out;
    out_short.positions = c.positions - 1;

    for (auto const& run : {std::function<void(tensor_view<const float>, tensor_view<const float>, tensor_view<const float>, tensor_view<float>)>(hybrid),
                            std::function<void(tensor_view<const float>, tensor_view<const float>, tensor_view<const float>, tensor_view<float>)>(dense)})
    {
        CHECK_THROWS_WITH(run(q, k_narrow, v, out), contains(named("k")));
        CHECK_THROWS_WITH(run(q, k, v_narrow, out), contains(named("v")));
        CHECK_THROWS_WITH(run(q_odd_heads, k, v, out_odd_heads), contains(named("heads")));
        CHECK_THROWS_WITH(run(q, k, v_heads, out), contains(named("v")));
        CHECK_THROWS_WITH(run(q, k, v_short, out), contains(named("v")));
        CHECK_THROWS_WITH(run(q_long, k, v, out), contains(named("q")));
        CHECK_THROWS_WITH(run(q, k, v, out_short), contains(named("out")));
    }
    CHECK(p.untouched());
}

TEST_CASE("non-finite inputs are rejected when checking is on", "[validation]")
{
    char const* const argument = GENERATE("q", "k", "v");
    int const which = GENERATE(0, 1, 2);
    float const bad = which == 0 ? not_a_number : which == 1 ? infinity : -infinity;
    attention_case c = small_case();
    c.options.check_finite = true;
    problem p(c);
    std::vector<float>& target = std::string(argument) == "q" ? p.in.q : std::string(argument) == "k" ? p.in.k : p.in.v;
    target[target.size() / 2 + 3] = bad;
    INFO(argument << " holds " << bad);
    CHECK_THROWS_WITH(hybrid_attention(p.in.q_view(), p.in.k_view(), p.in.v_view(), p.out_view(), c.options, c.policy),
                      contains(named(argument)) && contains("non-finite"));
    CHECK(p.untouched());

    // Layer caches check each chunk the same way, and a rejected chunk leaves them as they were.
    layer_key_cache cache(c.kv_heads, c.dim, c.positions, c.options, c.policy);
    CHECK_THROWS_WITH(cache.prefill(p.in.q_view(), p.in.k_view(), p.in.v_view(), p.out_view()), contains(named(argument)));
    CHECK(cache.size() == 0);
    CHECK(p.untouched());
}

TEST_CASE("a decode step past the capacity is rejected and changes nothing", "[validation]")
{
    attention_case c = small_case();
    problem p(c);
    std::size_t const capacity = c.positions - 1;
    layer_key_cache cache(c.kv_heads, c.dim, capacity, c.options, c.policy);
    cache.prefill(p.in.q_view().slice_positions(0, capacity), p.in.k_view().slice_positions(0, capacity),
                  p.in.v_view().slice_positions(0, capacity), p.out_view().slice_positions(0, capacity));
    std::vector<float> const filled = p.out;
    std::size_t const bytes = cache.bytes();
    CHECK_THROWS_WITH(cache.decode(p.in.q_view().slice_positions(capacity, 1), p.in.k_view().slice_positions(capacity, 1), p.in.v_view(),
                                   p.out_view().slice_positions(capacity, 1)),
                      contains(named("k")) && contains("overflows"));
    CHECK(cache.size() == capacity);
    CHECK(cache.bytes() == bytes);
    CHECK(p.out == filled);
}

TEST_CASE("decode arguments are checked against the cache", "[validation]")
{
    attention_case c = small_case();
    problem p(c);
    delta_key_cache cache(c.dim, c.positions, c.options, c.policy);
    attention_workspace ws;
    std::vector<float> q(2 * c.dim, 1.0f), out(2 * c.dim, sentinel);
    auto const q_view = make_matrix_view<const float>(q.data(), 2, c.dim);
    auto const out_view = make_matrix_view(out.data(), 2, c.dim);
    auto const values = p.in.v_view().head(0);
    CHECK_THROWS_WITH(hybrid_decode(cache, q_view, values, out_view, ws), contains(named("cache")) && contains("empty"));
    cache.append(p.in.k_view().head(0).row(0));
    CHECK_THROWS_WITH(hybrid_decode(cache, make_matrix_view<const float>(q.data(), 2, c.dim - 1), values, out_view, ws), contains(named("q")));
    CHECK_THROWS_WITH(hybrid_decode(cache, q_view, values.slice_rows(0, 0), out_view, ws), contains(named("v")));
    CHECK_THROWS_WITH(hybrid_decode(cache, q_view, values, make_matrix_view(out.data(), 1, c.dim), ws), contains(named("out")));
    CHECK(std::all_of(out.begin(), out.end(), [](float x) { return x == sentinel; }));
    CHECK_NOTHROW(hybrid_decode(cache, q_view, values, out_view, ws));
}
