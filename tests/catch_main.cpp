// The test runner's main: says which SIMD path this binary exercises, then runs Catch2.
// (A main of our own, not Catch2WithMain: Debian ships that prebuilt for x86 only.)
#define CATCH_CONFIG_RUNNER
#include "catch.hpp"

#include <deltaattn/arch.hpp>

#include <cstdio>

int main(int argc, char* argv[])
{
    std::printf("deltaattn tests: default_arch = %s (the scalar path is tested too)\n", deltaattn::active_arch_name());
    std::fflush(stdout);
    return Catch::Session().run(argc, argv);
}
