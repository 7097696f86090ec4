// libFuzzer harness: the quantized far context (SPEC.md §10), prefill + decode and
// one-call, against the oracle.
//
// From the fuzzer's bytes: GQA shapes (1..2 KV heads, 1..4 query heads each, head dim
// 8..64 in steps of 8), up to 32 positions, sinks, window, scale, a key codec (3, 4 or 8
// bits, 32-channel groups where they divide the dim, else per row, keyframe interval
// 0..9, int8 queries or not), values coded or exact, fp32 or binary16 exact sets, bounded finite inputs of
// unit scale, and a schedule: the prompt prefilled in chunks, then decode steps mixed
// with more chunks. For every arch the binary holds:
//  - layer_quant_cache outputs are within SPEC.md §9's tolerance of
//    reference::quant_attention, and finite;
//  - a step past the capacity is rejected naming "k", writes nothing and leaves the
//    cache's size and bytes as they were;
//  - one-call quant_attention, queries starting after the first key, agrees too.
//
// Input layout: kv heads, group, dim, positions, sinks, window, scale, capacity slack,
// key bits (a byte: bit 0 set 8 bits, else bit 1 set 3 bits, else 4), group flag,
// keyframe interval, values flag, value bits (the same), storage flag, int8-queries flag,
// prompt length, skipped queries, then q, k, v (position-major), then the schedule.
#include "fuzz_support.hpp"

#include <deltaattn/reference/reference.hpp>

#include <algorithm>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

using namespace deltaattn_fuzz;

namespace
{
    struct quant_case
    {
        std::size_t kv_heads = 1, group = 1, dim = 8, positions = 1, capacity = 1, prompt = 0, skipped = 0;
        hybrid_options options;
        quant_codec keys;
        std::optional<quant_codec> values;
        bool half = false;
        std::vector<float> q, k, v;  // (positions + 1) x heads x dim: one spare position to overflow the cache

        std::size_t q_heads() const { return kv_heads * group; }
        tensor_view<const float> q_view(std::size_t n) const { return make_token_major<const float>(q.data(), n, q_heads(), dim); }
        tensor_view<const float> k_view(std::size_t n) const { return make_token_major<const float>(k.data(), n, kv_heads, dim); }
        tensor_view<const float> v_view(std::size_t n) const { return make_token_major<const float>(v.data(), n, kv_heads, dim); }

        std::string describe() const
        {
            std::ostringstream s;
            s << "Hkv=" << kv_heads << " Hq=" << q_heads() << " d=" << dim << " n=" << positions << " capacity=" << capacity << " prompt=" << prompt
              << " skipped=" << skipped << " sinks=" << options.sinks << " window=" << options.window << " scale=" << options.scale << " k: b"
              << keys.bits << " g" << keys.scale_group << " R" << keys.keyframe_interval << (keys.int8_queries ? " int8q" : "");
            if (values)
                s << " v: b" << values->bits;
            s << (half ? " f16" : " f32");
            return s.str();
        }
    };

