// Tests of the synthetic workload generator: the data every other test and benchmark
// measures on must be deterministic, shaped as documented, and actually have the
// statistical traits it claims (temporal correlation, RoPE, a realistic score spread).

#include "catch.hpp"

#include <deltaattn/synthetic.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

using namespace deltaattn;

namespace
{
    bool same_bytes(std::vector<float> const& a, std::vector<float> const& b)
    {
        return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    }

    bool same_bytes(qkv_data const& a, qkv_data const& b)
    {
        return same_bytes(a.q, b.q) && same_bytes(a.k, b.k) && same_bytes(a.v, b.v);
    }

    struct moments
    {
        double mean = 0.0;
        double variance = 0.0;
    };

    moments moments_of(std::vector<float> const& x)
    {
        double sum = 0.0, sum_sq = 0.0;
        for (float e : x)
        {
            sum += e;
            sum_sq += double(e) * e;
        }
        double const n = double(x.size());
        double const mean = sum / n;
        return {mean, sum_sq / n - mean * mean};
    }

    double mean_abs_difference(matrix_view<const float> m, std::size_t a, std::size_t b)
    {
        double s = 0.0;
        for (std::size_t c = 0; c < m.cols; ++c)
            s += std::fabs(double(m.row(a)[c]) - double(m.row(b)[c]));
        return s / double(m.cols);
    }

    /// Mean |x_j - x_{j-1}| over consecutive positions, and mean |x_a - x_b| over pairs of
    /// positions far apart (a fixed, spread-out pairing), over every head.
    struct smoothness
    {
        double consecutive = 0.0;
        double distant = 0.0;
    };

    smoothness smoothness_of(tensor_view<const float> t)
    {
        smoothness r;
        std::size_t count = 0;
        for (std::size_t h = 0; h < t.heads; ++h)
        {
            matrix_view<const float> m = t.head(h);
            for (std::size_t j = 1; j < t.positions; ++j)
            {
                // j's partner is half the sequence away: far beyond the AR(1) memory.
                std::size_t const partner = (j + t.positions / 2) % t.positions;
                r.consecutive += mean_abs_difference(m, j, j - 1);
                r.distant += mean_abs_difference(m, j, partner);
                ++count;
            }
        }
        r.consecutive /= double(count);
        r.distant /= double(count);
        return r;
    }

    /// Average over channels of the lag-1 autocorrelation along positions of one head.
    double lag1_autocorrelation(matrix_view<const float> m)
    {
        double total = 0.0;
        for (std::size_t c = 0; c < m.cols; ++c)
        {
            double mean = 0.0;
            for (std::size_t j = 0; j < m.rows; ++j)
                mean += m.row(j)[c];
            mean /= double(m.rows);
            double num = 0.0, den = 0.0;
            for (std::size_t j = 0; j < m.rows; ++j)
            {
                double const x = m.row(j)[c] - mean;
                den += x * x;
                if (j > 0)
                    num += x * (m.row(j - 1)[c] - mean);
            }
            total += num / den;
        }
        return total / double(m.cols);
    }

    /// Standard deviation of s = q_i.k_j / sqrt(d) over every causal (i, j) and query head.
    double score_std(qkv_data const& data)
    {
        auto const q = data.q_view();
        auto const k = data.k_view();
        std::size_t const group = q.heads / k.heads;
        double const alpha = 1.0 / std::sqrt(double(q.dim));
        double sum = 0.0, sum_sq = 0.0, n = 0.0;
        for (std::size_t h = 0; h < q.heads; ++h)
            for (std::size_t i = 0; i < q.positions; ++i)
                for (std::size_t j = 0; j <= i; ++j)
                {
                    double s = 0.0;
                    for (std::size_t c = 0; c < q.dim; ++c)
                        s += double(q.at(i, h)[c]) * k.at(j, h / group)[c];
                    s *= alpha;
                    sum += s;
                    sum_sq += s * s;
                    n += 1.0;
                }
        double const mean = sum / n;
        return std::sqrt(sum_sq / n - mean * mean);
    }
}  // namespace

