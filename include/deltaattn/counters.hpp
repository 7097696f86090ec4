/**
 * @file counters.hpp
 * Sparsity accounting (SPEC.md §4): what every hybrid call reports, per stage.
 */
#ifndef DELTAATTN_COUNTERS_HPP
#define DELTAATTN_COUNTERS_HPP

#include <cstdint>

namespace deltaattn
{
    /// Query-key multiply-accumulates of one stage, summed over query heads and rows.
    struct qk_work
    {
        std::uint64_t queries = 0;      ///< query vectors (rows x query heads)
        std::uint64_t dense_macs = 0;   ///< what dense attention spends: (i + 1) * d per query
        std::uint64_t hybrid_macs = 0;  ///< what hybrid attention spent, keyframe dots included

        /// attention sparsity = 1 - hybrid / dense (0 for no work).
        double sparsity() const noexcept
        {
            return dense_macs == 0 ? 0.0 : 1.0 - static_cast<double>(hybrid_macs) / static_cast<double>(dense_macs);
        }

        qk_work& operator+=(qk_work const& o) noexcept
        {
            queries += o.queries;
            dense_macs += o.dense_macs;
            hybrid_macs += o.hybrid_macs;
            return *this;
        }
    };

    inline qk_work operator+(qk_work a, qk_work const& b) noexcept { return a += b; }

    /// Delta construction statistics over rows `j >= 1` (row 0 is dense by definition).
    struct delta_stats
    {
        std::uint64_t rows = 0;      ///< delta rows built, row 0 excluded
        std::uint64_t channels = 0;  ///< rows * dim
        std::uint64_t updated = 0;   ///< channels whose delta was stored (non-zero entries)

        /// delta sparsity = fraction of channels not updated.
        double sparsity() const noexcept
        {
            return channels == 0 ? 0.0 : 1.0 - static_cast<double>(updated) / static_cast<double>(channels);
        }

        delta_stats& operator+=(delta_stats const& o) noexcept
        {
            rows += o.rows;
            channels += o.channels;
            updated += o.updated;
            return *this;
        }
    };

    /// What a hybrid call reports. Prefill calls add to `prefill`, decode steps to
    /// `decode`; the layer-level calls also fill the K cache figures (SPEC.md §7).
    struct attention_stats
    {
        qk_work prefill;
        qk_work decode;
        delta_stats keys;                     ///< delta construction of the K caches
        std::uint64_t kcache_bytes = 0;       ///< bytes the delta K caches hold
        std::uint64_t kcache_dense_bytes = 0; ///< a dense fp32 K cache of the same positions

        qk_work both() const noexcept { return prefill + decode; }
    };
}  // namespace deltaattn

#endif  // DELTAATTN_COUNTERS_HPP
