/**
 * @file kernels/arch/expand_neon.hpp
 * Expansion on NEON, 4 lanes: a table lookup through a 16-entry byte-shuffle table;
 * out-of-range indices yield zero bytes, so inactive lanes need no blend. AArch64 looks
 * up all 16 bytes at once (vqtbl1q_u8); ARMv7 has only 8-byte lookups from a 16-byte
 * table (vtbl2_u8), one per half.
 *
 * Invariants:
 * - Compiled only when the TU targets NEON (__ARM_NEON); used only for 4-lane archs
 *   derived from xsimd::neon (neon, neon64).
 * - Reads 4 floats from `packed` whatever the mask (callers pad by expand_padding).
 * - Bits above the low 4 are ignored.
 */
#ifndef DELTAATTN_KERNELS_ARCH_EXPAND_NEON_HPP
#define DELTAATTN_KERNELS_ARCH_EXPAND_NEON_HPP

#include "expand_kernel.hpp"
#include "expand_tables.hpp"

#if defined(__ARM_NEON)
#include <arm_neon.h>

namespace deltaattn
{
    namespace kernels
    {
        template <>
        struct expand_kernel<expand_isa::neon>
        {
            static constexpr char const* name() noexcept { return "neon tbl LUT"; }

            template <class Arch>
            static typename arch_traits<Arch>::reg run(std::uint32_t bits, float const*& packed) noexcept
            {
                std::uint32_t const m = bits & 0xFu;
                std::uint8_t const* shuffle = expand_detail::byte_shuffles[m].data();
                uint8x16_t const values = vreinterpretq_u8_f32(vld1q_f32(packed));
                packed += expand_detail::popcount4(m);
#if defined(__aarch64__)
                uint8x16_t const lanes = vqtbl1q_u8(values, vld1q_u8(shuffle));
#else
                uint8x8x2_t const table = {{vget_low_u8(values), vget_high_u8(values)}};
                uint8x16_t const lanes = vcombine_u8(vtbl2_u8(table, vld1_u8(shuffle)), vtbl2_u8(table, vld1_u8(shuffle + 8)));
#endif
                return typename arch_traits<Arch>::reg(vreinterpretq_f32_u8(lanes));
            }
        };
    }  // namespace kernels
}  // namespace deltaattn
#endif  // __ARM_NEON

#endif  // DELTAATTN_KERNELS_ARCH_EXPAND_NEON_HPP