TEST_CASE("synthetic data is deterministic in its seed", "[synthetic]")
{
    workload_shape const shape{64, 4, 2, 32};
    llm_like_options options;
    options.seed = 42;

    SECTION("llm_like")
    {
        qkv_data const a = make_llm_like(shape, options);
        qkv_data const b = make_llm_like(shape, options);
        CHECK(same_bytes(a, b));
        options.seed = 43;
        qkv_data const c = make_llm_like(shape, options);
        CHECK_FALSE(same_bytes(a.q, c.q));
        CHECK_FALSE(same_bytes(a.k, c.k));
        CHECK_FALSE(same_bytes(a.v, c.v));
    }
    SECTION("white noise")
    {
        CHECK(same_bytes(make_white_noise(shape, 7), make_white_noise(shape, 7)));
        qkv_data const a = make_white_noise(shape, 7);
        qkv_data const c = make_white_noise(shape, 8);
        CHECK_FALSE(same_bytes(a.q, c.q));
        CHECK_FALSE(same_bytes(a.k, c.k));
        CHECK_FALSE(same_bytes(a.v, c.v));
    }
    SECTION("q, k and v are different streams")
    {
        qkv_data const w = make_white_noise({16, 2, 2, 16});
        CHECK_FALSE(same_bytes(w.q, w.k));
        CHECK_FALSE(same_bytes(w.k, w.v));
    }
}

TEST_CASE("synthetic data of a given seed does not change between versions", "[synthetic]")
{
    // Recorded values. Tests and benchmark baselines depend on the data of a seed, so a
    // change here must be deliberate. The tolerance admits a last-bit difference of
    // another C library's log/sin/cos (see the file comment of synthetic.hpp).
    qkv_data const w = make_white_noise({4, 2, 1, 8}, 1);
    qkv_data const l = make_llm_like({4, 2, 1, 8});
    float const expected_white_k[4] = {-0.477889329f, 0.772188246f, 0.597952545f, -1.4039501f};
    float const expected_llm_k[4] = {0.225529134f, -0.711115479f, -0.74755466f, 0.985411942f};
    float const expected_llm_last_q = 0.171302348f;
    for (int i = 0; i < 4; ++i)
    {
        CHECK(w.k[i] == Approx(expected_white_k[i]).epsilon(1e-6));
        CHECK(l.k[i] == Approx(expected_llm_k[i]).epsilon(1e-6));
    }
    CHECK(l.q.back() == Approx(expected_llm_last_q).epsilon(1e-6));
}

TEST_CASE("a shorter sequence is a prefix of a longer one with the same seed", "[synthetic]")
{
    // Lets a prefill-then-decode test cut one sequence anywhere.
    workload_shape const short_shape{37, 4, 2, 16};
    workload_shape long_shape = short_shape;
    long_shape.positions = 100;
    qkv_data const s = make_llm_like(short_shape);
    qkv_data const l = make_llm_like(long_shape);
    CHECK(std::equal(s.q.begin(), s.q.end(), l.q.begin()));
    CHECK(std::equal(s.k.begin(), s.k.end(), l.k.begin()));
    CHECK(std::equal(s.v.begin(), s.v.end(), l.v.begin()));

    qkv_data const ws = make_white_noise(short_shape, 3);
    qkv_data const wl = make_white_noise(long_shape, 3);
    CHECK(std::equal(ws.k.begin(), ws.k.end(), wl.k.begin()));

    SECTION("keys and values do not depend on the number of query heads")
    {
        workload_shape more_heads = short_shape;
        more_heads.q_heads = 8;
        qkv_data const m = make_llm_like(more_heads);
        CHECK(same_bytes(s.k, m.k));
        CHECK(same_bytes(s.v, m.v));
    }
}

