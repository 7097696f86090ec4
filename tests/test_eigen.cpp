// Tests of the opt-in Eigen interop (include/deltaattn/eigen.hpp). The build defines
// DELTAATTN_HAVE_EIGEN when it finds Eigen; without it this file only reports, loudly,
// that the tests did not run.

#include "catch.hpp"

#if DELTAATTN_HAVE_EIGEN

#include <deltaattn/eigen.hpp>
#include <deltaattn/synthetic.hpp>

#include <cmath>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

using namespace deltaattn;

namespace
{
    using col_major_matrix_f = Eigen::MatrixXf;

    row_major_matrix_f counting_matrix(Eigen::Index rows, Eigen::Index cols)
    {
        row_major_matrix_f m(rows, cols);
        for (Eigen::Index i = 0; i < rows; ++i)
            for (Eigen::Index j = 0; j < cols; ++j)
                m(i, j) = float(100 * i + j);
        return m;
    }

    template <class Arg>
    using view_of = decltype(as_view(std::declval<Arg>()));

    // What as_view accepts and rejects, decided at compile time (the rejections are
    // static_asserts in as_view; their conditions are checked here one by one).
    using check_rm = detail::eigen_view_check<row_major_matrix_f&>;
    static_assert(check_rm::value, "a row-major matrix is viewable");
    static_assert(!detail::eigen_view_check<col_major_matrix_f&>::row_major, "column-major is rejected");
    static_assert(!detail::eigen_view_check<Eigen::VectorXf&>::row_major, "a column vector is column-major");
    static_assert(detail::eigen_view_check<Eigen::RowVectorXf&>::value, "a row vector is one row");
    static_assert(!detail::eigen_view_check<Eigen::Matrix<double, -1, -1, Eigen::RowMajor>&>::is_float,
                  "only float");
    static_assert(!detail::eigen_view_check<decltype(row_major_matrix_f() + row_major_matrix_f())>::has_storage,
                  "an expression has no storage");
    static_assert(!detail::eigen_view_check<decltype(std::declval<col_major_matrix_f&>().row(0))>::contiguous_rows,
                  "a row of a column-major matrix is strided");
    static_assert(!detail::eigen_view_check<row_major_matrix_f>::outlives_call, "a temporary matrix would dangle");
    static_assert(detail::eigen_view_check<decltype(std::declval<row_major_matrix_f&>().block(0, 0, 1, 1))>::value,
                  "a temporary block of a live matrix is fine");
    static_assert(detail::eigen_view_check<decltype(std::declval<col_major_matrix_f&>().transpose())>::value,
                  "the transpose of a column-major matrix is row-major");

    // The view is writable exactly when the argument is.
    static_assert(std::is_same<view_of<row_major_matrix_f&>, matrix_view<float>>::value, "");
    static_assert(std::is_same<view_of<row_major_matrix_f const&>, matrix_view<const float>>::value, "");
    static_assert(std::is_same<view_of<Eigen::Ref<row_major_matrix_f>>, matrix_view<float>>::value, "");
    static_assert(std::is_same<view_of<Eigen::Ref<const row_major_matrix_f> const&>, matrix_view<const float>>::value,
                  "");
    static_assert(std::is_same<view_of<eigen_const_map_f>, matrix_view<const float>>::value, "");
    static_assert(std::is_same<decltype(as_eigen(matrix_view<float>{})), eigen_map_f>::value, "");
    static_assert(std::is_same<decltype(as_eigen(matrix_view<const float>{})), eigen_const_map_f>::value, "");
}  // namespace

TEST_CASE("as_view aliases a row-major matrix", "[eigen]")
{
    row_major_matrix_f m = counting_matrix(5, 7);
    matrix_view<float> v = as_view(m);
    CHECK(v.data == m.data());
    CHECK(v.rows == 5);
    CHECK(v.cols == 7);
    CHECK(v.row_stride == 7);
    CHECK(v.row(3)[6] == m(3, 6));
    v.row(2)[4] = -1.0f;  // writes land in the matrix
    CHECK(m(2, 4) == -1.0f);

    row_major_matrix_f const& cm = m;
    matrix_view<const float> cv = as_view(cm);
    CHECK(cv.data == m.data());
    CHECK(cv.row(4)[0] == 400.0f);
}

TEST_CASE("as_view of a block keeps the outer stride", "[eigen]")
{
    row_major_matrix_f big = counting_matrix(10, 12);
    matrix_view<float> v = as_view(big.block(2, 3, 4, 5));
    CHECK(v.data == &big(2, 3));
    CHECK(v.rows == 4);
    CHECK(v.cols == 5);
    CHECK(v.row_stride == 12);
    for (std::size_t i = 0; i < v.rows; ++i)
        for (std::size_t j = 0; j < v.cols; ++j)
            CHECK(v.row(i)[j] == big(Eigen::Index(i) + 2, Eigen::Index(j) + 3));
    v.row(3)[4] = 7.5f;
    CHECK(big(5, 7) == 7.5f);

    // A block of a block, and the middle rows (all columns) of the big matrix.
    matrix_view<float> inner = as_view(big.block(1, 1, 8, 10).block(1, 2, 2, 2));
    CHECK(inner.data == &big(2, 3));
    CHECK(inner.row_stride == 12);
    matrix_view<float> rows = as_view(big.middleRows(4, 3));
    CHECK(rows.data == &big(4, 0));
    CHECK(rows.cols == 12);

    // A view slice maps back to the same block.
    matrix_view<float> sliced = as_view(big).slice_rows(6, 2);
    CHECK(sliced.data == as_view(big.middleRows(6, 2)).data);
}

