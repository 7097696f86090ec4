/**
 * @file delta/delta_key_cache.hpp
 * The delta K cache of one KV head (SPEC.md §7).
 *
 * Keeps, for positions 0..size()-1:
 *  - the dense keys of the sinks (positions < sinks);
 *  - a ring of the dense keys of the last `window` positions;
 *  - the compressed delta row of every position (bitmask + packed values);
 *  - the running reference row, and dense reference rows ("keyframes") at positions
 *    `sinks - 1 + t * keyframe_interval` where prefix sums start or restart.
 * Dense keys older than the window are not kept: that is the memory saving.
 *
 * Storage is `float` or `float16` (`delta_key_cache_f16`). A float16 cache rounds each
 * appended key to binary16 first, so its dense rows are exactly the keys it was given
 * as binary16; it stores each delta rounded to binary16 too, and its reference row
 * follows the *stored* deltas (k̂_j = k̂_{j-1} + half(Δ)), so rounding never
 * accumulates: the next delta is taken against what the kernels will reconstruct.
 * The reference and keyframe rows stay fp32 (they are sums of halves, not halves, and
 * there is one per keyframe interval). `reference::build_delta_rows<float16>` is the
 * oracle of exactly this.
 *
 * Appending is the only mutation. It has the strong exception guarantee: a throw
 * (a bad key with checking on, a full cache, an allocation failure) leaves the cache
 * exactly as it was.
 */
#ifndef DELTAATTN_DELTA_DELTA_KEY_CACHE_HPP
#define DELTAATTN_DELTA_DELTA_KEY_CACHE_HPP