TEST_CASE("qkv_data views are token-major over the owned buffers", "[synthetic]")
{
    workload_shape const shape{10, 6, 3, 24};
    qkv_data const data = make_llm_like(shape);
    REQUIRE(data.q.size() == 10 * 6 * 24);
    REQUIRE(data.k.size() == 10 * 3 * 24);
    REQUIRE(data.v.size() == 10 * 3 * 24);

    auto const q = data.q_view();
    CHECK(q.data == data.q.data());
    CHECK(q.positions == 10);
    CHECK(q.heads == 6);
    CHECK(q.dim == 24);
    CHECK(q.pos_stride == 6 * 24);
    CHECK(q.head_stride == 24);
    CHECK(q.at(7, 5)[3] == data.q[(7 * 6 + 5) * 24 + 3]);

    for (auto const& kv : {data.k_view(), data.v_view()})
    {
        CHECK(kv.positions == 10);
        CHECK(kv.heads == 3);
        CHECK(kv.dim == 24);
        CHECK(kv.pos_stride == 3 * 24);
        CHECK(kv.head_stride == 24);
    }
    CHECK(data.k_view().data == data.k.data());
    CHECK(data.v_view().at(9, 2)[23] == data.v.back());

    std::vector<float> storage(3, 5.0f);
    tensor_view<float> out = data.make_output(storage);
    REQUIRE(storage.size() == data.q.size());
    CHECK(std::all_of(storage.begin(), storage.end(), [](float x) { return x == 0.0f; }));
    CHECK(out.data == storage.data());
    CHECK(out.positions == 10);
    CHECK(out.heads == 6);
    CHECK(out.dim == 24);
    CHECK(out.pos_stride == q.pos_stride);
    CHECK(out.head_stride == q.head_stride);
    out.at(4, 1)[2] = 1.5f;
    CHECK(storage[(4 * 6 + 1) * 24 + 2] == 1.5f);
}

TEST_CASE("empty shapes give empty data", "[synthetic]")
{
    qkv_data const none = make_llm_like({0, 4, 2, 16});
    CHECK(none.q.empty());
    CHECK(none.k.empty());
    CHECK(none.q_view().positions == 0);
    std::vector<float> storage(4);
    CHECK(none.make_output(storage).positions == 0);
    CHECK(storage.empty());
    CHECK(make_white_noise({0, 1, 1, 8}).v.empty());
    CHECK(make_llm_like({5, 1, 1, 0}).q.empty());
}

TEST_CASE("white noise has the moments of N(0, scale^2)", "[synthetic]")
{
    float const scale = 2.5f;
    qkv_data const data = make_white_noise({256, 8, 2, 64}, 11, scale);
    for (auto const* x : {&data.q, &data.k, &data.v})
    {
        double const n = double(x->size());
        moments const m = moments_of(*x);
        // Five standard errors: a false failure is a one-in-a-million event.
        CHECK(std::fabs(m.mean) < 5.0 * scale / std::sqrt(n));
        double const var = double(scale) * scale;
        CHECK(std::fabs(m.variance - var) < 5.0 * var * std::sqrt(2.0 / n));
        // The Box-Muller output is normal, not just of the right variance: P(|x| < scale)
        // is 0.6827 for a normal (0.577 for a uniform of the same variance).
        double inside = 0.0;
        for (float e : *x)
            inside += std::fabs(e) < scale ? 1.0 : 0.0;
        CHECK(inside / n == Approx(0.6827).margin(5.0 * std::sqrt(0.6827 * 0.3173 / n)));
    }
    CHECK(std::fabs(lag1_autocorrelation(data.k_view().head(0))) < 0.05);
}

