/**
 * @file examples/dispatch/attention_kernel.hpp
 * The functor xsimd::dispatch calls: one hybrid attention pass on the arch it is given.
 *
 * Recipe (each step is load-bearing):
 * - operator() is a template declared here and defined out of class, in
 *   attention_kernel_impl.hpp, which only the per-ISA TUs include. An in-class
 *   definition would be implicitly inline: `extern template` could not stop main.cpp
 *   (built without AVX) from instantiating the AVX versions itself.
 * - The `extern template` declarations below tell every includer that each ISA's
 *   instantiation lives in its own TU, compiled with that ISA's flags.
 */
#ifndef DELTAATTN_EXAMPLES_DISPATCH_ATTENTION_KERNEL_HPP
#define DELTAATTN_EXAMPLES_DISPATCH_ATTENTION_KERNEL_HPP

#include <deltaattn/synthetic.hpp>

#include <xsimd/xsimd.hpp>

#include <vector>

namespace dispatch_example
{
    /// What one dispatched call did.
    struct attention_result
    {
        char const* arch = "";       ///< the arch that ran
        double prefill_sparsity = 0;  ///< attention sparsity of the pass
        std::vector<float> out;       ///< the attention output
    };

    /// Hybrid attention of `data` with the paper's settings, on `Arch`.
    struct hybrid_kernel
    {
        template <class Arch>
        attention_result operator()(Arch, deltaattn::qkv_data const& data) const;
    };

    /// The archs dispatched to, best first: xsimd 8's dispatcher takes the first one the
    /// CPU supports. Each has a TU of its own (dispatch_<arch>.cpp).
    using dispatched_archs = xsimd::arch_list<xsimd::avx512bw, xsimd::fma3<xsimd::avx2>, xsimd::sse2>;

    extern template attention_result hybrid_kernel::operator()<xsimd::avx512bw>(xsimd::avx512bw, deltaattn::qkv_data const&) const;
    extern template attention_result hybrid_kernel::operator()<xsimd::fma3<xsimd::avx2>>(xsimd::fma3<xsimd::avx2>, deltaattn::qkv_data const&) const;
    extern template attention_result hybrid_kernel::operator()<xsimd::sse2>(xsimd::sse2, deltaattn::qkv_data const&) const;
}  // namespace dispatch_example

#endif  // DELTAATTN_EXAMPLES_DISPATCH_ATTENTION_KERNEL_HPP
