/**
 * @file views.hpp
 * Non-owning strided views over float data.
 *
 * Engines hold K/V caches either token-major (`[pos][head][dim]`, llama.cpp) or
 * head-major (`[head][pos][dim]`). A `tensor_view` carries both strides so either
 * layout is read in place; only the innermost (channel) dimension must be contiguous.
 */
#ifndef DELTAATTN_VIEWS_HPP
#define DELTAATTN_VIEWS_HPP

#include <cstddef>
#include <type_traits>

namespace deltaattn
{
    /// Rows of `cols` contiguous elements, `row_stride` elements apart.
    template <class T>
    struct matrix_view
    {
        T* data = nullptr;
        std::size_t rows = 0;
        std::size_t cols = 0;
        std::ptrdiff_t row_stride = 0;

        T* row(std::size_t i) const noexcept { return data + static_cast<std::ptrdiff_t>(i) * row_stride; }

        /// A view of rows `[first, first + count)`.
        matrix_view slice_rows(std::size_t first, std::size_t count) const noexcept
        {
            return {row(first), count, cols, row_stride};
        }

        /// Implicit conversion to a read-only view.
        operator matrix_view<const T>() const noexcept { return {data, rows, cols, row_stride}; }
    };

    /// A dense row-major matrix view (`row_stride == cols`).
    template <class T>
    matrix_view<T> make_matrix_view(T* data, std::size_t rows, std::size_t cols) noexcept
    {
        return {data, rows, cols, static_cast<std::ptrdiff_t>(cols)};
    }

    /// Positions x heads x dim, with independent position and head strides (in elements).
    template <class T>
    struct tensor_view
    {
        T* data = nullptr;
        std::size_t positions = 0;
        std::size_t heads = 0;
        std::size_t dim = 0;
        std::ptrdiff_t pos_stride = 0;
        std::ptrdiff_t head_stride = 0;

        T* at(std::size_t pos, std::size_t head) const noexcept
        {
            return data + static_cast<std::ptrdiff_t>(pos) * pos_stride + static_cast<std::ptrdiff_t>(head) * head_stride;
        }

        /// All positions of one head, as a matrix (rows = positions).
        matrix_view<T> head(std::size_t h) const noexcept { return {at(0, h), positions, dim, pos_stride}; }

        /// Positions `[first, first + count)`, all heads.
        tensor_view slice_positions(std::size_t first, std::size_t count) const noexcept
        {
            return {at(first, 0), count, heads, dim, pos_stride, head_stride};
        }

        operator tensor_view<const T>() const noexcept { return {data, positions, heads, dim, pos_stride, head_stride}; }
    };

    /// Token-major `[pos][head][dim]`, contiguous (llama.cpp's layout).
    template <class T>
    tensor_view<T> make_token_major(T* data, std::size_t positions, std::size_t heads, std::size_t dim) noexcept
    {
        return {data, positions, heads, dim, static_cast<std::ptrdiff_t>(heads * dim), static_cast<std::ptrdiff_t>(dim)};
    }

    /// Head-major `[head][capacity][dim]`, of which the first `positions` rows are viewed.
    template <class T>
    tensor_view<T> make_head_major(T* data, std::size_t heads, std::size_t positions, std::size_t dim,
                                   std::size_t capacity = 0) noexcept
    {
        if (capacity == 0)
            capacity = positions;
        return {data, positions, heads, dim, static_cast<std::ptrdiff_t>(dim), static_cast<std::ptrdiff_t>(capacity * dim)};
    }
}  // namespace deltaattn

#endif  // DELTAATTN_VIEWS_HPP