    quant_case decode_case(byte_reader& in)
    {
        quant_case c;
        c.kv_heads = in.pick(1, 2);
        c.group = in.pick(1, 4);
        c.dim = 8 * in.pick(1, 8);
        c.positions = in.pick(1, 32);
        c.options.sinks = in.pick(1, 6);
        c.options.window = in.pick(1, c.positions + 2);
        float const scales[] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.05f, 0.5f, 1.0f};
        c.options.scale = scales[in.byte() % 8];
        c.capacity = c.positions + in.pick(0, 2);
        auto const code_bits = [&in] {
            unsigned const b = in.byte();
            return b & 1u ? 8u : b & 2u ? 3u : 4u;
        };
        c.keys.bits = code_bits();
        c.keys.scale_group = in.flag() && c.dim % 32 == 0 ? 32 : 0;
        c.keys.keyframe_interval = in.pick(0, 9);
        bool const coded_values = in.flag();
        unsigned const value_bits = code_bits();
        if (coded_values)
            c.values = quant_codec{value_bits, c.keys.scale_group, c.keys.keyframe_interval};
        c.half = in.flag();
        c.keys.int8_queries = in.flag();
        c.prompt = in.pick(0, c.positions);
        c.skipped = in.pick(0, c.positions - 1);
        fill_unit_rows(in, c.q, c.positions, c.q_heads() * c.dim);
        fill_unit_rows(in, c.k, c.positions, c.kv_heads * c.dim);
        fill_unit_rows(in, c.v, c.positions, c.kv_heads * c.dim);
        return c;
    }

    template <class Arch, class T>
    void check_arch(quant_case const& c, std::vector<schedule_step> const& steps, std::vector<float> const& want, std::vector<float> const& want_tail)
    {
        std::string const context = std::string(arch_name<Arch>()) + " " + c.describe();
        std::size_t const n = c.positions, Hq = c.q_heads(), row = Hq * c.dim;
        std::vector<float> out(n * row, 0.0f);
        auto const out_view = make_token_major(out.data(), n, Hq, c.dim);
        basic_layer_quant_cache<T> cache(c.kv_heads, c.dim, c.capacity, c.options, c.keys, c.values);
        std::size_t p = 0;
        for (schedule_step const& s : steps)
        {
            auto const q = c.q_view(n).slice_positions(p, s.rows), k = c.k_view(n).slice_positions(p, s.rows), v = c.v_view(n).slice_positions(p, s.rows);
            if (s.decode)
                cache.template decode<Arch>(q, k, v, out_view.slice_positions(p, s.rows));
            else
                cache.template prefill<Arch>(q, k, v, out_view.slice_positions(p, s.rows));
            p += s.rows;
        }
        check(cache.size() == n, "the cache does not hold every position", context);
        check_close(out, want, "layer_quant_cache prefill + decode", context);

        if (c.capacity == n)
        {
            std::vector<float> spare(row, 12345.0f);
            std::size_t const bytes = cache.bytes();
            try
            {
                cache.template decode<Arch>(c.q_view(n + 1).slice_positions(n, 1), c.k_view(n + 1).slice_positions(n, 1),
                                            c.v_view(n + 1).slice_positions(n, 1), make_token_major(spare.data(), 1, Hq, c.dim));
                fail("a decode step past the capacity was accepted", context);
            }
            catch (std::invalid_argument const& e)
            {
                check(names(e, "k"), std::string("the overflow rejection does not name 'k': ") + e.what(), context);
            }
            check(cache.size() == n && cache.bytes() == bytes, "a rejected step changed the cache", context);
            check(std::all_of(spare.begin(), spare.end(), [](float x) { return x == 12345.0f; }), "a rejected step wrote its output", context);
        }

        std::size_t const tail = n - c.skipped;
        std::vector<float> tail_out(tail * row, 0.0f);
        quant_attention<Arch, T>(c.q_view(n).slice_positions(c.skipped, tail), c.k_view(n), c.v_view(n),
                                 make_token_major(tail_out.data(), tail, Hq, c.dim), c.options, c.keys, c.values);
        check_close(tail_out, want_tail, "quant_attention", context);
    }
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    byte_reader in(data, size);
    quant_case const c = decode_case(in);
    std::vector<schedule_step> const steps = decode_schedule(in, c.prompt, c.positions);
    trace_case(c.describe() + " steps=" + std::to_string(steps.size()));
    std::size_t const n = c.positions, tail = n - c.skipped, row = c.q_heads() * c.dim;
    std::vector<float> want(n * row, 0.0f), want_tail(tail * row, 0.0f);
    // With int8 queries, a call of one position is a decode step (int8 far queries), any
    // longer one a prefill (fp32): each output row comes from the oracle of its kind.
    std::vector<bool> single(n, false);
    std::size_t p = 0;
    for (schedule_step const& s : steps)
    {
        single[p] = s.rows == 1;
        p += s.rows;
    }
    auto const oracle = [&](auto storage) {
        using T = decltype(storage);
        std::vector<float> int8(n * row, 0.0f);
        reference::quant_attention<T>(c.q_view(n), c.k_view(n), c.v_view(n), make_token_major(want.data(), n, c.q_heads(), c.dim), c.options, c.keys,
                                      c.values, n);
        reference::quant_attention<T>(c.q_view(n).slice_positions(c.skipped, tail), c.k_view(n), c.v_view(n),
                                      make_token_major(want_tail.data(), tail, c.q_heads(), c.dim), c.options, c.keys, c.values, n);
        if (!c.keys.int8_queries)
            return;
        reference::quant_attention<T>(c.q_view(n), c.k_view(n), c.v_view(n), make_token_major(int8.data(), n, c.q_heads(), c.dim), c.options, c.keys,
                                      c.values, 0);
        for (std::size_t i = 0; i < n; ++i)
            if (single[i])
                std::copy(int8.begin() + i * row, int8.begin() + (i + 1) * row, want.begin() + i * row);
        if (tail == 1)
            reference::quant_attention<T>(c.q_view(n).slice_positions(c.skipped, tail), c.k_view(n), c.v_view(n),
                                          make_token_major(want_tail.data(), tail, c.q_heads(), c.dim), c.options, c.keys, c.values, 0);
    };
    c.half ? oracle(float16{}) : oracle(0.0f);
    for_each_arch([&](auto* arch) {
        using Arch = std::remove_pointer_t<decltype(arch)>;
        c.half ? check_arch<Arch, float16>(c, steps, want, want_tail) : check_arch<Arch, float>(c, steps, want, want_tail);
    });
    return 0;
}
