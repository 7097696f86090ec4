/**
 * @file caches/quant_cache.hpp
 * The quantized-delta cache of one KV head's keys, or of its values (SPEC.md §10).
 *
 * Keeps, for positions 0..size()-1:
 *  - the exact rows of the sinks (positions < sinks) and a ring of the last `window`
 *    positions, as storage T (float, or float16 rounded from the input);
 *  - the code row (codes + binary16 scales, codecs/quant.hpp) of every position >= sinks:
 *    only those can ever be read as far context;
 *  - the reference k̂_{sinks-1} ("base row", fp32), where every far prefix starts, and
 *    the running reference k̂ of the last row, which the next residual is taken against.
 * Rows below the sinks are coded too (the chain starts at row 0, SPEC.md §10) but only
 * their reference is kept.
 *
 * Without a codec (`std::nullopt`) every row is kept exact: the dense V cache of a
 * K-only configuration, with the same interface.
 *
 * The codec sees the fp32 row as given, before any rounding to T: its bound is |k̂ − k|
 * <= s/2 against the input.
 *
 * Appends are all or nothing: `checkpoint()` / `rollback()` let a layer cache undo a
 * chunk whose later row fails (a scale past binary16's range). Capacity and the
 * checkpoint are allocated at construction, so appending never allocates.
 */
#ifndef DELTAATTN_CACHES_QUANT_CACHE_HPP
#define DELTAATTN_CACHES_QUANT_CACHE_HPP

