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
             * 8 lanes of 32 bits, one 32-bit entry per mask: nibble l of entry m is
             *   bits 0-2: the packed index lane l reads (the number of set bits of m below l),
             *   bit 3:    set when lane l is active (bit l of m).
             * vpermps reads only bits 0-2 of an index, and bit 3 shifted to bit 31 is a blend
             * mask. Nibble 7 also gives the popcount: its index plus its active bit.
             */
            constexpr std::array<std::uint32_t, 256> make_permute_nibbles() noexcept
            {
                std::array<std::uint32_t, 256> table{};
                for (std::uint32_t m = 0; m < 256; ++m)
                {
                    std::uint32_t entry = 0, used = 0;
                    for (std::uint32_t l = 0; l < 8; ++l)
                    {
                        std::uint32_t const active = m >> l & 1u;
                        entry |= (used | active << 3) << (4 * l);
                        used += active;
                    }
                    table[m] = entry;
                }
                return table;
            }

            /// popcount(m) from entry m of the nibble table.
            constexpr std::uint32_t nibble_entry_count(std::uint32_t entry) noexcept { return (entry >> 28 & 7u) + (entry >> 31); }

            alignas(64) inline constexpr std::array<std::uint32_t, 256> permute_nibbles = make_permute_nibbles();

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
