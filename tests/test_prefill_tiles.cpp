// The prefill kernel's register blocks and tiles against the oracle (SPEC.md §9) at the
// sizes where they split: sequence lengths either side of the key tile (64), its half and
// multiples, the score micro-kernel's key blocks (4 or 8 keys: short last blocks), the
// query blocks (a few positions x the heads of a KV group), head dims that leave a tail
// of channels (80, 96 on AVX-512), every GQA ratio; dense, and hybrid with delta keys
// and values (far value rows rebuilt per tile), with fp32 and binary16 K/V.
#include "catch.hpp"
#include "tester.hpp"

using namespace deltaattn_test;

namespace
{
    // (Under qemu, tested_archs is the NEON path alone, and the sizes a sample.)
    constexpr bool sampled = emulated_build;

    attention_case tile_case(std::size_t positions, std::size_t dim, std::size_t group)
    {
        attention_case c;
        c.positions = positions;
        c.dim = dim;
        c.kv_heads = 1;
        c.q_heads = group;
        c.kind = positions % 2 ? input_kind::white_noise : input_kind::llm_like;
        c.seed = positions * 1000 + dim * 10 + group;
        return c;
    }

}  // namespace

TEMPLATE_LIST_TEST_CASE("dense prefill matches the oracle at every length up to 70", "[dense][tiles]", tested_archs)
{
    // (7: Qwen2.5-7B's ratio, blocks whose lanes fill no whole register)
    std::size_t const group = GENERATE(1, 4, 7);
    for (std::size_t positions = 1; positions <= 70; ++positions)
    {
        auto const c = tile_case(positions, 64, group);
        INFO(arch_name<TestType>() << " " << c.describe());
        auto const in = c.inputs();
        auto const expected = oracle_dense(in);
        CHECK(max_abs_diff(run_dense<TestType>(in), expected) <= tolerance(expected));
    }
}

TEMPLATE_LIST_TEST_CASE("dense prefill matches the oracle around the tile edges at 128 and 256", "[dense][tiles]", tested_archs)
{
    std::size_t const positions = GENERATE(127, 128, 129, 255, 256, 257);
    std::size_t const dim = GENERATE(32, 64, 80, 96, 128, 256);
    if (sampled && (positions % 2 == 0 || dim % 32 != 0 || dim > 128))
        return;
    // Every GQA ratio meets every length and every dim, though not every pair of them
    // (all 144 cases would cost this suite a minute under qemu).
    std::size_t const groups[] = {1, 2, 4, 8};
    std::size_t const group = groups[(positions + dim / 16) % 4];
    auto const c = tile_case(positions, dim, group);
    INFO(arch_name<TestType>() << " " << c.describe());
    auto const in = c.inputs();
    auto const expected = oracle_dense(in);
    CHECK(max_abs_diff(run_dense<TestType>(in), expected) <= tolerance(expected));

    // binary16 K/V: the key blocks and value tiles are widened as they are copied.
    std::vector<float16> const k = to_halves(in.k), v = to_halves(in.v);
    qkv_data widened = in;
    widened.k = rounded_to_half(in.k);
    widened.v = rounded_to_half(in.v);
    auto const expected_half = oracle_dense(widened);
    std::vector<float> out;
    attention_workspace ws;
    dense_attention<TestType>(in.q_view(), make_token_major(k.data(), positions, c.kv_heads, dim), make_token_major(v.data(), positions, c.kv_heads, dim),
                              in.make_output(out), 0.0f, ws);
    CHECK(max_abs_diff(out, expected_half) <= tolerance(expected_half));
}

TEMPLATE_LIST_TEST_CASE("hybrid prefill with delta keys and values matches the oracle around the tile edges", "[hybrid][tiles]", tested_archs)
{
    std::size_t const positions = GENERATE(31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257);
    std::size_t const dim = GENERATE(32, 80, 128);
    std::size_t const group = GENERATE(1, 4);
    std::size_t const window = GENERATE(1, 40);
    if (sampled && (positions % 2 == 0 || window == 1 || dim == 128))
        return;
    auto c = tile_case(positions, dim, group);
    c.options.sinks = 4;
    c.options.window = window;
    c.options.keyframe_interval = positions % 2 ? 32 : 0;
    c.policy = relative_threshold{0.3f};
    delta_policy const value_policy = target_sparsity{0.6f};
    INFO(arch_name<TestType>() << " " << c.describe());
    auto const in = c.inputs();
    std::vector<float> expected, out;
    reference::hybrid_attention(in.q_view(), in.k_view(), in.v_view(), in.make_output(expected), c.options, c.policy, value_policy);
    hybrid_attention<TestType>(in.q_view(), in.k_view(), in.v_view(), in.make_output(out), c.options, c.policy, value_policy);
    CHECK(max_abs_diff(out, expected) <= tolerance(expected));
}
