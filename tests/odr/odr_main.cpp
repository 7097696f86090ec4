// ODR test of the runtime-dispatch recipe: a baseline TU and an AVX2 TU in one binary.
//
//   deltaattn_odr baseline   runs the baseline path only; CTest runs this under
//                            `qemu-x86_64 -cpu qemu64` (no AVX, no SSSE3): any AVX2
//                            instruction reached from the baseline path is SIGILL.
//   deltaattn_odr both       runs both paths natively and checks each ran its own arch
//                            and that they agree (exit 77, skipped, without AVX2+FMA).
//
// Built with no ISA flags.
#include "odr_workload.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

odr_test::outcome run_baseline_path();
odr_test::outcome run_avx2_path();

namespace
{
    constexpr int skip_code = 77;

    float max_abs_diff(std::vector<float> const& a, std::vector<float> const& b)
    {
        if (a.size() != b.size())
            return INFINITY;
        float m = 0.0f;
        for (std::size_t i = 0; i < a.size(); ++i)
            m = std::max(m, std::fabs(a[i] - b[i]));
        return m;
    }

    bool cpu_has_avx2_fma()
    {
#if defined(__GNUC__) || defined(__clang__)
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
        return false;
#endif
    }
}  // namespace

int main(int argc, char* argv[])
{
    bool const both = argc > 1 && std::strcmp(argv[1], "both") == 0;
    if (both && !cpu_has_avx2_fma())
    {
        std::printf("SKIPPED: this CPU lacks AVX2/FMA, the AVX2 path cannot run here\n");
        return skip_code;
    }

    odr_test::outcome const base = run_baseline_path();
    std::printf("baseline path ran: %s\n", base.arch);
    if (std::strcmp(base.arch, deltaattn::arch_name<xsimd::sse2>()) != 0)
    {
        std::printf("FAILED: the baseline path should run sse2\n");
        return 1;
    }
    if (!both)
        return 0;

    odr_test::outcome const avx2 = run_avx2_path();
    std::printf("avx2 path ran: %s\n", avx2.arch);
    // Different instructions (FMA, 8 lanes), same maths: agreement to rounding.
    float const dense_diff = max_abs_diff(base.dense, avx2.dense), hybrid_diff = max_abs_diff(base.hybrid, avx2.hybrid);
    std::printf("max |baseline - avx2|: dense %.3g, hybrid %.3g\n", dense_diff, hybrid_diff);
    if (std::strcmp(avx2.arch, deltaattn::arch_name<xsimd::fma3<xsimd::avx2>>()) != 0 || !(dense_diff < 1e-4f) || !(hybrid_diff < 1e-4f))
    {
        std::printf("FAILED: the AVX2 path should run fma3<avx2> and agree with the baseline\n");
        return 1;
    }
    return 0;
}
