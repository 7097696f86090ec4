// The oracle's own properties (SPEC.md §2, §3): what makes it worth trusting as the
// reference every kernel is held to.
#include "catch.hpp"
#include "tester.hpp"

using namespace deltaattn_test;

namespace
{
    matrix_view<const float> one_head_keys(qkv_data const& in) { return in.k_view().head(0); }

    attention_case one_head(std::size_t positions, std::size_t dim)
    {
        attention_case c;
        c.positions = positions;
        c.dim = dim;
        c.q_heads = 1;
        c.kv_heads = 1;
        return c;
    }
}  // namespace

TEST_CASE("oracle: every reference element stays within its threshold of the key", "[reference]")
{
    delta_policy const policy = GENERATE(as<delta_policy>{}, fixed_threshold{0.05f}, fixed_threshold{0.5f}, relative_threshold{0.3f},
                                         block_threshold{8, 0.2f}, block_threshold{16, 1.0f});
    auto const in = one_head(200, 64).inputs();
    auto const keys = one_head_keys(in);
    auto const rows = reference::build_delta_rows(keys, policy);
    INFO(describe(policy));
    float worst = 0.0f;
    for (std::size_t j = 0; j < rows.rows; ++j)
        for (std::size_t c = 0; c < rows.dim; ++c)
            worst = std::max(worst, std::fabs(rows.reference_row(j)[c] - keys.row(j)[c]) - rows.theta[j]);
    CHECK(worst <= 0.0f);
}

TEST_CASE("oracle: the reference is the running sum of the deltas", "[reference]")
{
    auto const in = one_head(150, 32).inputs();
    auto const rows = reference::build_delta_rows(one_head_keys(in), relative_threshold{0.4f});
    std::vector<double> sum(rows.dim, 0.0);
    double worst = 0.0;
    for (std::size_t j = 0; j < rows.rows; ++j)
        for (std::size_t c = 0; c < rows.dim; ++c)
        {
            sum[c] += rows.delta_row(j)[c];
            worst = std::max(worst, std::fabs(sum[c] - rows.reference_row(j)[c]));
        }
    CHECK(worst < 1e-4);  // fp32 differences re-added in double: rounding only
}

TEST_CASE("oracle: theta 0 keeps the keys exactly", "[reference]")
{
    auto const in = one_head(80, 48).inputs();
    auto const keys = one_head_keys(in);
    auto const rows = reference::build_delta_rows(keys, fixed_threshold{0.0f});
    bool exact = true;
    for (std::size_t j = 0; j < rows.rows; ++j)
        exact = exact && std::equal(keys.row(j), keys.row(j) + rows.dim, rows.reference_row(j));
    CHECK(exact);
}

TEST_CASE("oracle: target sparsity keeps the largest changes, ties to the lower channel", "[reference]")
{
    // Row 1 changes by |e| = 3, 1, 3, 2, 1, 2 (channels 0..5) against row 0 = 0.
    std::vector<float> k = {0, 0, 0, 0, 0, 0, 3, -1, -3, 2, 1, -2};
    auto const keys = make_matrix_view<const float>(k.data(), 2, 6);
    auto const half = reference::build_delta_rows(keys, target_sparsity{0.5f});  // keep 3
    std::vector<unsigned char> const want_half = {1, 0, 1, 1, 0, 0};             // 3, 3, then the first 2
    CHECK(std::equal(want_half.begin(), want_half.end(), half.updated_row(1)));
    auto const most = reference::build_delta_rows(keys, target_sparsity{1.0f / 6.0f});  // keep 5
    std::vector<unsigned char> const want_most = {1, 1, 1, 1, 0, 1};                     // 3, 3, 2, 2, first 1
    CHECK(std::equal(want_most.begin(), want_most.end(), most.updated_row(1)));
}

TEST_CASE("oracle: dense attention on a case computed by hand", "[reference]")
{
    // d = 1, two positions: q_1 = 2, k = (0, 1), v = (1, 3), scale 1.
    // Row 1 scores (0, 2): p = (1, e^2) / (1 + e^2), o = (1 + 3 e^2) / (1 + e^2).
    std::vector<float> q = {5, 2}, k = {0, 1}, v = {1, 3}, out(2);
    auto const t = [](std::vector<float>& x) { return make_token_major<const float>(x.data(), 2, 1, 1); };
    reference::dense_attention(t(q), t(k), t(v), make_token_major(out.data(), 2, 1, 1), 1.0f);
    double const e2 = std::exp(2.0);
    CHECK(out[0] == 1.0f);  // position 0 sees only itself
    CHECK(out[1] == Approx((1 + 3 * e2) / (1 + e2)).epsilon(1e-7));
}

