/**
 * @file reference/delta_rows.hpp
 * The oracle's delta key matrix (SPEC.md §2, §5), dense and plain.
 *
 * Written for reading, not speed: every row is kept dense, with its update mask and
 * threshold. Arithmetic is fp32 exactly as SPEC.md §2 writes it; kernels must match it
 * bit for bit.
 */
#ifndef DELTAATTN_REFERENCE_DELTA_ROWS_HPP
#define DELTAATTN_REFERENCE_DELTA_ROWS_HPP

#include "../detail/validate.hpp"
#include "../fp16.hpp"
#include "../policies/threshold.hpp"
#include "../views.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>

namespace deltaattn
{
    namespace reference
    {
        /// Δk, k̂, the update mask and θ of every row, dense (rows x dim, row-major).
        struct delta_rows
        {
            std::size_t rows = 0, dim = 0;
            std::vector<float> delta;             ///< Δk_j; row 0 is k_0
            std::vector<float> reference;         ///< k̂_j
            std::vector<unsigned char> updated;   ///< 1 where channel c of row j was updated; row 0: all
            std::vector<float> theta;             ///< θ_j (uniform over channels); 0 for row 0, NaN without a bound

            float const* delta_row(std::size_t j) const { return delta.data() + j * dim; }
            float const* reference_row(std::size_t j) const { return reference.data() + j * dim; }
            unsigned char const* updated_row(std::size_t j) const { return updated.data() + j * dim; }
            std::size_t updated_count(std::size_t j) const
            {
                return static_cast<std::size_t>(std::count(updated_row(j), updated_row(j) + dim, 1));
            }
        };

        namespace detail_oracle
        {
            /// The set of channels a policy updates, given the errors e of the row.
            inline std::vector<unsigned char> choose(delta_policy const& policy, std::vector<float> const& e, float const* key, float& theta)
            {
                std::size_t const d = e.size();
                std::vector<unsigned char> u(d, 0);
                if (auto const* p = std::get_if<fixed_threshold>(&policy))
                {
                    theta = p->theta;
                    for (std::size_t c = 0; c < d; ++c)
                        u[c] = std::fabs(e[c]) > theta;
                }
                else if (auto const* p = std::get_if<relative_threshold>(&policy))
                {
                    double sum = 0.0;
                    for (std::size_t c = 0; c < d; ++c)
                        sum += static_cast<double>(key[c]) * static_cast<double>(key[c]);
                    theta = static_cast<float>(static_cast<double>(p->ratio) * std::sqrt(sum / static_cast<double>(d)));
                    for (std::size_t c = 0; c < d; ++c)
                        u[c] = std::fabs(e[c]) > theta;
                }
                else if (auto const* p = std::get_if<target_sparsity>(&policy))
                {
                    theta = std::numeric_limits<float>::quiet_NaN();
                    auto const keep = static_cast<std::size_t>(std::llround((1.0 - static_cast<double>(p->sparsity)) * static_cast<double>(d)));
                    // Rank channels: larger |e| first (NaN above all), ties to the lower channel.
                    std::vector<std::size_t> order(d);
                    std::iota(order.begin(), order.end(), std::size_t(0));
                    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
                        bool const na = std::isnan(e[a]), nb = std::isnan(e[b]);
                        if (na || nb)
                            return na && !nb;
                        return std::fabs(e[a]) > std::fabs(e[b]);
                    });
                    for (std::size_t r = 0; r < keep; ++r)
                        u[order[r]] = 1;
                }
                else
                {
                    auto const& b = std::get<block_threshold>(policy);
                    theta = b.theta;
                    for (std::size_t g0 = 0; g0 < d; g0 += b.group)
                    {
                        bool any = false;
                        for (std::size_t c = g0; c < g0 + b.group; ++c)
                            any = any || std::fabs(e[c]) > theta;
                        for (std::size_t c = g0; c < g0 + b.group; ++c)
                            u[c] = any;
                    }
                }
                return u;
            }
        }  // namespace detail_oracle

        /**
         * Builds the delta key matrix of `keys` (rows = positions) with `policy`, as a
         * cache with storage element T keeps it. T = float: SPEC.md §2 exactly. T =
         * float16: the keys are rounded to binary16 first, each stored delta is rounded
         * to binary16, and the reference follows the stored deltas:
         * k̂_j[c] = k̂_{j-1}[c] + half(k_j[c] - k̂_{j-1}[c]) on updated channels.
         */
        template <class T = float>
        delta_rows build_delta_rows(matrix_view<const float> keys, delta_policy const& policy)
        {
            DELTAATTN_REQUIRE(keys.cols >= 1, "dim", "must be >= 1" + deltaattn::detail::got(keys.cols));
            validate_policy(policy, keys.cols);
            std::size_t const n = keys.rows, d = keys.cols;
            delta_rows r;
            r.rows = n;
            r.dim = d;
            r.delta.assign(n * d, 0.0f);
            r.reference.assign(n * d, 0.0f);
            r.updated.assign(n * d, 0);
            r.theta.assign(n, 0.0f);
            if (n == 0)
                return r;

            constexpr bool rounds = !std::is_same<T, float>::value;
            std::vector<float> rounded(d);
            auto const stored_key = [&](std::size_t j) -> float const* {  // k_j as the cache keeps it
                if (!rounds)
                    return keys.row(j);
                std::transform(keys.row(j), keys.row(j) + d, rounded.begin(), round_to<T>);
                return rounded.data();
            };
            std::copy(stored_key(0), stored_key(0) + d, r.delta.begin());
            std::copy(r.delta.begin(), r.delta.begin() + static_cast<std::ptrdiff_t>(d), r.reference.begin());
            std::fill(r.updated.begin(), r.updated.begin() + static_cast<std::ptrdiff_t>(d), 1);

            std::vector<float> e(d);
            for (std::size_t j = 1; j < n; ++j)
            {
                float const* k = stored_key(j);
                float const* previous = r.reference_row(j - 1);
                for (std::size_t c = 0; c < d; ++c)
                    e[c] = k[c] - previous[c];
                std::vector<unsigned char> const u = detail_oracle::choose(policy, e, k, r.theta[j]);
                for (std::size_t c = 0; c < d; ++c)
                {
                    r.updated[j * d + c] = u[c];
                    float const delta = round_to<T>(e[c]);
                    r.delta[j * d + c] = u[c] ? delta : 0.0f;
                    r.reference[j * d + c] = !u[c] ? previous[c] : rounds ? previous[c] + delta : k[c];
                }
            }
            return r;
        }
    }  // namespace reference
}  // namespace deltaattn

#endif  // DELTAATTN_REFERENCE_DELTA_ROWS_HPP
