/**
 * @file examples/dispatch/attention_kernel_impl.hpp
 * The definition of hybrid_kernel::operator(): included by the per-ISA TUs only, each
 * of which instantiates it for its own arch.
 */
#ifndef DELTAATTN_EXAMPLES_DISPATCH_ATTENTION_KERNEL_IMPL_HPP
#define DELTAATTN_EXAMPLES_DISPATCH_ATTENTION_KERNEL_IMPL_HPP

#include "attention_kernel.hpp"

#include <deltaattn/deltaattn.hpp>


namespace dispatch_example
{
    template <class Arch>
    attention_result hybrid_kernel::operator()(Arch, deltaattn::qkv_data const& data) const
    {
        attention_result result;
        result.arch = deltaattn::arch_name<Arch>();
        deltaattn::hybrid_options options;
        options.sinks = 4;
        deltaattn::attention_stats stats;
        deltaattn::hybrid_attention<Arch>(data.q_view(), data.k_view(), data.v_view(), data.make_output(result.out), options,
                                          deltaattn::relative_threshold{0.2f}, &stats);
        result.prefill_sparsity = stats.prefill.sparsity();
        return result;
    }
}  // namespace dispatch_example

#endif  // DELTAATTN_EXAMPLES_DISPATCH_ATTENTION_KERNEL_IMPL_HPP
