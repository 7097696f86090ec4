// deltaattn-eval: measure hybrid delta attention against dense attention on your own
// activations (.npy), or on generated ones.
//
//   deltaattn-eval run   --q Q.npy --k K.npy --v V.npy [--out O.npy] [--json STATS.json] [flags]
//                        flags: the policy flags (tools/policy_flags.hpp; --policy quant --bits B
//                        --scale-group G --keyframes R [--value-bits B] for SPEC.md §10),
//                        --prompt P, --threads T, --baseline q8_0|q4_0, --storage f32|f16
//   deltaattn-eval sweep --q Q.npy --k K.npy --v V.npy --csv OUT.csv [--thetas a,b | --sparsities a,b] [--png P.png]
//   deltaattn-eval synth --dir DIR [--positions N --q-heads H --kv-heads H --dim D]
//
// Errors (bad flags, unreadable or mistyped .npy, SPEC.md §8) exit with status 2 and a
// one-line message naming the argument; no output file is written then (outputs go to a
// temporary name and are renamed only when complete).
#include "eval_core.hpp"
#include "npy.hpp"
#include "policy_flags.hpp"

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace
{
    using namespace deltaattn_tools;

    /// The flags only deltaattn-eval has, beside the shared policy flags.
    struct run_flags
    {
        std::optional<std::size_t> prompt;
        std::size_t threads = 1;
        std::string baseline;  ///< q8_0 | q4_0: block quantization without exact sets, for comparison
        std::string storage = "f32";  ///< f32 | f16: the caches' element, and the dense step's K/V
    };

    /// A quant policy's description, e.g. "quant b4 g32 R256" (" int8q" with int8 queries).
    std::string describe_codec(quant_codec const& c)
    {
        return "quant b" + std::to_string(c.bits) + " g" + std::to_string(c.scale_group) + " R" + std::to_string(c.keyframe_interval) +
               (c.int8_queries ? " int8q" : "");
    }

    eval_settings make_settings(policy_flags const& f, run_flags const& r, CLI::App const& parsed)
    {
        eval_settings s;
        s.options = make_options(f);
        if (std::optional<quant_codecs> const codecs = make_codecs(f, parsed))
        {
            s.key_codec = codecs->keys;
            s.value_codec = codecs->values;
        }
        else
        {
            s.policy = make_policy(f, parsed);
            s.value_theta = f.value_theta;
        }
        if (r.baseline == "q8_0" || r.baseline == "q4_0")
            s.baseline = quant_codec{r.baseline == "q8_0" ? 8u : 4u, 32, 1};
        else if (!r.baseline.empty())
            throw std::invalid_argument("--baseline: q8_0 or q4_0 (got " + r.baseline + ")");
        if (r.storage != "f32" && r.storage != "f16")
            throw std::invalid_argument("--storage: f32 or f16 (got " + r.storage + ")");
        s.f16 = r.storage == "f16";
        if (r.prompt)
            s.prompt = *r.prompt;
        s.threads = std::max<std::size_t>(1, r.threads);
        return s;
    }

    /// An [n, H, d] array, or [n, d] as one head.
    struct loaded
    {
        npy_array array;
        std::size_t positions = 0, heads = 0, dim = 0;
        bool two_d = false;
    };

    loaded load(std::string const& path, char const* flag)
    {
        loaded l;
        try
        {
            l.array = read_npy(path);
        }
        catch (std::runtime_error const& e)
        {
            throw std::runtime_error(std::string(flag) + ": " + e.what());
        }
        std::vector<std::size_t> const shape = l.array.shape;
        if (shape.size() != 2 && shape.size() != 3)
            throw std::invalid_argument(std::string(flag) + ": " + path + " must be [n, heads, d] or [n, d] (rank " + std::to_string(shape.size()) + ")");
        l.two_d = shape.size() == 2;
        l.positions = shape[0];
        l.heads = l.two_d ? 1 : shape[1];
        l.dim = shape.back();
        return l;
    }

    qkv_data load_inputs(std::string const& q_path, std::string const& k_path, std::string const& v_path, bool& two_d)
    {
        loaded q = load(q_path, "--q"), k = load(k_path, "--k"), v = load(v_path, "--v");
        auto const require = [](bool ok, char const* flag, std::string const& problem) {
            if (!ok)
                throw std::invalid_argument(std::string(flag) + ": " + problem);
        };
        require(v.positions == k.positions && v.heads == k.heads && v.dim == k.dim, "--v", "must have the shape of --k");
        require(q.positions == k.positions, "--q", "has " + std::to_string(q.positions) + " positions, --k " + std::to_string(k.positions));
        require(q.dim == k.dim, "--q", "has head dim " + std::to_string(q.dim) + ", --k " + std::to_string(k.dim));
        require(k.heads >= 1 && q.heads % k.heads == 0, "--q", "heads (" + std::to_string(q.heads) + ") must be a multiple of --k's (" + std::to_string(k.heads) + ")");
        two_d = q.two_d;
        qkv_data in;
        in.shape = workload_shape{q.positions, q.heads, k.heads, q.dim};
        in.q = std::move(q.array.data);
        in.k = std::move(k.array.data);
        in.v = std::move(v.array.data);
        return in;
    }

    /// Writes `text` (or an array) to `path` through a temporary file renamed when complete.
    template <class Write>
    void write_atomically(std::string const& path, Write&& write)
    {
        std::string const temporary = path + ".partial";
        try
        {
            write(temporary);
        }
        catch (...)
        {
            std::remove(temporary.c_str());
            throw;
        }
        if (std::rename(temporary.c_str(), path.c_str()) != 0)
        {
            std::remove(temporary.c_str());
            throw std::runtime_error(path + ": cannot write");
        }
    }

    void write_text(std::string const& path, std::string const& text)
    {
        write_atomically(path, [&](std::string const& file) {
            std::ofstream out(file);
            out << text;
            if (!out)
                throw std::runtime_error(path + ": cannot write");
        });
    }

    /// A JSON number, or null for NaN/Inf (which JSON lacks).
    std::string number(double x)
    {
        if (!std::isfinite(x))
            return "null";
        std::ostringstream s;
        s.precision(9);
        s << x;
        return s.str();
    }

    std::string stage_json(attention_work const& w, bool values, double dense_s, double hybrid_s)
    {
        std::string s = "{\"attention_sparsity\": " + number(w.sparsity()) + ", \"queries\": " + std::to_string(w.queries);
        if (values)
            s += ", \"value_sparsity\": " + number(w.value_sparsity()) + ", \"total_sparsity\": " + number(w.total_sparsity());
        return s + ", \"time_dense_s\": " + number(dense_s) + ", \"time_hybrid_s\": " + number(hybrid_s) + "}";
    }

    std::string to_json(eval_result const& r, eval_settings const& s)
    {
        bool const values = s.value_theta.has_value();
        attention_work const both = r.stats.both();
        std::ostringstream j;
        j << "{\n  \"arch\": \"" << active_arch_name() << "\",\n";
        j << "  \"policy\": \"" << (s.key_codec ? describe_codec(*s.key_codec) : describe(s.policy)) << "\", \"window\": " << s.options.window << ", \"sinks\": " << s.options.sinks
          << ", \"keyframe_interval\": " << s.options.keyframe_interval << ", \"prompt\": " << r.prompt << ",\n";
        j << "  \"value_theta\": " << (values ? number(*s.value_theta) : "null") << ",\n";
        // the caches' element; with f16, the dense step on binary16 K/V against fp32 dense
        j << "  \"storage\": \"" << (s.f16 ? "f16" : "f32") << "\", \"storage_rel_error\": " << (s.f16 ? number(r.storage_rel_error) : "null") << ",\n";
        double const na = std::numeric_limits<double>::quiet_NaN();  // written null: SPEC §10's rows have no sparsity
        j << "  \"attention_sparsity\": " << number(s.key_codec ? na : both.sparsity()) << ",\n";
        j << "  \"delta_sparsity\": " << number(s.key_codec ? na : r.stats.keys.sparsity()) << ",\n";
        if (values)
        {
            j << "  \"value_sparsity\": " << number(both.value_sparsity()) << ",\n";
            j << "  \"total_sparsity\": " << number(both.total_sparsity()) << ",\n";
            j << "  \"value_delta_sparsity\": " << number(r.stats.values.sparsity()) << ",\n";
        }
        j << "  \"prefill\": " << stage_json(r.stats.prefill, values, r.dense_time.prefill, r.hybrid_time.prefill) << ",\n";
        j << "  \"decode\": " << stage_json(r.stats.decode, values, r.dense_time.decode, r.hybrid_time.decode) << ",\n";
        j << "  \"max_abs_error\": " << number(r.max_abs_error) << ",\n";
        j << "  \"rel_error\": " << number(r.rel_error) << ",\n";
        j << "  \"score_bound\": " << number(r.score_bound) << ",\n";
        j << "  \"kcache_bytes_per_token\": " << number(r.kcache_bytes_per_token) << ", \"kcache_dense_bytes_per_token\": "
          << number(r.kcache_dense_bytes_per_token) << ",\n";
        j << "  \"vcache_bytes_per_token\": " << number(r.vcache_bytes_per_token) << ", \"vcache_dense_bytes_per_token\": "
          << number(r.vcache_dense_bytes_per_token) << ",\n";
        j << "  \"time_dense_s\": " << number(r.time_dense_s) << ", \"time_hybrid_s\": " << number(r.time_hybrid_s) << ",\n";
        // SPEC §10: stored bits per far-context value (null for thresholded deltas)
        j << "  \"bits_per_value\": " << (s.key_codec ? number(r.bits_per_value) : "null")
          << ", \"value_bits_per_value\": " << (s.key_codec ? number(r.value_bits_per_value) : "null")
          << ", \"int8_queries\": " << (s.key_codec && s.key_codec->int8_queries ? "true" : "false") << ",\n";
        if (r.baseline)
            j << "  \"baseline\": {\"name\": \"" << (s.baseline->bits == 8 ? "q8_0" : "q4_0") << "\", \"bits_per_value\": " << number(r.baseline->bits_per_value)
              << ", \"max_abs_error\": " << number(r.baseline->max_abs_error) << ", \"rel_error\": " << number(r.baseline->rel_error) << "},\n";
        else
            j << "  \"baseline\": null,\n";
        j << "  \"per_head\": [";
        for (std::size_t h = 0; h < r.per_head.size(); ++h)
            j << (h ? ", " : "") << "{\"head\": " << h << ", \"attention_sparsity\": " << number(r.per_head[h].attention_sparsity)
              << ", \"max_abs_error\": " << number(r.per_head[h].max_abs_error) << ", \"rel_error\": " << number(r.per_head[h].rel_error) << "}";
        j << "]\n}\n";
        return j.str();
    }

    void print_summary(eval_result const& r, eval_settings const& s, qkv_data const& in)
    {
        attention_work const both = r.stats.both();
        std::printf("deltaattn-eval: %zu positions (prefill %zu, decode %zu), %zu query / %zu KV heads, d %zu, arch %s\n", in.shape.positions,
                    r.prompt, in.shape.positions - r.prompt, in.shape.q_heads, in.shape.kv_heads, in.shape.dim, active_arch_name());
        std::string const values = s.key_codec ? (s.value_codec ? ", values " + describe_codec(*s.value_codec) : ", values exact")
                                   : s.value_theta ? ", values " + describe(fixed_threshold{*s.value_theta})
                                                   : ", values exact";
        std::printf("  %s, sinks %zu, window %zu%s\n", (s.key_codec ? describe_codec(*s.key_codec) : describe(s.policy)).c_str(), s.options.sinks,
                    s.options.window, values.c_str());
        if (s.key_codec)
            std::printf("  far context: K %.2f bits/value, V %.2f bits/value\n", r.bits_per_value, r.value_bits_per_value);
        if (r.baseline)
            std::printf("  baseline %s on every position (%.2f bits/value): max |Δo| %.3e, relative %.3e\n", s.baseline->bits == 8 ? "q8_0" : "q4_0",
                        r.baseline->bits_per_value, r.baseline->max_abs_error, r.baseline->rel_error);
        if (!s.key_codec)  // (SPEC §10: attention sparsity does not apply to coded rows)
            std::printf("  attention sparsity %.1f%% (prefill %.1f%%, decode %.1f%%), delta sparsity %.1f%%\n", 100 * both.sparsity(),
                        100 * r.stats.prefill.sparsity(), 100 * r.stats.decode.sparsity(), 100 * r.stats.keys.sparsity());
        if (s.value_theta)
            std::printf("  value sparsity %.1f%%, total sparsity %.1f%%\n", 100 * both.value_sparsity(), 100 * both.total_sparsity());
        std::printf("  error vs dense: max |Δo| %.3e, relative %.3e; score bound %s\n", r.max_abs_error, r.rel_error, number(r.score_bound).c_str());
        if (s.f16)
            std::printf("  storage binary16: dense on binary16 K/V vs fp32, max |Δo| %.3e, relative %.3e (the rounding alone); times "
                        "against that dense step\n",
                        r.storage_max_abs_error, r.storage_rel_error);
        std::printf("  K cache %.1f B/token (dense %.1f)%s\n", r.kcache_bytes_per_token, r.kcache_dense_bytes_per_token,
                    s.value_theta || s.key_codec ? (", V cache " + std::to_string(static_cast<long>(std::lround(r.vcache_bytes_per_token))) + " B/token").c_str() : "");
        std::printf("  time: dense %.4f s, hybrid %.4f s (ratio %.2fx); prefill %.4f / %.4f s, decode %.4f / %.4f s\n", r.time_dense_s,
                    r.time_hybrid_s, r.time_dense_s / r.time_hybrid_s, r.dense_time.prefill, r.hybrid_time.prefill, r.dense_time.decode,
                    r.hybrid_time.decode);
    }

    std::vector<float> parse_list(std::string const& text, char const* flag)
    {
        std::vector<float> values;
        std::stringstream s(text);
        for (std::string item; std::getline(s, item, ',');)
        {
            try
            {
                values.push_back(std::stof(item));
            }
            catch (std::exception const&)
            {
                throw std::invalid_argument(std::string(flag) + ": not a number: " + item);
            }
        }
        if (values.empty())
            throw std::invalid_argument(std::string(flag) + ": empty list");
        return values;
    }
}  // namespace

