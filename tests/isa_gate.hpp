/**
 * @file tests/isa_gate.hpp
 * Which x86 features a test binary was compiled to use, so the binary can skip itself
 * (CTest's skip code 77) on a CPU that lacks one instead of dying of SIGILL or,
 * worse, passing without running.
 *
 * suite_build.cpp, built with the suite's ISA flags, defines `suite_build` from its own
 * compiler macros; isa_gate.cpp, built SSE2-only, checks it before any static
 * constructor of the suite runs.
 */
#ifndef DELTAATTN_TESTS_ISA_GATE_HPP
#define DELTAATTN_TESTS_ISA_GATE_HPP

namespace deltaattn_test
{
    /// The x86 features this TU's flags enable, as __builtin_cpu_supports names, most
    /// specific first; null-terminated. (Internal linkage: each TU has its own.)
    constexpr char const* compiled_x86_features[] = {
#if defined(__AVX512VPOPCNTDQ__)
        "avx512vpopcntdq",
#endif
#if defined(__AVX512VNNI__)
        "avx512vnni",
#endif
#if defined(__AVX512VBMI__)
        "avx512vbmi",
#endif
#if defined(__AVX512F__)
        "avx512f",
#endif
#if defined(__AVX512BW__)
        "avx512bw",
#endif
#if defined(__AVX512DQ__)
        "avx512dq",
#endif
#if defined(__AVX512CD__)
        "avx512cd",
#endif
#if defined(__AVX512VL__)
        "avx512vl",
#endif
#if defined(__AVX2__)
        "avx2",
#endif
#if defined(__FMA__)
        "fma",
#endif
#if defined(__AVX__)
        "avx",
#endif
#if defined(__BMI2__)
        "bmi2",
#endif
#if defined(__SSE4_2__)
        "sse4.2",
#endif
#if defined(__SSE4_1__)
        "sse4.1",
#endif
#if defined(__SSSE3__)
        "ssse3",
#endif
#if defined(__POPCNT__)
        "popcnt",
#endif
        nullptr};

    /// What a test binary is built for.
    struct build_info
    {
        char const* arch;                      ///< deltaattn::active_arch_name() of the suite
        char const* const* required_features;  ///< compiled_x86_features of the suite's flags
        char const* also_tested;               ///< what tested_archs adds to the arch, for the banner
    };

    /// Defined by suite_build.cpp (built with the suite's flags), constant-initialized:
    /// readable before any constructor runs.
    extern build_info const suite_build;
}  // namespace deltaattn_test

#endif  // DELTAATTN_TESTS_ISA_GATE_HPP
