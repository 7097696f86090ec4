/**
 * @file options.hpp
 * The parameters of hybrid attention (SPEC.md §3) and their validation.
 */
#ifndef DELTAATTN_OPTIONS_HPP
#define DELTAATTN_OPTIONS_HPP

#include "detail/validate.hpp"

#include <cmath>
#include <cstddef>

namespace deltaattn
{
    /// Which keys are exact and how the delta region is computed.
    struct hybrid_options
    {
        /// Keys `j < sinks` are exact (1 is the paper's first column). Must be >= 1.
        std::size_t sinks = 1;
        /// The `window` most recent keys (the diagonal included) are exact. Must be >= 1.
        std::size_t window = 64;
        /// Score scale alpha; 0 means `1 / sqrt(dim)`.
        float scale = 0.0f;
        /// A dense reference row is kept every `keyframe_interval` positions after the
        /// sinks, so prefix sums restart there: rounding stays bounded on long contexts.
        /// 0 keeps only the base row at `sinks - 1`. Changes cost, never the result.
        std::size_t keyframe_interval = 256;
        /// Reject NaN/Inf in q, k and v (one extra read of the inputs).
        bool check_finite = false;
    };

    /// `scale`, or `1 / sqrt(dim)` when it is 0.
    inline float effective_scale(float scale, std::size_t dim) noexcept
    {
        return scale != 0.0f ? scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(dim)));
    }

    inline void validate_options(hybrid_options const& o)
    {
        DELTAATTN_REQUIRE(o.sinks >= 1, "sinks", "must be >= 1" + detail::got(o.sinks));
        DELTAATTN_REQUIRE(o.window >= 1, "window", "must be >= 1" + detail::got(o.window));
        DELTAATTN_REQUIRE(std::isfinite(o.scale), "scale", "must be finite" + detail::got(o.scale));
    }
}  // namespace deltaattn

#endif  // DELTAATTN_OPTIONS_HPP