TEST_CASE("oracle: softmax survives scores of 1e4", "[reference][numerics]")
{
    // Scores 1e4 and 1e4 - 1: without the max subtracted, exp overflows.
    std::vector<float> q = {1, 1e4f}, k = {1, 1 - 1e-4f}, v = {0, 1}, out(2);
    auto const t = [](std::vector<float>& x) { return make_token_major<const float>(x.data(), 2, 1, 1); };
    reference::dense_attention(t(q), t(k), t(v), make_token_major(out.data(), 2, 1, 1), 1.0f);
    double const p1 = 1.0 / (1.0 + std::exp(1e4 * static_cast<double>(k[1]) - 1e4));  // weight of v_0
    CHECK(std::isfinite(out[1]));
    CHECK(out[1] == Approx(1.0 - p1).margin(1e-3));
}

TEST_CASE("oracle: hybrid scores obey the SPEC section 3 bound", "[reference][bound]")
{
    delta_policy const policy = GENERATE(as<delta_policy>{}, fixed_threshold{0.2f}, relative_threshold{0.5f}, block_threshold{4, 0.3f});
    attention_case c = one_head(160, 64);
    c.options.sinks = 2;
    c.options.window = 8;
    auto const in = c.inputs();
    auto const keys = one_head_keys(in);
    auto const rows = reference::build_delta_rows(keys, policy);
    INFO(describe(policy));
    std::size_t delta_cells = 0;
    double slack = std::numeric_limits<double>::infinity();
    for (std::size_t i = 0; i < c.positions; ++i)
    {
        float const* q = in.q_view().at(i, 0);
        auto const exact = reference::dense_scores(q, i, keys, 0.0f);
        auto const approx = reference::hybrid_scores(q, i, keys, rows, c.options);
        for (std::size_t j = 0; j <= i; ++j)
        {
            double const err = std::fabs(approx[j] - exact[j]);
            bool const delta = j >= c.options.sinks && j + c.options.window <= i;
            if (!delta)
            {
                REQUIRE(err == 0.0);  // exact cells use the key itself
                continue;
            }
            ++delta_cells;
            slack = std::min(slack, reference::score_bound(q, c.dim, j, rows, 0.0f) - err);
        }
    }
    CHECK(delta_cells > 1000);
    CHECK(slack >= -1e-9);
}

TEST_CASE("oracle: analytic counts on a hand-made case", "[reference][counters]")
{
    // d = 4, 12 positions, sinks 1, window 2, keyframes every 4 (at 4 and 8).
    std::vector<float> k(12 * 4, 0.0f);
    for (std::size_t j = 1; j < 12; ++j)
        k[j * 4 + (j % 4)] = static_cast<float>(j);  // one channel changes per row
    auto const rows = reference::build_delta_rows(make_matrix_view<const float>(k.data(), 12, 4), fixed_threshold{0.5f});
    hybrid_options o;
    o.sinks = 1;
    o.window = 2;
    o.keyframe_interval = 4;
    // Row 1 leaves the all-zero row 0 in one channel; from row 2 on, the previous
    // row's channel also returns to 0: two updates.
    for (std::size_t j = 1; j < 12; ++j)
        REQUIRE(rows.updated_count(j) == (j == 1 ? 1u : 2u));
    // Query 9: exact {0, 8, 9}; delta rows 1 (1), 2, 3 (2 each), keyframe 4 (d), 5, 6, 7 (2 each).
    CHECK(reference::hybrid_qk_macs(9, rows, o) == 3 * 4 + 1 + 2 + 2 + 4 + 2 + 2 + 2);
    CHECK(reference::hybrid_qk_macs(2, rows, o) == reference::dense_qk_macs(2, 4));  // D empty
    // Three sinks: exact {0, 1, 2, 8, 9}; delta rows 3, 4, 5, 7 (2 each), keyframe 6 (d); base row k̂_2 (d).
    o.sinks = 3;
    CHECK(reference::hybrid_qk_macs(9, rows, o) == 5 * 4 + 2 + 2 + 2 + 4 + 2 + 4);
}
