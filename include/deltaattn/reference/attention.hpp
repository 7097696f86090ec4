/**
 * @file reference/attention.hpp
 * The oracle's dense and hybrid attention (SPEC.md §1, §3): double precision, one
 * query at a time, every score materialized. The definition, not an algorithm.
 */
#ifndef DELTAATTN_REFERENCE_ATTENTION_HPP
#define DELTAATTN_REFERENCE_ATTENTION_HPP

#include "../detail/check_shapes.hpp"
#include "../options.hpp"
#include "delta_rows.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace deltaattn
{
    namespace reference
    {
        inline double dot(float const* a, float const* b, std::size_t d)
        {
            double s = 0.0;
            for (std::size_t c = 0; c < d; ++c)
                s += static_cast<double>(a[c]) * static_cast<double>(b[c]);
            return s;
        }

        /// Scores alpha q·k_j of one query at position i against keys 0..i.
        inline std::vector<double> dense_scores(float const* q, std::size_t i, matrix_view<const float> keys, float scale)
        {
            double const alpha = effective_scale(scale, keys.cols);
            std::vector<double> s(i + 1);
            for (std::size_t j = 0; j <= i; ++j)
                s[j] = alpha * dot(q, keys.row(j), keys.cols);
            return s;
        }

        /// Scores of SPEC.md §3: k_j for the sinks and the window, k̂_j between.
        inline std::vector<double> hybrid_scores(float const* q, std::size_t i, matrix_view<const float> keys, delta_rows const& rows,
                                                 hybrid_options const& options)
        {
            double const alpha = effective_scale(options.scale, keys.cols);
            std::vector<double> s(i + 1);
            for (std::size_t j = 0; j <= i; ++j)
            {
                bool const exact = j < options.sinks || j + options.window > i;
                s[j] = alpha * dot(q, exact ? keys.row(j) : rows.reference_row(j), keys.cols);
            }
            return s;
        }

        /// SPEC.md §3's bound on |s̃_i[j] - s_i[j]| for a delta cell j: alpha Σ_c |q[c]| θ_j.
        inline double score_bound(float const* q, std::size_t dim, std::size_t j, delta_rows const& rows, float scale)
        {
            double const theta = rows.theta[j];
            if (std::isnan(theta))
                return std::numeric_limits<double>::infinity();
            double l1 = 0.0;
            for (std::size_t c = 0; c < dim; ++c)
                l1 += std::fabs(static_cast<double>(q[c]));
            return effective_scale(scale, dim) * l1 * theta;
        }

        namespace detail_oracle
        {
            /// out = Σ_j softmax(s)_j value_row(j), in double with the maximum subtracted.
            template <class ValueRow>
            void softmax_rows(std::vector<double> const& s, std::size_t dim, ValueRow&& value_row, float* out)
            {
                double const m = *std::max_element(s.begin(), s.end());
                double sum = 0.0;
                std::vector<double> o(dim, 0.0);
                for (std::size_t j = 0; j < s.size(); ++j)
                {
                    double const p = std::exp(s[j] - m);
                    sum += p;
                    float const* v = value_row(j);
                    for (std::size_t c = 0; c < dim; ++c)
                        o[c] += p * v[c];
                }
                for (std::size_t c = 0; c < dim; ++c)
                    out[c] = static_cast<float>(o[c] / sum);
            }

            /// out = Σ_j softmax(s)_j v_j.
            inline void softmax_values(std::vector<double> const& s, matrix_view<const float> values, float* out)
            {
                softmax_rows(s, values.cols, [&](std::size_t j) { return values.row(j); }, out);
            }

            /// Calls f(query pointer, position, kv head, output pointer) for every query vector.
            template <class F>
            void for_each_query(tensor_view<const float> q, tensor_view<const float> k, tensor_view<float> out, F&& f)
            {
                std::size_t const group = q.heads / k.heads, offset = k.positions - q.positions;
                for (std::size_t r = 0; r < q.positions; ++r)
                    for (std::size_t h = 0; h < q.heads; ++h)
                        f(q.at(r, h), offset + r, h / group, out.at(r, h));
            }
        }  // namespace detail_oracle

        /**
         * Dense causal attention in double. Query row r sits at position
         * k.positions - q.positions + r; query head h reads KV head h / (Hq / Hkv).
         */
        inline void dense_attention(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const float> v, tensor_view<float> out,
                                    float scale = 0.0f)
        {
            deltaattn::detail::check_attention_shapes(q, k, v, out);
            detail_oracle::for_each_query(q, k, out, [&](float const* qv, std::size_t i, std::size_t kv, float* o) {
                detail_oracle::softmax_values(dense_scores(qv, i, k.head(kv), scale), v.head(kv), o);
            });
        }

        /// Every element of `t` as storage T holds it (a copy, token-major).
        template <class T>
        std::vector<float> rounded_copy(tensor_view<const float> t)
        {
            std::vector<float> copy(t.positions * t.heads * t.dim);
            for (std::size_t r = 0; r < t.positions; ++r)
                for (std::size_t h = 0; h < t.heads; ++h)
                    std::transform(t.at(r, h), t.at(r, h) + t.dim, copy.begin() + static_cast<std::ptrdiff_t>((r * t.heads + h) * t.dim), round_to<T>);
            return copy;
        }

        /**
         * Hybrid attention of SPEC.md §3 in double; keys of each KV head through
         * build_delta_rows. T is the storage element modelled: float, or float16 (keys and
         * values rounded to binary16, deltas as build_delta_rows<float16> keeps them).
         */
        template <class T = float>
        void hybrid_attention(tensor_view<const float> q, tensor_view<const float> k_in, tensor_view<const float> v_in, tensor_view<float> out,
                              hybrid_options const& options, delta_policy const& policy)
        {
            deltaattn::detail::check_attention_shapes(q, k_in, v_in, out);
            validate_options(options);
            validate_policy(policy, q.dim);
            std::vector<float> const k_stored = rounded_copy<T>(k_in), v_stored = rounded_copy<T>(v_in);
            auto const k = make_token_major(k_stored.data(), k_in.positions, k_in.heads, k_in.dim);
            auto const v = make_token_major(v_stored.data(), v_in.positions, v_in.heads, v_in.dim);
            std::vector<delta_rows> rows;
            for (std::size_t h = 0; h < k.heads; ++h)
                rows.push_back(build_delta_rows<T>(k_in.head(h), policy));
            detail_oracle::for_each_query(q, k, out, [&](float const* qv, std::size_t i, std::size_t kv, float* o) {
                detail_oracle::softmax_values(hybrid_scores(qv, i, k.head(kv), rows[kv], options), v.head(kv), o);
            });
        }

        /**
         * Hybrid attention with the delta value matrix of SPEC.md §6.1, in double: keys
         * as above, and for j in the delta region D_i the reference value v̂_j (values of
         * each KV head through build_delta_rows with `value_policy`).
         *
         * T is the storage element of the caches modelled: float, or float16 for
         * `layer_kv_cache_f16` (keys and values rounded to binary16, deltas as
         * build_delta_rows<float16> keeps them).
         */
        template <class T = float>
        void hybrid_attention(tensor_view<const float> q, tensor_view<const float> k_in, tensor_view<const float> v_in, tensor_view<float> out,
                              hybrid_options const& options, delta_policy const& policy, delta_policy const& value_policy)
        {
            deltaattn::detail::check_attention_shapes(q, k_in, v_in, out);
            validate_options(options);
            validate_policy(policy, q.dim);
            validate_policy(value_policy, q.dim);
            std::vector<float> const k_stored = rounded_copy<T>(k_in), v_stored = rounded_copy<T>(v_in);
            auto const k = make_token_major(k_stored.data(), k_in.positions, k_in.heads, k_in.dim);
            auto const v = make_token_major(v_stored.data(), v_in.positions, v_in.heads, v_in.dim);
            std::vector<delta_rows> key_rows, value_rows;
            for (std::size_t h = 0; h < k.heads; ++h)
            {
                key_rows.push_back(build_delta_rows<T>(k_in.head(h), policy));
                value_rows.push_back(build_delta_rows<T>(v_in.head(h), value_policy));
            }
            detail_oracle::for_each_query(q, k, out, [&](float const* qv, std::size_t i, std::size_t kv, float* o) {
                auto const values = v.head(kv);
                auto const value_row = [&](std::size_t j) {
                    bool const exact = j < options.sinks || j + options.window > i;
                    return exact ? values.row(j) : value_rows[kv].reference_row(j);
                };
                detail_oracle::softmax_rows(hybrid_scores(qv, i, k.head(kv), key_rows[kv], options), q.dim, value_row, o);
            });
        }
    }  // namespace reference
}  // namespace deltaattn

#endif  // DELTAATTN_REFERENCE_ATTENTION_HPP
