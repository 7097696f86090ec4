/**
 * @file detail/exact_rows.hpp
 * The exact rows of a run of positions in a cache that keeps its sinks in one array
 * and its window in a ring: row pointers for a whole batch with one division.
 *
 * Why: a ring slot is `j % ring_rows`, a 64-bit division that the decode step's exact
 * dots paid twice per row (the row, then its prefetch). Listing a batch's rows with one
 * division took the tiny LM's exact dots from 1.22% to 0.75% of its samples (Zen 5).
 */
#ifndef DELTAATTN_DETAIL_EXACT_ROWS_HPP
#define DELTAATTN_DETAIL_EXACT_ROWS_HPP

#include <cstddef>
#include <type_traits>
#include <utility>

namespace deltaattn
{
    namespace detail
    {
        /// Where a cache keeps its exact rows: `sinks` rows from `sink_rows`, then a
        /// ring of `ring_rows` rows (position j in slot j % ring_rows), `dim` apart.
        template <class T>
        struct sink_ring_rows
        {
            T const* sink_rows;
            T const* ring;
            std::size_t sinks, ring_rows, dim;

            /// out[i] = the row of position j0 + i, for i < count: one division per call.
            void rows(std::size_t j0, std::size_t count, T const** out) const noexcept
            {
                std::size_t i = 0;
                for (; i < count && j0 + i < sinks; ++i)
                    out[i] = sink_rows + (j0 + i) * dim;
                if (i == count)
                    return;
                std::size_t slot = (j0 + i) % ring_rows;
                for (; i < count; ++i)
                {
                    out[i] = ring + slot * dim;
                    slot = slot + 1 == ring_rows ? 0 : slot + 1;
                }
            }
        };

        /// The rows of positions [j0, j0 + count) of a cache whose positions from
        /// `chunk_first` on are still in `chunk` (a chunk being appended), into `out`.
        template <class Cache, class Chunk, class T>
        void cache_then_chunk_rows(Cache const& cache, Chunk const& chunk, std::size_t chunk_first, std::size_t j0, std::size_t count,
                                   T const** out) noexcept
        {
            std::size_t const cached = j0 >= chunk_first ? 0 : (chunk_first - j0 < count ? chunk_first - j0 : count);
            cache.exact_rows(j0, cached, out);
            for (std::size_t i = cached; i < count; ++i)
                out[i] = chunk.row(j0 + i - chunk_first);
        }

        /// Does `Source` list a run of rows at once (`exact_rows`: a cache with a ring)?
        template <class Source, class = void>
        struct lists_exact_rows : std::false_type
        {
        };
        template <class Source>
        struct lists_exact_rows<Source, std::void_t<decltype(std::declval<Source const&>().exact_rows(0, 0, nullptr))>> : std::true_type
        {
        };

        /// out[i] = source.exact_row(j0 + i) for i < count, through `source.exact_rows`
        /// where the source has it (one ring division per run).
        template <class Source, class Row>
        void exact_rows_of(Source const& source, std::size_t j0, std::size_t count, Row* out) noexcept
        {
            if constexpr (lists_exact_rows<Source>::value)
                source.exact_rows(j0, count, out);
            else
                for (std::size_t i = 0; i < count; ++i)
                    out[i] = source.exact_row(j0 + i);
        }
    }  // namespace detail
}  // namespace deltaattn

#endif  // DELTAATTN_DETAIL_EXACT_ROWS_HPP
