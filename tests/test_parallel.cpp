// Threading (parallel.hpp): the same bits for any thread count, work counted once.
#include "catch.hpp"
#include "tester.hpp"

#include <atomic>
#include <stdexcept>

using namespace deltaattn_test;

TEST_CASE("thread_pool runs every task exactly once on distinct workers", "[threads]")
{
    std::size_t const threads = GENERATE(1, 2, 3);
    thread_pool pool(threads);
    REQUIRE(pool.size() == threads);
    for (std::size_t tasks : {0u, 1u, 5u, 64u})
    {
        std::vector<std::atomic<int>> runs(tasks);
        std::vector<std::atomic<int>> busy(threads);
        std::atomic<bool> shared_worker{false};
        pool.run(tasks, [&](std::size_t t, std::size_t w) {
            if (busy[w].fetch_add(1) != 0)
                shared_worker = true;  // two tasks on one worker slot at once
            runs[t].fetch_add(1);
            busy[w].fetch_sub(1);
        });
        for (auto const& r : runs)
            CHECK(r.load() == 1);
        CHECK_FALSE(shared_worker.load());
    }
}

TEST_CASE("thread_pool rethrows a task's exception after every task ran", "[threads]")
{
    thread_pool pool(2);
    std::atomic<int> ran{0};
    CHECK_THROWS_WITH(pool.run(10,
                               [&](std::size_t t, std::size_t) {
                                   ran.fetch_add(1);
                                   if (t == 3)
                                       throw std::runtime_error("task 3 failed");
                               }),
                      contains("task 3 failed"));
    CHECK(ran.load() == 10);
    // The pool is usable afterwards.
    pool.run(4, [&](std::size_t, std::size_t) { ran.fetch_add(1); });
    CHECK(ran.load() == 14);
}

TEMPLATE_LIST_TEST_CASE("outputs are bit-identical for any number of threads", "[threads]", tested_archs)
{
    attention_case c;
    c.positions = 150;
    c.q_heads = 8;
    c.kv_heads = 4;
    c.options.window = 16;
    c.options.sinks = 2;
    c.policy = relative_threshold{0.3f};
    auto const in = c.inputs();

    auto run = [&](std::size_t threads, std::vector<float>& dense, std::vector<float>& hybrid, attention_stats& stats) {
        thread_pool pool(threads);
        attention_workspace ws;
        attention_work dense_work;
        dense_attention<TestType>(in.q_view(), in.k_view(), in.v_view(), in.make_output(dense), 0.0f, ws, &dense_work, pool.executor());
        // Prefill half, decode the rest, on the pool.
        auto const out = in.make_output(hybrid);
        layer_key_cache cache(c.kv_heads, c.dim, c.positions, c.options, c.policy);
        cache.set_executor(pool.executor());
        std::size_t const prompt = c.positions / 2;
        cache.prefill<TestType>(in.q_view().slice_positions(0, prompt), in.k_view().slice_positions(0, prompt),
                                in.v_view().slice_positions(0, prompt), out.slice_positions(0, prompt), &stats);
        for (std::size_t i = prompt; i < c.positions; ++i)
            cache.decode<TestType>(in.q_view().slice_positions(i, 1), in.k_view().slice_positions(i, 1), in.v_view().slice_positions(0, i + 1),
                                   out.slice_positions(i, 1), &stats);
        CHECK(dense_work.hybrid_macs == dense_work.dense_macs);
    };

    std::vector<float> dense1, hybrid1;
    attention_stats stats1;
    run(1, dense1, hybrid1, stats1);
    auto const want = oracle_hybrid(in, c);
    CHECK(max_abs_diff(hybrid1, want) <= tolerance(want));
    for (std::size_t threads : {2u, 3u})
    {
        std::vector<float> dense, hybrid;
        attention_stats stats;
        run(threads, dense, hybrid, stats);
        INFO(arch_name<TestType>() << " threads " << threads);
        CHECK(max_abs_diff(dense, dense1) == 0.0f);
        CHECK(max_abs_diff(hybrid, hybrid1) == 0.0f);
        CHECK(stats.prefill.hybrid_macs == stats1.prefill.hybrid_macs);
        CHECK(stats.decode.hybrid_macs == stats1.decode.hybrid_macs);
        CHECK(stats.both().hybrid_macs == analytic_work(in, c, 0, c.positions - 1).hybrid_macs);
    }
}

TEMPLATE_LIST_TEST_CASE("dense decode steps match the oracle and are bit-identical for any number of threads, fp32 and fp16", "[threads][dense]",
                        tested_archs)
{
    // The position-major decode splits KV heads into ranges (one per worker, at most 64
    // query heads each); a group wider than 64 query heads takes the per-head kernel.
    auto const shape = GENERATE(std::make_pair(8, 2), std::make_pair(12, 3), std::make_pair(96, 1));
    attention_case c;
    c.positions = 45;
    c.dim = 32;
    c.q_heads = static_cast<std::size_t>(shape.first);
    c.kv_heads = static_cast<std::size_t>(shape.second);
    auto const in = c.inputs();
    std::vector<float16> const k16 = to_halves(in.k), v16 = to_halves(in.v);
    auto const expected = oracle_dense(in);
    std::size_t const last = c.positions - 1, row = c.q_heads * c.dim;
    std::vector<float> const expected_last(expected.end() - static_cast<std::ptrdiff_t>(row), expected.end());

    auto const step = [&](std::size_t threads, bool fp16) {
        thread_pool pool(threads);
        attention_workspace ws;
        std::vector<float> out(row);
        auto const q = in.q_view().slice_positions(last, 1);
        auto const o = make_token_major(out.data(), 1, c.q_heads, c.dim);
        if (fp16)
            dense_decode<TestType>(q, make_token_major<const float16>(k16.data(), c.positions, c.kv_heads, c.dim),
                                   make_token_major<const float16>(v16.data(), c.positions, c.kv_heads, c.dim), o, 0.0f, ws, pool.executor());
        else
            dense_decode<TestType>(q, in.k_view(), in.v_view(), o, 0.0f, ws, pool.executor());
        return out;
    };
    INFO(arch_name<TestType>() << " " << c.describe());
    auto const one = step(1, false), one16 = step(1, true);
    CHECK(max_abs_diff(one, expected_last) <= tolerance(expected_last));
    CHECK(max_abs_diff(one16, expected_last) <= 1e-2f * std::max(1.0f, max_abs(expected_last)));  // fp16 rounding; exact bound: test_fp16_storage
    for (std::size_t threads : {2u, 3u, 5u})
    {
        INFO("threads " << threads);
        CHECK(max_abs_diff(step(threads, false), one) == 0.0f);
        CHECK(max_abs_diff(step(threads, true), one16) == 0.0f);
    }
}
