// deltaattn-eval's pieces: the .npy reader/writer (round trip, every malformed file
// named), and evaluate() against the oracle (prefill only, prefill + decode, delta
// values, binary16 storage), its counters against the analytic counts, its per-head
// sparsity and its score bound against the reference's.
#include "catch.hpp"
#include "tester.hpp"

#include "eval_core.hpp"
#include "npy.hpp"

#include <cstdio>
#include <fstream>
#include <string>

using namespace deltaattn_test;
using namespace deltaattn_tools;

namespace
{
    std::string temp_path(std::string const& name) { return (std::string(P_tmpdir) + "/deltaattn_test_") + name; }

    void write_bytes(std::string const& path, std::string const& bytes)
    {
        std::ofstream out(path, std::ios::binary);
        out << bytes;
    }

    /// A .npy 1.0 file with `header_dict` and `data_bytes` zero bytes of data.
    std::string npy_file(std::string const& header_dict, std::size_t data_bytes)
    {
        std::string header = header_dict + "\n";
        std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
        bytes += static_cast<char>(header.size() & 0xFF);
        bytes += static_cast<char>(header.size() >> 8);
        return bytes + header + std::string(data_bytes, '\0');
    }
}  // namespace

TEST_CASE("npy: a written array reads back with its shape and bits", "[tools][npy]")
{
    for (std::vector<std::size_t> shape : {std::vector<std::size_t>{5}, {3, 4}, {2, 3, 7}})
    {
        std::size_t count = 1;
        for (std::size_t n : shape)
            count *= n;
        std::vector<float> data(count);
        for (std::size_t i = 0; i < count; ++i)
            data[i] = static_cast<float>(i) * 0.37f - 2.0f;
        std::string const path = temp_path("roundtrip.npy");
        write_npy(path, shape, data.data());
        npy_array const back = read_npy(path);
        CHECK(back.shape == shape);
        CHECK(back.data == data);
        std::remove(path.c_str());
    }
}

TEST_CASE("npy: malformed files are rejected, naming the file and the problem", "[tools][npy]")
{
    struct bad
    {
        char const* name;
        std::string bytes;
        char const* problem;
    };
    bad const cases[] = {
        {"missing", "", "cannot open"},
        {"magic", "NOTNUMPY and more", "bad magic"},
        {"truncated_header", std::string("\x93NUMPY\x01\x00\x40\x00{'descr'", 17), "truncated .npy header"},
        {"float64", npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16), "float32"},
        {"big_endian", npy_file("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8), "float32"},
        {"fortran", npy_file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16), "Fortran"},
        {"rank4", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 2), }", 8), "rank 4"},
        {"truncated_data", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", 20), "truncated data"},
    };
    for (bad const& c : cases)
    {
        std::string const path = temp_path(std::string(c.name) + ".npy");
        if (!c.bytes.empty())
            write_bytes(path, c.bytes);
        INFO(c.name);
        CHECK_THROWS_WITH(read_npy(path), contains(path) && contains(c.problem));
        std::remove(path.c_str());
    }
}

namespace
{
    /// The shape the oracle-checked evaluate cases run: 90 positions, GQA 2, sinks 2, window 12.
    attention_case eval_case()
    {
        attention_case c;
        c.positions = 90;
        c.q_heads = 4;
        c.kv_heads = 2;
        c.options.sinks = 2;
        c.options.window = 12;
        return c;
    }

    /// Settings of an oracle-checked case: its options and key policy, delta values with
    /// θ_v 0.05 when `values`.
    eval_settings settings_of(attention_case const& c, std::size_t prompt, bool values)
    {
        eval_settings s;
        s.options = c.options;
        s.policy = c.policy;
        s.prompt = prompt;
        if (values)
            s.value_theta = 0.05f;
        return s;
    }

    /// The oracle of settings_of's case, for storage element T.
    template <class T>
    std::vector<float> oracle_of(qkv_data const& in, attention_case const& c, bool values)
    {
        std::vector<float> expected;
        auto view = in.make_output(expected);
        if (values)
            reference::hybrid_attention<T>(in.q_view(), in.k_view(), in.v_view(), view, c.options, c.policy, fixed_threshold{0.05f});
        else
            reference::hybrid_attention<T>(in.q_view(), in.k_view(), in.v_view(), view, c.options, c.policy);
        return expected;
    }
}  // namespace

