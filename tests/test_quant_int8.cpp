// Int8 queries over quantized far rows (SPEC.md §10's last rule): the integer code dots
// of every compiled kernel against the generic one on random and extreme words, decode
// steps against the oracle that models the query's rounding (and not against the fp32
// oracle: the int8 path must really run), the added score bound, thread-count
// determinism, and the int8 limits refused by name with nothing changed.
#include "catch.hpp"
#include "quant_cases.hpp"
#include "tester.hpp"

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>

using namespace deltaattn_test;

namespace
{
    /// A random word of four bytes in [-127, 127] (8-bit codes, int8 queries), of eight
    /// nibbles in [-7, 7] (4-bit codes) or of eight 3-bit codes in [-3, 3] (its top byte
    /// random: a 3-bit lane's spare bits must not count), the extremes drawn as often as
    /// the rest.
    std::int32_t random_word(std::mt19937& rng, unsigned bits)
    {
        int const qmax = (1 << (bits - 1)) - 1, fields = static_cast<int>(codes_per_lane(bits));
        std::uniform_int_distribution<int> pick(0, 2 * qmax + 4);
        std::uint32_t word = 0;
        for (int f = 0; f < fields; ++f)
        {
            int v = pick(rng) - qmax - 2;
            v = v < -qmax ? -qmax : v > qmax ? qmax : v;  // ±qmax twice as likely
            word |= (static_cast<std::uint32_t>(v) & ((1u << bits) - 1)) << (bits * f);
        }
        if (bits == 3)
            word |= static_cast<std::uint32_t>(rng() & 0xFF) << 24;
        return static_cast<std::int32_t>(word);
    }

    template <class Arch, unsigned Bits>
    void check_code_dots()
    {
        using dots = kernels::code_dots<Arch, Bits>;
        using ops = arch_traits<Arch>;
        constexpr std::size_t w = ops::width, parts = dots::parts;
        std::mt19937 rng(Bits);
        for (int trial = 0; trial < 2000; ++trial)
        {
            alignas(64) std::int32_t codes[w], q[parts][w], start[w], got[w];
            std::int32_t want[w];
            for (std::size_t l = 0; l < w; ++l)
            {
                codes[l] = random_word(rng, Bits);
                int sum = 0;
                for (std::size_t p = 0; p < parts; ++p)
                {
                    q[p][l] = random_word(rng, 8);
                    for (unsigned k = 0; k < 4; ++k)
                        sum += static_cast<std::int8_t>(static_cast<std::uint32_t>(q[p][l]) >> (8 * k));
                }
                start[l] = -dots::bias * sum;
                std::int32_t ql[parts];
                for (std::size_t p = 0; p < parts; ++p)
                    ql[p] = q[p][l];
                want[l] = kernels::code_dot_detail::word_dot<Bits>(0, codes[l], ql);
            }
            typename ops::words qw[parts];
            if constexpr (std::is_same<Arch, scalar>::value)
            {
                for (std::size_t p = 0; p < parts; ++p)
                    qw[p] = q[p][0];
                got[0] = dots::dot(start[0], dots::unpack(codes[0]), qw);
            }
            else
            {
                using words = typename ops::words;
                for (std::size_t p = 0; p < parts; ++p)
                    qw[p] = words::load_aligned(q[p]);
                dots::dot(words::load_aligned(start), dots::unpack(words::load_aligned(codes)), qw).store_aligned(got);
            }
            for (std::size_t l = 0; l < w; ++l)
            {
                INFO("kernel " << kernels::code_dot_isa_name(dots::isa) << " bits " << Bits << " trial " << trial << " lane " << l);
                REQUIRE(got[l] == want[l]);
            }
        }
    }

    quant_codec int8_codec(unsigned bits, std::size_t group, std::size_t r)
    {
        quant_codec c{bits, group, r};
        c.int8_queries = true;
        return c;
    }
}  // namespace

TEMPLATE_LIST_TEST_CASE("code dots of every kernel equal the generic integer dots, extremes included", "[quant][int8]", every_compiled_arch)
{
    INFO("arch=" << arch_name<TestType>() << " kernel=" << kernels::code_dot_isa_name(kernels::code_dot_isa_of<TestType>()));
    check_code_dots<TestType, 3>();
    check_code_dots<TestType, 4>();
    check_code_dots<TestType, 8>();
}

