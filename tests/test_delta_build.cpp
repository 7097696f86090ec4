// Delta construction (SPEC.md §2, §5) and the delta K cache (§7) against the oracle.
#include "catch.hpp"
#include "tester.hpp"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

using namespace deltaattn_test;

namespace
{
    /// Expands compressed row j of a cache to a dense delta row and an update mask.
    void expand(delta_key_cache const& cache, std::size_t j, std::vector<float>& delta, std::vector<unsigned char>& updated)
    {
        std::size_t const d = cache.dim();
        delta.assign(d, 0.0f);
        updated.assign(d, 0);
        delta_row const row = cache.delta(j);
        std::size_t k = 0;
        for (std::size_t c = 0; c < d; ++c)
            if (row.mask[c / 64] >> (c % 64) & 1u)
            {
                updated[c] = 1;
                delta[c] = row.values[k++];
            }
        CHECK(k == row.nnz);
    }

    bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }
}  // namespace

TEST_CASE("compressed delta rows are bit-exact with the oracle", "[delta]")
{
    std::size_t const dim = GENERATE(1, 3, 32, 64, 80, 96, 128, 256);
    delta_policy const policy = GENERATE(as<delta_policy>{}, fixed_threshold{0.0f}, fixed_threshold{0.2f}, relative_threshold{0.5f},
                                         target_sparsity{0.0f}, target_sparsity{0.6f}, target_sparsity{0.99f}, block_threshold{4, 0.3f},
                                         block_threshold{8, 0.3f}, block_threshold{16, 0.3f});
    if (auto const* b = std::get_if<block_threshold>(&policy); b && dim % b->group != 0)
        return;  // rejected by validation, tested there
    auto const kind = GENERATE(input_kind::llm_like, input_kind::white_noise);
    attention_case c;
    c.positions = 120;
    c.dim = dim;
    c.kv_heads = 1;
    c.q_heads = 1;
    c.kind = kind;
    INFO(describe(policy) << " d=" << dim);
    // llm-like data needs an even dim for RoPE pairs; odd dims use white noise.
    if (dim % 2)
        c.kind = input_kind::white_noise;
    auto const in = c.inputs();
    auto const keys = in.k_view().head(0);
    auto const want = reference::build_delta_rows(keys, policy);

    delta_key_cache cache(dim, c.positions, hybrid_options{}, policy);
    cache.append(keys);
    REQUIRE(cache.size() == c.positions);

    std::vector<float> delta;
    std::vector<unsigned char> updated;
    bool exact = true;
    for (std::size_t j = 0; j < c.positions; ++j)
    {
        expand(cache, j, delta, updated);
        for (std::size_t ch = 0; ch < dim; ++ch)
            exact = exact && updated[ch] == want.updated_row(j)[ch] && same_bits(delta[ch], want.delta_row(j)[ch]);
    }
    CHECK(exact);
    // The running reference is the oracle's last reference row, bit for bit.
    CHECK(std::memcmp(cache.reference_row(), want.reference_row(c.positions - 1), dim * sizeof(float)) == 0);
    delta_stats const s = cache.stats(), r = reference::delta_statistics(want);
    CHECK(s.rows == r.rows);
    CHECK(s.updated == r.updated);
}

TEST_CASE("target sparsity gives exactly the requested delta sparsity", "[delta]")
{
    float const rho = GENERATE(0.0f, 0.25f, 0.5f, 0.6f, 0.9f);
    std::size_t const dim = 80;
    attention_case c;
    c.positions = 50;
    c.dim = dim;
    c.kv_heads = 1;
    auto const in = c.inputs();
    delta_key_cache cache(dim, c.positions, hybrid_options{}, target_sparsity{rho});
    cache.append(in.k_view().head(0));
    auto const keep = static_cast<std::size_t>(std::llround((1.0 - static_cast<double>(rho)) * dim));
    for (std::size_t j = 1; j < c.positions; ++j)
        REQUIRE(cache.delta(j).nnz == keep);
    CHECK(cache.stats().updated == keep * (c.positions - 1));
}

