// The hybrid-attention flags every command line of deltaattn spells alike (CLI11):
// --window --sinks --keyframes --policy --theta --ratio --sparsity --group --value-theta,
// and for `--policy quant` (SPEC §10) --bits --scale-group --value-bits --int8-queries.
// A parameter the chosen policy does not read is an error naming the flag, not a silent
// no-op: `--policy relative --theta 0.3` would otherwise run relative at its default ratio.
#ifndef DELTAATTN_TOOLS_POLICY_FLAGS_HPP
#define DELTAATTN_TOOLS_POLICY_FLAGS_HPP

#include <deltaattn/deltaattn.hpp>

#include <CLI/CLI.hpp>

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>

namespace deltaattn_tools
{
    /// Unsigned flags: CLI11 would otherwise take "-3" as 2^64 - 3.
    inline CLI::Validator const whole_number(
        [](std::string& text) {
            bool const digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
            return digits ? std::string() : "must be a whole number >= 0 (got " + text + ")";
        },
        "N >= 0", "whole number");

    /// The flags' values; set the fields before `add_policy_flags` to change the defaults shown.
    struct policy_flags
    {
        std::string policy = "relative";
        deltaattn::policy_parameters parameters;
        std::size_t window = 64, sinks = 1, keyframes = 256;
        std::optional<float> value_theta;
        unsigned bits = 4;              ///< quant: key code width
        std::size_t scale_group = 32;   ///< quant: channels per scale (0: the whole row)
        std::optional<unsigned> value_bits;  ///< quant: values coded too (same group and keyframes)
        bool int8_queries = false;           ///< quant: decode steps dot the key codes with int8 queries
    };

    inline void add_policy_flags(CLI::App& app, policy_flags& f)
    {
        app.add_option("--window", f.window, "exact recent keys W (SPEC §3)")->capture_default_str()->check(whole_number);
        app.add_option("--sinks", f.sinks, "exact first keys S")->capture_default_str()->check(whole_number);
        app.add_option("--keyframes", f.keyframes, "a dense reference row every R positions (0: none)")->capture_default_str()->check(whole_number);
        app.add_option("--policy", f.policy, "fixed | relative | target | block (SPEC §5) | quant (SPEC §10)")->capture_default_str();
        app.add_option("--theta", f.parameters.theta, "θ of fixed and block")->capture_default_str();
        app.add_option("--ratio", f.parameters.ratio, "r of relative: θ = r · rms(k_j)")->capture_default_str();
        app.add_option("--sparsity", f.parameters.sparsity, "ρ of target")->capture_default_str();
        app.add_option("--group", f.parameters.group, "g of block (4, 8, 16)")->capture_default_str()->check(whole_number);
        app.add_option("--value-theta", f.value_theta, "delta values with a fixed θ_v (SPEC §6.1); default: values exact");
        app.add_option("--bits", f.bits, "quant: key code width, 3, 4 or 8")->capture_default_str()->check(whole_number);
        app.add_option("--scale-group", f.scale_group, "quant: channels per binary16 scale, 32 or 0 (whole row)")->capture_default_str()->check(whole_number);
        app.add_option("--value-bits", f.value_bits, "quant: values coded too, 3, 4 or 8 bits; default: values exact")->check(whole_number);
        app.add_flag("--int8-queries", f.int8_queries, "quant: decode steps dot the key codes with queries quantized to int8 (SPEC §10)");
    }

    /// `--policy quant`: the key and value codecs (SPEC §10), `--keyframes` their R.
    struct quant_codecs
    {
        deltaattn::quant_codec keys;
        std::optional<deltaattn::quant_codec> values;
    };

    /// Throws std::invalid_argument naming a flag given on `parsed` that the chosen policy
    /// would ignore: a quant flag under a threshold policy, or a threshold flag under quant.
    inline void refuse_unread_flags(policy_flags const& f, CLI::App const& parsed, bool theta, bool ratio, bool sparsity, bool group)
    {
        bool const quant = f.policy == "quant";
        auto const refuse_unread = [&](char const* flag, bool read) {
            if (!read && parsed.count(flag) > 0)
                throw std::invalid_argument(std::string(flag) + ": the " + f.policy + " policy does not read it");
        };
        refuse_unread("--theta", theta);
        refuse_unread("--ratio", ratio);
        refuse_unread("--sparsity", sparsity);
        refuse_unread("--group", group);
        refuse_unread("--value-theta", !quant);
        refuse_unread("--bits", quant);
        refuse_unread("--scale-group", quant);
        refuse_unread("--value-bits", quant);
        refuse_unread("--int8-queries", quant);
    }

    /// The codecs of `--policy quant`, or nullopt for a threshold policy.
    inline std::optional<quant_codecs> make_codecs(policy_flags const& f, CLI::App const& parsed)
    {
        if (f.policy != "quant")
            return std::nullopt;
        refuse_unread_flags(f, parsed, false, false, false, false);
        quant_codecs c{{f.bits, f.scale_group, f.keyframes}, std::nullopt};
        c.keys.int8_queries = f.int8_queries;
        if (f.value_bits)
            c.values = deltaattn::quant_codec{*f.value_bits, f.scale_group, f.keyframes};
        return c;
    }

    /// The key policy of a threshold policy (not quant: make_codecs); throws
    /// std::invalid_argument naming a parameter flag given on `parsed` (the app or
    /// subcommand the flags were added to) that this policy would ignore.
    inline deltaattn::delta_policy make_policy(policy_flags const& f, CLI::App const& parsed)
    {
        struct reads
        {
            char const* name;
            bool theta, ratio, sparsity, group;
        };
        static reads const table[] = {
            {"fixed", true, false, false, false}, {"relative", false, true, false, false},
            {"target", false, false, true, false}, {"block", true, false, false, true}};
        deltaattn::delta_policy const policy = deltaattn::policy_from_name(f.policy, f.parameters);  // rejects unknown names
        for (reads const& r : table)
            if (f.policy == r.name)
                refuse_unread_flags(f, parsed, r.theta, r.ratio, r.sparsity, r.group);
        return policy;
    }

    inline deltaattn::hybrid_options make_options(policy_flags const& f)
    {
        deltaattn::hybrid_options o;
        o.window = f.window;
        o.sinks = f.sinks;
        o.keyframe_interval = f.keyframes;
        return o;
    }
}  // namespace deltaattn_tools

#endif  // DELTAATTN_TOOLS_POLICY_FLAGS_HPP
