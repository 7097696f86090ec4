/**
 * @file kernels/far_columns.hpp
 * The far delta rows of a prefill chunk's value cache regrouped by key tile and channel
 * (compressed sparse columns), built once per KV head for every query block.
 *
 * Why: a query block's p·V over far keys, as SPEC.md §6.1's suffix sums, is
 * Σ_m P(m) Δv_m with P(m) one register per query lane group. Row by row, every stored
 * element is a read-modify-write of R registers of output (measured on Zen 4: bound by
 * the stores, no faster than the dense rows). Column by column, a channel's elements
 * within a tile accumulate in registers, and the output is written once per channel and
 * tile: per stored element one broadcast and R FMAs, against d / width FMAs per lane
 * group and key for the dense rows v̂_j.
 *
 * Layout: tile t holds keys [t * tile, (t + 1) * tile); its elements at channel c are
 * entries [start(t, c), start(t, c + 1)), in key order, each a key offset within the
 * tile and the value widened to float. Keyframe rows are not in it (dense rows).
 */
#ifndef DELTAATTN_KERNELS_FAR_COLUMNS_HPP
#define DELTAATTN_KERNELS_FAR_COLUMNS_HPP

#include "../delta/delta_key_cache.hpp"
#include "../detail/aligned_vector.hpp"
#include "../detail/bits.hpp"
#include "../fp16.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>

namespace deltaattn
{
    namespace kernels
    {
        class far_delta_columns
        {
        public:
            /// Regroups the delta rows of positions [cache.options().sinks, end) by tiles of
            /// `tile` <= 256 keys (aligned to position 0). Reuses its storage across calls.
            /// Returns false, and is left empty, where its storage cannot be allocated: it
            /// is an optional speed-up, built after the caches have changed, so it must
            /// not throw (the dense rows v̂_j serve instead).
            template <class T>
            bool build(basic_delta_cache<T> const& cache, std::size_t end, std::size_t tile) noexcept
            {
                try
                {
                    regroup(cache, end, tile);
                    return true;
                }
                catch (std::bad_alloc const&)
                {
                    m_dim = m_tile = 0;
                    m_starts.clear();
                    m_kept.clear();
                    return false;
                }
            }

            std::size_t tile() const noexcept { return m_tile; }
            /// Tiles built: the ones that hold keys below build's `end`.
            std::size_t tiles() const noexcept { return m_dim ? m_starts.size() / (m_dim + 1) : 0; }
            /// The first entry of channel c in tile t; channel d's is the tile's end.
            std::uint32_t start(std::size_t t, std::size_t c) const noexcept { return m_starts[t * (m_dim + 1) + c]; }
            /// The share of tile t's far values stored (its keyframe rows whole): the sparse
            /// p·V pays below sparse_values_max_kept.
            float kept(std::size_t t) const noexcept { return m_kept[t]; }
            std::uint8_t const* keys() const noexcept { return m_keys.data(); }
            float const* values() const noexcept { return m_values.data(); }

        private:
            template <class T>
            void regroup(basic_delta_cache<T> const& cache, std::size_t end, std::size_t tile)
            {
                std::size_t const sinks = cache.options().sinks, d = cache.dim();
                std::size_t const tiles = end > sinks ? (end + tile - 1) / tile : 0;
                std::size_t elements = 0;
                for (std::size_t j = sinks; j < end; ++j)
                    elements += cache.keyframe_row(j) ? 0 : cache.delta(j).nnz;
                m_dim = d;
                m_tile = tile;
                m_starts.assign(tiles * (d + 1), 0);
                m_kept.assign(tiles, 0.0f);
                m_keys.resize(elements);
                m_values.resize(elements);
                std::uint32_t filled = 0;
                for (std::size_t t = 0; t < tiles; ++t)
                {
                    std::size_t const j0 = std::max(sinks, t * tile), j1 = std::min(end, (t + 1) * tile);
                    std::uint32_t* const start = m_starts.data() + t * (d + 1);
                    std::uint32_t const first = filled;
                    // Counts per channel, then each channel's first entry, then the entries.
                    for_each_element(cache, j0, j1, [&](std::size_t, std::size_t c, T) { ++start[c + 1]; });
                    start[0] = first;
                    for (std::size_t c = 0; c < d; ++c)
                        start[c + 1] += start[c];
                    filled = start[d];
                    for_each_element(cache, j0, j1, [&](std::size_t j, std::size_t c, T value) {
                        std::uint32_t const at = start[c]++;
                        m_keys[at] = static_cast<std::uint8_t>(j - t * tile);
                        m_values[at] = to_float(value);
                    });
                    // The fill advanced each start to the next channel's: shift them back.
                    for (std::size_t c = d; c > 0; --c)
                        start[c] = start[c - 1];
                    start[0] = first;
                    std::size_t keyframes = 0;
                    for (std::size_t j = j0; j < j1; ++j)
                        keyframes += cache.keyframe_row(j) ? 1 : 0;
                    if (j1 > j0)
                        m_kept[t] = static_cast<float>(start[d] - first + keyframes * d) / static_cast<float>((j1 - j0) * d);
                }
            }

            /// f(j, channel, value) for every stored element of the delta rows in [j0, j1).
            template <class T, class F>
            static void for_each_element(basic_delta_cache<T> const& cache, std::size_t j0, std::size_t j1, F&& f)
            {
                for (std::size_t j = j0; j < j1; ++j)
                {
                    if (cache.keyframe_row(j))
                        continue;
                    auto const row = cache.delta(j);
                    T const* value = row.values;
                    for (std::size_t word = 0; word < detail::mask_words(cache.dim()); ++word)
                        for (std::uint64_t bits = row.mask[word]; bits != 0; bits &= bits - 1)
                            f(j, word * 64 + detail::lowest_bit(bits), *value++);
                }
            }

            std::size_t m_dim = 0, m_tile = 0;
            scratch_vector<std::uint32_t> m_starts;
            scratch_vector<std::uint8_t> m_keys;
            scratch_vector<float> m_values;
            scratch_vector<float> m_kept;
        };

        /// Above this share of stored far values (far_delta_columns::kept) a tile's p·V
        /// reads the dense rows v̂_j. Measured on Zen 4 (AVX-512, d 128, K+V prefill at
        /// n 2048, 5 shuffled rounds): with 60% of the values stored the sparse p·V made
        /// the whole prefill 1.15-1.16x faster than the dense rows, with 20% 1.19-1.21x
        /// (key tiles of 32 then); above 60% it was not measured, hence the margin.
        constexpr float sparse_values_max_kept = 0.7f;
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_FAR_COLUMNS_HPP
