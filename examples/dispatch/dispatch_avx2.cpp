// The fma3<avx2> instantiation of the dispatched kernel, built with -mavx2 -mfma
// (CMakeLists.txt). Nothing else belongs in this TU: whatever it instantiates carries
// these flags.
#include "attention_kernel_impl.hpp"

namespace dispatch_example
{
    template attention_result hybrid_kernel::operator()<xsimd::fma3<xsimd::avx2>>(xsimd::fma3<xsimd::avx2>, deltaattn::qkv_data const&) const;
}
