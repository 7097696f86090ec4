// libFuzzer harness: hybrid prefill + decode and dense attention against the oracle
// (SPEC.md §3, §4, §9).
//
// From the fuzzer's bytes: GQA shapes (1..2 KV heads, 1..4 query heads each, head dim
// 1..64), up to 32 positions, sinks, window, keyframe interval, scale, a valid policy,
// bounded finite inputs of unit scale (with repeats, ±0 and subnormals), and a
// schedule: the prompt prefilled in chunks, then decode steps mixed with more chunks.
// For every arch the binary holds:
//  - layer_key_cache outputs are within SPEC.md §9's tolerance (1e-4 max(1, max|o|))
//    of reference::hybrid_attention, and finite;
//  - the prefill and decode counters equal the analytic counts of the rows each stage
//    computed; the delta statistics equal the oracle's;
//  - a step past the capacity is rejected naming "k" and writes nothing;
//  - one-call hybrid_attention and dense_attention, with queries starting after the
//    first key, are within tolerance of reference::hybrid_attention / dense_attention.
//
// Input layout (see tests/fuzz/make_seed_corpus.py): kv heads, group, dim (a flag then
// a size), positions, sinks, window, keyframe interval, scale, check_finite, capacity
// slack, policy kind and parameter, prompt length, skipped queries, then q, k, v
// (position-major), then the schedule.
#include "fuzz_support.hpp"

#include <deltaattn/reference/reference.hpp>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

using namespace deltaattn_fuzz;

namespace
{
    struct attention_case
    {
        std::size_t kv_heads = 1, group = 1, dim = 1, positions = 1, capacity = 1, prompt = 0, skipped = 0;
        hybrid_options options;
        delta_policy policy;
        std::vector<float> q, k, v;  // (positions + 1) x heads x dim: one spare position to overflow the cache

        std::size_t q_heads() const { return kv_heads * group; }

        tensor_view<const float> q_view(std::size_t n) const { return make_token_major<const float>(q.data(), n, q_heads(), dim); }
        tensor_view<const float> k_view(std::size_t n) const { return make_token_major<const float>(k.data(), n, kv_heads, dim); }
        tensor_view<const float> v_view(std::size_t n) const { return make_token_major<const float>(v.data(), n, kv_heads, dim); }

        std::string describe() const
        {
            std::ostringstream s;
            s << "Hkv=" << kv_heads << " Hq=" << q_heads() << " d=" << dim << " n=" << positions << " capacity=" << capacity
              << " prompt=" << prompt << " skipped=" << skipped << " sinks=" << options.sinks << " window=" << options.window
              << " keyframes=" << options.keyframe_interval << " scale=" << options.scale << " " << deltaattn::describe(policy);
            return s.str();
        }
    };

    delta_policy decode_policy(byte_reader& in, std::size_t dim)
    {
        std::uint8_t const kind = in.byte(), parameter = in.byte();
        switch (kind % 4)
        {
        case 0:
        {
            float const theta[] = {0.0f, 0.02f, 0.05f, 0.1f, 0.25f, 0.5f, 1.0f, 0.125f};
            return fixed_threshold{theta[parameter % 8]};
        }
        case 1:
        {
            float const ratio[] = {0.0f, 0.1f, 0.2f, 0.3f, 0.5f, 1.0f, 2.0f, 0.05f};
            return relative_threshold{ratio[parameter % 8]};
        }
        case 2:
        {
            float const rho[] = {0.0f, 0.25f, 0.5f, 0.6f, 0.75f, 0.9f, 0.99f, 0.1f};
            return target_sparsity{rho[parameter % 8]};
        }
        default:
        {
            // A group that divides dim; head dims with none fall back to a fixed threshold.
            float const theta = (parameter >> 2) % 2 ? 0.25f : 0.05f;
            std::size_t const groups[] = {4, 8, 16};
            for (std::size_t t = 0; t < 3; ++t)
            {
                std::size_t const g = groups[(parameter + t) % 3];
                if (dim % g == 0)
                    return block_threshold{g, theta};
            }
            return fixed_threshold{theta};
        }
        }
    }

    attention_case decode_case(byte_reader& in)
    {
        attention_case c;
        // Small enough that an exec (oracle, and four arches under ASan) stays fast.
        c.kv_heads = in.pick(1, 2);
        c.group = in.pick(1, 4);
        c.dim = in.flag() ? in.pick(1, 16) : in.pick(1, 64);
        c.positions = in.pick(1, 32);
        c.options.sinks = in.pick(1, 6);
        c.options.window = in.pick(1, c.positions + 2);
        c.options.keyframe_interval = in.pick(0, 9);
        float const scales[] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.05f, 0.5f, 1.0f};
        c.options.scale = scales[in.byte() % 8];
        c.options.check_finite = in.flag();
        c.capacity = c.positions + in.pick(0, 2);
        c.policy = decode_policy(in, c.dim);
        c.prompt = in.pick(0, c.positions);
        c.skipped = in.pick(0, c.positions - 1);

