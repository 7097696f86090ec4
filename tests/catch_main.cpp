// The test runner's main: says which SIMD path this binary exercises, skips (exit 77,
// which CTest reports as "Skipped") when the CPU cannot run it, then runs Catch2.
// (A main of our own, not Catch2WithMain: Debian ships that prebuilt for x86 only.)
#define CATCH_CONFIG_RUNNER
#include "catch.hpp"

#include <deltaattn/arch.hpp>

#include <cstdio>

namespace
{
    /// The ISA extension this binary was compiled for that the CPU lacks, or nullptr.
    char const* missing_cpu_feature()
    {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        __builtin_cpu_init();
#if defined(__AVX512BW__)
        if (!__builtin_cpu_supports("avx512bw"))
            return "avx512bw";
#endif
#if defined(__AVX512F__)
        if (!__builtin_cpu_supports("avx512f"))
            return "avx512f";
#endif
#if defined(__AVX2__)
        if (!__builtin_cpu_supports("avx2"))
            return "avx2";
#endif
#if defined(__FMA__)
        if (!__builtin_cpu_supports("fma"))
            return "fma";
#endif
#endif
        return nullptr;
    }
}  // namespace

int main(int argc, char* argv[])
{
    if (char const* feature = missing_cpu_feature())
    {
        std::printf("deltaattn tests: SKIPPED: built for %s, but this CPU lacks %s\n", deltaattn::active_arch_name(), feature);
        return 77;
    }
    std::printf("deltaattn tests: default_arch = %s (the scalar path is tested too)\n", deltaattn::active_arch_name());
    std::fflush(stdout);
    return Catch::Session().run(argc, argv);
}