#include "../detail/aligned_vector.hpp"
#include "../counters.hpp"
#include "../detail/bits.hpp"
#include "../detail/exact_rows.hpp"
#include "../fp16.hpp"
#include "../options.hpp"
#include "../kernels/arch/expand_kernel.hpp"
#include "../views.hpp"
#include "delta_builder.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace deltaattn
{
    /// A compressed delta row: which channels were updated, and their deltas packed. A
    /// cache's rows are followed by at least `kernels::expand_padding` readable values
    /// (the next rows', or the cache's zero padding), so a kernel may load a whole
    /// register from any of a row's values.
    template <class T>
    struct basic_delta_row
    {
        std::uint64_t const* mask = nullptr;
        T const* values = nullptr;
        std::size_t nnz = 0;
    };
    using delta_row = basic_delta_row<float>;

    /**
     * The delta cache of one KV head's keys, or of its values (SPEC.md §6.1 keeps them
     * the same way: `delta_value_cache`). "Key" below reads "row" for a value cache.
     * `T` is the storage element of the dense rows and packed deltas: float or float16.
     */
    template <class T>
    class basic_delta_cache
    {
        static_assert(std::is_same<T, float>::value || std::is_same<T, float16>::value, "storage is float or float16");
        static constexpr bool rounds = !std::is_same<T, float>::value;

    public:
        using element_type = T;

        /**
         * A cache for up to `capacity` positions of `dim`-channel keys. `rows_name` is
         * the argument its errors name ("k" for keys, "v" for values).
         * Throws `std::invalid_argument` naming the argument on bad options or policy.
         */
        basic_delta_cache(std::size_t dim, std::size_t capacity, hybrid_options const& options, delta_policy const& policy,
                          char const* rows_name = "k")
            : m_builder(policy, dim), m_options(options), m_capacity(capacity), m_words(detail::mask_words(dim)), m_name(rows_name)
        {
            validate_options(options);
            std::size_t const sinks = std::min(options.sinks, capacity);
            std::size_t const ring = std::min(options.window, capacity);
            m_sinks.resize(sinks * dim);
            m_ring.resize(ring * dim);
            m_reference.resize(dim);
            m_scratch_reference.resize(dim);
            m_scratch_mask.resize(m_words);
            m_scratch_values.resize(dim);
            if (rounds)
            {
                m_scratch_key.resize(dim);
                m_scratch_row.resize(dim);
            }
            m_values.assign(padding, T{});
            m_masks.reserve(capacity * m_words);
            m_offsets.reserve(capacity + 1);
            m_offsets.push_back(0);
            m_keyframes.reserve(keyframe_count(capacity) * dim);
        }

        std::size_t dim() const noexcept { return m_builder.dim(); }
        std::size_t size() const noexcept { return m_offsets.size() - 1; }
        std::size_t capacity() const noexcept { return m_capacity; }
        hybrid_options const& options() const noexcept { return m_options; }
        delta_policy const& policy() const noexcept { return m_builder.policy(); }

        /// Appends the key of position `size()`: its delta row, and its dense row to the
        /// sinks or the window ring.
        void append(float const* key)
        {
            append_delta(key);
            if constexpr (rounds)
            {
                std::transform(key, key + dim(), m_scratch_row.begin(), from_float<T>);
                push_exact(m_scratch_row.data(), size() - 1);
            }
            else
                push_exact(key, size() - 1);
        }

        /// Appends `keys.rows` consecutive positions. All or nothing: rows are checked
        /// (capacity, and finiteness if `check_finite`) before any is appended.
        void append(matrix_view<const float> keys)
        {
            check_rows(keys);
            reserve_values(keys.rows);
            for (std::size_t r = 0; r < keys.rows; ++r)
                append(keys.row(r));
        }

        // ---- what kernels read -------------------------------------------------

        /// Dense key of a sink position (`j < sinks`).
        T const* sink_row(std::size_t j) const noexcept { return m_sinks.data() + j * dim(); }

        /// Dense key of a position still in the window ring (`j >= size() - window`).
        T const* window_row(std::size_t j) const noexcept { return m_ring.data() + (j % ring_rows()) * dim(); }

        /// The dense key of `j` from wherever it is kept (a sink or the ring).
        T const* exact_row(std::size_t j) const noexcept { return j < m_options.sinks ? sink_row(j) : window_row(j); }

        /// The dense keys of positions [j0, j0 + count) (each a sink or in the ring), into
        /// `out`: one ring division for the run, not one per row.
        void exact_rows(std::size_t j0, std::size_t count, T const** out) const noexcept
        {
            detail::sink_ring_rows<T>{m_sinks.data(), m_ring.data(), m_options.sinks, ring_rows(), dim()}.rows(j0, count, out);
        }

        basic_delta_row<T> delta(std::size_t j) const noexcept
        {
            return {m_masks.data() + j * m_words, m_values.data() + m_offsets[j], m_offsets[j + 1] - m_offsets[j]};
        }

        /// The dense reference row at `sinks - 1`, where every prefix sum starts.
        float const* base_row() const noexcept { return m_keyframes.data(); }

        /// The keyframe (dense reference row) at `j`, or nullptr if `j` holds none.
        /// The base row is not returned here: it is a start, not a restart.
        float const* keyframe_row(std::size_t j) const noexcept
        {
            std::size_t const r = m_options.keyframe_interval, first = m_options.sinks - 1;
            if (r == 0 || j <= first || (j - first) % r != 0)
                return nullptr;
            return m_keyframes.data() + ((j - first) / r) * dim();
        }

        /// Where a walk over rows meets keyframe_row next without testing every row (a
        /// division each): the first keyframe position >= j, or no_keyframe.
        std::size_t next_keyframe(std::size_t j) const noexcept
        {
            std::size_t const r = m_options.keyframe_interval, first = m_options.sinks - 1;
            if (r == 0)
                return no_keyframe;
            return j <= first + r ? first + r : first + (j - first + r - 1) / r * r;
        }

        /// The last keyframe position <= j, or no_keyframe (the base row is not one).
        std::size_t previous_keyframe(std::size_t j) const noexcept
        {
            std::size_t const r = m_options.keyframe_interval, first = m_options.sinks - 1;
            if (r == 0 || j < first + r)
                return no_keyframe;
            return first + (j - first) / r * r;
        }

        /// next_keyframe / previous_keyframe: there is none.
        static constexpr std::size_t no_keyframe = static_cast<std::size_t>(-1);

        /// The running reference row k̂ of the last position.
        float const* reference_row() const noexcept { return m_reference.data(); }

        /// Delta construction statistics over rows j >= 1.
        delta_stats stats() const noexcept
        {
            delta_stats s;
            if (size() > 1)
            {
                s.rows = size() - 1;
                s.channels = s.rows * dim();
                s.updated = m_offsets.back() - m_offsets[1];
            }
            return s;
        }

        /// Bytes held for the positions appended so far (sinks, ring, keyframes, masks,
        /// row offsets, packed values and their padding, running reference).
        std::size_t bytes() const noexcept
        {
            std::size_t const d = dim();
            std::size_t const kept_sinks = std::min(size(), m_options.sinks);
            std::size_t const kept_ring = std::min(size(), ring_rows());
            std::size_t const keyframes = size() >= m_options.sinks ? keyframe_count(size()) : 0;
            return sizeof(T) * (d * (kept_sinks + kept_ring) + m_values.size()) + sizeof(float) * d * (keyframes + 1) +
                   sizeof(std::uint64_t) * m_words * size() + sizeof(std::size_t) * m_offsets.size();
        }

        /// bytes() per position; a dense K cache of the same element holds `sizeof(T) * dim()`.
        double bytes_per_token() const noexcept { return size() == 0 ? 0.0 : static_cast<double>(bytes()) / static_cast<double>(size()); }

        /// θ_j of a key under this cache's policy (for the SPEC.md §3 bound).
        float row_threshold(float const* key) const { return m_builder.row_threshold(key); }

        // ---- chunked prefill support ------------------------------------------
        // Prefill of a chunk needs the ring as it was *before* the chunk (queries early
        // in the chunk still see keys from the previous one), so it appends the deltas
        // first, attends, and pushes the dense rows last.

        /// Appends delta rows only (no dense copy into the ring). Pair with push_exact.
        void append_delta(float const* key)
        {
            if (size() >= m_capacity)  // (the message only then: this path must not allocate)
                detail::reject(m_name, "the cache is full (capacity " + std::to_string(m_capacity) + ")");
            if (m_options.check_finite)
                check_key(key);

            std::size_t const j = size();
            if constexpr (rounds)  // the key as this cache stores it
            {
                std::transform(key, key + dim(), m_scratch_key.begin(), round_to<T>);
                key = m_scratch_key.data();
            }
            std::copy(m_reference.begin(), m_reference.end(), m_scratch_reference.begin());
            std::size_t const nnz = j == 0 ? m_builder.build_first(key, m_scratch_reference.data(), m_scratch_mask.data(), m_scratch_values.data())
                                           : m_builder.build(key, m_scratch_reference.data(), m_scratch_mask.data(), m_scratch_values.data());
            if (rounds && j > 0)
                round_deltas();
            bool const keyframe = is_keyframe_position(j);

            // Everything that can throw happens before anything visible changes. The
            // reserves at construction make these inserts non-allocating but the values.
            auto const packed_end = m_scratch_values.begin() + static_cast<std::ptrdiff_t>(nnz);
            if constexpr (rounds)
            {
                std::transform(m_scratch_values.begin(), packed_end, m_scratch_row.begin(), from_float<T>);
                m_values.insert(values_end(), m_scratch_row.begin(), m_scratch_row.begin() + static_cast<std::ptrdiff_t>(nnz));
            }
            else
                m_values.insert(values_end(), m_scratch_values.begin(), packed_end);
            m_masks.insert(m_masks.end(), m_scratch_mask.begin(), m_scratch_mask.end());
            m_offsets.push_back(m_values.size() - padding);
            m_reference.swap(m_scratch_reference);
            if (keyframe)
                m_keyframes.insert(m_keyframes.end(), m_reference.begin(), m_reference.end());
        }

        /// Copies the dense key of position `j` (already delta-appended), as stored (for a
        /// float16 cache: `from_float<float16>` of the key given to append_delta), to the
        /// sinks or the ring.
        void push_exact(T const* key, std::size_t j) noexcept
        {
            std::size_t const d = dim();
            if (j < m_options.sinks)
                std::copy(key, key + d, m_sinks.begin() + static_cast<std::ptrdiff_t>(j * d));
            std::copy(key, key + d, m_ring.begin() + static_cast<std::ptrdiff_t>((j % ring_rows()) * d));
        }

        /// Makes room for the packed values of `rows` more positions, so that appending
        /// them cannot throw. Grows geometrically: decode appends stay amortized O(1).
        void reserve_values(std::size_t rows)
        {
            std::size_t const need = m_values.size() + rows * dim();
            if (need > m_values.capacity())
                m_values.reserve(std::max(need, 2 * m_values.capacity()));
        }

        /// Throws unless `keys` fits: right width, room left, finite if checking.
        void check_rows(matrix_view<const float> keys) const
        {
            DELTAATTN_REQUIRE(keys.cols == dim(), m_name, "has " + std::to_string(keys.cols) + " channels, the cache " + std::to_string(dim()));
            DELTAATTN_REQUIRE(size() + keys.rows <= m_capacity, m_name,
                            "appending " + std::to_string(keys.rows) + " positions overflows the cache (size " + std::to_string(size()) +
                                ", capacity " + std::to_string(m_capacity) + ")");
            if (m_options.check_finite)
                for (std::size_t r = 0; r < keys.rows; ++r)
                    check_key(keys.row(r));
        }

    private:
        /// Values kept past the last row's packed values: the expansion kernels load whole
        /// registers (kernels/arch/expand_kernel.hpp). Zeros, always at the end.
        static constexpr std::size_t padding = kernels::expand_padding;

        /// Where the next row's packed values go: before the padding.
        typename aligned_vector<T>::iterator values_end() noexcept { return m_values.end() - static_cast<std::ptrdiff_t>(padding); }

        /// Finite, and for a float16 cache inside its range (rounding would make it inf).
        void check_key(float const* key) const
        {
            detail::require_finite_rows(matrix_view<const float>{key, 1, dim(), 0}, m_name);
            if constexpr (rounds)
                for (std::size_t c = 0; c < dim(); ++c)
                    if (std::isinf(round_to<T>(key[c])))
                        detail::reject(m_name, "channel " + std::to_string(c) + " (" + std::to_string(key[c]) + ") overflows float16 storage");
        }

        /// Rounds the row's packed deltas to storage and makes the new reference follow
        /// them: k̂[c] = k̂_{j-1}[c] + half(Δ[c]) on each updated channel.
        void round_deltas() noexcept
        {
            std::size_t i = 0;
            for (std::size_t word = 0; word < m_words; ++word)
                for (std::uint64_t bits = m_scratch_mask[word]; bits != 0; bits &= bits - 1, ++i)
                {
                    std::size_t const c = word * 64 + detail::lowest_bit(bits);
                    m_scratch_values[i] = round_to<T>(m_scratch_values[i]);
                    m_scratch_reference[c] = m_reference[c] + m_scratch_values[i];
                }
        }

        std::size_t ring_rows() const noexcept { return std::max<std::size_t>(1, std::min(m_options.window, m_capacity)); }

        bool is_keyframe_position(std::size_t j) const noexcept
        {
            std::size_t const first = m_options.sinks - 1, r = m_options.keyframe_interval;
            return j == first || (r != 0 && j > first && (j - first) % r == 0);
        }

        /// Keyframes among positions [0, n), the base row included.
        std::size_t keyframe_count(std::size_t n) const noexcept
        {
            std::size_t const first = m_options.sinks - 1, r = m_options.keyframe_interval;
            if (n <= first)
                return 0;
            return 1 + (r == 0 ? 0 : (n - 1 - first) / r);
        }

        delta_builder m_builder;
        hybrid_options m_options;
        std::size_t m_capacity;
        std::size_t m_words;
        char const* m_name;  // the argument errors name

        aligned_vector<T> m_sinks, m_ring;  // the rows the kernels read start on cache lines
        aligned_vector<float> m_keyframes;
        std::vector<float> m_reference;
        aligned_vector<std::uint64_t> m_masks;
        std::vector<std::size_t> m_offsets;  // m_offsets[j] = first packed value of row j
        aligned_vector<T> m_values;          // packed values of every row, then `padding` zeros

        std::vector<float> m_scratch_reference, m_scratch_values, m_scratch_key;
        std::vector<T> m_scratch_row;
        std::vector<std::uint64_t> m_scratch_mask;
    };

    /// The delta K cache of one KV head, fp32 storage.
    using delta_key_cache = basic_delta_cache<float>;
    /// The delta K cache of one KV head, binary16 storage (fp32 compute).
    using delta_key_cache_f16 = basic_delta_cache<float16>;
    /// The delta V cache of one KV head (SPEC.md §6.1, §7): the same structure as keys'.
    using delta_value_cache = delta_key_cache;
    using delta_value_cache_f16 = delta_key_cache_f16;
}  // namespace deltaattn

#endif  // DELTAATTN_DELTA_DELTA_KEY_CACHE_HPP
