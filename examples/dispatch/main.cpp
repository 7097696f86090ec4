// Runtime dispatch: one binary runs the best SIMD path this CPU has (AVX-512, AVX2+FMA,
// or SSE2), chosen by xsimd::dispatch from the CPUID bits, each path compiled in a TU of
// its own with its ISA flags. Built with baseline flags; see docs/kernels.md, "Runtime dispatch".
//
//   deltaattn_dispatch            prints the arch that ran and the attention sparsity
#include "attention_kernel.hpp"

#include <cstdio>

int main()
{
    deltaattn::workload_shape const shape{256, 8, 2, 64};
    deltaattn::qkv_data const data = deltaattn::make_llm_like(shape, deltaattn::llm_like_options{});

    // xsimd 8's dispatcher is noexcept: an exception escaping the kernel would end the
    // program there, so validate inputs before dispatching (these are known good). The
    // dispatcher is not const-callable in xsimd 8, hence a non-const `run`.
    auto run = xsimd::dispatch<dispatch_example::dispatched_archs>(dispatch_example::hybrid_kernel{});
    dispatch_example::attention_result const result = run(data);

    std::printf("dispatched to: %s\n", result.arch);
    std::printf("attention sparsity: %.1f%% (%zu positions, %zu query heads, head dim %zu)\n", 100.0 * result.prefill_sparsity,
                shape.positions, shape.q_heads, shape.dim);
    return 0;
}
