// The sse2 instantiation of the dispatched kernel, built with the baseline x86-64 flags
// (no ISA flags; CMakeLists.txt). Nothing else belongs in this TU: whatever it
// instantiates carries these flags.
#include "attention_kernel_impl.hpp"

namespace dispatch_example
{
    template attention_result hybrid_kernel::operator()<xsimd::sse2>(xsimd::sse2, deltaattn::qkv_data const&) const;
}
