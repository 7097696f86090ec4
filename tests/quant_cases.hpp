// The quantized-codec test cases shared by tests/test_quant*.cpp: a case (shapes, key
// and value codecs), the oracle, one-shot and chunked runs, and the codec settings every
// arch is checked with.
#ifndef DELTAATTN_TESTS_QUANT_CASES_HPP
#define DELTAATTN_TESTS_QUANT_CASES_HPP

#include "catch.hpp"
#include "tester.hpp"

#include <optional>
#include <string>
#include <vector>

namespace deltaattn_test
{
    struct quant_case
    {
        attention_case c;
        quant_codec keys{4, 32, 256};
        std::optional<quant_codec> values = quant_codec{4, 32, 256};
    };

    inline std::string describe(quant_case const& q)
    {
        std::string s = q.c.describe() + " | k: b" + std::to_string(q.keys.bits) + " g" + std::to_string(q.keys.scale_group) + " R" +
                        std::to_string(q.keys.keyframe_interval);
        if (q.keys.int8_queries)
            s += " int8 queries";
        if (q.values)
            s += " | v: b" + std::to_string(q.values->bits) + " g" + std::to_string(q.values->scale_group) + " R" +
                 std::to_string(q.values->keyframe_interval);
        return s;
    }

    /// The oracle; positions >= decode_from are decode steps (int8 queries, if asked for).
    template <class T>
    std::vector<float> oracle_quant(qkv_data const& in, quant_case const& q, std::size_t decode_from = 0)
    {
        std::vector<float> out;
        auto view = in.make_output(out);
        reference::quant_attention<T>(in.q_view(), in.k_view(), in.v_view(), view, q.c.options, q.keys, q.values, decode_from);
        return out;
    }

    template <class Arch, class T>
    std::vector<float> run_quant(qkv_data const& in, quant_case const& q, parallel_executor const& executor = {})
    {
        std::vector<float> out;
        auto view = in.make_output(out);
        quant_attention<Arch, T>(in.q_view(), in.k_view(), in.v_view(), view, q.c.options, q.keys, q.values, nullptr, executor);
        return out;
    }

    /// Prefill of `prompt` positions in chunks of `chunk`, then one decode step a position.
    template <class Arch, class T>
    std::vector<float> run_quant_steps(qkv_data const& in, quant_case const& q, std::size_t prompt, std::size_t chunk,
                                       parallel_executor const& executor = {}, attention_stats* stats = nullptr)
    {
        std::vector<float> out;
        auto const view = in.make_output(out);
        auto const& c = q.c;
        basic_layer_quant_cache<T> cache(c.kv_heads, c.dim, c.positions, c.options, q.keys, q.values);
        cache.set_executor(executor);
        for (std::size_t p = 0; p < c.positions;)
        {
            std::size_t const n = p < prompt ? std::min(chunk, prompt - p) : 1;
            auto const qq = in.q_view().slice_positions(p, n), kk = in.k_view().slice_positions(p, n), vv = in.v_view().slice_positions(p, n);
            if (p < prompt)
                cache.template prefill<Arch>(qq, kk, vv, view.slice_positions(p, n), stats);
            else
                cache.template decode<Arch>(qq, kk, vv, view.slice_positions(p, n), stats);
            p += n;
        }
        return out;
    }

    inline quant_case make_case(std::size_t n, std::size_t hq, std::size_t hkv, std::size_t d, std::size_t sinks, std::size_t window, quant_codec keys,
                         std::optional<quant_codec> values, std::uint64_t seed)
    {
        quant_case q;
        q.c.positions = n;
        q.c.q_heads = hq;
        q.c.kv_heads = hkv;
        q.c.dim = d;
        q.c.options.sinks = sinks;
        q.c.options.window = window;
        q.c.seed = seed;
        q.keys = keys;
        q.values = values;
        return q;
    }

    /// quant_decode on each KV head's own caches gives, bit for bit, the layer cache's
    /// decode step of the last position (prefilled up to it), for case q.
    template <class Arch, class T>
    void check_head_decode_equals_layer(quant_case const& q)
    {
        qkv_data const in = q.c.inputs();
        std::size_t const group = q.c.q_heads / q.c.kv_heads, d = q.c.dim, last = q.c.positions - 1;
        auto const layer = run_quant_steps<Arch, T>(in, q, last, last);  // the last position is a decode step
        attention_workspace ws;
        for (std::size_t h = 0; h < q.c.kv_heads; ++h)
        {
            basic_quant_cache<T> keys(d, q.c.positions, q.c.options, q.keys), values(d, q.c.positions, q.c.options, q.values);
            keys.append(in.k_view().head(h));
            values.append(in.v_view().head(h));
            std::vector<float> out(group * d);
            auto const qh = in.q_view().slice_positions(last, 1);
            quant_decode<Arch>(keys, values, matrix_view<const float>{qh.at(0, h * group), group, d, qh.head_stride}, make_matrix_view(out.data(), group, d),
                               ws);
            INFO(describe(q) << " head " << h << " arch=" << arch_name<Arch>());
            for (std::size_t g = 0; g < group; ++g)
                for (std::size_t c = 0; c < d; ++c)
                    REQUIRE(out[g * d + c] == layer[(last * q.c.q_heads + h * group + g) * d + c]);
        }
    }

    /// The codec settings every arch is checked with (d a multiple of 32 unless g = 0).
    /// Under an emulator a sample: keyframes R = 5 and 0 at 4 and 8 bits, one 3-bit codec
    /// (every setting runs natively, on the scalar path and the x86 ones; the NEON unpack
    /// of every width is checked on its own in test_quant.cpp).
    inline std::vector<quant_codec> codecs_for(std::size_t d)
    {
        std::vector<quant_codec> out;
        for (unsigned bits : {3u, 4u, 8u})
            for (std::size_t group : {std::size_t(32), std::size_t(0)})
                for (std::size_t r : {std::size_t(1), std::size_t(5), std::size_t(0)})
                {
                    bool const sampled_out = emulated_build && (bits == 3 ? group != 32 || r != 5 : r == 1);
                    if ((group == 0 || d % group == 0) && !sampled_out)
                        out.push_back(quant_codec{bits, group, r});
                }
        return out;
    }
}  // namespace deltaattn_test

#endif  // DELTAATTN_TESTS_QUANT_CASES_HPP