#include "../detail/aligned_vector.hpp"
#include "../codecs/quant.hpp"
#include "../detail/exact_rows.hpp"
#include "../detail/validate.hpp"
#include "../fp16.hpp"
#include "../options.hpp"
#include "../views.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace deltaattn
{
    /// One stored far-context row: codes (codec.code_bytes(dim) bytes) and scales.
    struct quant_row
    {
        std::uint8_t const* codes = nullptr;
        float16 const* scales = nullptr;
    };

    template <class T>
    class basic_quant_cache
    {
        static_assert(std::is_same<T, float>::value || std::is_same<T, float16>::value, "storage is float or float16");

    public:
        using element_type = T;

        /// Bytes (codes) and scales readable past the last row: kernels load whole registers.
        static constexpr std::size_t code_padding = 64, scale_padding = 16;

        /**
         * A cache for up to `capacity` rows of `dim` channels; `codec` empty keeps every
         * row exact. `rows_name` is the argument errors name ("k" or "v").
         * Throws `std::invalid_argument` naming the parameter on bad options or codec.
         */
        basic_quant_cache(std::size_t dim, std::size_t capacity, hybrid_options const& options, std::optional<quant_codec> const& codec,
                          char const* rows_name = "k")
            : m_options(options), m_codec(codec), m_dim(dim), m_capacity(capacity), m_name(rows_name)
        {
            validate_options(options);
            DELTAATTN_REQUIRE(dim >= 1, "dim", "must be >= 1" + detail::got(dim));
            if (codec)
                validate_codec(*codec, dim);
            m_sinks.resize(std::min(options.sinks, capacity) * dim);
            m_ring.resize(ring_rows() * dim);
            m_stored_row.resize(dim);
            if (codec)
            {
                std::size_t const far = capacity > options.sinks ? capacity - options.sinks : 0;
                m_codes.assign(far * codec->code_bytes(dim) + code_padding, 0);
                m_scales.assign(far * codec->scales(dim) + scale_padding, float16{});
                m_base.assign(dim, 0.0f);
                m_reference.assign(dim, 0.0f);
                m_saved_base.assign(dim, 0.0f);
                m_saved_reference.assign(dim, 0.0f);
                m_scratch.assign(2 * dim, 0.0f);
                m_row_codes.assign(codec->code_bytes(dim), 0);
                m_row_scales.assign(codec->scales(dim), 0);
            }
        }

        std::size_t dim() const noexcept { return m_dim; }
        std::size_t size() const noexcept { return m_size; }
        std::size_t capacity() const noexcept { return m_capacity; }
        hybrid_options const& options() const noexcept { return m_options; }
        /// Rows past the sinks are coded (else every row is exact).
        bool coded() const noexcept { return m_codec.has_value(); }
        quant_codec const& codec() const noexcept { return *m_codec; }

        // ---- what kernels read -------------------------------------------------

        /// The exact row of `j` (a sink, or a position still in the ring; any j uncoded).
        T const* exact_row(std::size_t j) const noexcept
        {
            return j < m_options.sinks ? m_sinks.data() + j * m_dim : m_ring.data() + (j % ring_rows()) * m_dim;
        }

        /// The exact rows of positions [j0, j0 + count), into `out`: one ring division for
        /// the run, not one per row.
        void exact_rows(std::size_t j0, std::size_t count, T const** out) const noexcept
        {
            detail::sink_ring_rows<T>{m_sinks.data(), m_ring.data(), m_options.sinks, ring_rows(), m_dim}.rows(j0, count, out);
        }

        /// The code row of position j >= sinks.
        quant_row code_row(std::size_t j) const noexcept
        {
            std::size_t const r = j - m_options.sinks;
            return {m_codes.data() + r * m_codec->code_bytes(m_dim), m_scales.data() + r * m_codec->scales(m_dim)};
        }

        /// k̂_{sinks-1}: where a far prefix starts unless row `sinks` is a keyframe.
        float const* base_row() const noexcept { return m_base.data(); }

        /// Writes k̂_j for j in [sinks, end) into `out` (row-major, dim apart), following
        /// the stored codes from the base row: the dense far rows a prefill tile reads.
        void reconstruct(std::size_t end, float* out) const noexcept
        {
            std::size_t const d = m_dim, g = m_codec->group(d), sinks = m_options.sinks;
            for (std::size_t j = sinks; j < end; ++j)
            {
                quant_row const row = code_row(j);
                float const* previous = j == sinks ? m_base.data() : out + (j - 1 - sinks) * d;
                float* const ref = out + (j - sinks) * d;
                bool const restart = m_codec->is_keyframe(j);
                for (std::size_t c0 = 0; c0 < d; c0 += g)
                {
                    float const scale = to_float(row.scales[c0 / g]);  // (widened once per group)
                    for (std::size_t c = c0; c < c0 + g; ++c)
                    {
                        float const step = scale * static_cast<float>(code_at(row.codes, m_codec->bits, c));
                        ref[c] = restart ? step : previous[c] + step;
                    }
                }
            }
        }

        /// Bytes held for the rows appended so far: exact rows, codes, scales, the base
        /// and running reference rows, and the kernels' read padding.
        std::size_t bytes() const noexcept
        {
            std::size_t const exact = std::min(m_size, m_options.sinks) + std::min(m_size, ring_rows());
            std::size_t b = sizeof(T) * m_dim * exact;
            if (coded())
            {
                std::size_t const far = m_size > m_options.sinks ? m_size - m_options.sinks : 0;
                b += far * (m_codec->code_bytes(m_dim) + sizeof(float16) * m_codec->scales(m_dim));
                b += code_padding + sizeof(float16) * scale_padding + 2 * sizeof(float) * m_dim;
            }
            return b;
        }

        // ---- appending -----------------------------------------------------------

        /// Appends the row of position size(): its code row, and its exact row (as T) to
        /// the sinks or the ring. Throws, changing nothing, like append_coded.
        void append(float const* row)
        {
            append_coded(row);
            std::transform(row, row + m_dim, m_stored_row.begin(), from_float<T>);
            push_exact(m_stored_row.data(), m_size - 1);
        }

        /// Appends `rows.rows` consecutive positions, all or none: every row is coded
        /// before any exact row enters the ring (a ring slot, once overwritten, cannot be
        /// rolled back).
        void append(matrix_view<const float> rows)
        {
            check_rows(rows);
            std::size_t const first = m_size;
            checkpoint();
            try
            {
                for (std::size_t r = 0; r < rows.rows; ++r)
                    append_coded(rows.row(r));
            }
            catch (...)
            {
                rollback();
                throw;
            }
            for (std::size_t r = 0; r < rows.rows; ++r)
            {
                std::transform(rows.row(r), rows.row(r) + m_dim, m_stored_row.begin(), from_float<T>);
                push_exact(m_stored_row.data(), first + r);
            }
        }

        /// Codes the row of position size() (nothing for an uncoded cache but the count).
        /// Throws, changing nothing, on a full cache or a scale past binary16's range.
        void append_coded(float const* row)
        {
            if (m_size >= m_capacity)
                detail::reject(m_name, "the cache is full (capacity " + std::to_string(m_capacity) + ")");
            if (m_options.check_finite)
                detail::require_finite_rows(matrix_view<const float>{row, 1, m_dim, 0}, m_name);
            std::size_t const j = m_size;
            if (coded())
            {
                quant_codec const& codec = *m_codec;
                float* const next = m_scratch.data() + m_dim;
                if (!encode_row(codec, m_dim, j, row, m_reference.data(), m_row_codes.data(), m_row_scales.data(), next, m_scratch.data()))
                    detail::reject(m_name, "row " + std::to_string(j) + " needs a scale beyond binary16's range");
                if (j >= m_options.sinks)
                {
                    std::size_t const slot = j - m_options.sinks, ns = codec.scales(m_dim);
                    std::copy(m_row_codes.begin(), m_row_codes.end(), m_codes.begin() + static_cast<std::ptrdiff_t>(slot * m_row_codes.size()));
                    for (std::size_t s = 0; s < ns; ++s)
                        m_scales[slot * ns + s].bits = m_row_scales[s];
                }
                std::copy(next, next + m_dim, m_reference.begin());
                if (j + 1 == m_options.sinks)
                    m_base = m_reference;
            }
            ++m_size;
        }

        /// Copies the exact row of position j (already coded), as stored, to the sinks or
        /// the ring.
        void push_exact(T const* row, std::size_t j) noexcept
        {
            if (j < m_options.sinks)
                std::copy(row, row + m_dim, m_sinks.begin() + static_cast<std::ptrdiff_t>(j * m_dim));
            std::copy(row, row + m_dim, m_ring.begin() + static_cast<std::ptrdiff_t>((j % ring_rows()) * m_dim));
        }

        /// Remembers the row count and the references, in storage the cache owns (no
        /// allocation: a decode step calls it); rollback() returns to them.
        void checkpoint() noexcept
        {
            m_saved_size = m_size;
            std::copy(m_reference.begin(), m_reference.end(), m_saved_reference.begin());
            std::copy(m_base.begin(), m_base.end(), m_saved_base.begin());
        }
        void rollback() noexcept
        {
            m_size = m_saved_size;
            std::copy(m_saved_reference.begin(), m_saved_reference.end(), m_reference.begin());
            std::copy(m_saved_base.begin(), m_saved_base.end(), m_base.begin());
        }

        /// Throws unless `rows` fits: right width, room left, finite if checking.
        void check_rows(matrix_view<const float> rows) const
        {
            DELTAATTN_REQUIRE(rows.cols == m_dim, m_name, "has " + std::to_string(rows.cols) + " channels, the cache " + std::to_string(m_dim));
            DELTAATTN_REQUIRE(m_size + rows.rows <= m_capacity, m_name,
                            "appending " + std::to_string(rows.rows) + " positions overflows the cache (size " + std::to_string(m_size) +
                                ", capacity " + std::to_string(m_capacity) + ")");
            if (m_options.check_finite)
                detail::require_finite_rows(rows, m_name);
        }

    private:
        /// The ring holds the window; an uncoded cache keeps every row in it.
        std::size_t ring_rows() const noexcept
        {
            return std::max<std::size_t>(1, coded() ? std::min(m_options.window, m_capacity) : m_capacity);
        }

        hybrid_options m_options;
        std::optional<quant_codec> m_codec;
        std::size_t m_dim, m_capacity, m_size = 0;
        char const* m_name;

        aligned_vector<T> m_sinks, m_ring;  // the rows the kernels read start on cache lines
        std::vector<T> m_stored_row;
        aligned_vector<std::uint8_t> m_codes;  // rows >= sinks, then code_padding zeros
        aligned_vector<float16> m_scales;      // rows >= sinks, then scale_padding zeros
        std::vector<float> m_base, m_reference;
        std::size_t m_saved_size = 0;
        std::vector<float> m_saved_base, m_saved_reference;  // checkpoint()
        std::vector<float> m_scratch;  // append's residual, then the next reference
        std::vector<std::uint8_t> m_row_codes;
        std::vector<std::uint16_t> m_row_scales;
    };

    using quant_cache = basic_quant_cache<float>;
    using quant_cache_f16 = basic_quant_cache<float16>;
}  // namespace deltaattn

#endif  // DELTAATTN_CACHES_QUANT_CACHE_HPP
