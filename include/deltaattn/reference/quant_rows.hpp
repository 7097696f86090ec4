/**
 * @file reference/quant_rows.hpp
 * The oracle of the quantized delta codec (SPEC.md §10) and of hybrid attention over it.
 *
 * Written from the spec, not from codecs/quant.hpp: every row dense, the scale's
 * rounding up to binary16 and the codes' round-half-to-even spelled out. Construction
 * arithmetic is fp32 as the spec writes it, so the caches must reproduce k̂ bit for bit;
 * attention is in double, one query at a time.
 */
#ifndef DELTAATTN_REFERENCE_QUANT_ROWS_HPP
#define DELTAATTN_REFERENCE_QUANT_ROWS_HPP

#include "../codecs/quant.hpp"
#include "../detail/check_shapes.hpp"
#include "../fp16.hpp"
#include "../options.hpp"
#include "../views.hpp"
#include "attention.hpp"

#include <cmath>
#include <cstddef>
#include <optional>
#include <vector>

namespace deltaattn
{
    namespace reference
    {
        /// Every row of one head through the codec, dense (rows x dim, row-major).
        struct quant_rows
        {
            std::size_t rows = 0, dim = 0;
            std::vector<float> reference;  ///< k̂_j
            std::vector<float> scale;      ///< s_j of each channel's group, per channel
            std::vector<int> code;         ///< c_j[c]

            float const* reference_row(std::size_t j) const { return reference.data() + j * dim; }
            float const* scale_row(std::size_t j) const { return scale.data() + j * dim; }
        };

        namespace detail_oracle
        {
            /// The smallest binary16 >= x, by walking the binary16 values.
            inline float half_round_up(float x)
            {
                std::uint16_t h = float_to_half(x);
                while (half_to_float(h) < x)
                    ++h;
                while (h > 0 && half_to_float(static_cast<std::uint16_t>(h - 1)) >= x)
                    --h;
                return half_to_float(h);
            }

            /// Round half to even, written out.
            inline float round_half_even(float x)
            {
                double const f = std::floor(static_cast<double>(x)), frac = static_cast<double>(x) - f;
                if (frac > 0.5 || (frac == 0.5 && std::fmod(f, 2.0) != 0.0))
                    return static_cast<float>(f + 1.0);
                return static_cast<float>(f);
            }
        }  // namespace detail_oracle

        /// SPEC.md §10's construction over the rows of `keys` (fp32, as given).
        inline quant_rows build_quant_rows(matrix_view<const float> keys, quant_codec const& codec)
        {
            validate_codec(codec, keys.cols);
            std::size_t const n = keys.rows, d = keys.cols, g = codec.group(d);
            float const qmax = static_cast<float>((1 << (codec.bits - 1)) - 1);
            quant_rows out;
            out.rows = n;
            out.dim = d;
            out.reference.assign(n * d, 0.0f);
            out.scale.assign(n * d, 0.0f);
            out.code.assign(n * d, 0);
            std::vector<float> e(d);
            for (std::size_t j = 0; j < n; ++j)
            {
                bool const restart = j == 0 || (codec.keyframe_interval != 0 && j % codec.keyframe_interval == 0);
                for (std::size_t c = 0; c < d; ++c)
                    e[c] = restart ? keys.row(j)[c] : keys.row(j)[c] - out.reference_row(j - 1)[c];
                for (std::size_t c0 = 0; c0 < d; c0 += g)
                {
                    float absmax = 0.0f;
                    for (std::size_t c = c0; c < c0 + g; ++c)
                        absmax = std::fabs(e[c]) > absmax ? std::fabs(e[c]) : absmax;
                    float const s = detail_oracle::half_round_up(absmax / qmax);
                    for (std::size_t c = c0; c < c0 + g; ++c)
                    {
                        int const code = s == 0.0f ? 0 : static_cast<int>(detail_oracle::round_half_even(e[c] / s));
                        float const step = s * static_cast<float>(code);
                        out.code[j * d + c] = code;
                        out.scale[j * d + c] = s;
                        out.reference[j * d + c] = restart ? step : out.reference_row(j - 1)[c] + step;
                    }
                }
            }
            return out;
        }

