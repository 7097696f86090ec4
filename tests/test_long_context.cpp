// Long contexts: a layer cache grown to 65,536 positions (d = 64, one head group of
// 2 query heads on 1 KV head, fp32 storage, relative threshold), checked against the
// oracle at sampled positions, for its memory (SPEC.md §7) at every position, and
// for refusing a step past its capacity.
//
// Decoding every one of the 65,536 positions costs O(n²) (about 2·10⁹ key visits:
// minutes in Release, far more under ASan), so the cache grows by decode steps at the
// sampled positions (every 4096th, and the last 64 in a row) and by append() between
// them. Both leave the cache in the same state (append_delta + push_exact), and the
// output of a step depends only on that state, so each sampled decode step is exactly
// the one a full decode would compute.
//
// The same for fp16 storage of keys and values (layer_kv_cache_f16), against the
// oracle of fp16 storage (build_delta_rows<float16>, rounded exact rows).
#include "catch.hpp"
#include "tester.hpp"

#include <cstdint>
#include <numeric>

using namespace deltaattn_test;

namespace
{
    constexpr std::size_t long_positions = 65536, long_dim = 64, long_q_heads = 2, long_prompt = 256;

    /// The inputs and the oracle's delta rows, built once for every arch's run.
    struct long_context
    {
        qkv_data in;
        reference::delta_rows rows;
        hybrid_options options;
        delta_policy policy = relative_threshold{0.3f};

        long_context()
        {
            llm_like_options o;
            o.seed = 65536;
            in = make_llm_like(workload_shape{long_positions, long_q_heads, 1, long_dim}, o);
            options.sinks = 4;
            options.window = 64;
            options.keyframe_interval = 256;
            rows = reference::build_delta_rows(in.k_view().head(0), policy);
        }

        static long_context const& get()
        {
            static long_context const instance;
            return instance;
        }
    };

    /// Oracle output of one query row: SPEC.md §3's scores (k for exact keys, k̂ for
    /// delta keys) and the softmax, in double, for just this row (O(i d), not O(n² d)).
    std::vector<float> oracle_row(long_context const& c, std::size_t i, std::size_t head)
    {
        auto const keys = c.in.k_view().head(0), values = c.in.v_view().head(0);
        std::vector<double> const s = reference::hybrid_scores(c.in.q_view().at(i, head), i, keys, c.rows, c.options);
        double const top = *std::max_element(s.begin(), s.end());
        double sum = 0.0;
        std::vector<double> o(long_dim, 0.0);
        for (std::size_t j = 0; j <= i; ++j)
        {
            double const p = std::exp(s[j] - top);
            sum += p;
            for (std::size_t ch = 0; ch < long_dim; ++ch)
                o[ch] += p * static_cast<double>(values.row(j)[ch]);
        }
        std::vector<float> out(long_dim);
        for (std::size_t ch = 0; ch < long_dim; ++ch)
            out[ch] = static_cast<float>(o[ch] / sum);
        return out;
    }

    std::size_t row_growth(hybrid_options const& options, reference::delta_rows const& rows, std::size_t j, std::size_t element);

    /// SPEC.md §7: what one more position may add to a delta K cache once its sinks and
    /// window ring are full: its mask, its row offset, its packed values, and a dense
    /// reference row if it is a keyframe. No dense key. (Element sizes of fp32 storage
    /// with 64-bit mask words and size_t offsets, as delta_key_cache keeps them.)
    std::size_t growth_per_position(long_context const& c, std::size_t j)
    {
        return row_growth(c.options, c.rows, j, sizeof(float));
    }

    /// What row j adds to a delta cache past its sinks and window, with packed values of
    /// `element` bytes (fp32 keyframe rows whatever the storage).
    std::size_t row_growth(hybrid_options const& options, reference::delta_rows const& rows, std::size_t j, std::size_t element)
    {
        std::size_t const mask_bytes = sizeof(std::uint64_t) * ((long_dim + 63) / 64), offset_bytes = sizeof(std::size_t);
        std::size_t const base = options.sinks - 1, R = options.keyframe_interval;
        bool const keyframe = j == base || (R != 0 && j > base && (j - base) % R == 0);
        return mask_bytes + offset_bytes + element * rows.updated_count(j) + (keyframe ? sizeof(float) * long_dim : 0);
    }
}  // namespace

