// The avx512bw instantiation of the dispatched kernel, built with the AVX-512 F/CD/DQ/BW
// flags and FMA (CMakeLists.txt). Not avx512f alone: xsimd 8.1's avx512f reductions use
// an AVX-512DQ instruction. Nothing else belongs in this TU: whatever it instantiates
// carries these flags.
#include "attention_kernel_impl.hpp"

namespace dispatch_example
{
    template attention_result hybrid_kernel::operator()<xsimd::avx512bw>(xsimd::avx512bw, deltaattn::qkv_data const&) const;
}
