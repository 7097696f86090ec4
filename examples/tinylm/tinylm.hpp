// tinylm: the forward pass of the tiny byte-level Llama-style model trained by
// tools/train_tinylm.py, with deltaattn doing the attention (dense or hybrid).
//
// The model: byte embeddings (tied to the output head), n_layers x [RMSNorm, GQA
// attention with rotate-half RoPE, RMSNorm, SwiGLU MLP], a final RMSNorm. The linear
// layers run on Eigen; attention runs on deltaattn through `layer_attention`, one per
// layer, which owns the layer's KV cache the way an engine would.
//
// Weight file (tools/tinylm/model.py writes it; little-endian): 8-byte magic "DATLM001",
// eight uint32 (vocab, d_model, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim,
// context), two float32 (rope_theta, norm_eps), then every tensor as binary16 in the
// order of `for_each_tensor`, Linear weights as [out_features][in_features].
#ifndef DELTAATTN_EXAMPLES_TINYLM_HPP
#define DELTAATTN_EXAMPLES_TINYLM_HPP

#include <deltaattn/deltaattn.hpp>
#include <deltaattn/fp16.hpp>

#include <Eigen/Core>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace tinylm
{
    using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using const_matrix_map = Eigen::Map<const row_matrix>;

    struct config
    {
        std::uint32_t vocab = 0, d_model = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, ffn_dim = 0, context = 0;
        float rope_theta = 0, norm_eps = 0;
    };

    struct layer_weights
    {
        std::vector<float> attn_norm, wq, wk, wv, wo, mlp_norm, w_gate, w_up, w_down;
    };

    struct tinylm_weights
    {
        config cfg;
        std::vector<float> embed;  ///< [vocab][d_model], also the output head
        std::vector<layer_weights> layers;
        std::vector<float> final_norm;
    };

    /// Calls visit(tensor, element count) for every tensor of `w`, in file order.
    template <class Weights, class Visit>
    void for_each_tensor(Weights& w, Visit&& visit)
    {
        config const& c = w.cfg;
        std::size_t const d = c.d_model, q = std::size_t{c.n_heads} * c.head_dim, kv = std::size_t{c.n_kv_heads} * c.head_dim, f = c.ffn_dim;
        visit(w.embed, std::size_t{c.vocab} * d);
        for (auto& l : w.layers)
        {
            visit(l.attn_norm, d), visit(l.wq, q * d), visit(l.wk, kv * d), visit(l.wv, kv * d), visit(l.wo, d * q);
            visit(l.mlp_norm, d), visit(l.w_gate, f * d), visit(l.w_up, f * d), visit(l.w_down, d * f);
        }
        visit(w.final_norm, d);
    }

    inline std::size_t parameter_count(tinylm_weights const& w)
    {
        std::size_t n = 0;
        for_each_tensor(w, [&](std::vector<float> const&, std::size_t count) { n += count; });
        return n;
    }

    /// Reads a weight file; throws std::runtime_error naming the file and what is wrong.
    inline tinylm_weights load_weights(std::string const& path)
    {
        std::ifstream file(path, std::ios::binary);
        if (!file)
            throw std::runtime_error(path + ": cannot open");
        std::vector<char> const blob{std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
        auto const fail = [&](std::string const& why) { return std::runtime_error(path + ": " + why); };
        constexpr std::size_t header = 8 + 8 * 4 + 2 * 4;
        if (blob.size() < header || std::memcmp(blob.data(), "DATLM001", 8) != 0)
            throw fail("not a tinylm weight file (magic DATLM001)");
        tinylm_weights w;
        std::uint32_t fields[8];
        std::memcpy(fields, blob.data() + 8, sizeof fields);
        auto& c = w.cfg;
        c = config{fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], fields[6], fields[7], 0, 0};
        std::memcpy(&c.rope_theta, blob.data() + 40, 4);
        std::memcpy(&c.norm_eps, blob.data() + 44, 4);
        if (c.vocab != 256 || c.d_model == 0 || c.n_layers == 0 || c.head_dim == 0 || c.head_dim % 2 != 0 || c.n_kv_heads == 0 ||
            c.n_heads % c.n_kv_heads != 0 || c.ffn_dim == 0 || c.context == 0 || c.n_layers > 1024 || c.d_model > 65536)
            throw fail("implausible configuration in the header");
        w.layers.resize(c.n_layers);
        std::size_t offset = header;
        for_each_tensor(w, [&](std::vector<float>& t, std::size_t count) {
            if (blob.size() - offset < 2 * count)
                throw fail("truncated (" + std::to_string(blob.size()) + " bytes)");
            t.resize(count);
            for (std::size_t i = 0; i < count; ++i)
            {
                std::uint16_t h;
                std::memcpy(&h, blob.data() + offset + 2 * i, 2);
                t[i] = deltaattn::half_to_float(h);
            }
            offset += 2 * count;
        });
        if (offset != blob.size())
            throw fail(std::to_string(blob.size() - offset) + " trailing bytes");
        return w;
    }

    /// How attention runs: dense, or hybrid with delta keys (and, optionally, delta values).
    struct attention_settings
    {
        bool hybrid = false;
        deltaattn::hybrid_options options;
        deltaattn::delta_policy key_policy = deltaattn::relative_threshold{0.3f};
        std::optional<deltaattn::delta_policy> value_policy;  ///< set: a layer_kv_cache
        /// Set: a quantized far context (SPEC §10, a layer_quant_cache) instead of deltas;
        /// values coded with `value_codec`, or exact.
        std::optional<deltaattn::quant_codec> key_codec, value_codec;
    };

    /// One layer's attention and KV cache for one sequence, as an engine holds it.
    class layer_attention
    {
    public:
        layer_attention(config const& c, attention_settings const& s)
            : m_kv_heads(c.n_kv_heads), m_dim(c.head_dim), m_capacity(c.context)
        {
            if (s.hybrid && s.key_codec)
                m_quant_cache.emplace(m_kv_heads, m_dim, m_capacity, s.options, *s.key_codec, s.value_codec);
            else if (s.hybrid && s.value_policy)
                m_kv_cache.emplace(m_kv_heads, m_dim, m_capacity, s.options, s.key_policy, *s.value_policy);
            else
            {
                if (s.hybrid)
                    m_key_cache.emplace(m_kv_heads, m_dim, m_capacity, s.options, s.key_policy);
                else
                    m_keys.resize(m_capacity * m_kv_heads * m_dim);
                m_values.resize(m_capacity * m_kv_heads * m_dim);
            }
        }

        std::size_t size() const noexcept { return m_size; }

        /// Attention of the chunk's queries (positions size() .. size() + n - 1) over every
        /// position so far; a one-position chunk after the first is a decode step.
        void attend(deltaattn::tensor_view<const float> q, deltaattn::tensor_view<const float> k, deltaattn::tensor_view<const float> v,
                    deltaattn::tensor_view<float> out)
        {
            using deltaattn::make_token_major;
            std::size_t const n = k.positions, total = m_size + n;
            if (total > m_capacity)
                throw std::length_error("tinylm: context of " + std::to_string(m_capacity) + " positions exceeded");
            bool const decode = n == 1 && m_size > 0;
            auto const started = std::chrono::steady_clock::now();
            if (m_quant_cache)
                decode ? m_quant_cache->decode(q, k, v, out, &m_stats) : m_quant_cache->prefill(q, k, v, out, &m_stats);
            else if (m_kv_cache)
                decode ? m_kv_cache->decode(q, k, v, out, &m_stats) : m_kv_cache->prefill(q, k, v, out, &m_stats);
            else
            {
                copy_rows(v, m_values);
                auto const values = make_token_major<const float>(m_values.data(), total, m_kv_heads, m_dim);
                if (m_key_cache)
                    decode ? m_key_cache->decode(q, k, values, out, &m_stats) : m_key_cache->prefill(q, k, values, out, &m_stats);
                else
                {
                    copy_rows(k, m_keys);
                    auto const keys = make_token_major<const float>(m_keys.data(), total, m_kv_heads, m_dim);
                    deltaattn::dense_attention(q, keys, values, out, 0.0f, m_workspace, decode ? &m_stats.decode : &m_stats.prefill);
                }
            }
            m_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
            m_size = total;
        }

        deltaattn::attention_stats const& stats() const noexcept { return m_stats; }
        double seconds() const noexcept { return m_seconds; }

    private:
        void copy_rows(deltaattn::tensor_view<const float> src, std::vector<float>& cache) const
        {
            for (std::size_t r = 0; r < src.positions; ++r)
                for (std::size_t h = 0; h < m_kv_heads; ++h)
                {
                    float const* row = src.at(r, h);
                    std::copy(row, row + m_dim, cache.data() + ((m_size + r) * m_kv_heads + h) * m_dim);
                }
        }

        std::size_t m_kv_heads, m_dim, m_capacity, m_size = 0;
        std::vector<float> m_keys, m_values;  // token-major [pos][kv head][dim], dense modes only
        std::optional<deltaattn::layer_key_cache> m_key_cache;
        std::optional<deltaattn::layer_kv_cache> m_kv_cache;
        std::optional<deltaattn::layer_quant_cache> m_quant_cache;
        deltaattn::attention_workspace m_workspace;
        deltaattn::attention_stats m_stats;
        double m_seconds = 0;
    };

    /// RMSNorm of each row of x [n][d] into y, times the weight.
    inline void rms_norm(row_matrix const& x, std::vector<float> const& weight, float eps, row_matrix& y)
    {
        y.resize(x.rows(), x.cols());
        for (Eigen::Index r = 0; r < x.rows(); ++r)
        {
            double sum = 0;
            for (Eigen::Index c = 0; c < x.cols(); ++c)
                sum += static_cast<double>(x(r, c)) * x(r, c);
            float const inv = 1.0f / std::sqrt(static_cast<float>(sum / static_cast<double>(x.cols())) + eps);
            for (Eigen::Index c = 0; c < x.cols(); ++c)
                y(r, c) = x(r, c) * inv * weight[static_cast<std::size_t>(c)];
        }
    }

    /// y = x W^T for a Linear weight W [out][in].
    inline void linear(row_matrix const& x, std::vector<float> const& w, std::size_t out_features, row_matrix& y)
    {
        const_matrix_map const weight(w.data(), static_cast<Eigen::Index>(out_features), x.cols());
        y.noalias() = x * weight.transpose();
    }

    /// A sequence run through the model: one `layer_attention` per layer.
    class session
    {
    public:
        session(tinylm_weights const& w, attention_settings const& s) : m_w(&w)
        {
            for (std::uint32_t l = 0; l < w.cfg.n_layers; ++l)
                m_layers.emplace_back(w.cfg, s);
            precompute_rope();
        }

        std::size_t size() const noexcept { return m_layers.front().size(); }

        /// Logits [n][vocab] for the next byte after each of `tokens`, which continue the sequence.
        row_matrix forward(std::uint8_t const* tokens, std::size_t n)
        {
            config const& c = m_w->cfg;
            std::size_t const first = size(), hq = c.n_heads, hkv = c.n_kv_heads, hd = c.head_dim;
            auto const rows = static_cast<Eigen::Index>(n);
            row_matrix x(rows, c.d_model);
            for (std::size_t r = 0; r < n; ++r)
                std::copy_n(m_w->embed.data() + std::size_t{tokens[r]} * c.d_model, c.d_model, x.row(static_cast<Eigen::Index>(r)).data());
            row_matrix h, q, k, v, attn(rows, static_cast<Eigen::Index>(hq * hd)), proj, gate, up;
            for (std::size_t l = 0; l < m_layers.size(); ++l)
            {
                layer_weights const& lw = m_w->layers[l];
                rms_norm(x, lw.attn_norm, c.norm_eps, h);
                linear(h, lw.wq, hq * hd, q);
                linear(h, lw.wk, hkv * hd, k);
                linear(h, lw.wv, hkv * hd, v);
                apply_rope(q, hq, first);
                apply_rope(k, hkv, first);
                using deltaattn::make_token_major;
                m_layers[l].attend(make_token_major<const float>(q.data(), n, hq, hd), make_token_major<const float>(k.data(), n, hkv, hd),
                                   make_token_major<const float>(v.data(), n, hkv, hd), make_token_major(attn.data(), n, hq, hd));
                if (m_record)
                    m_record->push_back({q, k, v});
                linear(attn, lw.wo, c.d_model, proj);
                x += proj;
                rms_norm(x, lw.mlp_norm, c.norm_eps, h);
                linear(h, lw.w_gate, c.ffn_dim, gate);
                linear(h, lw.w_up, c.ffn_dim, up);
                gate = gate.array() / (1.0f + (-gate.array()).exp()) * up.array();  // SiLU(gate) * up
                linear(gate, lw.w_down, c.d_model, proj);
                x += proj;
            }
            rms_norm(x, m_w->final_norm, c.norm_eps, h);
            row_matrix logits;
            linear(h, m_w->embed, c.vocab, logits);
            return logits;
        }

        /// Post-RoPE q, k and v of every layer, appended by each later forward (for traces).
        struct layer_trace
        {
            row_matrix q, k, v;
        };
        void record(std::vector<layer_trace>* into) noexcept { m_record = into; }

        /// Every layer's counters summed: QK and PV work per stage, delta key and value construction.
        deltaattn::attention_stats stats() const
        {
            deltaattn::attention_stats sum;
            for (auto const& layer : m_layers)
                sum += layer.stats();
            return sum;
        }

        /// Seconds spent inside deltaattn's attention calls, all layers.
        double attention_seconds() const noexcept
        {
            double s = 0;
            for (auto const& layer : m_layers)
                s += layer.seconds();
            return s;
        }

    private:
        /// cos and sin per (position, channel pair), computed in double like the trainer's.
        void precompute_rope()
        {
            config const& c = m_w->cfg;
            std::size_t const half = c.head_dim / 2;
            m_cos.resize(c.context * half);
            m_sin.resize(c.context * half);
            for (std::size_t p = 0; p < c.context; ++p)
                for (std::size_t i = 0; i < half; ++i)
                {
                    double const inv_freq = 1.0 / std::pow(static_cast<double>(c.rope_theta), static_cast<double>(i) / static_cast<double>(half));
                    double const angle = static_cast<double>(p) * inv_freq;
                    m_cos[p * half + i] = static_cast<float>(std::cos(angle));
                    m_sin[p * half + i] = static_cast<float>(std::sin(angle));
                }
        }

        /// Rotate-half RoPE on x [n][heads * head_dim], rows at positions first, first + 1, ...
        void apply_rope(row_matrix& x, std::size_t heads, std::size_t first) const
        {
            std::size_t const hd = m_w->cfg.head_dim, half = hd / 2;
            for (Eigen::Index r = 0; r < x.rows(); ++r)
            {
                std::size_t const p = first + static_cast<std::size_t>(r);
                for (std::size_t h = 0; h < heads; ++h)
                {
                    float* a = x.row(r).data() + h * hd;
                    for (std::size_t i = 0; i < half; ++i)
                    {
                        float const cs = m_cos[p * half + i], sn = m_sin[p * half + i];
                        float const lo = a[i], hi = a[i + half];
                        a[i] = lo * cs - hi * sn;
                        a[i + half] = hi * cs + lo * sn;
                    }
                }
            }
        }

        tinylm_weights const* m_w;
        std::vector<layer_attention> m_layers;
        std::vector<float> m_cos, m_sin;
        std::vector<layer_trace>* m_record = nullptr;
    };

    /// -log2 p(next) of the byte `next` under the logits row.
    inline double bits_of(Eigen::Ref<const Eigen::RowVectorXf> logits, std::uint8_t next)
    {
        double const max = logits.maxCoeff();
        double sum = 0;
        for (Eigen::Index i = 0; i < logits.size(); ++i)
            sum += std::exp(static_cast<double>(logits[i]) - max);
        return (std::log(sum) + max - static_cast<double>(logits[next])) / std::log(2.0);
    }
}  // namespace tinylm

#endif  // DELTAATTN_EXAMPLES_TINYLM_HPP