TEST_CASE("llm_like keys are temporally correlated, white noise is not", "[synthetic]")
{
    workload_shape const shape{256, 8, 2, 64};
    llm_like_options options;
    options.rope = false;  // the latent itself, before RoPE turns the high-frequency pairs
    qkv_data const data = make_llm_like(shape, options);

    smoothness const keys = smoothness_of(data.k_view());
    INFO("consecutive " << keys.consecutive << ", distant " << keys.distant);
    CHECK(keys.consecutive < 0.35 * keys.distant);
    smoothness const values = smoothness_of(data.v_view());
    CHECK(values.consecutive < 0.35 * values.distant);
    smoothness const queries = smoothness_of(data.q_view());
    CHECK(queries.consecutive < 0.35 * queries.distant);
    CHECK(lag1_autocorrelation(data.k_view().head(1)) > 0.9);

    smoothness const noise = smoothness_of(make_white_noise(shape).k_view());
    CHECK(noise.consecutive > 0.9 * noise.distant);

    SECTION("correlation 0 removes the structure")
    {
        options.correlation = 0.0f;
        qkv_data const white_latent = make_llm_like(shape, options);
        CHECK(std::fabs(lag1_autocorrelation(white_latent.k_view().head(0))) < 0.05);
    }
    SECTION("RoPE makes consecutive keys differ more, but they stay correlated")
    {
        options.rope = true;
        smoothness const rotated = smoothness_of(make_llm_like(shape, options).k_view());
        CHECK(rotated.consecutive > keys.consecutive);
        CHECK(rotated.consecutive < 0.5 * rotated.distant);
    }
}

TEST_CASE("llm_like keys have a shared mean with outlier channels", "[synthetic]")
{
    llm_like_options options;
    options.rope = false;
    workload_shape const shape{256, 2, 2, 64};
    qkv_data const data = make_llm_like(shape, options);
    for (std::size_t h = 0; h < shape.kv_heads; ++h)
    {
        auto const m = data.k_view().head(h);
        std::vector<double> mean_abs(shape.dim, 0.0);
        for (std::size_t c = 0; c < shape.dim; ++c)
        {
            double s = 0.0;
            for (std::size_t j = 0; j < m.rows; ++j)
                s += m.row(j)[c];
            mean_abs[c] = std::fabs(s / double(m.rows));
        }
        std::vector<double> sorted = mean_abs;
        std::sort(sorted.begin(), sorted.end());
        double const median = sorted[sorted.size() / 2];
        CHECK(sorted.back() > 2.5 * median);
        // ...and they sit in the low-frequency half of the RoPE pairs.
        std::size_t const largest = std::size_t(std::max_element(mean_abs.begin(), mean_abs.end()) - mean_abs.begin());
        CHECK(largest >= shape.dim / 2);
    }
}

TEST_CASE("noise 0 and innovation 0 give constant keys; scales are exact multipliers", "[synthetic]")
{
    workload_shape const shape{20, 2, 1, 16};
    llm_like_options options;
    options.rope = false;
    options.noise = 0.0f;
    options.innovation = 0.0f;
    qkv_data const flat = make_llm_like(shape, options);
    auto const k = flat.k_view().head(0);
    for (std::size_t j = 1; j < k.rows; ++j)
        CHECK(std::equal(k.row(j), k.row(j) + k.cols, k.row(0)));

    llm_like_options scaled;
    scaled.k_scale = 2.0f;
    scaled.v_scale = 0.5f;
    qkv_data const base = make_llm_like(shape);
    qkv_data const twice = make_llm_like(shape, scaled);
    for (std::size_t i = 0; i < base.k.size(); ++i)
    {
        CHECK(twice.k[i] == 2.0f * base.k[i]);
        CHECK(twice.v[i] == 0.5f * base.v[i]);
    }
    CHECK(same_bytes(base.q, twice.q));
}