        /// A query as SPEC.md §10's int8 rule leaves it: per group of 32 channels (the
        /// last may be shorter), s_q = absmax / 127 rounded up to binary16, then
        /// q̃[c] = s_q · round_half_even(q[c] / s_q). `scales` (if given) gets s_q per channel.
        inline std::vector<float> int8_query(float const* q, std::size_t dim, std::vector<float>* scales = nullptr)
        {
            std::vector<float> out(dim), s(dim);
            for (std::size_t c0 = 0; c0 < dim; c0 += 32)
            {
                std::size_t const c1 = c0 + 32 < dim ? c0 + 32 : dim;
                float absmax = 0.0f;
                for (std::size_t c = c0; c < c1; ++c)
                    absmax = std::fabs(q[c]) > absmax ? std::fabs(q[c]) : absmax;
                float const sq = detail_oracle::half_round_up(absmax / 127.0f);
                for (std::size_t c = c0; c < c1; ++c)
                {
                    out[c] = sq == 0.0f ? 0.0f : sq * detail_oracle::round_half_even(q[c] / sq);
                    s[c] = sq;
                }
            }
            if (scales)
                *scales = s;
            return out;
        }

        /// SPEC.md §10's score bound for a far cell j: alpha Σ_c |q[c]| s_j[c] / 2, plus
        /// alpha Σ_c |k̂_j[c]| s_q[c] / 2 for an int8 query.
        inline double quant_score_bound(float const* q, std::size_t j, quant_rows const& rows, float scale, bool int8 = false)
        {
            std::vector<float> s_q;
            if (int8)
                int8_query(q, rows.dim, &s_q);
            double b = 0.0;
            for (std::size_t c = 0; c < rows.dim; ++c)
            {
                b += std::fabs(static_cast<double>(q[c])) * rows.scale_row(j)[c] / 2.0;
                if (int8)
                    b += std::fabs(static_cast<double>(rows.reference_row(j)[c])) * s_q[c] / 2.0;
            }
            return effective_scale(scale, rows.dim) * b;
        }

        /**
         * Hybrid attention with a quantized far context, in double: for query i, key j is
         * exact (k_j, v_j as storage T holds them) for the sinks and the window, else k̂_j
         * (and v̂_j when `value_codec` is given, else v_j). Keys and values are coded from
         * the fp32 inputs. With `key_codec.int8_queries`, the queries at positions
         * >= `decode_from` (decode steps) meet the far keys as int8_query(q).
         */
        template <class T = float>
        void quant_attention(tensor_view<const float> q, tensor_view<const float> k_in, tensor_view<const float> v_in, tensor_view<float> out,
                             hybrid_options const& options, quant_codec const& key_codec, std::optional<quant_codec> const& value_codec = {},
                             std::size_t decode_from = 0)
        {
            deltaattn::detail::check_attention_shapes(q, k_in, v_in, out);
            validate_options(options);
            std::vector<float> const k_stored = rounded_copy<T>(k_in), v_stored = rounded_copy<T>(v_in);
            auto const k = make_token_major(k_stored.data(), k_in.positions, k_in.heads, k_in.dim);
            auto const v = make_token_major(v_stored.data(), v_in.positions, v_in.heads, v_in.dim);
            std::vector<quant_rows> key_rows, value_rows;
            for (std::size_t h = 0; h < k.heads; ++h)
            {
                key_rows.push_back(build_quant_rows(k_in.head(h), key_codec));
                if (value_codec)
                    value_rows.push_back(build_quant_rows(v_in.head(h), *value_codec));
            }
            double const alpha = effective_scale(options.scale, q.dim);
            detail_oracle::for_each_query(q, k, out, [&](float const* qv, std::size_t i, std::size_t kv, float* o) {
                auto const exact = [&](std::size_t j) { return j < options.sinks || j + options.window > i; };
                std::vector<double> s(i + 1);
                bool const int8 = key_codec.int8_queries && i >= decode_from;
                std::vector<float> const q_far = int8 ? int8_query(qv, q.dim) : std::vector<float>(qv, qv + q.dim);
                for (std::size_t j = 0; j <= i; ++j)
                    s[j] = alpha * (exact(j) ? dot(qv, k.head(kv).row(j), q.dim) : dot(q_far.data(), key_rows[kv].reference_row(j), q.dim));
                auto const value_row = [&](std::size_t j) {
                    return value_codec && !exact(j) ? value_rows[kv].reference_row(j) : v.head(kv).row(j);
                };
                detail_oracle::softmax_rows(s, q.dim, value_row, o);
            });
        }
    }  // namespace reference
}  // namespace deltaattn

#endif  // DELTAATTN_REFERENCE_QUANT_ROWS_HPP
