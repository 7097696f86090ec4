/**
 * @file counters.hpp
 * Sparsity accounting (SPEC.md §4): what every hybrid call reports, per stage.
 */
#ifndef DELTAATTN_COUNTERS_HPP
#define DELTAATTN_COUNTERS_HPP

#include <cstdint>

namespace deltaattn
{
    /// Multiply-accumulates of one stage, summed over query heads and rows: query-key
    /// (QK) work, which the delta K matrix saves, and probability-value (PV) work, which
    /// the delta value matrix saves (SPEC.md §4, §6.1). With values exact the PV work is
    /// the dense count.
    struct attention_work
    {
        std::uint64_t queries = 0;         ///< query vectors (rows x query heads)
        std::uint64_t dense_macs = 0;      ///< QK work of dense attention: (i + 1) * d per query
        std::uint64_t hybrid_macs = 0;     ///< QK work spent, keyframe and base-row dots included
        std::uint64_t dense_pv_macs = 0;   ///< PV work of dense attention: (i + 1) * d per query
        std::uint64_t hybrid_pv_macs = 0;  ///< PV work spent, segment (base/keyframe) rows included

        /// attention sparsity (the paper's headline) = 1 - hybrid QK / dense QK.
        double sparsity() const noexcept { return saved(hybrid_macs, dense_macs); }

        /// value sparsity = 1 - hybrid PV / dense PV (0 with values exact).
        double value_sparsity() const noexcept { return saved(hybrid_pv_macs, dense_pv_macs); }

        /// total sparsity = 1 - (hybrid QK + PV) / (dense QK + PV).
        double total_sparsity() const noexcept { return saved(hybrid_macs + hybrid_pv_macs, dense_macs + dense_pv_macs); }

        attention_work& operator+=(attention_work const& o) noexcept
        {
            queries += o.queries;
            dense_macs += o.dense_macs;
            hybrid_macs += o.hybrid_macs;
            dense_pv_macs += o.dense_pv_macs;
            hybrid_pv_macs += o.hybrid_pv_macs;
            return *this;
        }

    private:
        static double saved(std::uint64_t spent, std::uint64_t dense) noexcept
        {
            return dense == 0 ? 0.0 : 1.0 - static_cast<double>(spent) / static_cast<double>(dense);
        }
    };

    inline attention_work operator+(attention_work a, attention_work const& b) noexcept { return a += b; }

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
    /// `decode`; the layer-level calls also fill the cache figures (SPEC.md §7). The
    /// value figures stay 0 unless the values are kept as deltas (layer_kv_cache).
    struct attention_stats
    {
        attention_work prefill;
        attention_work decode;
        delta_stats keys;                     ///< delta construction of the K caches
        delta_stats values;                   ///< delta construction of the V caches
        std::uint64_t kcache_bytes = 0;       ///< bytes the delta K caches hold
        std::uint64_t kcache_dense_bytes = 0; ///< a dense K cache of the same positions and element type
        std::uint64_t vcache_bytes = 0;       ///< bytes the delta V caches hold
        std::uint64_t vcache_dense_bytes = 0; ///< a dense V cache of the same positions and element type

        attention_work both() const noexcept { return prefill + decode; }

        /// Field by field: the stats of several layers (or windows) as one.
        attention_stats& operator+=(attention_stats const& o) noexcept
        {
            prefill += o.prefill;
            decode += o.decode;
            keys += o.keys;
            values += o.values;
            kcache_bytes += o.kcache_bytes;
            kcache_dense_bytes += o.kcache_dense_bytes;
            vcache_bytes += o.vcache_bytes;
            vcache_dense_bytes += o.vcache_dense_bytes;
            return *this;
        }
    };
}  // namespace deltaattn

#endif  // DELTAATTN_COUNTERS_HPP