TEST_CASE("RoPE rotates each pair by pos * theta_c and preserves its norm", "[synthetic]")
{
    workload_shape const shape{300, 4, 2, 64};
    llm_like_options options;
    options.seed = 5;
    qkv_data const rotated = make_llm_like(shape, options);
    options.rope = false;
    qkv_data const plain = make_llm_like(shape, options);

    CHECK(same_bytes(rotated.v, plain.v));  // values are never rotated

    auto check_tensor = [&](tensor_view<const float> r, tensor_view<const float> p) {
        double worst_norm = 0.0, worst_angle = 0.0;
        for (std::size_t pos = 0; pos < r.positions; ++pos)
            for (std::size_t h = 0; h < r.heads; ++h)
                for (std::size_t c = 0; c < r.dim / 2; ++c)
                {
                    double const a = p.at(pos, h)[2 * c], b = p.at(pos, h)[2 * c + 1];
                    double const x = r.at(pos, h)[2 * c], y = r.at(pos, h)[2 * c + 1];
                    double const norm_p = std::hypot(a, b), norm_r = std::hypot(x, y);
                    worst_norm = std::max(worst_norm, std::fabs(norm_r - norm_p) / std::max(norm_p, 1e-3));
                    // Expected rotation, computed independently of the header.
                    double const theta = std::pow(10000.0, -2.0 * double(c) / double(r.dim));
                    double const angle = double(pos) * theta;
                    double const ex = a * std::cos(angle) - b * std::sin(angle);
                    double const ey = a * std::sin(angle) + b * std::cos(angle);
                    worst_angle = std::max(worst_angle, std::hypot(x - ex, y - ey) / std::max(norm_p, 1e-3));
                }
        CHECK(worst_norm < 1e-5);
        CHECK(worst_angle < 1e-5);
        // Position 0 is rotated by 0: bit-identical.
        CHECK(std::equal(r.at(0, 0), r.at(0, 0) + r.dim * r.heads, p.at(0, 0)));
    };
    check_tensor(rotated.k_view(), plain.k_view());
    check_tensor(rotated.q_view(), plain.q_view());
}

TEST_CASE("scores q.k/sqrt(d) have a realistic spread", "[synthetic]")
{
    // Near-zero scores would make every softmax uniform and hide errors in it; the
    // defaults must land in the range real attention layers show.
    qkv_data const data = make_llm_like(workload_shape{});
    double const sd = score_std(data);
    INFO("score standard deviation " << sd);
    CHECK(sd > 0.5);
    CHECK(sd < 10.0);
    // White noise of unit variance: var(q.k/sqrt(d)) = 1 exactly in expectation.
    CHECK(score_std(make_white_noise({128, 2, 1, 64})) == Approx(1.0).margin(0.1));
}

TEST_CASE("synthetic generators reject bad shapes and options, naming the argument", "[synthetic]")
{
    auto message_of = [](auto&& make) -> std::string {
        try
        {
            make();
        }
        catch (std::invalid_argument const& e)
        {
            return e.what();
        }
        return "no exception";
    };
    using Catch::Matchers::Contains;
    CHECK_THAT(message_of([] { make_llm_like({8, 3, 2, 16}); }), Contains("shape.q_heads"));
    CHECK_THAT(message_of([] { make_llm_like({8, 2, 0, 16}); }), Contains("shape.kv_heads"));
    CHECK_THAT(message_of([] { make_white_noise({8, 3, 2, 16}); }), Contains("shape.q_heads"));
    CHECK_THAT(message_of([] { make_llm_like({8, 2, 1, 15}); }), Contains("shape.dim"));
    llm_like_options no_rope;
    no_rope.rope = false;
    CHECK_NOTHROW(make_llm_like({8, 2, 1, 15}, no_rope));

    llm_like_options o;
    o.correlation = 1.5f;
    CHECK_THAT(message_of([&] { make_llm_like({8, 2, 1, 16}, o); }), Contains("options.correlation"));
    o = {};
    o.noise = -0.1f;
    CHECK_THAT(message_of([&] { make_llm_like({8, 2, 1, 16}, o); }), Contains("options.noise"));
    o = {};
    o.innovation = std::numeric_limits<float>::quiet_NaN();
    CHECK_THAT(message_of([&] { make_llm_like({8, 2, 1, 16}, o); }), Contains("options.innovation"));
    o = {};
    o.rope_base = 0.0f;
    CHECK_THAT(message_of([&] { make_llm_like({8, 2, 1, 16}, o); }), Contains("options.rope_base"));
    o = {};
    o.q_scale = std::numeric_limits<float>::infinity();
    CHECK_THAT(message_of([&] { make_llm_like({8, 2, 1, 16}, o); }), Contains("options.q_scale"));
    CHECK_THAT(message_of([] { make_white_noise({8, 2, 1, 16}, 1, std::nanf("")); }), Contains("scale"));
}
