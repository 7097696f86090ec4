/**
 * @file tests/odr/odr_workload.hpp
 * The work both ISA translation units of the ODR test run: dense and hybrid attention,
 * prefill and decode, on a small LLM-like input, through the library's public API.
 *
 * Including the whole library in a TU built with -mavx2 and in one built without it
 * makes both emit every non-template inline function of the library (and many std::
 * instantiations), each with its own instructions; the linker keeps one copy. The test
 * checks that the baseline path still runs on a CPU without AVX.
 */
#ifndef DELTAATTN_TESTS_ODR_WORKLOAD_HPP
#define DELTAATTN_TESTS_ODR_WORKLOAD_HPP

#include <deltaattn/deltaattn.hpp>
#include <deltaattn/synthetic.hpp>

#include <vector>

namespace odr_test
{
    struct outcome
    {
        char const* arch;          ///< arch_name<default_arch>() of the TU that ran
        std::vector<float> dense;  ///< dense attention output
        std::vector<float> hybrid; ///< hybrid prefill then decode steps, concatenated
    };

    /// Runs the workload on the `default_arch` of the including TU.
    template <class Arch>
    outcome run_workload()
    {
        using namespace deltaattn;
        workload_shape const shape{48, 4, 2, 64};
        qkv_data const data = make_llm_like(shape, llm_like_options{});

        outcome result{arch_name<Arch>(), {}, {}};
        dense_attention<Arch>(data.q_view(), data.k_view(), data.v_view(), data.make_output(result.dense));

        hybrid_options options;
        options.sinks = 2;
        options.window = 8;
        std::size_t const prompt = shape.positions - 4;
        layer_key_cache cache(shape.kv_heads, shape.dim, shape.positions, options, relative_threshold{0.3f});
        std::vector<float> out(data.q.size(), 0.0f);
        auto const out_view = make_token_major(out.data(), shape.positions, shape.q_heads, shape.dim);
        cache.prefill<Arch>(data.q_view().slice_positions(0, prompt), data.k_view().slice_positions(0, prompt),
                            data.v_view().slice_positions(0, prompt), out_view.slice_positions(0, prompt));
        for (std::size_t pos = prompt; pos < shape.positions; ++pos)
            cache.decode<Arch>(data.q_view().slice_positions(pos, 1), data.k_view().slice_positions(pos, 1),
                               data.v_view().slice_positions(0, pos + 1), out_view.slice_positions(pos, 1));
        result.hybrid = std::move(out);
        return result;
    }
}  // namespace odr_test

#endif  // DELTAATTN_TESTS_ODR_WORKLOAD_HPP
