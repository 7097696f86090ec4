// Skips a test binary built for x86 features this CPU lacks: prints why, exits with
// CTest's skip code 77 (tests/CMakeLists.txt sets SKIP_RETURN_CODE).
//
// Built with baseline flags, and run as a priority constructor: before any other static
// constructor of the suite, which the compiler may already have vectorized with AVX-512.
#include "isa_gate.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace
{
    constexpr int skip_code = 77;

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    /// __builtin_cpu_supports needs a literal: one line per feature isa_gate.hpp names.
    bool cpu_supports(char const* feature)
    {
        struct known
        {
            char const* name;
            bool present;
        };
        known const features[] = {
            {"avx512f", __builtin_cpu_supports("avx512f") != 0},   {"avx512bw", __builtin_cpu_supports("avx512bw") != 0},
            {"avx512dq", __builtin_cpu_supports("avx512dq") != 0}, {"avx512cd", __builtin_cpu_supports("avx512cd") != 0},
            {"avx512vl", __builtin_cpu_supports("avx512vl") != 0}, {"avx2", __builtin_cpu_supports("avx2") != 0},
            {"fma", __builtin_cpu_supports("fma") != 0},           {"avx", __builtin_cpu_supports("avx") != 0},
            {"bmi2", __builtin_cpu_supports("bmi2") != 0},         {"sse4.2", __builtin_cpu_supports("sse4.2") != 0},
            {"sse4.1", __builtin_cpu_supports("sse4.1") != 0},     {"ssse3", __builtin_cpu_supports("ssse3") != 0},
            {"popcnt", __builtin_cpu_supports("popcnt") != 0},     {"avx512vpopcntdq", __builtin_cpu_supports("avx512vpopcntdq") != 0},
            {"avx512vnni", __builtin_cpu_supports("avx512vnni") != 0}, {"avx512vbmi", __builtin_cpu_supports("avx512vbmi") != 0},
        };
        for (known const& f : features)
            if (std::strcmp(f.name, feature) == 0)
                return f.present;
        return false;  // a feature the gate does not know: never run code built for it blind
    }

    __attribute__((constructor(101))) void skip_unless_cpu_has_suite_features()
    {
        __builtin_cpu_init();  // constructors may run before libgcc's own
        for (char const* const* f = deltaattn_test::suite_build.required_features; *f; ++f)
            if (!cpu_supports(*f))
            {
                std::printf("deltaattn tests: default_arch = %s\nSKIPPED: this CPU lacks %s (the binary is built for it); nothing ran\n",
                            deltaattn_test::suite_build.arch, *f);
                std::fflush(stdout);
                std::_Exit(skip_code);
            }
    }
#endif
}  // namespace