int main(int argc, char** argv)
{
    CLI::App app{"deltaattn-eval: hybrid delta attention (DeltaLLM) against dense attention on your activations"};
    app.require_subcommand(1);

    std::string q_path, k_path, v_path, out_path, json_path, csv_path, png_path, thetas, sparsities, dir;
    policy_flags flags;
    run_flags extra;
    auto const add_inputs = [&](CLI::App* sub) {
        sub->add_option("--q", q_path, "queries, float32 [n, Hq, d] or [n, d], post-RoPE")->required();
        sub->add_option("--k", k_path, "keys, float32 [n, Hkv, d] or [n, d], post-RoPE")->required();
        sub->add_option("--v", v_path, "values, float32 [n, Hkv, d] or [n, d]")->required();
        add_policy_flags(*sub, flags);
        sub->add_option("--prompt", extra.prompt, "positions < P by one prefill, the rest by decode steps (default: all prefill)")
            ->check(whole_number);
        sub->add_option("--threads", extra.threads, "worker threads")->capture_default_str()->check(whole_number);
        sub->add_option("--baseline", extra.baseline, "q8_0 | q4_0: also report block quantization of every position, no exact sets");
        sub->add_option("--storage", extra.storage, "f32 | f16: caches in binary16, timed against dense on binary16 K/V (errors against fp32 dense)")
            ->capture_default_str();
    };
    CLI::App* run = app.add_subcommand("run", "one setting: summary on stdout, optional output and JSON statistics");
    add_inputs(run);
    run->add_option("--out", out_path, "hybrid output, float32 [n, Hq, d]");
    run->add_option("--json", json_path, "statistics as JSON");
    CLI::App* sweep = app.add_subcommand("sweep", "a list of thresholds or target sparsities: CSV (and a PNG with gnuplot)");
    add_inputs(sweep);
    sweep->add_option("--csv", csv_path, "threshold,attention_sparsity,delta_sparsity,rel_error,time_ratio")->required();
    sweep->add_option("--thetas", thetas, "comma-separated θ (fixed, block) or r (relative)");
    sweep->add_option("--sparsities", sparsities, "comma-separated ρ (target)");
    sweep->add_option("--png", png_path, "the sparsity-error curve (needs gnuplot)");
    workload_shape shape{512, 8, 2, 64};
    CLI::App* synth = app.add_subcommand("synth", "write LLM-like Q, K, V (.npy) to try the tool on");
    synth->add_option("--dir", dir, "directory for q.npy, k.npy, v.npy")->required();
    synth->add_option("--positions", shape.positions)->capture_default_str()->check(whole_number);
    synth->add_option("--q-heads", shape.q_heads)->capture_default_str()->check(whole_number);
    synth->add_option("--kv-heads", shape.kv_heads)->capture_default_str()->check(whole_number);
    synth->add_option("--dim", shape.dim)->capture_default_str()->check(whole_number);

    try
    {
        app.parse(argc, argv);
    }
    catch (CLI::ParseError const& e)
    {
        int const code = app.exit(e);
        return code == 0 ? 0 : 2;
    }

    try
    {
        if (synth->parsed())
        {
            qkv_data const data = make_llm_like(shape);
            auto const write = [&](char const* name, std::vector<float> const& array, std::size_t heads) {
                std::string const path = dir + "/" + name + ".npy";
                write_atomically(path, [&](std::string const& file) { write_npy(file, {shape.positions, heads, shape.dim}, array.data()); });
                std::printf("wrote %s\n", path.c_str());
            };
            write("q", data.q, shape.q_heads);
            write("k", data.k, shape.kv_heads);
            write("v", data.v, shape.kv_heads);
            return 0;
        }

        bool two_d = false;
        qkv_data const in = load_inputs(q_path, k_path, v_path, two_d);
        if (run->parsed())
        {
            eval_settings const s = make_settings(flags, extra, *run);
            eval_result const r = evaluate(in, s);  // everything is computed before any file is written
            std::string const json = to_json(r, s);
            if (!out_path.empty())
            {
                std::vector<std::size_t> out_shape{in.shape.positions, in.shape.q_heads, in.shape.dim};
                if (two_d)
                    out_shape = {in.shape.positions, in.shape.dim};
                write_atomically(out_path, [&](std::string const& file) { write_npy(file, out_shape, r.out.data()); });
            }
            if (!json_path.empty())
                write_text(json_path, json);
            print_summary(r, s, in);
            return 0;
        }

        // sweep
        bool const by_sparsity = !sparsities.empty();
        if (by_sparsity == !thetas.empty())
            throw std::invalid_argument("--thetas/--sparsities: give exactly one of them");
        std::vector<float> const points = by_sparsity ? parse_list(sparsities, "--sparsities") : parse_list(thetas, "--thetas");
        if (by_sparsity)
            flags.policy = "target";
        std::string csv = "threshold,attention_sparsity,delta_sparsity,rel_error,time_ratio\n";
        eval_settings const first = make_settings(flags, extra, *sweep);
        dense_baseline const dense = run_dense(in, first.prompt, first.options.scale, first.threads, first.f16);  // once for every point
        for (std::size_t p = 0; p < points.size(); ++p)
        {
            (by_sparsity ? flags.parameters.sparsity : flags.policy == "relative" ? flags.parameters.ratio : flags.parameters.theta) = points[p];
            eval_settings const s = make_settings(flags, extra, *sweep);
            eval_result const r = evaluate(in, s, &dense);
            csv += number(points[p]) + "," + number(r.stats.both().sparsity()) + "," + number(r.stats.keys.sparsity()) + "," + number(r.rel_error) +
                   "," + number(r.time_dense_s / r.time_hybrid_s) + "\n";
            std::fprintf(stderr, "sweep %zu/%zu: %s %g: attention sparsity %.1f%%, rel error %.3e\n", p + 1, points.size(), flags.policy.c_str(),
                         static_cast<double>(points[p]), 100 * r.stats.both().sparsity(), r.rel_error);
        }
        write_text(csv_path, csv);
        std::printf("wrote %s (%zu points)\n", csv_path.c_str(), points.size());
        if (!png_path.empty())
        {
            std::string const script = "set datafile separator ','; set terminal png size 800,500; set output '" + png_path +
                                       "'; set xlabel 'attention sparsity'; set ylabel 'relative error'; set logscale y; set grid; "
                                       "plot '" + csv_path + "' every ::1 using 2:4 with linespoints title 'hybrid vs dense'";
            if (std::system("command -v gnuplot >/dev/null 2>&1") == 0 && std::system(("gnuplot -e \"" + script + "\"").c_str()) == 0)
                std::printf("wrote %s\n", png_path.c_str());
            else
                std::printf("plot skipped: gnuplot not found (apt-get install gnuplot-nox)\n");
        }
        return 0;
    }
    catch (std::exception const& e)
    {
        std::fprintf(stderr, "deltaattn-eval: %s\n", e.what());
        return 2;
    }
}
