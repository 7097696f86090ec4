/**
 * @file reference/counts.hpp
 * Analytic query-key work (SPEC.md §4), counted from the definition, for tests to hold
 * the kernels' counters against.
 *
 * For the query at position i with a non-empty delta set D_i = [sinks, i - window]:
 *   hybrid = d |E_i| + Σ_{j ∈ D_i, j not a keyframe} nnz(Δk_j)
 *            + d #{keyframes f_t = sinks - 1 + t R, t >= 1, in D_i}
 *            + (sinks > 1 ? d : 0)
 * The last term is the base row k̂_{sinks-1}, dotted once per query; with one sink it is
 * k_0, whose exact score is reused. With D_i empty, hybrid = dense = (i + 1) d.
 *
 * Probability-value work with delta values (SPEC.md §6.1's suffix sums, as a decode
 * step computes them): the delta region splits into segments, starting at the
 * base row and at each keyframe in D_i; each segment costs d (closing it: C v̂ − A)
 * and each of its delta rows nnz(Δv_m):
 *   hybrid_pv = d |E_i| + d (1 + #{keyframes in D_i}) + Σ_{m ∈ D_i, m not a keyframe} nnz(Δv_m)
 * With values exact, PV work is the dense (i + 1) d.
 */
#ifndef DELTAATTN_REFERENCE_COUNTS_HPP
#define DELTAATTN_REFERENCE_COUNTS_HPP

#include "../counters.hpp"
#include "../options.hpp"
#include "delta_rows.hpp"

#include <cstdint>

namespace deltaattn
{
    namespace reference
    {
        inline std::uint64_t dense_qk_macs(std::size_t i, std::size_t dim) { return static_cast<std::uint64_t>(i + 1) * dim; }

        /// Is `j` a keyframe that restarts the prefix sums (the base row `sinks - 1` is not)?
        inline bool is_restart_keyframe(std::size_t j, hybrid_options const& options)
        {
            std::size_t const S = options.sinks, R = options.keyframe_interval;
            return R != 0 && j > S - 1 && (j - (S - 1)) % R == 0;
        }

        /// The work QK and PV share for a query at i with a non-empty delta region: d per
        /// exact key and per keyframe in D_i, nnz per other delta row.
        inline std::uint64_t keyed_macs(std::size_t i, delta_rows const& rows, hybrid_options const& options)
        {
            std::size_t const d = rows.dim, S = options.sinks, W = options.window;
            std::uint64_t macs = 0;
            for (std::size_t j = 0; j <= i; ++j)
            {
                bool const exact = j < S || j + W > i;
                macs += exact || is_restart_keyframe(j, options) ? d : rows.updated_count(j);
            }
            return macs;
        }

        inline std::uint64_t hybrid_qk_macs(std::size_t i, delta_rows const& rows, hybrid_options const& options)
        {
            if (i < options.sinks + options.window)  // D_i = [S, i - W] is empty
                return dense_qk_macs(i, rows.dim);
            return keyed_macs(i, rows, options) + (options.sinks > 1 ? rows.dim : 0);  // the base row k̂_{S-1}
        }

        inline std::uint64_t hybrid_pv_macs(std::size_t i, delta_rows const& value_rows, hybrid_options const& options)
        {
            if (i < options.sinks + options.window)
                return dense_qk_macs(i, value_rows.dim);
            return keyed_macs(i, value_rows, options) + value_rows.dim;  // the first segment's start row
        }

        /// Work of query rows at positions [first, last], each counted for `heads` query
        /// heads; `value_rows` null means values exact.
        inline attention_work stage_work(std::size_t first, std::size_t last, std::size_t heads, delta_rows const& rows, hybrid_options const& options,
                                         delta_rows const* value_rows = nullptr)
        {
            attention_work w;
            for (std::size_t i = first; i <= last; ++i)
            {
                std::uint64_t const dense = heads * dense_qk_macs(i, rows.dim);
                w.queries += heads;
                w.dense_macs += dense;
                w.hybrid_macs += heads * hybrid_qk_macs(i, rows, options);
                w.dense_pv_macs += dense;
                w.hybrid_pv_macs += value_rows ? heads * hybrid_pv_macs(i, *value_rows, options) : dense;
            }
            return w;
        }

        /// Delta statistics over rows j >= 1.
        inline delta_stats delta_statistics(delta_rows const& rows)
        {
            delta_stats s;
            for (std::size_t j = 1; j < rows.rows; ++j)
            {
                s.rows += 1;
                s.channels += rows.dim;
                s.updated += rows.updated_count(j);
            }
            return s;
        }
    }  // namespace reference
}  // namespace deltaattn

#endif  // DELTAATTN_REFERENCE_COUNTS_HPP