TEST_CASE("target sparsity ranks ties and NaNs as the oracle does", "[delta]")
{
    // Keys from a handful of magnitudes, so most rows' cut falls inside a run of equal
    // |e| (ties go to the lower channel), plus NaNs of several payloads and signs (all
    // rank equal, above every number) and infinities. The builder, driven directly (a
    // cache refuses NaN keys), must pick the oracle's channels and deltas bit for bit.
    std::size_t const dim = GENERATE(1, 5, 64, 80, 128);
    float const rho = GENERATE(0.0f, 0.3f, 0.5f, 0.6f, 0.99f);
    std::size_t const n = 40;
    float const quiet = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    float const values[] = {0.0f, -0.0f, 0.5f, -0.5f, 1.0f, -1.0f, 2.0f, quiet, -quiet, std::nanf("7"), inf, -inf};
    std::mt19937 rng(static_cast<unsigned>(dim * 100 + rho * 10));
    std::vector<float> keys(n * dim);
    for (auto& x : keys)
    {
        bool const special = rng() % 8 == 0;  // then NaN or inf in 5 of 12 draws
        x = values[rng() % (special ? 12 : 7)];
    }
    matrix_view<const float> const view{keys.data(), n, dim, static_cast<std::ptrdiff_t>(dim)};
    auto const want = reference::build_delta_rows(view, target_sparsity{rho});

    delta_builder builder(target_sparsity{rho}, dim);
    std::vector<float> reference(dim), packed(dim);
    std::vector<std::uint64_t> mask(detail::mask_words(dim));
    bool exact = true;
    for (std::size_t j = 0; j < n; ++j)
    {
        std::size_t const nnz = j == 0 ? builder.build_first(view.row(j), reference.data(), mask.data(), packed.data())
                                       : builder.build(view.row(j), reference.data(), mask.data(), packed.data());
        exact = exact && nnz == want.updated_count(j);
        for (std::size_t c = 0, k = 0; c < dim; ++c)
        {
            bool const updated = mask[c / 64] >> (c % 64) & 1u;
            exact = exact && updated == (want.updated_row(j)[c] == 1);
            if (updated)
                exact = exact && same_bits(packed[k++], want.delta_row(j)[c]);
        }
    }
    CHECK(exact);
}

TEST_CASE("block policy updates whole groups only", "[delta]")
{
    std::size_t const group = GENERATE(4, 8, 16);
    attention_case c;
    c.positions = 60;
    c.dim = 64;
    c.kv_heads = 1;
    auto const in = c.inputs();
    delta_key_cache cache(c.dim, c.positions, hybrid_options{}, block_threshold{group, 0.4f});
    cache.append(in.k_view().head(0));
    std::vector<float> delta;
    std::vector<unsigned char> updated;
    for (std::size_t j = 1; j < c.positions; ++j)
    {
        expand(cache, j, delta, updated);
        for (std::size_t g0 = 0; g0 < c.dim; g0 += group)
            for (std::size_t ch = g0 + 1; ch < g0 + group; ++ch)
                REQUIRE(updated[ch] == updated[g0]);
    }
}

TEST_CASE("the delta K cache keeps what SPEC section 7 says, and no dense key older than the window", "[cache]")
{
    std::size_t const dim = 64, n = 300;
    hybrid_options o;
    o.sinks = 4;
    o.window = 16;
    o.keyframe_interval = 64;
    attention_case c;
    c.positions = n;
    c.dim = dim;
    c.kv_heads = 1;
    auto const in = c.inputs();
    auto const keys = in.k_view().head(0);
    delta_key_cache cache(dim, n, o, target_sparsity{0.75f});
    cache.append(keys);

    // Dense rows: the sinks and the last `window` positions, exactly.
    for (std::size_t j = 0; j < o.sinks; ++j)
        CHECK(std::memcmp(cache.sink_row(j), keys.row(j), dim * sizeof(float)) == 0);
    for (std::size_t j = n - o.window; j < n; ++j)
        CHECK(std::memcmp(cache.window_row(j), keys.row(j), dim * sizeof(float)) == 0);

    // Keyframes at sinks - 1 + t * R hold the oracle's reference rows.
    auto const want = reference::build_delta_rows(keys, target_sparsity{0.75f});
    CHECK(std::memcmp(cache.base_row(), want.reference_row(o.sinks - 1), dim * sizeof(float)) == 0);
    std::size_t keyframes = 0;
    for (std::size_t j = 0; j < n; ++j)
        if (float const* kf = cache.keyframe_row(j))
        {
            ++keyframes;
            CHECK((j - (o.sinks - 1)) % o.keyframe_interval == 0);
            CHECK(std::memcmp(kf, want.reference_row(j), dim * sizeof(float)) == 0);
        }
    CHECK(keyframes == (n - o.sinks) / o.keyframe_interval);

    // Bytes: dense rows (sinks, ring, keyframes + base, running reference), masks, offsets,
    // values and the padding the expansion kernels may read past the last row.
    std::size_t const nnz = dim + static_cast<std::size_t>(cache.stats().updated) + deltaattn::kernels::expand_padding;
    std::size_t const dense_rows = o.sinks + o.window + (keyframes + 1) + 1;
    std::size_t const expected = 4 * (dense_rows * dim + nnz) + 8 * n * detail::mask_words(dim) + sizeof(std::size_t) * (n + 1);
    CHECK(cache.bytes() == expected);
    // At 75% delta sparsity the cache is well under half of a dense fp32 cache.
    CHECK(cache.bytes_per_token() < 0.5 * 4 * dim);
}

