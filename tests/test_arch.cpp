// The vector operations every kernel is written against (arch.hpp), on every tested arch.
#include "catch.hpp"
#include "tester.hpp"

#include <cmath>
#include <cstring>
#include <limits>

using namespace deltaattn_test;

TEMPLATE_LIST_TEST_CASE("reduce_add_rows sums row i into lane i", "[arch]", tested_archs)
{
    using ops = arch_traits<TestType>;
    constexpr std::size_t w = ops::width;
    // Small integers: every sum is exact in fp32, whatever the order of additions.
    float m[w][w];
    for (std::size_t i = 0; i < w; ++i)
        for (std::size_t j = 0; j < w; ++j)
            m[i][j] = static_cast<float>(100 * i + j);
    typename ops::reg rows[w];
    for (std::size_t i = 0; i < w; ++i)
        rows[i] = ops::load(m[i]);
    float sums[w];
    ops::store(sums, ops::reduce_add_rows(rows));
    for (std::size_t i = 0; i < w; ++i)
    {
        float want = 0.0f;
        for (std::size_t j = 0; j < w; ++j)
            want += m[i][j];
        INFO(arch_name<TestType>() << " row " << i);
        CHECK(sums[i] == want);
        CHECK(ops::reduce_add(rows[i]) == want);
    }
}

TEMPLATE_LIST_TEST_CASE("transpose moves lane c of row i to lane i of row c", "[arch]", tested_archs)
{
    using ops = arch_traits<TestType>;
    constexpr std::size_t w = ops::width;
    float m[w][w];
    for (std::size_t i = 0; i < w; ++i)
        for (std::size_t c = 0; c < w; ++c)
            m[i][c] = static_cast<float>(100 * i + c);
    typename ops::reg rows[w];
    for (std::size_t i = 0; i < w; ++i)
        rows[i] = ops::load(m[i]);
    ops::transpose(rows);
    for (std::size_t c = 0; c < w; ++c)
    {
        float column[w];
        ops::store(column, rows[c]);
        for (std::size_t i = 0; i < w; ++i)
        {
            INFO(arch_name<TestType>() << " row " << i << " lane " << c);
            CHECK(column[i] == m[i][c]);
        }
    }
}

TEMPLATE_LIST_TEST_CASE("exp is within 2 ulp of e^x, 0 at -inf", "[arch]", tested_archs)
{
    using ops = arch_traits<TestType>;
    constexpr std::size_t w = ops::width;
    double worst = 0.0, worst_at = 0.0;
    for (int k = -870000; k <= 880000; k += static_cast<int>(w))  // x in [-87, 88], steps of 1e-4
    {
        float x[w], y[w];
        for (std::size_t i = 0; i < w; ++i)
            x[i] = static_cast<float>((k + static_cast<int>(i)) * 1e-4);
        ops::store(y, ops::exp(ops::load(x)));
        for (std::size_t i = 0; i < w; ++i)
        {
            double const want = std::exp(static_cast<double>(x[i]));
            double const ulp = std::ldexp(1.0, std::ilogb(want) - 23);
            double const error = std::fabs(y[i] - want) / ulp;
            if (error > worst)
                worst = error, worst_at = x[i];
        }
    }
    INFO(arch_name<TestType>() << ": worst " << worst << " ulp at x = " << worst_at);
    CHECK(worst <= 2.0);
    float ends[w], e[w];
    for (std::size_t i = 0; i < w; ++i)
        ends[i] = i % 2 == 0 ? -std::numeric_limits<float>::infinity() : 0.0f;
    ops::store(e, ops::exp(ops::load(ends)));
    for (std::size_t i = 0; i < w; ++i)
        CHECK(e[i] == (i % 2 == 0 ? 0.0f : 1.0f));
}

TEMPLATE_LIST_TEST_CASE("select, less and iota pick lanes by index", "[arch]", tested_archs)
{
    using ops = arch_traits<TestType>;
    constexpr std::size_t w = ops::width;
    float lanes[w];
    ops::store(lanes, ops::iota());
    for (std::size_t i = 0; i < w; ++i)
        CHECK(lanes[i] == static_cast<float>(i));
    auto const picked = ops::select(ops::less(ops::iota(), ops::broadcast(w / 2.0f)), ops::broadcast(1.0f), ops::broadcast(2.0f));
    ops::store(lanes, picked);
    for (std::size_t i = 0; i < w; ++i)
        CHECK(lanes[i] == (static_cast<float>(i) < w / 2.0f ? 1.0f : 2.0f));
}

TEMPLATE_LIST_TEST_CASE("expand_lanes places packed values bit for bit, for every mask of a register", "[arch][expand]", tested_archs)
{
    using ops = arch_traits<TestType>;
    constexpr std::size_t w = ops::width;
    // Distinct values with distinct bit patterns (negative zero included), then the
    // padding the register kernels may read.
    float packed[w + kernels::expand_padding] = {};
    for (std::size_t i = 0; i < w; ++i)
        packed[i] = i == 0 ? -0.0f : static_cast<float>(i) * 1.25f - 7.0f;
    std::uint64_t mismatches = 0;
    for (std::uint32_t bits = 0; bits < (std::uint32_t(1) << w); ++bits)
    {
        float want[w];
        std::size_t used = 0;
        for (std::size_t l = 0; l < w; ++l)
            want[l] = (bits >> l & 1u) ? packed[used++] : 0.0f;
        float const* cursor = packed;
        float got[w];
        ops::store(got, kernels::expand_lanes<TestType, kernels::expand_form::vexpandps>(bits, cursor));
        if (std::memcmp(got, want, sizeof got) != 0 || cursor != packed + used)
            ++mismatches;
        cursor = packed;
        ops::store(got, kernels::expand_lanes<TestType, kernels::expand_form::permute>(bits, cursor));
        if (std::memcmp(got, want, sizeof got) != 0 || cursor != packed + used)
            ++mismatches;
    }
    INFO(arch_name<TestType>());
    CHECK(mismatches == 0);
}
