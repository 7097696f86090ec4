/**
 * @file kernels/arch/expand.hpp
 * Expanding a compressed delta row into registers: one small interface, a kernel per
 * ISA where the generic lane loop is slow, and the generic loop everywhere else.
 *
 * A compressed row is a channel bitmask plus the non-zero values packed in channel
 * order. A group is the `arch_traits<Arch>::width` channels of one register:
 *
 *     bits   = 0b0110 (lanes 1 and 2 stored)    packed = [a, b, ...]
 *     result = [0, a, b, 0],  packed advanced by 2
 *
 * Kernels (picked at compile time, see expand_isa_of):
 *   AVX-512 (avx512f and derived archs)  plain load + register vexpandps
 *   AVX2    (avx2, fma3<avx2>)           256-entry permutation LUT + vpermps + blend
 *   SSSE3   (ssse3 ... sse4_2)           16-entry byte-shuffle LUT + pshufb
 *   NEON    (neon, neon64)               16-entry byte-shuffle LUT + tbl
 *   generic (scalar, sse2, anything else)
 * Each is tested bit for bit against the generic one on every mask
 * (tests/test_expand.cpp).
 *
 * Invariants:
 * - A kernel is compiled only in TUs built for its ISA (the compiler's ISA macros) and
 *   used only for archs of that ISA and register width: naming an arch whose ISA the TU
 *   lacks cannot select it.
 * - Results are bit-identical across kernels: values are moved, never computed, and
 *   inactive lanes are +0.0f.
 */
#ifndef DELTAATTN_KERNELS_ARCH_EXPAND_HPP
#define DELTAATTN_KERNELS_ARCH_EXPAND_HPP

#include "expand_kernel.hpp"
#include "expand_avx512.hpp"
#include "expand_avx2.hpp"
#include "expand_ssse3.hpp"
#include "expand_neon.hpp"

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace deltaattn
{
    namespace kernels
    {
        /// The kernel `expand_group<Arch>` runs in this translation unit.
        template <class Arch>
        constexpr expand_isa expand_isa_of() noexcept
        {
            constexpr std::size_t width = arch_traits<Arch>::width;
            // The width checks matter: newer xsimd derives some wide archs from narrower
            // ones (e.g. avx from sse4_2), whose 4-lane kernel would not fit.
#if defined(__AVX512F__)
            if (width == 16 && std::is_base_of<xsimd::avx512f, Arch>::value)
                return expand_isa::avx512;
#endif
#if defined(__AVX2__)
            if (width == 8 && std::is_base_of<xsimd::avx2, Arch>::value)
                return expand_isa::avx2;
#endif
#if defined(__SSSE3__)
            if (width == 4 && std::is_base_of<xsimd::ssse3, Arch>::value)
                return expand_isa::ssse3;
#endif
#if defined(__ARM_NEON)
            if (width == 4 && std::is_base_of<xsimd::neon, Arch>::value)
                return expand_isa::neon;
#endif
            (void)width;
            return expand_isa::generic;
        }

        /// True when `Arch` has a kernel of its own here (not the generic lane loop):
        /// what a caller checks before preferring an expansion-based code path.
        template <class Arch>
        constexpr bool expand_is_vectorized() noexcept
        {
            return expand_isa_of<Arch>() != expand_isa::generic;
        }

        /// The name of the kernel `expand_group<Arch>` runs, for tests and reports.
        template <class Arch>
        constexpr char const* expand_kernel_name() noexcept
        {
            return expand_kernel<expand_isa_of<Arch>()>::name();
        }

        /**
         * Lanes of one register filled from a compressed row: lane l = the next packed
         * value if bit l of `bits` is set, else +0.0f.
         *
         * @param bits    the group's mask in its arch_traits<Arch>::width low bits;
         *                higher bits are ignored.
         * @param packed  the group's first packed value; advanced by popcount(bits).
         * May read up to arch_traits<Arch>::width floats past the row's last packed value:
         * callers pad their storage by `expand_padding` floats.
         */
        template <class Arch>
        typename arch_traits<Arch>::reg expand_group(std::uint32_t bits, float const*& packed) noexcept
        {
            return expand_kernel<expand_isa_of<Arch>()>::template run<Arch>(bits, packed);
        }

        /// The generic kernel of expand_group, on any arch: the reference the others are
        /// tested against. Reads exactly popcount(bits) floats.
        template <class Arch>
        typename arch_traits<Arch>::reg expand_group_generic(std::uint32_t bits, float const*& packed) noexcept
        {
            return expand_kernel<expand_isa::generic>::template run<Arch>(bits, packed);
        }
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_ARCH_EXPAND_HPP
