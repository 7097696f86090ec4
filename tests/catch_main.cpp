// The test runner's main: says which SIMD path this binary exercises, then runs Catch2.
// (A main of our own, not Catch2WithMain: Debian ships that prebuilt for x86 only.)
//
// This TU also instantiates Catch2 v2's implementation, the slowest TU of the suite, so
// it is built once per build tree with the build's baseline flags and shared by every
// variant of the suite. The arch it prints comes from suite_build.cpp, which each
// variant compiles with its own flags.
#if !__has_include(<catch2/catch_all.hpp>)
#define CATCH_CONFIG_RUNNER  // v2: this TU holds the implementation (v3 ships it built)
#endif
#include "catch.hpp"
#include "isa_gate.hpp"

#include <cstdio>

int main(int argc, char* argv[])
{
    std::printf("deltaattn tests: default_arch = %s %s\n", deltaattn_test::suite_build.arch, deltaattn_test::suite_build.also_tested);
    std::fflush(stdout);
    return Catch::Session().run(argc, argv);
}