TEST_CASE("evaluate matches the oracle, prefill only and prefill + decode", "[tools][eval]")
{
    std::size_t const prompt = GENERATE(std::size_t(90), std::size_t(50), std::size_t(1));
    bool const values = GENERATE(false, true);
    attention_case c = eval_case();
    c.options.keyframe_interval = 32;
    c.policy = relative_threshold{0.3f};
    auto const in = c.inputs();
    eval_result const r = evaluate(in, settings_of(c, prompt, values));
    auto const expected = oracle_of<float>(in, c, values);
    INFO("prompt " << prompt << (values ? " with delta values" : ""));
    CHECK(max_abs_diff(r.out, expected) <= tolerance(expected));

    // Counters: the analytic counts of each stage; the error against dense is the real one.
    CHECK(r.stats.prefill.hybrid_macs == analytic_work(in, c, 0, prompt - 1).hybrid_macs);
    if (prompt < c.positions)
        CHECK(r.stats.decode.hybrid_macs == analytic_work(in, c, prompt, c.positions - 1).hybrid_macs);
    auto const dense = oracle_dense(in);
    CHECK(r.max_abs_error == Approx(max_abs_diff(r.out, dense)).margin(1e-6));
    CHECK(r.rel_error > 0.0);

    // Per-head sparsity: all of a KV head's query heads, every position.
    for (std::size_t h = 0; h < c.q_heads; ++h)
    {
        auto const rows = reference::build_delta_rows(in.k_view().head(h / (c.q_heads / c.kv_heads)), c.policy);
        attention_work const w = reference::stage_work(0, c.positions - 1, 1, rows, c.options);
        CHECK(r.per_head[h].attention_sparsity == Approx(w.sparsity()).epsilon(1e-12));
    }
}

TEST_CASE("evaluate against a shared dense baseline gives the figures of its own dense run", "[tools][eval]")
{
    attention_case c;
    c.positions = 70;
    c.q_heads = 4;
    c.kv_heads = 2;
    c.options.window = 8;
    auto const in = c.inputs();
    eval_settings s;
    s.options = c.options;
    s.policy = relative_threshold{0.3f};
    s.prompt = 40;
    dense_baseline const dense = run_dense(in, s.prompt, s.options.scale, 1);
    CHECK(max_abs_diff(dense.out, oracle_dense(in)) <= tolerance(dense.out));
    eval_result const own = evaluate(in, s), shared = evaluate(in, s, &dense);
    CHECK(shared.out == own.out);
    CHECK(shared.max_abs_error == own.max_abs_error);
    CHECK(shared.rel_error == own.rel_error);
    CHECK(shared.time_dense_s == dense.seconds);
    // The stages add up to the totals, and a run with decode steps times both.
    CHECK(own.dense_time.total() == own.time_dense_s);
    CHECK(own.hybrid_time.total() == own.time_hybrid_s);
    CHECK(own.dense_time.prefill > 0);
    CHECK(own.dense_time.decode > 0);
    CHECK(own.hybrid_time.prefill > 0);
    CHECK(own.hybrid_time.decode > 0);

    s.prompt = 30;  // a baseline of another schedule is refused by name
    CHECK_THROWS_WITH(evaluate(in, s, &dense), contains("deltaattn: dense:"));
}

