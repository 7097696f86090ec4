/**
 * @file policies/threshold.hpp
 * How the threshold θ_j[c] of a delta row is chosen (SPEC.md §5).
 *
 * A policy is a small value type. `delta_policy` holds any of them for code that
 * picks one at run time (tools, benchmarks); kernels take the variant and switch once
 * per row, which costs nothing next to the row's work.
 */
#ifndef DELTAATTN_POLICIES_THRESHOLD_HPP
#define DELTAATTN_POLICIES_THRESHOLD_HPP

#include "../detail/validate.hpp"

#include <cstddef>
#include <limits>
#include <string>
#include <variant>

namespace deltaattn
{
    /// The paper's choice: a channel is updated iff `|e| > theta`. Bound: `theta`.
    struct fixed_threshold
    {
        float theta = 0.0f;
    };

    /// `theta_j = ratio * rms(k_j)`: scale-free across layers and heads.
    struct relative_threshold
    {
        float ratio = 0.0f;
    };

    /// Update exactly the `round((1 - sparsity) * d)` channels of largest `|e|`
    /// (ties to the lower channel): exact delta sparsity, no error bound.
    struct target_sparsity
    {
        float sparsity = 0.0f;
    };

    /// SIMD-aware: channels in groups of `group` (4, 8 or 16); a whole group is updated
    /// iff its largest `|e|` exceeds `theta`, so zeros come in whole vectors. Bound: `theta`.
    struct block_threshold
    {
        std::size_t group = 8;
        float theta = 0.0f;
    };

    using delta_policy = std::variant<fixed_threshold, relative_threshold, target_sparsity, block_threshold>;

    /// Throws `std::invalid_argument` naming the bad field, for keys of `dim` channels.
    inline void validate_policy(delta_policy const& policy, std::size_t dim)
    {
        struct visitor
        {
            std::size_t dim;
            void operator()(fixed_threshold const& p) const { detail::require_non_negative(p.theta, "theta"); }
            void operator()(relative_threshold const& p) const { detail::require_non_negative(p.ratio, "ratio"); }
            void operator()(target_sparsity const& p) const
            {
                DELTAATTN_REQUIRE(p.sparsity >= 0.0f && p.sparsity < 1.0f, "sparsity", "must lie in [0, 1)" + detail::got(p.sparsity));
            }
            void operator()(block_threshold const& p) const
            {
                DELTAATTN_REQUIRE(p.group == 4 || p.group == 8 || p.group == 16, "group", "must be 4, 8 or 16" + detail::got(p.group));
                DELTAATTN_REQUIRE(dim % p.group == 0, "group", "must divide the head dimension " + std::to_string(dim) + detail::got(p.group));
                detail::require_non_negative(p.theta, "theta");
            }
        };
        std::visit(visitor{dim}, policy);
    }

    /// A short human-readable name, e.g. `fixed(theta=0.05)`.
    inline std::string describe(delta_policy const& policy)
    {
        struct visitor
        {
            std::string operator()(fixed_threshold const& p) const { return "fixed(theta=" + std::to_string(p.theta) + ")"; }
            std::string operator()(relative_threshold const& p) const { return "relative(ratio=" + std::to_string(p.ratio) + ")"; }
            std::string operator()(target_sparsity const& p) const { return "target(sparsity=" + std::to_string(p.sparsity) + ")"; }
            std::string operator()(block_threshold const& p) const
            {
                return "block(group=" + std::to_string(p.group) + ", theta=" + std::to_string(p.theta) + ")";
            }
        };
        return std::visit(visitor{}, policy);
    }

    /// The parameters a command line gathers for any policy; `policy_from_name` keeps the one the name reads.
    struct policy_parameters
    {
        float theta = 0.1f;     ///< fixed, block
        float ratio = 0.3f;     ///< relative
        float sparsity = 0.6f;  ///< target
        std::size_t group = 8;  ///< block
    };

    /// The policy named "fixed", "relative", "target" or "block" (the names `describe` prints),
    /// so every tool spells them alike. Throws std::invalid_argument naming `policy` otherwise.
    inline delta_policy policy_from_name(std::string const& name, policy_parameters const& p)
    {
        if (name == "fixed") return fixed_threshold{p.theta};
        if (name == "relative") return relative_threshold{p.ratio};
        if (name == "target") return target_sparsity{p.sparsity};
        DELTAATTN_REQUIRE(name == "block", "policy", "must be fixed, relative, target or block (got " + name + ")");
        return block_threshold{p.group, p.theta};
    }

    /// Does the policy bound every reference element (SPEC.md §3)? `target_sparsity` does not.
    inline bool has_error_bound(delta_policy const& policy) noexcept { return !std::holds_alternative<target_sparsity>(policy); }
}  // namespace deltaattn

#endif  // DELTAATTN_POLICIES_THRESHOLD_HPP