TEST_CASE("as_view accepts Ref, Map and a transposed column-major matrix without copying", "[eigen]")
{
    row_major_matrix_f m = counting_matrix(6, 4);

    Eigen::Ref<row_major_matrix_f> ref = m.bottomRows(3);
    matrix_view<float> rv = as_view(ref);
    CHECK(rv.data == &m(3, 0));
    CHECK(rv.rows == 3);

    Eigen::Ref<const row_major_matrix_f> const cref = m.block(1, 1, 2, 3);
    matrix_view<const float> crv = as_view(cref);
    CHECK(crv.data == &m(1, 1));
    CHECK(crv.row_stride == 4);

    std::vector<float> buffer(3 * 10, 0.0f);
    eigen_map_f map(buffer.data(), 3, 8, Eigen::OuterStride<>(10));
    matrix_view<float> mv = as_view(map);
    CHECK(mv.data == buffer.data());
    CHECK(mv.row_stride == 10);
    CHECK(mv.cols == 8);

    // Transposing a column-major matrix is a row-major expression over the same memory.
    col_major_matrix_f cm(4, 3);
    for (Eigen::Index i = 0; i < cm.size(); ++i)
        cm.data()[i] = float(i);
    matrix_view<float> tv = as_view(cm.transpose());
    CHECK(tv.data == cm.data());
    CHECK(tv.rows == 3);
    CHECK(tv.cols == 4);
    CHECK(tv.row_stride == 4);
    CHECK(tv.row(2)[1] == cm(1, 2));
}

TEST_CASE("as_eigen maps a view, strides included, and round-trips", "[eigen]")
{
    std::vector<float> storage(5 * 9);
    for (std::size_t i = 0; i < storage.size(); ++i)
        storage[i] = float(i) * 0.5f;
    matrix_view<float> v{storage.data(), 5, 6, 9};  // 3 padding floats per row

    eigen_map_f m = as_eigen(v);
    CHECK(m.data() == storage.data());
    CHECK(m.rows() == 5);
    CHECK(m.cols() == 6);
    CHECK(m.outerStride() == 9);
    CHECK(m(4, 5) == storage[4 * 9 + 5]);
    m(1, 2) = 123.0f;  // writes land in the view's storage
    CHECK(storage[1 * 9 + 2] == 123.0f);

    eigen_const_map_f cm = as_eigen(matrix_view<const float>(v));
    CHECK(cm(3, 1) == storage[3 * 9 + 1]);

    // view -> Eigen -> view is the identity on every field.
    matrix_view<float> back = as_view(m);
    CHECK(back.data == v.data);
    CHECK(back.rows == v.rows);
    CHECK(back.cols == v.cols);
    CHECK(back.row_stride == v.row_stride);

    // Eigen -> view -> Eigen: same values, same memory.
    row_major_matrix_f e = counting_matrix(3, 5);
    eigen_const_map_f again = as_eigen(matrix_view<const float>(as_view(e)));
    CHECK(again.data() == e.data());
    CHECK(again == e);

    // Empty views map to empty matrices.
    CHECK(as_eigen(matrix_view<const float>{}).size() == 0);

    matrix_view<const float> reversed{storage.data() + 4 * 9, 5, 6, -9};
    CHECK_THROWS_AS(as_eigen(reversed), std::invalid_argument);
}

TEST_CASE("one head of a token-major tensor as an Eigen matrix: scores by matrix product", "[eigen]")
{
    // The interop's use: an engine's [pos][head][dim] cache, viewed per head, handed
    // to Eigen for a reference computation.
    qkv_data const data = make_llm_like({40, 4, 2, 32});
    std::size_t const h = 3, kv = h / 2;
    eigen_const_map_f q = as_eigen(data.q_view().head(h));
    eigen_const_map_f k = as_eigen(data.k_view().head(kv));
    CHECK(q.outerStride() == 4 * 32);
    CHECK(k.outerStride() == 2 * 32);
    row_major_matrix_f const scores = q * k.transpose();
    for (std::size_t i : {std::size_t(0), std::size_t(17), std::size_t(39)})
        for (std::size_t j : {std::size_t(0), std::size_t(5), std::size_t(39)})
        {
            double s = 0.0;
            for (std::size_t c = 0; c < 32; ++c)
                s += double(data.q_view().at(i, h)[c]) * data.k_view().at(j, kv)[c];
            CHECK(scores(Eigen::Index(i), Eigen::Index(j)) == Approx(s).epsilon(1e-5).margin(1e-4));
        }
}

#else

TEST_CASE("Eigen interop", "[eigen]")
{
    WARN("Eigen not found: eigen interop tests skipped");
}

#endif  // DELTAATTN_HAVE_EIGEN