TEST_CASE("evaluate's score bound is SPEC 3's, and holds", "[tools][eval]")
{
    attention_case c;
    c.positions = 70;
    c.options.window = 8;
    c.policy = fixed_threshold{0.2f};
    auto const in = c.inputs();
    eval_settings s;
    s.options = c.options;
    s.policy = c.policy;
    eval_result const r = evaluate(in, s);
    std::size_t const group = c.q_heads / c.kv_heads;
    double bound = 0, worst = 0;
    for (std::size_t kv = 0; kv < c.kv_heads; ++kv)
    {
        auto const rows = reference::build_delta_rows(in.k_view().head(kv), c.policy);
        for (std::size_t h = kv * group; h < (kv + 1) * group; ++h)
            for (std::size_t i = 0; i < c.positions; ++i)
            {
                float const* q = in.q_view().at(i, h);
                auto const exact = reference::dense_scores(q, i, in.k_view().head(kv), 0.0f);
                auto const hybrid = reference::hybrid_scores(q, i, in.k_view().head(kv), rows, c.options);
                for (std::size_t j = c.options.sinks; j + c.options.window <= i; ++j)
                {
                    bound = std::max(bound, reference::score_bound(q, c.dim, j, rows, 0.0f));
                    worst = std::max(worst, std::fabs(hybrid[j] - exact[j]));
                }
            }
    }
    CHECK(r.score_bound == Approx(bound).epsilon(1e-9));
    CHECK(worst <= r.score_bound);

    s.policy = target_sparsity{0.5f};  // no bound
    CHECK(std::isnan(evaluate(in, s).score_bound));
}

TEST_CASE("evaluate rejects bad settings by name", "[tools][eval][validation]")
{
    attention_case c;
    auto const in = c.inputs();
    eval_settings s;
    s.options.window = 0;
    CHECK_THROWS_WITH(evaluate(in, s), contains("deltaattn: window:"));
    s.options.window = 4;
    s.value_theta = -1.0f;
    CHECK_THROWS_WITH(evaluate(in, s), contains("theta"));
}

TEST_CASE("evaluate with --policy quant matches the quant oracle and reports bits and the q4_0 baseline", "[tools][eval][quant]")
{
    std::size_t const prompt = GENERATE(std::size_t(90), std::size_t(40));
    bool const values = GENERATE(false, true);
    attention_case const c = eval_case();
    auto const in = c.inputs();
    eval_settings s;
    s.options = c.options;
    s.prompt = prompt;
    s.key_codec = quant_codec{4, 32, 8};
    if (values)
        s.value_codec = quant_codec{8, 32, 8};
    s.baseline = quant_codec{4, 32, 1};
    eval_result const r = evaluate(in, s);

    std::vector<float> expected;
    auto view = in.make_output(expected);
    reference::quant_attention(in.q_view(), in.k_view(), in.v_view(), view, c.options, *s.key_codec, s.value_codec);
    INFO("prompt " << prompt << (values ? " with coded values" : ""));
    CHECK(max_abs_diff(r.out, expected) <= tolerance(expected));
    CHECK(r.bits_per_value == 4.5);
    CHECK(r.value_bits_per_value == (values ? 8.5 : 32.0));
    auto const dense = oracle_dense(in);
    CHECK(r.max_abs_error == Approx(max_abs_diff(r.out, dense)).margin(1e-6));

    // The baseline: the same codec at R = 1 on every position but the diagonal.
    REQUIRE(r.baseline.has_value());
    hybrid_options every = c.options;
    every.sinks = every.window = 1;
    std::vector<float> coded;
    auto coded_view = in.make_output(coded);
    reference::quant_attention(in.q_view(), in.k_view(), in.v_view(), coded_view, every, *s.baseline, s.baseline);
    CHECK(r.baseline->max_abs_error == Approx(max_abs_diff(coded, dense)).margin(1e-4 * std::max(1.0f, max_abs(dense))));
    CHECK(r.baseline->bits_per_value == 4.5);

    // The reported bound covers every far score (SPEC §10).
    double worst = 0;
    double const alpha = effective_scale(0.0f, c.dim);
    for (std::size_t kv = 0; kv < c.kv_heads; ++kv)
    {
        auto const rows = reference::build_quant_rows(in.k_view().head(kv), *s.key_codec);
        for (std::size_t i = c.options.sinks + c.options.window; i < c.positions; ++i)
            for (std::size_t j = c.options.sinks; j + c.options.window <= i; ++j)
                for (std::size_t h = kv * 2; h < kv * 2 + 2; ++h)
                {
                    double e = 0;
                    for (std::size_t ch = 0; ch < c.dim; ++ch)
                        e += double(in.q_view().at(i, h)[ch]) * (double(rows.reference_row(j)[ch]) - in.k_view().at(j, kv)[ch]);
                    worst = std::max(worst, alpha * std::fabs(e));
                }
    }
    CHECK(worst <= r.score_bound);
    CHECK(r.score_bound > 0);
}

