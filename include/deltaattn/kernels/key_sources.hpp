/**
 * @file kernels/key_sources.hpp
 * Where the attention kernel reads keys and values from: a dense view, or a delta
 * cache (a delta K cache, or a delta V cache: the same structure, SPEC.md §7).
 */
#ifndef DELTAATTN_KERNELS_KEY_SOURCES_HPP
#define DELTAATTN_KERNELS_KEY_SOURCES_HPP

#include "../delta/delta_key_cache.hpp"
#include "../views.hpp"

#include <cstddef>

namespace deltaattn
{
    namespace kernels
    {
        /// Rows read in place from a view, every one exact: the keys of dense attention,
        /// the values whenever they are not kept as deltas.
        struct dense_rows
        {
            matrix_view<const float> rows;

            static constexpr bool has_deltas = false;
            float const* exact_row(std::size_t j) const noexcept { return rows.row(j); }
        };

        /// Rows of a delta cache (keys, or values with SPEC.md §6.1 on), plus the dense
        /// rows of the chunk being prefilled (positions >= chunk_first), which the ring
        /// may not hold yet. Exact rows exist only for the sinks and the window.
        struct cached_rows
        {
            delta_key_cache const* cache;
            matrix_view<const float> chunk;
            std::size_t chunk_first;

            static constexpr bool has_deltas = true;
            float const* exact_row(std::size_t j) const noexcept
            {
                // The chunk's rows reach the sinks and the ring only after the chunk.
                if (j >= chunk_first)
                    return chunk.row(j - chunk_first);
                return j < cache->options().sinks ? cache->sink_row(j) : cache->window_row(j);
            }
        };

        /// Where the exact/delta split falls (SPEC.md §3).
        struct hybrid_split
        {
            std::size_t sinks;
            std::size_t window;
        };
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_KEY_SOURCES_HPP
