/**
 * @file synthetic.hpp
 * Generated attention inputs for tests, benchmarks and examples.
 *
 * Delta attention only pays off on inputs with temporal structure: a key that
 * changes little from one position to the next has a sparse delta. White noise has
 * none (every delta is dense), so measuring sparsity on it says nothing about real
 * models; measuring it on a constant sequence says nothing either. `make_llm_like`
 * sits between the two, with the traits of real post-RoPE activations that decide
 * delta sparsity:
 *
 * - A fixed per-channel mean per head (real keys share most of their content across
 *   positions), with a few "outlier" channel pairs of much larger magnitude in the
 *   low-frequency RoPE half, as the massive key channels of real LLMs are.
 * - A per-channel AR(1) latent along positions (`correlation` is its coefficient):
 *   consecutive positions are close, distant ones are not.
 * - i.i.d. noise on every element, which no threshold below its scale can absorb.
 * - RoPE on queries and keys (values are never rotated). Pair `c` turns by
 *   `theta_c = rope_base^(-2c/dim)` radians per position: the first pairs turn by about
 *   1 rad per position, so even a key whose content is constant changes by a large
 *   fraction of its pair's norm between consecutive positions in those channels. That
 *   is real (inference engines hold keys post-RoPE) and it is what bounds delta sparsity
 *   on real models; `rope = false` shows the pre-RoPE sparsity for comparison.
 *
 * `make_white_noise` is the structureless control. Both produce token-major
 * `[pos][head][dim]` buffers, llama.cpp's layout.
 *
 * Determinism: the same shape and options give the same data on every platform.
 * The random bits come from `std::mt19937_64`, whose output sequence the C++ standard
 * fixes; normal variates come from this file's own Box-Muller transform (the result of
 * `std::normal_distribution` differs between standard libraries). All arithmetic is
 * done in double and rounded to float once per element, so a last-bit difference
 * between two C libraries' `log`/`sin`/`cos`/`pow`, or a compiler fusing a multiply-add,
 * changes a stored float only when it straddles a float rounding boundary (about one
 * element in 10^8).
 *
 * Every tensor and every parameter set draws from its own stream, in position order,
 * so data of `n` positions is the prefix of the data of `m > n` positions with the same
 * seed (a prefill-then-decode test can cut one sequence anywhere), and the keys and
 * values do not depend on the number of query heads.
 */
#ifndef DELTAATTN_SYNTHETIC_HPP
#define DELTAATTN_SYNTHETIC_HPP

