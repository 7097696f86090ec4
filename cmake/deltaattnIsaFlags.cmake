# deltaattn_flags_are_x86_64_baseline(<result>): TRUE when this build compiles for plain
# x86-64 (SSE2, nothing above it, SIMD not forced off), i.e. the flags a baseline
# translation unit of the runtime-dispatch recipe has. Per-ISA TUs (examples/dispatch,
# tests/odr) add their ISA flags on top of these; on top of -mavx512f or
# -DDELTAATTN_FORCE_SCALAR the "baseline" would not be one.
include(CheckCXXSourceCompiles)
function(deltaattn_flags_are_x86_64_baseline result)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    set(${result} FALSE PARENT_SCOPE)
    return()
  endif()
  check_cxx_source_compiles("
#if !defined(__x86_64__) || !defined(__SSE2__) || defined(__SSE3__) || defined(DELTAATTN_FORCE_SCALAR)
#error not a baseline x86-64 build
#endif
int main() { return 0; }" DELTAATTN_X86_64_BASELINE_FLAGS)
  set(${result} ${DELTAATTN_X86_64_BASELINE_FLAGS} PARENT_SCOPE)
endfunction()
