// The baseline TU: built with no ISA flags (x86-64: SSE2). Listed before the AVX2 TU
// on the link line, so its copies of shared inline functions are the ones kept.
#include "odr_workload.hpp"

odr_test::outcome run_baseline_path() { return odr_test::run_workload<deltaattn::default_arch>(); }
