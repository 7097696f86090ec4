/**
 * @file detail/bits.hpp
 * Bit twiddling on the 64-bit words of a channel mask.
 */
#ifndef DELTAATTN_DETAIL_BITS_HPP
#define DELTAATTN_DETAIL_BITS_HPP

#include <cstddef>
#include <cstdint>

namespace deltaattn
{
    namespace detail
    {
        inline unsigned popcount64(std::uint64_t x) noexcept
        {
#if defined(__GNUC__) || defined(__clang__)
            return static_cast<unsigned>(__builtin_popcountll(x));
#else
            unsigned n = 0;
            for (; x; x &= x - 1)
                ++n;
            return n;
#endif
        }

        /// Index of the lowest set bit; `x` must be non-zero.
        inline unsigned lowest_bit(std::uint64_t x) noexcept
        {
#if defined(__GNUC__) || defined(__clang__)
            return static_cast<unsigned>(__builtin_ctzll(x));
#else
            unsigned i = 0;
            while (!(x & 1u))
            {
                x >>= 1;
                ++i;
            }
            return i;
#endif
        }

        /// Number of 64-bit words for a `dim`-channel mask.
        constexpr std::size_t mask_words(std::size_t dim) noexcept { return (dim + 63) / 64; }

        /// Bits `[first, first + count)` of a multi-word mask, as the low bits of the result (count <= 64).
        inline std::uint64_t mask_bits(std::uint64_t const* words, std::size_t first, std::size_t count) noexcept
        {
            std::size_t const w = first / 64, s = first % 64;
            std::uint64_t bits = words[w] >> s;
            if (s != 0 && s + count > 64)
                bits |= words[w + 1] << (64 - s);
            return count == 64 ? bits : bits & ((std::uint64_t(1) << count) - 1);
        }
    }  // namespace detail
}  // namespace deltaattn

#endif  // DELTAATTN_DETAIL_BITS_HPP
