/**
 * @file kernels/arch/expand_kernel.hpp
 * The pieces every expansion kernel shares: which kernel an arch gets, the kernel
 * template each ISA header specializes, and the generic fallback.
 *
 * Include <deltaattn/kernels/arch/expand.hpp>, not this file.
 *
 * Invariants:
 * - Every function here is a template on the arch (or constexpr data): a baseline TU
 *   and an AVX TU never emit the same non-template inline function with different
 *   instructions (see docs/kernels.md, "Runtime dispatch").
 * - The generic kernel reads exactly popcount(bits) values and no more.
 */
#ifndef DELTAATTN_KERNELS_ARCH_EXPAND_KERNEL_HPP
#define DELTAATTN_KERNELS_ARCH_EXPAND_KERNEL_HPP

#include "../../arch.hpp"

#include <cstddef>
#include <cstdint>

namespace deltaattn
{
    namespace kernels
    {
        /// Values a caller must keep readable past the last packed value of a row: the
        /// register kernels load a whole register whatever the mask. In elements of the
        /// row (floats, or halves for binary16 rows).
        inline constexpr std::size_t expand_padding = 16;

        /// The instruction sequences an expansion can be built from.
        enum class expand_isa
        {
            generic,   ///< a loop over lanes, any arch (the reference)
            avx512,    ///< masked expand-load (vexpandps)
            avx2,      ///< permutation indices from a LUT, vpermps, blend with zero
            ssse3,     ///< byte-shuffle LUT, pshufb (zeroes lanes by itself)
            neon       ///< byte-shuffle LUT, tbl (vqtbl1q_u8 / vtbl2_u8)
        };

        /// The kernel of one expand_isa; the ISA headers specialize it for their ISA
        /// when the translation unit is compiled for it.
        template <expand_isa Isa>
        struct expand_kernel;

        template <>
        struct expand_kernel<expand_isa::generic>
        {
            static constexpr char const* name() noexcept { return "generic"; }

            /// Float or binary16 values (widened one at a time).
            template <class Arch, class T>
            static typename arch_traits<Arch>::reg run(std::uint32_t bits, T const*& packed) noexcept
            {
                using ops = arch_traits<Arch>;
                constexpr std::size_t w = ops::width;
                alignas(64) float lanes[w];
                for (std::size_t l = 0; l < w; ++l)
                    lanes[l] = (bits >> l & 1u) ? to_float(*packed++) : 0.0f;
                return ops::load(lanes);
            }
        };

        namespace expand_detail
        {
            /// Number of set bits among the low 16 of `x`, in plain C++ (no POPCNT: an
            /// AVX-512 or AVX2 TU is not necessarily built with -mpopcnt).
            constexpr unsigned popcount16(std::uint32_t x) noexcept
            {
#if defined(__POPCNT__) || defined(__ARM_NEON)
                return static_cast<unsigned>(__builtin_popcount(x & 0xFFFFu));  // one instruction here
#endif
                x &= 0xFFFFu;
                x = x - ((x >> 1) & 0x5555u);
                x = (x & 0x3333u) + ((x >> 2) & 0x3333u);
                x = (x + (x >> 4)) & 0x0F0Fu;
                return (x + (x >> 8)) & 0x1Fu;
            }

            /// Number of set bits among the low 4 of `x`: nibble `x` of a constant.
            constexpr unsigned popcount4(std::uint32_t x) noexcept
            {
                return static_cast<unsigned>(0x4332322132212110ull >> (4 * (x & 0xFu)) & 0xFu);
            }
        }  // namespace expand_detail
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_ARCH_EXPAND_KERNEL_HPP