TEMPLATE_LIST_TEST_CASE("a layer cache decodes to 65,536 positions within the oracle's tolerance, growing by deltas only", "[long][hybrid][decode]",
                        tested_archs)
{
    long_context const& c = long_context::get();
    std::size_t const n = long_positions, row = long_q_heads * long_dim;
    layer_key_cache cache(1, long_dim, n, c.options, c.policy);
    std::vector<float> out(n * row, 0.0f);
    auto const out_view = make_token_major(out.data(), n, long_q_heads, long_dim);
    auto const q = c.in.q_view(), k = c.in.k_view(), v = c.in.v_view();
    INFO(arch_name<TestType>());

    attention_stats stats;
    cache.prefill<TestType>(q.slice_positions(0, long_prompt), k.slice_positions(0, long_prompt), v.slice_positions(0, long_prompt),
                            out_view.slice_positions(0, long_prompt), &stats);

    std::vector<std::size_t> decoded;
    std::size_t bad_growth = 0, first_bad = 0;
    std::size_t bytes = cache.bytes();
    for (std::size_t i = long_prompt; i < n; ++i)
    {
        bool const sampled = (i + 1) % 4096 == 0 || i + 64 >= n;
        if (sampled)
        {
            cache.decode<TestType>(q.slice_positions(i, 1), k.slice_positions(i, 1), v.slice_positions(0, i + 1), out_view.slice_positions(i, 1),
                                   &stats);
            decoded.push_back(i);
        }
        else
            cache.append(k.slice_positions(i, 1));
        // Past the sinks and the window, a position adds exactly its compressed delta row.
        std::size_t const now = cache.bytes();
        if (now - bytes != growth_per_position(c, i) && bad_growth++ == 0)
            first_bad = i;
        bytes = now;
    }
    REQUIRE(cache.size() == n);
    INFO("first position whose bytes() growth is not SPEC.md §7's: " << first_bad);
    CHECK(bad_growth == 0);
    std::size_t const dense_fp32 = sizeof(float) * n * long_dim;
    CHECK(cache.bytes() < dense_fp32);
    CHECK(stats.kcache_bytes == cache.bytes());
    CHECK(stats.kcache_dense_bytes == dense_fp32);
    // The decode counters are the analytic counts of the decoded positions.
    attention_work want_decode;
    for (std::size_t i : decoded)
        want_decode += reference::stage_work(i, i, long_q_heads, c.rows, c.options);
    CHECK(stats.decode.hybrid_macs == want_decode.hybrid_macs);
    CHECK(stats.decode.dense_macs == want_decode.dense_macs);

    // Outputs: every prompt row, and every decoded row, against the oracle row by row.
    std::vector<std::size_t> checked(long_prompt);
    std::iota(checked.begin(), checked.end(), std::size_t(0));
    checked.insert(checked.end(), decoded.begin(), decoded.end());
    float worst = 0.0f;
    std::size_t worst_at = 0, failures = 0;
    for (std::size_t i : checked)
        for (std::size_t h = 0; h < long_q_heads; ++h)
        {
            std::vector<float> const want = oracle_row(c, i, h);
            std::vector<float> const got(out_view.at(i, h), out_view.at(i, h) + long_dim);
            float const error = max_abs_diff(got, want);
            if (error > worst)
            {
                worst = error;
                worst_at = i;
            }
            failures += error > tolerance(want) ? 1 : 0;
        }
    INFO("worst |Δo| " << worst << " at position " << worst_at << " over " << checked.size() << " positions");
    CHECK(failures == 0);

    // One step past the capacity: refused by name, nothing written, nothing appended.
    std::vector<float> spare(row, 7.0f);
    std::vector<float> v_more(c.in.v);
    v_more.insert(v_more.end(), v.at(0, 0), v.at(0, 0) + long_dim);
    std::size_t const full_bytes = cache.bytes();
    CHECK_THROWS_WITH(cache.decode<TestType>(q.slice_positions(n - 1, 1), k.slice_positions(n - 1, 1),
                                             make_token_major<const float>(v_more.data(), n + 1, 1, long_dim),
                                             make_token_major(spare.data(), 1, long_q_heads, long_dim)),
                      contains("deltaattn: k:") && contains("capacity"));
    CHECK(cache.size() == n);
    CHECK(cache.bytes() == full_bytes);
    CHECK(std::all_of(spare.begin(), spare.end(), [](float x) { return x == 7.0f; }));
}