TEST_CASE("the code-dot kernel and the group sums are the ones the build's ISA flags promise", "[quant][int8]")
{
    kernels::code_dot_isa const isa = kernels::code_dot_isa_of<default_arch>();
    INFO("default_arch=" << arch_name<default_arch>() << " kernel=" << kernels::code_dot_isa_name(isa));
    kernels::code_dot_isa want = kernels::code_dot_isa::generic;
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
    want = kernels::code_dot_isa::avx512_vnni;
#elif defined(__AVX512BW__)
    want = kernels::code_dot_isa::avx512_maddubs;
#elif defined(__AVX2__)
    want = kernels::code_dot_isa::avx2_maddubs;
#elif defined(__SSSE3__)
    want = kernels::code_dot_isa::ssse3_maddubs;
#elif defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
    want = kernels::code_dot_isa::neon_sdot;
#elif defined(__ARM_NEON)
    want = kernels::code_dot_isa::neon_mull;
#endif
    if (std::is_same<default_arch, scalar>::value)
        want = kernels::code_dot_isa::generic;
    CHECK(isa == want);
    CHECK(kernels::code_dot_isa_of<scalar>() == kernels::code_dot_isa::generic);

    // The dots summed per group before any float (code_row_dots_int8_by_group): AVX-512 BW
    // and AVX2 + FMA; every other arch keeps the generic kernel.
    kernels::group_sums_isa want_sums = kernels::group_sums_isa::none;
#if defined(__AVX512BW__)
    want_sums = kernels::group_sums_isa::avx512;
#elif defined(__AVX2__) && defined(__FMA__)
    want_sums = kernels::group_sums_isa::avx2;
#endif
    if (std::is_same<default_arch, scalar>::value)
        want_sums = kernels::group_sums_isa::none;
    CHECK(kernels::group_sums_isa_of<default_arch>() == want_sums);
    CHECK(kernels::group_sums_isa_of<scalar>() == kernels::group_sums_isa::none);

    // 3-bit codes spread to bytes by vpmultishiftqb where AVX-512 has VBMI.
    bool want_multishift = false;
#if defined(__AVX512VBMI__) && defined(__AVX512BW__)
    want_multishift = true;
#endif
    if (std::is_same<default_arch, scalar>::value)
        want_multishift = false;
    CHECK(kernels::code_dots<default_arch, 3>::multishift_spread == want_multishift);
    CHECK_FALSE(kernels::code_dots<default_arch, 4>::multishift_spread);
}

TEMPLATE_LIST_TEST_CASE("int8-query decode steps agree with the oracle of the rounded query, not with the fp32 one", "[quant][int8]", tested_archs)
{
    std::uint64_t seed = 300;
    struct shape
    {
        std::size_t n, hq, hkv, d, sinks, window, group;  // group 0: one scale per row
    };
    std::size_t differs = 0, cases = 0;
    for (shape const s : {shape{70, 1, 1, 32, 1, 1, 32}, shape{129, 8, 1, 64, 4, 16, 32}, shape{150, 4, 2, 128, 4, 20, 32}, shape{90, 8, 4, 96, 3, 7, 32},
                          shape{40, 2, 1, 256, 1, 5, 32}, shape{66, 16, 2, 80, 2, 5, 0}, shape{50, 4, 1, 40, 2, 3, 0}, shape{100, 4, 1, 128, 2, 9, 0},
                          shape{60, 4, 1, 160, 2, 9, 32}})
        for (unsigned bits : {3u, 4u, 8u})
            for (std::size_t r : {std::size_t(1), std::size_t(0)})
                for (bool coded_values : {true, false})
                {
                    // Under qemu a sample: one (R, values) pair per shape and width, rotating,
                    // so every shape, width and pair still runs (natively: all).
                    if (emulated_build && (s.n + s.d + bits) % 4 != r * 2 + coded_values)
                    {
                        ++seed;
                        continue;
                    }
                    quant_codec const keys = int8_codec(bits, s.group, r);
                    quant_codec const values{bits, keys.scale_group, r};
                    quant_case const q = make_case(s.n, s.hq, s.hkv, s.d, s.sinks, s.window, keys, coded_values ? std::optional<quant_codec>(values) : std::nullopt,
                                                   ++seed);
                    qkv_data const in = q.c.inputs();
                    std::size_t const prompt = 5;  // one prefill chunk (fp32 queries), then decode steps
                    auto const want = oracle_quant<float>(in, q, prompt);
                    auto const fp32 = oracle_quant<float>(in, q, q.c.positions);
                    auto const got = run_quant_steps<TestType, float>(in, q, prompt, prompt);
                    INFO(describe(q) << " arch=" << arch_name<TestType>());
                    REQUIRE(max_abs_diff(got, want) <= tolerance(want));
                    differs += max_abs_diff(got, fp32) > tolerance(fp32);
                    ++cases;
                }
    // The query's rounding moves the output beyond the tolerance in most cases: if it
    // never did, the int8 path would not be running.
    CHECK(differs * 2 > cases);
}

