/**
 * @file kernels/arch/expand_tables.hpp
 * Lookup tables of the LUT-based expansion kernels, built at compile time from the
 * definition of an expansion (lane l takes packed value number popcount(m & (2^l - 1))
 * when bit l of m is set), so no table is typed in by hand.
 *
 * Invariant: constexpr data only, no code and no ISA dependence: every TU sees the
 * same bytes.
 */
#ifndef DELTAATTN_KERNELS_ARCH_EXPAND_TABLES_HPP
#define DELTAATTN_KERNELS_ARCH_EXPAND_TABLES_HPP

#include <array>
#include <cstdint>

namespace deltaattn
{
    namespace kernels
    {
        namespace expand_detail
        {
            /**
             * 8 lanes, one 8-byte entry per mask: byte l of entry m is p, the number of set
             * bits of m below l, with bit 7 set when lane l is active (bit l of m).
             * Sign-extended to 32-bit lanes (vpmovsxbd) it is both vpermps's index (bits
             * 0-2) and a blend mask (the sign bit).
             */
            constexpr std::array<std::uint64_t, 256> make_permute_bytes() noexcept
            {
                std::array<std::uint64_t, 256> table{};
                for (std::uint32_t m = 0; m < 256; ++m)
                {
                    std::uint64_t entry = 0, used = 0;
                    for (std::uint32_t l = 0; l < 8; ++l)
                    {
                        std::uint64_t const active = m >> l & 1u;
                        entry |= (used | active << 7) << (8 * l);
                        used += active;
                    }
                    table[m] = entry;
                }
                return table;
            }

            alignas(64) inline constexpr std::array<std::uint64_t, 256> permute_bytes = make_permute_bytes();

            /// popcount(m) for the 256 masks of 8 lanes: the AVX2 kernel's pointer advance in one
            /// byte load. (In decode steps timed in pairs with dense, AVX2 build on Zen 4, the
            /// table made the hybrid step a median 8% faster than four scalar operations on the
            /// permute entry, and was faster than `popcnt` in 10 cases of 12.)
            constexpr std::array<std::uint8_t, 256> make_popcounts8() noexcept
            {
                std::array<std::uint8_t, 256> table{};
                for (std::uint32_t m = 0; m < 256; ++m)
                    for (std::uint32_t l = 0; l < 8; ++l)
                        table[m] = static_cast<std::uint8_t>(table[m] + (m >> l & 1u));
                return table;
            }

            alignas(64) inline constexpr std::array<std::uint8_t, 256> popcounts8 = make_popcounts8();

            /**
             * 4 lanes of 32 bits as 16 byte indices, one row per mask: an active lane takes
             * bytes 4p..4p+3 of the packed values (p = its packed index), an inactive lane
             * 0x80, which both pshufb (high bit set) and tbl (index >= 16) turn into a zero
             * byte.
             */
            constexpr std::array<std::array<std::uint8_t, 16>, 16> make_byte_shuffles() noexcept
            {
                std::array<std::array<std::uint8_t, 16>, 16> table{};
                for (std::uint32_t m = 0; m < 16; ++m)
                {
                    std::uint32_t used = 0;
                    for (std::uint32_t l = 0; l < 4; ++l)
                    {
                        bool const active = m >> l & 1u;
                        for (std::uint32_t b = 0; b < 4; ++b)
                            table[m][4 * l + b] = active ? static_cast<std::uint8_t>(4 * used + b) : std::uint8_t{0x80};
                        used += active ? 1u : 0u;
                    }
                }
                return table;
            }

            alignas(64) inline constexpr std::array<std::array<std::uint8_t, 16>, 16> byte_shuffles = make_byte_shuffles();
        }  // namespace expand_detail
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_ARCH_EXPAND_TABLES_HPP
