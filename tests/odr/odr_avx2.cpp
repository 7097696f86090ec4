// The AVX2 TU: built with -mavx2 -mfma (tests/odr/CMakeLists.txt).
#include "odr_workload.hpp"

#include <type_traits>

static_assert(std::is_same<deltaattn::default_arch, xsimd::fma3<xsimd::avx2>>::value, "this TU must be built with -mavx2 -mfma");

odr_test::outcome run_avx2_path() { return odr_test::run_workload<deltaattn::default_arch>(); }