TEST_CASE("int8-query scores stay inside SPEC.md §10's bound with the query term", "[quant][int8]")
{
    attention_case c;
    c.positions = 200;
    c.kv_heads = 1;
    c.q_heads = 1;
    c.dim = 96;
    for (input_kind kind : {input_kind::llm_like, input_kind::white_noise})
        for (unsigned bits : {3u, 4u, 8u})
            for (std::size_t r : {std::size_t(1), std::size_t(0)})
            {
                c.kind = kind;
                quant_codec const codec = int8_codec(bits, 32, r);
                qkv_data const in = c.inputs();
                auto const keys = in.k_view().head(0);
                reference::quant_rows const rows = reference::build_quant_rows(keys, codec);
                float const alpha = effective_scale(0.0f, c.dim);
                double worst = 0.0;
                for (std::size_t j = 0; j < c.positions; ++j)
                {
                    float const* qv = in.q_view().at(j, 0);
                    std::vector<float> const q8 = reference::int8_query(qv, c.dim);
                    double err = 0.0;
                    for (std::size_t ch = 0; ch < c.dim; ++ch)
                        err += double(q8[ch]) * rows.reference_row(j)[ch] - double(qv[ch]) * keys.row(j)[ch];
                    double const bound = reference::quant_score_bound(qv, j, rows, 0.0f, true) * 1.0001 + 1e-6;
                    worst = std::max(worst, std::fabs(alpha * err) / bound);
                }
                INFO("bits=" << bits << " R=" << r);
                CHECK(worst <= 1.0);
                CHECK(worst > 0.0);
            }
}

TEST_CASE("int8-query decode is bit-identical for any thread count", "[quant][int8][threads]")
{
    quant_case const q = make_case(180, 8, 4, 64, 4, 24, int8_codec(4, 32, 64), quant_codec{4, 32, 64}, 5);
    qkv_data const in = q.c.inputs();
    auto const one = run_quant_steps<default_arch, float>(in, q, 60, 30);
    for (std::size_t threads : {2, 3})
    {
        thread_pool pool(threads);
        REQUIRE(run_quant_steps<default_arch, float>(in, q, 60, 30, pool.executor()) == one);
    }
}

TEMPLATE_LIST_TEST_CASE("quant_decode on one head's caches with int8 queries equals the layer cache's step", "[quant][int8]", tested_archs)
{
    check_head_decode_equals_layer<TestType, float>(make_case(120, 8, 2, 64, 4, 20, int8_codec(8, 32, 0), quant_codec{4, 32, 0}, 41));
    check_head_decode_equals_layer<TestType, float>(make_case(90, 4, 2, 96, 2, 10, int8_codec(3, 0, 16), quant_codec{3, 0, 16}, 42));
}

TEST_CASE("int8 queries: a value codec asking for them and a query beyond their range are refused by name", "[quant][int8][validation]")
{
    hybrid_options const o;
    try
    {
        layer_quant_cache(2, 64, 10, o, int8_codec(4, 32, 1), int8_codec(4, 32, 1));
        FAIL("a value codec with int8 queries was accepted");
    }
    catch (std::invalid_argument const& e)
    {
        CHECK(std::string(e.what()).find("value_int8_queries") != std::string::npos);
    }

    quant_case const q = make_case(30, 2, 1, 32, 2, 4, int8_codec(4, 32, 0), std::nullopt, 3);
    qkv_data in = q.c.inputs();
    std::vector<float> out;
    auto const view = in.make_output(out);
    layer_quant_cache cache(1, 32, 30, q.c.options, q.keys, q.values);
    cache.prefill(in.q_view().slice_positions(0, 20), in.k_view().slice_positions(0, 20), in.v_view().slice_positions(0, 20), view.slice_positions(0, 20));
    std::size_t const bytes = cache.bytes();
    in.q[20 * 2 * 32 + 32 + 3] = 2.0f * quant_query_limit;  // position 20, head 1
    try
    {
        cache.decode(in.q_view().slice_positions(20, 1), in.k_view().slice_positions(20, 1), in.v_view().slice_positions(20, 1), view.slice_positions(20, 1));
        FAIL("a query beyond int8 range was accepted");
    }
    catch (std::invalid_argument const& e)
    {
        CHECK(std::string(e.what()).find("q") != std::string::npos);
        CHECK(std::string(e.what()).find("int8") != std::string::npos);
    }
    CHECK(cache.size() == 20);
    CHECK(cache.bytes() == bytes);
}