TEST_CASE("evaluate with --int8-queries matches the oracle of int8 decode steps and bounds their scores", "[tools][eval][quant][int8]")
{
    attention_case const c = eval_case();
    auto const in = c.inputs();
    eval_settings s;
    s.options = c.options;
    s.prompt = 30;
    s.key_codec = quant_codec{8, 32, 0};
    s.key_codec->int8_queries = true;
    eval_result const r = evaluate(in, s);

    std::vector<float> expected;
    auto view = in.make_output(expected);
    reference::quant_attention(in.q_view(), in.k_view(), in.v_view(), view, c.options, *s.key_codec, s.value_codec, s.prompt);
    CHECK(max_abs_diff(r.out, expected) <= tolerance(expected));

    double worst = 0;
    double const alpha = effective_scale(0.0f, c.dim);
    for (std::size_t kv = 0; kv < c.kv_heads; ++kv)
    {
        auto const rows = reference::build_quant_rows(in.k_view().head(kv), *s.key_codec);
        for (std::size_t i = s.prompt; i < c.positions; ++i)
            for (std::size_t h = kv * 2; h < kv * 2 + 2; ++h)
            {
                std::vector<float> const q8 = reference::int8_query(in.q_view().at(i, h), c.dim);
                for (std::size_t j = c.options.sinks; j + c.options.window <= i; ++j)
                {
                    double e = 0;
                    for (std::size_t ch = 0; ch < c.dim; ++ch)
                        e += double(q8[ch]) * rows.reference_row(j)[ch] - double(in.q_view().at(i, h)[ch]) * in.k_view().at(j, kv)[ch];
                    worst = std::max(worst, alpha * std::fabs(e));
                }
            }
    }
    CHECK(worst <= r.score_bound);
    CHECK(worst > 0);
}

TEST_CASE("evaluate on binary16 storage matches the fp16 oracle, and splits off the rounding", "[tools][eval][fp16]")
{
    bool const values = GENERATE(false, true);
    attention_case c = eval_case();
    c.options.keyframe_interval = 32;
    c.policy = relative_threshold{0.3f};
    auto const in = c.inputs();
    eval_settings s = settings_of(c, 50, values);
    s.f16 = true;
    eval_result const r = evaluate(in, s);

    // The output is the fp16 oracle's; errors are against fp32 dense, and the dense step on
    // binary16 K/V carries the rounding alone.
    auto const expected = oracle_of<float16>(in, c, values);
    INFO((values ? "with delta values" : "keys only"));
    CHECK(max_abs_diff(r.out, expected) <= tolerance(expected));
    auto const dense = oracle_dense(in);
    CHECK(r.max_abs_error == Approx(max_abs_diff(r.out, dense)).margin(1e-6));
    std::vector<float> rounded;
    auto rounded_view = in.make_output(rounded);
    qkv_data halves = in;
    halves.k = rounded_to_half(in.k);
    halves.v = rounded_to_half(in.v);
    reference::dense_attention(halves.q_view(), halves.k_view(), halves.v_view(), rounded_view);
    CHECK(r.storage_max_abs_error == Approx(max_abs_diff(rounded, dense)).margin(1e-6));
    CHECK(r.storage_rel_error > 0.0);
    CHECK(r.storage_rel_error < r.rel_error);  // the deltas add to the rounding on this data

    // Bytes against a binary16 cache; the sparsity of the rows binary16 caches keep.
    CHECK(r.kcache_dense_bytes_per_token == sizeof(float16) * c.kv_heads * c.dim);
    CHECK(r.kcache_bytes_per_token == Approx(static_cast<double>(r.stats.kcache_bytes) / c.positions));
    auto const rows = reference::build_delta_rows<float16>(in.k_view().head(0), c.policy);
    CHECK(r.per_head[0].attention_sparsity == Approx(reference::stage_work(0, c.positions - 1, 1, rows, c.options).sparsity()).epsilon(1e-12));

    dense_baseline const fp32 = run_dense(in, s.prompt, s.options.scale, 1);  // a baseline of another storage is refused by name
    CHECK_THROWS_WITH(evaluate(in, s, &fp32), contains("deltaattn: dense:"));
}
