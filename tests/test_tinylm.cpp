// The tiny LM of examples/tinylm against the PyTorch model it was trained as: logits
// on a fixed prompt and the post-RoPE q, k, v that tools/dump_traces.py dumps, both
// committed by tools/train_tinylm.py (tests/data/tinylm_*.npy). And deltaattn inside
// it: prefill + decode steps give the prefill's logits, hybrid attention with every
// delta kept gives dense attention's, and deltaattn-eval on the model's own traces
// matches the oracle.
#include "catch.hpp"
#include "tester.hpp"

#if DELTAATTN_HAVE_EIGEN

#include "eval_core.hpp"
#include "npy.hpp"
#include "tinylm.hpp"

#include <fstream>
#include <iterator>

using namespace deltaattn_test;

namespace
{
    std::string const source_dir = DELTAATTN_SOURCE_DIR;
    std::string const model_path = source_dir + "/examples/tinylm/tinylm.bin";

    tinylm::tinylm_weights const& model()
    {
        static tinylm::tinylm_weights const w = tinylm::load_weights(model_path);
        return w;
    }

    std::string heldout(std::size_t n)
    {
        std::ifstream f(source_dir + "/examples/tinylm/heldout.txt", std::ios::binary);
        std::string text{std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
        REQUIRE(text.size() >= n);
        return text.substr(0, n);
    }

    std::uint8_t const* bytes_of(std::string const& s) { return reinterpret_cast<std::uint8_t const*>(s.data()); }

    deltaattn_tools::npy_array fixture(char const* name) { return deltaattn_tools::read_npy(source_dir + "/tests/data/" + name); }

    float max_abs_logit_diff(tinylm::row_matrix const& a, std::vector<float> const& b)
    {
        REQUIRE(static_cast<std::size_t>(a.size()) == b.size());
        float worst = 0;
        for (std::size_t i = 0; i < b.size(); ++i)
            worst = std::max(worst, std::abs(a.data()[i] - b[i]));
        return worst;
    }

    /// Logits of the whole text: a prefill of `prompt` bytes, then one decode step per byte.
    tinylm::row_matrix logits_of(std::string const& text, std::size_t prompt, tinylm::attention_settings const& a)
    {
        tinylm::session s(model(), a);
        tinylm::row_matrix all(static_cast<Eigen::Index>(text.size()), model().cfg.vocab);
        all.topRows(static_cast<Eigen::Index>(prompt)) = s.forward(bytes_of(text), prompt);
        for (std::size_t i = prompt; i < text.size(); ++i)
            all.row(static_cast<Eigen::Index>(i)) = s.forward(bytes_of(text) + i, 1);
        return all;
    }
}  // namespace

TEST_CASE("tinylm: logits match the PyTorch model within 1e-4, by prefill and by decode steps", "[tinylm]")
{
    auto const expected = fixture("tinylm_logits.npy");
    std::string const text = heldout(expected.shape.at(0));
    REQUIRE(expected.shape == std::vector<std::size_t>{text.size(), 256});
    std::size_t const prompt = GENERATE(std::size_t(96), std::size_t(40), std::size_t(1));
    INFO("prefill of " << prompt << " bytes, decode steps after");
    CHECK(max_abs_logit_diff(logits_of(text, prompt, tinylm::attention_settings{}), expected.data) <= 1e-4f);
}

TEST_CASE("tinylm: the q, k, v it feeds attention are the ones dump_traces.py dumps", "[tinylm]")
{
    auto const q = fixture("tinylm_layer1_q.npy"), k = fixture("tinylm_layer1_k.npy"), v = fixture("tinylm_layer1_v.npy");
    std::size_t const n = q.shape.at(0);
    tinylm::config const& c = model().cfg;
    REQUIRE(q.shape == std::vector<std::size_t>{n, c.n_heads, c.head_dim});
    REQUIRE(k.shape == std::vector<std::size_t>{n, c.n_kv_heads, c.head_dim});
    std::vector<tinylm::session::layer_trace> traces;
    tinylm::session s(model(), tinylm::attention_settings{});
    s.record(&traces);
    s.forward(bytes_of(heldout(n)), n);
    REQUIRE(traces.size() == c.n_layers);
    CHECK(max_abs_logit_diff(traces[1].q, q.data) <= 1e-4f);
    CHECK(max_abs_logit_diff(traces[1].k, k.data) <= 1e-4f);
    CHECK(max_abs_logit_diff(traces[1].v, v.data) <= 1e-4f);
}

TEST_CASE("tinylm: hybrid attention that keeps every delta gives dense attention's logits", "[tinylm]")
{
    std::string const text = heldout(112);  // 80 by prefill, 32 decode steps: a delta region in both
    tinylm::attention_settings exact_deltas;
    exact_deltas.hybrid = true;
    exact_deltas.options.sinks = 2;
    exact_deltas.options.window = 16;
    exact_deltas.key_policy = deltaattn::fixed_threshold{0.0f};
    bool const values = GENERATE(false, true);
    if (values)
        exact_deltas.value_policy = deltaattn::fixed_threshold{0.0f};
    INFO((values ? "delta keys and values" : "delta keys"));
    tinylm::row_matrix const dense = logits_of(text, 80, tinylm::attention_settings{});
    tinylm::row_matrix const hybrid = logits_of(text, 80, exact_deltas);
    CHECK((dense - hybrid).cwiseAbs().maxCoeff() <= 1e-3f);

    // A real threshold changes the logits, and the counters say work was skipped.
    exact_deltas.key_policy = deltaattn::relative_threshold{0.3f};
    tinylm::session s(model(), exact_deltas);
    tinylm::row_matrix const sparse = s.forward(bytes_of(text), text.size());
    CHECK((dense - sparse).cwiseAbs().maxCoeff() > 1e-5f);
    CHECK(s.stats().prefill.sparsity() > 0.0);
}

TEST_CASE("tinylm: deltaattn-eval on the model's own traces matches the oracle", "[tinylm][eval]")
{
    auto q = fixture("tinylm_layer1_q.npy"), k = fixture("tinylm_layer1_k.npy"), v = fixture("tinylm_layer1_v.npy");
    qkv_data in;
    in.shape = workload_shape{q.shape[0], q.shape[1], k.shape[1], q.shape[2]};
    in.q = q.data, in.k = k.data, in.v = v.data;
    std::size_t const prompt = GENERATE(std::size_t(160), std::size_t(100));
    bool const values = GENERATE(false, true);
    deltaattn_tools::eval_settings s;
    s.options.sinks = 4;
    s.options.window = 32;
    s.policy = deltaattn::relative_threshold{0.3f};
    s.prompt = prompt;
    if (values)
        s.value_theta = 0.05f;
    deltaattn_tools::eval_result const r = deltaattn_tools::evaluate(in, s);

    std::vector<float> expected;
    auto view = in.make_output(expected);
    if (values)
        reference::hybrid_attention(in.q_view(), in.k_view(), in.v_view(), view, s.options, s.policy, fixed_threshold{0.05f});
    else
        reference::hybrid_attention(in.q_view(), in.k_view(), in.v_view(), view, s.options, s.policy);
    INFO("prompt " << prompt << (values ? " with delta values" : ""));
    CHECK(max_abs_diff(r.out, expected) <= tolerance(expected));
    CHECK(r.stats.both().sparsity() > 0.0);
}

TEST_CASE("tinylm: bad weight files are refused, naming the file", "[tinylm][validation]")
{
    std::ifstream f(model_path, std::ios::binary);
    std::string const good{std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
    struct bad_file
    {
        char const* name;
        std::string bytes;
        char const* problem;
    };
    std::string wrong_magic = good;
    wrong_magic[0] = 'X';
    for (bad_file const& b : {bad_file{"truncated", good.substr(0, good.size() - 2), "truncated"},
                              bad_file{"trailing", good + "xx", "trailing"},
                              bad_file{"magic", wrong_magic, "magic"},
                              bad_file{"empty", std::string(), "magic"}})
    {
        std::string const path = "tinylm_bad_" + std::string(b.name) + ".bin";
        std::ofstream(path, std::ios::binary) << b.bytes;
        INFO(b.name);
        CHECK_THROWS_WITH(tinylm::load_weights(path), Catch::Matchers::Contains(path) && Catch::Matchers::Contains(b.problem));
        std::remove(path.c_str());
    }
    CHECK_THROWS_WITH(tinylm::load_weights("no/such/file.bin"), Catch::Matchers::Contains("no/such/file.bin"));
}

#else

TEST_CASE("tinylm: SKIPPED, built without Eigen", "[tinylm]")
{
    WARN("SKIPPED: the tinylm forward needs Eigen (libeigen3-dev); this build has none");
}

#endif