        fill_unit_rows(in, c.q, c.positions, c.q_heads() * c.dim);
        fill_unit_rows(in, c.k, c.positions, c.kv_heads * c.dim);
        fill_unit_rows(in, c.v, c.positions, c.kv_heads * c.dim);
        return c;
    }

    /// What the oracle says, computed once per input for every arch to meet.
    struct oracle
    {
        std::vector<float> hybrid;                        // all positions, all query heads
        std::vector<float> hybrid_tail, dense_tail;       // queries from position `skipped` on
        std::vector<attention_work> row_work;                    // analytic QK work of each row, all heads
        delta_stats deltas;
    };

    oracle consult_oracle(attention_case const& c)
    {
        oracle o;
        std::size_t const n = c.positions, row = c.q_heads() * c.dim, tail = n - c.skipped;
        o.hybrid.assign(n * row, 0.0f);
        reference::hybrid_attention(c.q_view(n), c.k_view(n), c.v_view(n), make_token_major(o.hybrid.data(), n, c.q_heads(), c.dim), c.options,
                                    c.policy);
        auto const q_tail = c.q_view(n).slice_positions(c.skipped, tail);
        o.hybrid_tail.assign(tail * row, 0.0f);
        o.dense_tail.assign(tail * row, 0.0f);
        reference::hybrid_attention(q_tail, c.k_view(n), c.v_view(n), make_token_major(o.hybrid_tail.data(), tail, c.q_heads(), c.dim), c.options,
                                    c.policy);
        reference::dense_attention(q_tail, c.k_view(n), c.v_view(n), make_token_major(o.dense_tail.data(), tail, c.q_heads(), c.dim),
                                   c.options.scale);

        o.row_work.assign(n, attention_work{});
        for (std::size_t h = 0; h < c.kv_heads; ++h)
        {
            reference::delta_rows const rows = reference::build_delta_rows(c.k_view(n).head(h), c.policy);
            o.deltas += reference::delta_statistics(rows);
            for (std::size_t i = 0; i < n; ++i)
                o.row_work[i] += reference::stage_work(i, i, c.group, rows, c.options);
        }
        return o;
    }

    bool same_work(attention_work const& a, attention_work const& b)
    {
        return a.queries == b.queries && a.dense_macs == b.dense_macs && a.hybrid_macs == b.hybrid_macs;
    }

    template <class Arch>
    void check_arch(attention_case const& c, std::vector<schedule_step> const& steps, oracle const& want)
    {
        std::string const context = std::string(arch_name<Arch>()) + " " + c.describe();
        std::size_t const n = c.positions, Hq = c.q_heads(), row = Hq * c.dim;

        // Layer cache: prefill chunks and decode steps as scheduled.
        std::vector<float> out(n * row, 0.0f);
        auto const out_view = make_token_major(out.data(), n, Hq, c.dim);
        layer_key_cache cache(c.kv_heads, c.dim, c.capacity, c.options, c.policy);
        attention_stats stats;
        attention_work want_prefill, want_decode;
        std::size_t p = 0;
        for (schedule_step const& s : steps)
        {
            auto const q = c.q_view(n).slice_positions(p, s.rows);
            auto const k = c.k_view(n).slice_positions(p, s.rows);
            auto const v = c.v_view(n).slice_positions(0, p + s.rows);
            auto const o = out_view.slice_positions(p, s.rows);
            if (s.decode)
                cache.decode<Arch>(q, k, v, o, &stats);
            else
                cache.prefill<Arch>(q, k, v, o, &stats);
            for (std::size_t i = p; i < p + s.rows; ++i)
                (s.decode ? want_decode : want_prefill) += want.row_work[i];
            p += s.rows;
        }
        check(cache.size() == n, "the cache does not hold every position", context);
        check_close(out, want.hybrid, "layer_key_cache prefill + decode", context);
        check(same_work(stats.prefill, want_prefill), "prefill counters differ from the analytic count", context);
        check(same_work(stats.decode, want_decode), "decode counters differ from the analytic count", context);
        check(stats.keys.rows == want.deltas.rows && stats.keys.updated == want.deltas.updated, "delta statistics differ from the oracle", context);
        check(stats.kcache_dense_bytes == sizeof(float) * n * c.kv_heads * c.dim, "dense K cache bytes are wrong", context);

        // One step past the capacity: rejected by name, nothing written, nothing appended.
        if (c.capacity == n)
        {
            std::vector<float> spare(row, 12345.0f);
            std::size_t const bytes = cache.bytes();
            try
            {
                cache.decode<Arch>(c.q_view(n + 1).slice_positions(n, 1), c.k_view(n + 1).slice_positions(n, 1), c.v_view(n + 1),
                                   make_token_major(spare.data(), 1, Hq, c.dim));
                fail("a decode step past the capacity was accepted", context);
            }
            catch (std::invalid_argument const& e)
            {
                check(names(e, "k"), std::string("the overflow rejection does not name 'k': ") + e.what(), context);
            }
            check(cache.size() == n && cache.bytes() == bytes, "a rejected step changed the cache", context);
            check(std::all_of(spare.begin(), spare.end(), [](float x) { return x == 12345.0f; }), "a rejected step wrote its output", context);
        }

        // One-call entry points, queries starting at position `skipped`.
        std::size_t const tail = n - c.skipped;
        auto const q_tail = c.q_view(n).slice_positions(c.skipped, tail);
        std::vector<float> hybrid_out(tail * row, 0.0f), dense_out(tail * row, 0.0f);
        hybrid_attention<Arch>(q_tail, c.k_view(n), c.v_view(n), make_token_major(hybrid_out.data(), tail, Hq, c.dim), c.options, c.policy);
        check_close(hybrid_out, want.hybrid_tail, "hybrid_attention", context);
        dense_attention<Arch>(q_tail, c.k_view(n), c.v_view(n), make_token_major(dense_out.data(), tail, Hq, c.dim), c.options.scale);
        check_close(dense_out, want.dense_tail, "dense_attention", context);
    }
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    byte_reader in(data, size);
    attention_case const c = decode_case(in);
    std::vector<schedule_step> const steps = decode_schedule(in, c.prompt, c.positions);
    trace_case(c.describe() + " steps=" + std::to_string(steps.size()));
    oracle const want = consult_oracle(c);
    for_each_arch([&](auto* arch) { check_arch<std::remove_pointer_t<decltype(arch)>>(c, steps, want); });
    return 0;
}