TEMPLATE_LIST_TEST_CASE("an fp16 K+V layer cache decodes to 65,536 positions within the fp16 oracle's tolerance, growing by deltas only",
                        "[long][fp16][decode]", tested_archs)
{
    long_context const& c = long_context::get();
    std::size_t const n = long_positions;
    delta_policy const value_policy = relative_threshold{0.3f};
    auto const q = c.in.q_view(), k = c.in.k_view(), v = c.in.v_view();
    reference::delta_rows const key_rows = reference::build_delta_rows<float16>(k.head(0), c.policy);
    reference::delta_rows const value_rows = reference::build_delta_rows<float16>(v.head(0), value_policy);
    std::vector<float> const stored_keys = rounded_to_half(c.in.k), stored_values = rounded_to_half(c.in.v);
    layer_kv_cache_f16 cache(1, long_dim, n, c.options, c.policy, value_policy);
    std::vector<float> out(long_q_heads * long_dim);
    auto const out_view = make_token_major(out.data(), 1, long_q_heads, long_dim);
    INFO(arch_name<TestType>());

    std::vector<float> prompt_out(long_prompt * long_q_heads * long_dim);  // prefill is checked elsewhere
    cache.prefill<TestType>(q.slice_positions(0, long_prompt), k.slice_positions(0, long_prompt), v.slice_positions(0, long_prompt),
                            make_token_major(prompt_out.data(), long_prompt, long_q_heads, long_dim));
    std::size_t bad_growth = 0, first_bad = 0, failures = 0, decoded = 0;
    float worst = 0.0f;
    std::size_t bytes = cache.bytes();
    for (std::size_t i = long_prompt; i < n; ++i)
    {
        if ((i + 1) % 4096 == 0 || i + 16 >= n)
        {
            cache.decode<TestType>(q.slice_positions(i, 1), k.slice_positions(i, 1), v.slice_positions(i, 1), out_view);
            ++decoded;
            for (std::size_t h = 0; h < long_q_heads; ++h)
            {
                // The oracle row: exact keys/values as binary16 holds them, k̂ and v̂ of fp16 storage.
                std::vector<double> s(i + 1);
                double const alpha = 1.0 / std::sqrt(static_cast<double>(long_dim));
                for (std::size_t j = 0; j <= i; ++j)
                {
                    bool const exact = j < c.options.sinks || j + c.options.window > i;
                    s[j] = alpha * reference::dot(q.at(i, h), exact ? stored_keys.data() + j * long_dim : key_rows.reference_row(j), long_dim);
                }
                double const top = *std::max_element(s.begin(), s.end());
                double sum = 0.0;
                std::vector<double> o(long_dim, 0.0);
                for (std::size_t j = 0; j <= i; ++j)
                {
                    bool const exact = j < c.options.sinks || j + c.options.window > i;
                    float const* value = exact ? stored_values.data() + j * long_dim : value_rows.reference_row(j);
                    double const p = std::exp(s[j] - top);
                    sum += p;
                    for (std::size_t ch = 0; ch < long_dim; ++ch)
                        o[ch] += p * static_cast<double>(value[ch]);
                }
                std::vector<float> want(long_dim);
                for (std::size_t ch = 0; ch < long_dim; ++ch)
                    want[ch] = static_cast<float>(o[ch] / sum);
                std::vector<float> const got(out_view.at(0, h), out_view.at(0, h) + long_dim);
                float const error = max_abs_diff(got, want);
                worst = std::max(worst, error);
                failures += error > tolerance(want) ? 1 : 0;
            }
        }
        else
            cache.append(k.slice_positions(i, 1), v.slice_positions(i, 1));
        std::size_t const now = cache.bytes();
        std::size_t const want_growth = row_growth(c.options, key_rows, i, sizeof(float16)) + row_growth(c.options, value_rows, i, sizeof(float16));
        if (now - bytes != want_growth && bad_growth++ == 0)
            first_bad = i;
        bytes = now;
    }
    REQUIRE(cache.size() == n);
    INFO("first position whose bytes() growth is not the fp16 count: " << first_bad << "; worst |Δo| " << worst << " over " << decoded
                                                                        << " decoded positions");
    CHECK(bad_growth == 0);
    CHECK(failures == 0);
    CHECK(cache.bytes() < sizeof(float16) * 2 * n * long_dim);  // under a dense fp16 K+V cache
}
