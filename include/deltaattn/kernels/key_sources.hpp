/**
 * @file kernels/key_sources.hpp
 * Where the attention kernel reads keys from: a dense view, or a delta K cache.
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
        /// Keys of dense attention: every key exact, read in place from a view.
        struct dense_keys
        {
            matrix_view<const float> keys;

            static constexpr bool has_deltas = false;
            float const* exact_row(std::size_t j) const noexcept { return keys.row(j); }
        };

        /// Keys of hybrid attention: the delta K cache, plus the dense rows of the chunk
        /// being prefilled (positions >= chunk_first), which the ring may not hold yet.
        struct cached_keys
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
