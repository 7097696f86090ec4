/**
 * @file config.hpp
 * Version macros, inline linkage and the compile-time backend switch.
 *
 * CMake parses the three DELTAATTN_VERSION_* lines below: keep their form.
 */
#ifndef DELTAATTN_CONFIG_HPP
#define DELTAATTN_CONFIG_HPP

#define DELTAATTN_VERSION_MAJOR 0
#define DELTAATTN_VERSION_MINOR 1
#define DELTAATTN_VERSION_PATCH 0

/// Every function of the library is a template or inline: header-only, no ODR leaks.
#define DELTAATTN_INLINE inline

/// Unrolls the loop that follows completely: loops over a register array whose trip count
/// is a compile-time constant (one accumulator per iteration). GCC at -O2 does not unroll
/// a 16-trip loop, so such an array lived in memory (a load and a store around every FMA):
/// the d-64 decode step's dots ran 1.7x slower than at -O3 (measured, Zen 5). Engines
/// build with either.
#if defined(__clang__)
#define DELTAATTN_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define DELTAATTN_UNROLL _Pragma("GCC unroll 16")
#else
#define DELTAATTN_UNROLL
#endif

/// A small helper of a kernel's inner loop that must be inlined: GCC at -O2 called the
/// code rows' field unpacking out of line, with its registers passed through memory.
#if defined(__GNUC__) || defined(__clang__)
#define DELTAATTN_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define DELTAATTN_ALWAYS_INLINE inline
#endif

/// Define DELTAATTN_FORCE_SCALAR to make `deltaattn::default_arch` the plain C++ path
/// whatever the compiler flags (useful to test or to rule out a SIMD bug).
#if defined(DELTAATTN_FORCE_SCALAR)
#define DELTAATTN_DEFAULT_IS_SCALAR 1
#else
#define DELTAATTN_DEFAULT_IS_SCALAR 0
#endif

#endif  // DELTAATTN_CONFIG_HPP
