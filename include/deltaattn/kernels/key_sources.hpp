/**
 * @file kernels/key_sources.hpp
 * Where the attention kernel reads keys and values from: a dense view, or a delta
 * cache (a delta K cache, or a delta V cache: the same structure, SPEC.md §7).
 */
#ifndef DELTAATTN_KERNELS_KEY_SOURCES_HPP
#define DELTAATTN_KERNELS_KEY_SOURCES_HPP

#include "../delta/delta_key_cache.hpp"
#include "../detail/exact_rows.hpp"
#include "../views.hpp"
#include "far_columns.hpp"

#include <cstddef>
#include <type_traits>

namespace deltaattn
{
    namespace kernels
    {
        /// Rows read in place from a view, every one exact: the keys of dense attention,
        /// the values whenever they are not kept as deltas. T: float or float16.
        template <class T>
        struct dense_rows
        {
            matrix_view<const T> rows;

            static constexpr bool has_deltas = false;
            T const* exact_row(std::size_t j) const noexcept { return rows.row(j); }
        };

        /// Rows of a delta cache (keys, or values with SPEC.md §6.1 on), plus the dense
        /// rows of the chunk being prefilled (positions >= chunk_first, as the cache
        /// stores them), which the ring may not hold yet. Exact rows exist only for the
        /// sinks and the window.
        template <class T>
        struct cached_rows
        {
            basic_delta_cache<T> const* cache;
            matrix_view<const T> chunk;
            std::size_t chunk_first;
            /// Values only, optional: the far rows v̂_j of positions [sinks, ...) rebuilt
            /// once for a whole prefill chunk (d floats each); else the prefill kernel
            /// rebuilds them block by block.
            float const* far = nullptr;
            /// Values only, optional, with `far`: the same rows' delta rows by tile and
            /// channel, for the prefill kernel's sparse p·V (far_columns.hpp).
            far_delta_columns const* far_columns = nullptr;

            static constexpr bool has_deltas = true;
            T const* exact_row(std::size_t j) const noexcept
            {
                // The chunk's rows reach the sinks and the ring only after the chunk.
                return j >= chunk_first ? chunk.row(j - chunk_first) : cache->exact_row(j);
            }
            /// exact_row of positions [j0, j0 + count) into `out`, dividing once for the ring.
            void exact_rows(std::size_t j0, std::size_t count, T const** out) const noexcept
            {
                detail::cache_then_chunk_rows(*cache, chunk, chunk_first, j0, count, out);
            }
        };

        /// Rows whose far region (SPEC.md §3's delta region) is read as dense reconstructed
        /// rows k̂_j rather than delta rows: a quantized cache's prefill. The prefill
        /// kernel then runs its dense path on them (each far row a "keyframe").
        template <class Rows, class = void>
        struct reads_dense_far_rows : std::false_type
        {
        };
        template <class Rows>
        struct reads_dense_far_rows<Rows, std::void_t<decltype(Rows::dense_far_rows)>> : std::integral_constant<bool, Rows::dense_far_rows>
        {
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
