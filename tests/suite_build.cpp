// What this variant of the suite is built for, from its own compiler flags: read by the
// shared runner (catch_main.cpp prints the arch, isa_gate.cpp checks the CPU).
#include "isa_gate.hpp"

#include <deltaattn/arch.hpp>

// Constant-initialized, so it is ready before any constructor runs. The arch is what
// deltaattn::active_arch_name() returns in a TU built with these flags.
#if defined(DELTAATTN_TEST_EMULATED)
constexpr char const* also_tested = "(under an emulator: the scalar path is tested natively, not here)";
#else
constexpr char const* also_tested = "(the scalar path is tested too)";
#endif
constexpr deltaattn_test::build_info deltaattn_test::suite_build{deltaattn::arch_name<deltaattn::default_arch>(), deltaattn_test::compiled_x86_features,
                                                                 also_tested};