#include "detail/validate.hpp"
#include "views.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace deltaattn
{
    /// Sizes of one attention layer's inputs: `q_heads` query heads share `kv_heads`
    /// key/value heads (GQA, `q_heads % kv_heads == 0`), each of `dim` channels.
    struct workload_shape
    {
        std::size_t positions = 256;
        std::size_t q_heads = 8;
        std::size_t kv_heads = 2;
        std::size_t dim = 64;
    };

    /// Knobs of `make_llm_like`. The defaults give keys with the temporal smoothness,
    /// outlier channels and RoPE of a small real model's layer.
    struct llm_like_options
    {
        /// AR(1) coefficient of each channel's latent along positions, in [-1, 1].
        /// Near 1: smooth, sparse deltas; 0: white latent.
        float correlation = 0.98f;
        /// Standard deviation of the latent (its innovations are scaled by
        /// `innovation * sqrt(1 - correlation^2)`, so 1 means unit stationary variance).
        float innovation = 1.0f;
        /// Standard deviation of the i.i.d. noise added to every element after the latent.
        float noise = 0.05f;
        /// Rotate queries and keys by RoPE (pairs `(2c, 2c+1)`, `theta_c =
        /// rope_base^(-2c/dim)`, angle `pos * theta_c`), as inference engines hold them.
        bool rope = true;
        float rope_base = 10000.0f;
        /// Whole-tensor multipliers, applied before RoPE.
        float q_scale = 1.0f;
        float k_scale = 1.0f;
        float v_scale = 1.0f;
        std::uint64_t seed = 1;
    };

    /// Owned query, key and value buffers, token-major `[pos][head][dim]`.
    struct qkv_data
    {
        workload_shape shape;
        std::vector<float> q;  ///< positions x q_heads x dim
        std::vector<float> k;  ///< positions x kv_heads x dim
        std::vector<float> v;  ///< positions x kv_heads x dim

        tensor_view<const float> q_view() const noexcept
        {
            return make_token_major(q.data(), shape.positions, shape.q_heads, shape.dim);
        }
        tensor_view<const float> k_view() const noexcept
        {
            return make_token_major(k.data(), shape.positions, shape.kv_heads, shape.dim);
        }
        tensor_view<const float> v_view() const noexcept
        {
            return make_token_major(v.data(), shape.positions, shape.kv_heads, shape.dim);
        }

        /// Sizes `storage` like the queries, zero-filled, and returns a token-major view of
        /// it: the output tensor of an attention call on this data. The view is valid until
        /// `storage` is resized or destroyed.
        tensor_view<float> make_output(std::vector<float>& storage) const
        {
            storage.assign(q.size(), 0.0f);
            return make_token_major(storage.data(), shape.positions, shape.q_heads, shape.dim);
        }
    };

    namespace detail
    {
        /// SplitMix64 finaliser: spreads (seed, stream) pairs over unrelated engine seeds,
        /// so streams of neighbouring seeds do not start correlated.
        inline std::uint64_t mix_seed(std::uint64_t seed, std::uint64_t stream) noexcept
        {
            std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            return z ^ (z >> 31);
        }

        /// Which stream each tensor and parameter set draws from (never renumber: the
        /// data of a given seed would change).
        enum synthetic_stream : std::uint64_t
        {
            stream_key_params = 1,
            stream_value_params = 2,
            stream_query_params = 3,
            stream_keys = 4,
            stream_values = 5,
            stream_queries = 6,
            stream_white_q = 7,
            stream_white_k = 8,
            stream_white_v = 9,
        };

        /// Platform-independent uniform and normal variates from `std::mt19937_64`.
        class random_source
        {
        public:
            random_source(std::uint64_t seed, std::uint64_t stream) : engine_(mix_seed(seed, stream)) {}

            /// Uniform in [0, 1): the top 53 bits, exactly representable.
            double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

            /// Uniform in [lo, hi).
            double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

            /// Uniform integer in [0, n), n >= 1 (the modulo bias, below 2^-40 for the
            /// sizes used here, does not matter for test data).
            std::size_t index(std::size_t n) { return static_cast<std::size_t>(engine_() % n); }

            /// Standard normal variate (Box-Muller; both outputs of a pair are used).
            double normal()
            {
                if (has_spare_)
                {
                    has_spare_ = false;
                    return spare_;
                }
                // u1 in (0, 1] so that log(u1) is finite.
                double const u1 = static_cast<double>((engine_() >> 11) + 1) * 0x1.0p-53;
                double const u2 = uniform();
                double const radius = std::sqrt(-2.0 * std::log(u1));
                double const angle = 6.283185307179586476925 * u2;
                spare_ = radius * std::sin(angle);
                has_spare_ = true;
                return radius * std::cos(angle);
            }

        private:
            std::mt19937_64 engine_;
            double spare_ = 0.0;
            bool has_spare_ = false;
        };

        /// One channel's AR(1) latent with stationary standard deviation `sigma`: starts
        /// from the stationary distribution so the first positions are not special.
        struct ar1_latent
        {
            double rho;
            double step;  ///< sigma * sqrt(1 - rho^2)

            ar1_latent(double correlation, double sigma)
                : rho(correlation), step(sigma * std::sqrt(std::max(0.0, 1.0 - correlation * correlation)))
            {
            }
        };

        /// Per-head parameters of one tensor: x[c] = mean[c] + spread[c] * latent[c].
        struct channel_params
        {
            std::vector<double> mean;
            std::vector<double> spread;
        };

        /// Rotation rate of each RoPE pair, radians per position.
        inline std::vector<double> rope_frequencies(std::size_t dim, double base)
        {
            std::vector<double> theta(dim / 2);
            for (std::size_t c = 0; c < theta.size(); ++c)
                theta[c] = std::pow(base, -2.0 * static_cast<double>(c) / static_cast<double>(dim));
            return theta;
        }

        /// Rotates every `(2c, 2c+1)` pair of every head of a token-major tensor in place.
        inline void apply_rope(std::vector<float>& x, workload_shape const& shape, std::size_t heads,
                               std::vector<double> const& theta)
        {
            std::size_t const pairs = shape.dim / 2;
            std::vector<double> cos_a(pairs), sin_a(pairs);
            for (std::size_t p = 0; p < shape.positions; ++p)
            {
                // Angles in double: pos * theta reaches thousands of radians, where a float
                // angle would have lost the fractional part that matters.
                for (std::size_t c = 0; c < pairs; ++c)
                {
                    double const angle = static_cast<double>(p) * theta[c];
                    cos_a[c] = std::cos(angle);
                    sin_a[c] = std::sin(angle);
                }
                for (std::size_t h = 0; h < heads; ++h)
                {
                    float* row = x.data() + (p * heads + h) * shape.dim;
                    for (std::size_t c = 0; c < pairs; ++c)
                    {
                        double const a = row[2 * c];
                        double const b = row[2 * c + 1];
                        row[2 * c] = static_cast<float>(a * cos_a[c] - b * sin_a[c]);
                        row[2 * c + 1] = static_cast<float>(a * sin_a[c] + b * cos_a[c]);
                    }
                }
            }
        }

        inline void validate_llm_like(workload_shape const& shape, llm_like_options const& o)
        {
            DELTAATTN_REQUIRE(shape.kv_heads >= 1, "shape.kv_heads", "must be >= 1");
            DELTAATTN_REQUIRE(shape.q_heads % shape.kv_heads == 0, "shape.q_heads",
                    "must be a multiple of kv_heads" + got(shape.q_heads));
            DELTAATTN_REQUIRE(!o.rope || shape.dim % 2 == 0, "shape.dim", "must be even when rope is on" + got(shape.dim));
            DELTAATTN_REQUIRE(std::isfinite(o.correlation) && o.correlation >= -1.0f && o.correlation <= 1.0f,
                    "options.correlation", "must be in [-1, 1]" + got(o.correlation));
            require_non_negative(o.innovation, "options.innovation");
            require_non_negative(o.noise, "options.noise");
            DELTAATTN_REQUIRE(!o.rope || (std::isfinite(o.rope_base) && o.rope_base > 0.0f), "options.rope_base",
                    "must be a finite number > 0" + got(o.rope_base));
            DELTAATTN_REQUIRE(std::isfinite(o.q_scale), "options.q_scale", "must be finite" + got(o.q_scale));
            DELTAATTN_REQUIRE(std::isfinite(o.k_scale), "options.k_scale", "must be finite" + got(o.k_scale));
            DELTAATTN_REQUIRE(std::isfinite(o.v_scale), "options.v_scale", "must be finite" + got(o.v_scale));
        }

        /// Key-like parameters: means of magnitude ~1 plus a few outlier pairs of
        /// magnitude 3..5 in the low-frequency half of the RoPE pairs, where real LLM
        /// keys keep their massive channels (they then rotate slowly and act as a
        /// position-insensitive bias).
        inline channel_params make_key_params(random_source& rng, std::size_t dim)
        {
            channel_params p{std::vector<double>(dim), std::vector<double>(dim)};
            for (std::size_t c = 0; c < dim; ++c)
                p.mean[c] = rng.normal();
            for (std::size_t c = 0; c < dim; ++c)
                p.spread[c] = rng.uniform(0.5, 1.0);
            std::size_t const pairs = dim / 2;
            std::size_t const low_half = pairs - pairs / 2;  // first low-frequency pair
            std::size_t const candidates = pairs - low_half;
            std::size_t const outliers = std::min<std::size_t>(candidates, (pairs + 15) / 16);
            // Partial Fisher-Yates over the candidate pairs: distinct, deterministic.
            std::vector<std::size_t> pool(candidates);
            for (std::size_t i = 0; i < candidates; ++i)
                pool[i] = low_half + i;
            for (std::size_t i = 0; i < outliers; ++i)
            {
                std::swap(pool[i], pool[i + rng.index(candidates - i)]);
                double const magnitude = rng.uniform(3.0, 5.0);
                double const sign = rng.uniform() < 0.5 ? -1.0 : 1.0;
                p.mean[2 * pool[i]] = sign * magnitude;
                p.mean[2 * pool[i] + 1] = sign * magnitude * rng.uniform(0.5, 1.0);
            }
            return p;
        }

        /// Value parameters: means of magnitude ~1, no outliers.
        inline channel_params make_value_params(random_source& rng, std::size_t dim)
        {
            channel_params p{std::vector<double>(dim), std::vector<double>(dim)};
            for (std::size_t c = 0; c < dim; ++c)
                p.mean[c] = rng.normal();
            for (std::size_t c = 0; c < dim; ++c)
                p.spread[c] = rng.uniform(0.5, 1.0);
            return p;
        }

        /// Query-head parameters: the mean partly aligned with its group's key mean
        /// (`align`), so scores carry a content bias (the outlier channels make it large, as
        /// in real models), and a latent that mixes the group's key latent (`share`) with the
        /// head's own, so heads differ in how much they favour recent keys.
        struct query_params
        {
            channel_params channels;
            double share = 0.0;
        };

        inline query_params make_query_params(random_source& rng, std::size_t dim, channel_params const& key)
        {
            query_params p;
            double const align = rng.uniform(0.2, 0.5);
            p.share = rng.uniform(0.0, 0.6);
            p.channels.mean.resize(dim);
            p.channels.spread.resize(dim);
            for (std::size_t c = 0; c < dim; ++c)
                p.channels.mean[c] = align * key.mean[c] + (1.0 - align) * rng.normal();
            for (std::size_t c = 0; c < dim; ++c)
                p.channels.spread[c] = rng.uniform(0.5, 1.0);
            return p;
        }
    }  // namespace detail

    /**
     * Queries, keys and values with the temporal structure of a real model's layer.
     *
     * Per kv head and channel, keys are `k_scale * (mean + spread * z + noise * n)` with
     * `z` an AR(1) latent of coefficient `correlation` and standard deviation `innovation`,
     * `n` i.i.d. standard normal, `mean` of magnitude ~1 with a few outlier pairs of
     * magnitude 3..5, and `spread` in [0.5, 1). Values are built the same way with their own
     * latent and no outliers. Each query head mixes its group's key latent with its own
     * latent and has a mean partly aligned with the key mean, so scores `q.k/sqrt(dim)`
     * spread like real ones (standard deviation of a few units at the defaults) instead of
     * sitting near zero. With `rope`, queries and keys are then rotated by RoPE.
     *
     * @throws std::invalid_argument naming the field: `kv_heads == 0`, `q_heads %
     *         kv_heads != 0`, odd `dim` with RoPE, `correlation` outside [-1, 1], negative or
     *         non-finite `innovation`/`noise`, a non-positive `rope_base`, non-finite scales.
     */
    inline qkv_data make_llm_like(workload_shape const& shape, llm_like_options const& options = {})
    {
        detail::validate_llm_like(shape, options);
        using detail::random_source;
        std::size_t const n = shape.positions, d = shape.dim, hkv = shape.kv_heads, hq = shape.q_heads;
        std::size_t const group = hq / hkv;

        random_source key_param_rng(options.seed, detail::stream_key_params);
        random_source value_param_rng(options.seed, detail::stream_value_params);
        random_source query_param_rng(options.seed, detail::stream_query_params);
        std::vector<detail::channel_params> key_params, value_params;
        std::vector<detail::query_params> q_params;
        for (std::size_t h = 0; h < hkv; ++h)
        {
            key_params.push_back(detail::make_key_params(key_param_rng, d));
            value_params.push_back(detail::make_value_params(value_param_rng, d));
        }
        for (std::size_t h = 0; h < hq; ++h)
            q_params.push_back(detail::make_query_params(query_param_rng, d, key_params[h / group]));

        qkv_data out;
        out.shape = shape;
        out.q.resize(n * hq * d);
        out.k.resize(n * hkv * d);
        out.v.resize(n * hkv * d);

        detail::ar1_latent const ar(options.correlation, options.innovation);
        random_source key_rng(options.seed, detail::stream_keys);
        random_source value_rng(options.seed, detail::stream_values);
        random_source query_rng(options.seed, detail::stream_queries);
        std::vector<double> zk(hkv * d), zv(hkv * d), zq(hq * d);
        double const noise = options.noise;

        // One step of every latent in `z`, drawing its innovations from `rng`. Position 0
        // draws from the stationary distribution instead.
        auto advance = [&](std::vector<double>& z, random_source& rng, bool first) {
            for (double& x : z)
                x = first ? options.innovation * rng.normal() : ar.rho * x + ar.step * rng.normal();
        };
        // A tensor row from its latent row: mean + spread * z + noise, scaled once.
        auto emit = [&](float* dst, detail::channel_params const& p, double const* z, random_source& rng,
                        double scale) {
            for (std::size_t c = 0; c < d; ++c)
                dst[c] = static_cast<float>(scale * (p.mean[c] + p.spread[c] * z[c] + noise * rng.normal()));
        };

        std::vector<double> q_latent(d);
        for (std::size_t p = 0; p < n; ++p)
        {
            bool const first = p == 0;
            advance(zk, key_rng, first);
            advance(zv, value_rng, first);
            advance(zq, query_rng, first);
            for (std::size_t h = 0; h < hkv; ++h)
            {
                emit(out.k.data() + (p * hkv + h) * d, key_params[h], zk.data() + h * d, key_rng, options.k_scale);
                emit(out.v.data() + (p * hkv + h) * d, value_params[h], zv.data() + h * d, value_rng,
                     options.v_scale);
            }
            for (std::size_t h = 0; h < hq; ++h)
            {
                // Mixing two unit-variance latents with weights (s, sqrt(1 - s^2)) keeps the
                // query latent's variance that of the key latent.
                double const s = q_params[h].share;
                double const own = std::sqrt(1.0 - s * s);
                double const* key_z = zk.data() + (h / group) * d;
                double const* own_z = zq.data() + h * d;
                for (std::size_t c = 0; c < d; ++c)
                    q_latent[c] = s * key_z[c] + own * own_z[c];
                emit(out.q.data() + (p * hq + h) * d, q_params[h].channels, q_latent.data(), query_rng,
                     options.q_scale);
            }
        }

        if (options.rope)
        {
            std::vector<double> const theta = detail::rope_frequencies(d, options.rope_base);
            detail::apply_rope(out.q, shape, hq, theta);
            detail::apply_rope(out.k, shape, hkv, theta);
        }
        return out;
    }

    /**
     * Queries, keys and values of i.i.d. `N(0, scale^2)` elements: no temporal structure,
     * the worst case for delta sparsity and the control for `make_llm_like`.
     *
     * @throws std::invalid_argument if `kv_heads == 0`, `q_heads % kv_heads != 0` or
     *         `scale` is not finite.
     */
    inline qkv_data make_white_noise(workload_shape const& shape, std::uint64_t seed = 1, float scale = 1.0f)
    {
        DELTAATTN_REQUIRE(shape.kv_heads >= 1, "shape.kv_heads", "must be >= 1");
        DELTAATTN_REQUIRE(shape.q_heads % shape.kv_heads == 0, "shape.q_heads",
                        "must be a multiple of kv_heads" + detail::got(shape.q_heads));
        DELTAATTN_REQUIRE(std::isfinite(scale), "scale", "must be finite" + detail::got(scale));
        qkv_data out;
        out.shape = shape;
        auto fill = [&](std::vector<float>& x, std::size_t heads, std::uint64_t stream) {
            detail::random_source rng(seed, stream);
            x.resize(shape.positions * heads * shape.dim);
            for (float& e : x)
                e = static_cast<float>(static_cast<double>(scale) * rng.normal());
        };
        fill(out.q, shape.q_heads, detail::stream_white_q);
        fill(out.k, shape.kv_heads, detail::stream_white_k);
        fill(out.v, shape.kv_heads, detail::stream_white_v);
        return out;
    }
}  // namespace deltaattn

#endif  // DELTAATTN_SYNTHETIC_HPP
