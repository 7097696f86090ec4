/**
 * @file eigen.hpp
 * Opt-in Eigen interoperability: Eigen matrices as `matrix_view`s and back, no copies.
 *
 * Not part of the umbrella header: include it explicitly, with Eigen 3.3 or later on
 * the include path. Nothing else in the library depends on Eigen.
 *
 * Only row-major storage is accepted. A `matrix_view` row is one position's `dim`
 * channels, and every kernel reads those channels as one contiguous run (SIMD loads,
 * packed deltas). In a column-major matrix consecutive channels are a whole column
 * apart, so no view over it exists: the only way to accept one would be a silent
 * transposing copy, which `Eigen::Ref<const RowMajor...>` would make into a temporary
 * that dies with the call and leaves the view dangling. So a column-major type is a
 * compile error here instead, with a message that says what to pass (a row-major matrix,
 * or the `.transpose()` of a column-major one, which is row-major without a copy).
 */
#ifndef DELTAATTN_EIGEN_HPP
#define DELTAATTN_EIGEN_HPP

#include "detail/validate.hpp"
#include "views.hpp"

#include <Eigen/Core>

#include <type_traits>

namespace deltaattn
{
    /// The Eigen type a `matrix_view<float>` corresponds to.
    using row_major_matrix_f = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

    /// What `as_eigen` returns: a row-major map whose outer stride is the view's row stride.
    using eigen_map_f = Eigen::Map<row_major_matrix_f, 0, Eigen::OuterStride<>>;
    using eigen_const_map_f = Eigen::Map<const row_major_matrix_f, 0, Eigen::OuterStride<>>;

    namespace detail
    {
        template <class T>
        using remove_cvref_t = std::remove_cv_t<std::remove_reference_t<T>>;

        template <class T, class = void>
        struct is_eigen_dense : std::false_type
        {
        };
        template <class T>
        struct is_eigen_dense<T, std::enable_if_t<std::is_base_of<Eigen::DenseBase<T>, T>::value>> : std::true_type
        {
        };

        /// The checks `as_view` makes on an Eigen argument whose forwarding-reference type
        /// is `Arg`, one flag per reason to reject (tests check each).
        template <class Arg>
        struct eigen_view_check
        {
            using type = remove_cvref_t<Arg>;
            static constexpr bool is_float = std::is_same<typename type::Scalar, float>::value;
            /// Backed by memory (a matrix, map, block, ref, transpose), not an expression
            /// such as `a + b` that Eigen would evaluate into a temporary.
            static constexpr bool has_storage = (int(type::Flags) & Eigen::DirectAccessBit) != 0;
            static constexpr bool row_major = int(type::IsRowMajor) != 0;
            /// Each row's elements are adjacent (rules out e.g. a row of a column-major matrix).
            static constexpr bool contiguous_rows = int(type::InnerStrideAtCompileTime) == 1;
            /// Not a temporary matrix whose storage would die at the end of the call.
            static constexpr bool outlives_call = std::is_lvalue_reference<Arg>::value || !int(type::IsPlainObjectBase);
            static constexpr bool value = is_float && has_storage && row_major && contiguous_rows && outlives_call;
        };
    }  // namespace detail

    /**
     * A `matrix_view` over a row-major Eigen matrix, or any block, map, `Eigen::Ref` or
     * transposed column-major matrix laid out like one. No copy: the view aliases the
     * argument's storage, `row_stride` is its `outerStride()` (so a block of a larger
     * matrix keeps the larger matrix's row stride).
     *
     * The result is writable (`matrix_view<float>`) when the argument is (a non-const
     * matrix, a block of one, `Eigen::Ref<row_major_matrix_f>`), read-only
     * (`matrix_view<const float>`) otherwise (a const matrix, `Eigen::Ref<const ...>`,
     * `Eigen::Map<const ...>`).
     *
     * Rejected at compile time: column-major storage (channels not contiguous; see the
     * file comment), non-float scalars, expressions without storage, and temporary
     * matrices (the view would dangle).
     *
     * Typical use: `deltaattn::as_view(keys.block(first, 0, count, dim))`.
     */
    template <class Derived, std::enable_if_t<detail::is_eigen_dense<detail::remove_cvref_t<Derived>>::value, int> = 0>
    auto as_view(Derived&& matrix)
    {
        using check = detail::eigen_view_check<Derived>;
        static_assert(check::is_float, "deltaattn::as_view: the Eigen matrix must hold float");
        static_assert(check::has_storage,
                      "deltaattn::as_view: pass a matrix, map, block or Ref, not an expression (evaluate it into a "
                      "row-major matrix first)");
        static_assert(check::row_major,
                      "deltaattn::as_view: column-major storage cannot be viewed, each row's channels must be "
                      "contiguous; use Eigen::RowMajor (or pass column_major.transpose())");
        static_assert(!check::has_storage || check::contiguous_rows,  // one message for an expression
                      "deltaattn::as_view: each row's elements must be contiguous (inner stride 1; use "
                      "Eigen::OuterStride<> rather than Eigen::Stride<>)");
        static_assert(check::outlives_call,
                      "deltaattn::as_view: a temporary matrix would be destroyed while the view still points to it");
        if constexpr (check::value)
        {
            // data() is `float*` for writable arguments and `const float*` otherwise: that
            // choice is exactly the constness the view should have.
            auto* data = matrix.data();
            using element = std::remove_pointer_t<decltype(data)>;
            return matrix_view<element>{data, static_cast<std::size_t>(matrix.rows()),
                                        static_cast<std::size_t>(matrix.cols()),
                                        static_cast<std::ptrdiff_t>(matrix.outerStride())};
        }
        else
        {
            // Only reached after a static_assert above failed: keeps the compiler from
            // adding errors about data() to the one message that explains the rejection.
            return matrix_view<const float>{};
        }
    }

    namespace detail
    {
        template <class T>
        void require_eigen_mappable(matrix_view<T> const& view)
        {
            // Eigen's maps address rows forward from `data`; the library never makes a view
            // with a negative stride, so one here is a caller's bug, not a layout to support.
            DELTAATTN_REQUIRE(view.row_stride >= 0, "view.row_stride", "must be >= 0 to map into Eigen" + got(view.row_stride));
        }
    }  // namespace detail

    /**
     * An Eigen map over a read-only view: `rows x cols`, row-major, outer stride
     * `row_stride`. No copy; valid as long as the viewed storage.
     * @throws std::invalid_argument if `view.row_stride < 0`.
     */
    inline eigen_const_map_f as_eigen(matrix_view<const float> view)
    {
        detail::require_eigen_mappable(view);
        return eigen_const_map_f(view.data, static_cast<Eigen::Index>(view.rows), static_cast<Eigen::Index>(view.cols),
                                 Eigen::OuterStride<>(static_cast<Eigen::Index>(view.row_stride)));
    }

    /**
     * An Eigen map over a writable view (writes go to the viewed storage).
     * @throws std::invalid_argument if `view.row_stride < 0`.
     */
    inline eigen_map_f as_eigen(matrix_view<float> view)
    {
        detail::require_eigen_mappable(view);
        return eigen_map_f(view.data, static_cast<Eigen::Index>(view.rows), static_cast<Eigen::Index>(view.cols),
                           Eigen::OuterStride<>(static_cast<Eigen::Index>(view.row_stride)));
    }
}  // namespace deltaattn

#endif  // DELTAATTN_EIGEN_HPP