TEST_CASE("a full cache refuses a step and stays unchanged", "[cache]")
{
    std::size_t const dim = 32;
    attention_case c;
    c.positions = 10;
    c.dim = dim;
    c.kv_heads = 1;
    auto const in = c.inputs();
    delta_key_cache cache(dim, 9, hybrid_options{}, fixed_threshold{0.1f});
    cache.append(in.k_view().head(0).slice_rows(0, 9));
    std::vector<float> const before(cache.reference_row(), cache.reference_row() + dim);
    std::size_t const bytes = cache.bytes();
    REQUIRE_THROWS_WITH(cache.append(in.k_view().head(0).row(9)), contains("deltaattn: k:") && contains("full"));
    REQUIRE_THROWS_WITH(cache.append(in.k_view().head(0).slice_rows(0, 1)), contains("k") && contains("overflows"));
    CHECK(cache.size() == 9);
    CHECK(cache.bytes() == bytes);
    CHECK(std::equal(before.begin(), before.end(), cache.reference_row()));
}

TEST_CASE("next_keyframe and previous_keyframe find the rows keyframe_row holds", "[cache]")
{
    for (std::size_t sinks : {1, 4})
        for (std::size_t interval : {0, 1, 3, 16})
        {
            hybrid_options o;
            o.sinks = sinks;
            o.keyframe_interval = interval;
            delta_key_cache const cache(8, 64, o, fixed_threshold{0.1f});
            std::size_t const none = delta_key_cache::no_keyframe, n = 64;
            for (std::size_t j = sinks; j < n; ++j)
            {
                // Written from keyframe_row alone, one row at a time.
                std::size_t next = none, previous = none;
                for (std::size_t i = j; i < n && next == none; ++i)
                    next = cache.keyframe_row(i) ? i : none;
                for (std::size_t i = j + 1; i-- > 0 && previous == none;)
                    previous = cache.keyframe_row(i) ? i : none;
                INFO("sinks " << sinks << ", interval " << interval << ", j " << j);
                if (next != none)
                    CHECK(cache.next_keyframe(j) == next);
                else
                    CHECK((cache.next_keyframe(j) == none || cache.next_keyframe(j) >= n));
                CHECK(cache.previous_keyframe(j) == previous);
            }
        }
}

TEST_CASE("far delta columns hold every stored element of the far rows, by tile, channel and key", "[delta][prefill]")
{
    // The prefill's sparse p·V reads the value cache's delta rows regrouped by tile and
    // channel (kernels/far_columns.hpp): against the oracle's dense delta rows, every
    // stored element once, in its tile and channel, keys ascending; keyframe rows absent.
    std::size_t const dim = GENERATE(32, 80, 128);
    std::size_t const end = GENERATE(5, 40, 97);
    hybrid_options o;
    o.sinks = 3;
    o.keyframe_interval = 20;
    attention_case c;
    c.positions = 100;
    c.dim = dim;
    c.kv_heads = 1;
    auto const in = c.inputs();
    auto const keys = in.k_view().head(0);
    delta_policy const policy = target_sparsity{0.6f};
    delta_key_cache cache(dim, c.positions, o, policy);
    cache.append(keys);
    auto const want = reference::build_delta_rows(keys, policy);
    INFO("d=" << dim << " end=" << end);

    std::size_t const tile = 32;
    deltaattn::kernels::far_delta_columns columns;
    REQUIRE(columns.build(cache, end, tile));
    REQUIRE(columns.tiles() == (end + tile - 1) / tile);
    for (std::size_t t = 0; t < columns.tiles(); ++t)
    {
        std::size_t const j0 = std::max(o.sinks, t * tile), j1 = std::min(end, (t + 1) * tile);
        std::size_t stored = 0, keyframes = 0;
        for (std::size_t c0 = 0; c0 < dim; ++c0)
        {
            // The oracle's stored deltas of channel c0 in the tile's far rows, in key order.
            std::vector<std::pair<std::size_t, float>> expected;
            for (std::size_t j = j0; j < j1; ++j)
                if (!cache.keyframe_row(j) && want.updated_row(j)[c0])
                    expected.emplace_back(j - t * tile, want.delta_row(j)[c0]);
            std::uint32_t const e0 = columns.start(t, c0), e1 = columns.start(t, c0 + 1);
            REQUIRE(e1 - e0 == expected.size());
            for (std::size_t e = 0; e < expected.size(); ++e)
            {
                CHECK(columns.keys()[e0 + e] == expected[e].first);
                CHECK(same_bits(columns.values()[e0 + e], expected[e].second));
            }
            stored += expected.size();
        }
        for (std::size_t j = j0; j < j1; ++j)
            keyframes += cache.keyframe_row(j) ? 1 : 0;
        CHECK(columns.kept(t) == Approx(static_cast<double>(stored + keyframes * dim) / static_cast<double>((j1 - j0) * dim)));
    }
}
