/**
 * @file codecs/quant.hpp
 * The quantized delta row (SPEC.md §10): how one far-context row is built and stored.
 *
 * A row is the residual e_j = k_j − k̂_{j−1} (the key itself at row 0 and at every
 * keyframe, j % R == 0), cut into scale groups; each group stores one binary16 scale
 * s = absmax / qmax, rounded *up* (no code ever clips), and b-bit codes
 * c = round_half_even(e / s). The reference then follows what was stored,
 * k̂_j = k̂_{j−1} + s ⊙ c, so rounding never accumulates: |k̂_j − k_j| ≤ s/2.
 *
 * Why the arithmetic is reproducible without care for fused multiply-adds: s is a
 * binary16 value (11 significant bits) and |c| ≤ 127 (7 bits), so s·c is exact in fp32;
 * k̂ + s·c rounds once whether or not a compiler fuses it. Every implementation (the
 * caches, the kernels, the oracle in reference/quant_rows.hpp) reconstructs the same
 * bits.
 *
 * Layout of a row: `bits * dim / 8` bytes of codes, two's complement, channel c in bits
 * [b·c, b·(c+1)) of the little-endian byte string (nibbles low first), then nothing
 * else; the row's `dim / group` scales live in a parallel array. The kernels read a row
 * as *lanes*: 32-bit words at 4 and 8 bits (lane l holds channels [l·32/b, (l+1)·32/b)),
 * 3-byte groups of 8 channels at 3 bits (lane l holds channels [8l, 8l + 8), zero-extended
 * to 32 bits as it is loaded), and unpack "field k" of a whole register of lanes with two
 * shifts (kernels/quant_rows.hpp).
 */
#ifndef DELTAATTN_CODECS_QUANT_HPP
#define DELTAATTN_CODECS_QUANT_HPP

#include "../detail/validate.hpp"
#include "../fp16.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace deltaattn
{
    /// Parameters of the quantized delta codec (SPEC.md §10).
    struct quant_codec
    {
        /// Code width b: 8, 4 or 3 bits per value.
        unsigned bits = 4;
        /// Channels per binary16 scale: 32, or 0 for one scale per row.
        std::size_t scale_group = 32;
        /// Keyframe interval R: rows j % R == 0 are quantized directly (R = 1: every row,
        /// llama.cpp's q8_0/q4_0 family); 0: only row 0, every later row a residual.
        std::size_t keyframe_interval = 256;
        /// Keys only: decode steps dot the far rows with the query quantized to int8 per
        /// 32 channels (SPEC.md §10's last rule; quantize_query_group), in integer dot
        /// instructions. Prefill chunks keep fp32 queries. The score bound then adds
        /// α Σ_c |k̂[c]| s_q[c] / 2.
        bool int8_queries = false;

        /// The largest code magnitude, 2^{b−1} − 1.
        int qmax() const noexcept { return (1 << (bits - 1)) - 1; }
        /// Channels per scale for rows of `dim` channels.
        std::size_t group(std::size_t dim) const noexcept { return scale_group == 0 ? dim : scale_group; }
        /// Row j restarts from nothing (is quantized directly).
        bool is_keyframe(std::size_t j) const noexcept { return j == 0 || (keyframe_interval != 0 && j % keyframe_interval == 0); }
        /// The first keyframe at or after j, or `none` (R = 0 and j > 0): loops meet
        /// keyframes by position instead of dividing per row.
        std::size_t next_keyframe(std::size_t j) const noexcept
        {
            if (j == 0)
                return 0;
            return keyframe_interval == 0 ? none : (j + keyframe_interval - 1) / keyframe_interval * keyframe_interval;
        }
        /// The last keyframe at or before j (row 0 always is one).
        std::size_t previous_keyframe(std::size_t j) const noexcept { return keyframe_interval == 0 ? 0 : j / keyframe_interval * keyframe_interval; }
        static constexpr std::size_t none = static_cast<std::size_t>(-1);

        /// Bytes of codes per row.
        std::size_t code_bytes(std::size_t dim) const noexcept { return bits * dim / 8; }
        /// Scales per row.
        std::size_t scales(std::size_t dim) const noexcept { return dim / group(dim); }
        /// Stored bits per value: codes plus the scales' share.
        double bits_per_value(std::size_t dim) const noexcept
        {
            return static_cast<double>(8 * code_bytes(dim) + 16 * scales(dim)) / static_cast<double>(dim);
        }
    };

    /**
     * Throws `std::invalid_argument` naming the parameter unless `codec` can code rows of
     * `dim` channels: bits 3, 4 or 8, a scale group of 32 (dividing dim) or the whole row,
     * dim a multiple of 8 (rows are whole lanes of 8 channels: 32-bit words of 4-bit codes,
     * 3 bytes of 3-bit codes). `bits_name` and `group_name` are what the
     * errors call the two parameters (a value codec's are "value_bits" and
     * "value_scale_group").
     */
    inline void validate_codec(quant_codec const& codec, std::size_t dim, char const* bits_name = "bits", char const* group_name = "scale_group")
    {
        DELTAATTN_REQUIRE(codec.bits == 3 || codec.bits == 4 || codec.bits == 8, bits_name, "must be 3, 4 or 8" + detail::got(codec.bits));
        DELTAATTN_REQUIRE(codec.scale_group == 0 || codec.scale_group == 32, group_name,
                        "must be 32 or 0 (one scale per row)" + detail::got(codec.scale_group));
        DELTAATTN_REQUIRE(dim % 8 == 0, "dim", "must be a multiple of 8 for quantized rows" + detail::got(dim));
        DELTAATTN_REQUIRE(dim % codec.group(dim) == 0, group_name,
                        "must divide the head dim " + std::to_string(dim) + detail::got(codec.scale_group));
    }

    namespace codec_detail
    {
        /// The smallest binary16 value >= x (x >= 0, finite): a scale that never clips.
        inline std::uint16_t half_at_least(float x) noexcept
        {
            std::uint16_t h = float_to_half(x);
            if (half_to_float(h) < x)
                ++h;  // positive halves are ordered like their bit patterns (inf after max)
            return h;
        }

        /// The 24 bits of a 3-bit row's lane at p (8 codes, channel 8l + k in bits [3k, 3k + 3)).
        inline std::uint32_t lane_bits(std::uint8_t const* p) noexcept { return static_cast<std::uint32_t>(p[0] | p[1] << 8 | p[2] << 16); }

        /// Writes the b-bit two's-complement `code` of channel c into `row`: bits
        /// [b·c, b·(c+1)) of the little-endian byte string (a 3-bit code may straddle two
        /// bytes).
        inline void put_code(std::uint8_t* row, unsigned bits, std::size_t c, int code) noexcept
        {
            if (bits == 8)
            {
                row[c] = static_cast<std::uint8_t>(code);
                return;
            }
            if (bits == 4)
            {
                std::uint8_t const nibble = static_cast<std::uint8_t>(code) & 0x0F;
                std::uint8_t& byte = row[c / 2];
                byte = c % 2 == 0 ? static_cast<std::uint8_t>((byte & 0xF0) | nibble) : static_cast<std::uint8_t>((byte & 0x0F) | (nibble << 4));
                return;
            }
            // 3 bits: rewrite the 3-byte lane of channel c's group of 8.
            std::uint8_t* const lane = row + 3 * (c / 8);
            unsigned const shift = 3 * static_cast<unsigned>(c % 8);
            std::uint32_t const bits24 = (lane_bits(lane) & ~(7u << shift)) | ((static_cast<std::uint32_t>(code) & 7u) << shift);
            lane[0] = static_cast<std::uint8_t>(bits24);
            lane[1] = static_cast<std::uint8_t>(bits24 >> 8);
            lane[2] = static_cast<std::uint8_t>(bits24 >> 16);
        }
    }  // namespace codec_detail

    /// The b-bit two's-complement code of channel c of a stored row.
    inline int code_at(std::uint8_t const* row, unsigned bits, std::size_t c) noexcept
    {
        if (bits == 8)
            return static_cast<std::int8_t>(row[c]);
        if (bits == 4)
        {
            int const nibble = (row[c / 2] >> (4 * (c % 2))) & 0x0F;
            return nibble >= 8 ? nibble - 16 : nibble;
        }
        // 3 bits: the 3 bytes of channel c's group of 8 hold its code whole.
        int const field = static_cast<int>(codec_detail::lane_bits(row + 3 * (c / 8)) >> (3 * (c % 8))) & 7;
        return field >= 4 ? field - 8 : field;
    }

    /// Codes per lane as the kernels read a row of b-bit codes: 32 / b in a 32-bit word at
    /// 4 and 8 bits, 8 in a 3-byte lane at 3 bits (the layout comment above).
    constexpr std::size_t codes_per_lane(unsigned bits) noexcept { return bits == 3 ? 8 : 32 / bits; }

    /// Channels per scale of an int8 query (SPEC.md §10's last rule).
    constexpr std::size_t quant_query_group = 32;
    /// The largest |q| an int8 query can hold: 127 times binary16's largest value.
    constexpr float quant_query_limit = 127.0f * 65504.0f;

    /**
     * Quantizes `n` <= 32 query channels to int8: s = absmax / 127 rounded up to binary16,
     * codes round_half_even(q / s) in fp32 (|code| <= 127; s = 0 gives zeros). Returns s.
     * Callers refuse |q| > quant_query_limit first; a larger value is clipped here.
     */
    inline float quantize_query_group(float const* q, std::size_t n, std::int8_t* codes) noexcept
    {
        float absmax = 0.0f;
        for (std::size_t c = 0; c < n; ++c)
            absmax = std::max(absmax, std::fabs(q[c]));
        float const s = std::min(half_to_float(codec_detail::half_at_least(absmax / 127.0f)), 65504.0f);
        for (std::size_t c = 0; c < n; ++c)
        {
            float const x = s == 0.0f ? 0.0f : std::nearbyint(q[c] / s);
            codes[c] = static_cast<std::int8_t>(std::min(127.0f, std::max(-127.0f, x)));
        }
        return s;
    }

    /**
     * Codes row `j` of `dim` channels: `key` against the reference `reference` (k̂_{j−1};
     * ignored at a keyframe), writing `codes` (code_bytes), `scales` (binary16 bits, one
     * per group) and the new reference k̂_j into `next` (may alias `reference`).
     * Returns false, writing nothing to `next`, if a scale overflows binary16.
     */
    inline bool encode_row(quant_codec const& codec, std::size_t dim, std::size_t j, float const* key, float const* reference,
                           std::uint8_t* codes, std::uint16_t* scales, float* next, float* residual) noexcept
    {
        bool const keyframe = codec.is_keyframe(j);
        for (std::size_t c = 0; c < dim; ++c)
            residual[c] = keyframe ? key[c] : key[c] - reference[c];
        std::size_t const g = codec.group(dim);
        float const qmax = static_cast<float>(codec.qmax());
        std::memset(codes, 0, codec.code_bytes(dim));
        for (std::size_t c0 = 0; c0 < dim; c0 += g)
        {
            float absmax = 0.0f;
            for (std::size_t c = c0; c < c0 + g; ++c)
                absmax = std::max(absmax, std::fabs(residual[c]));
            std::uint16_t const bits16 = codec_detail::half_at_least(absmax / qmax);
            float const s = half_to_float(bits16);
            if (std::isinf(s))
                return false;
            scales[c0 / g] = bits16;
            for (std::size_t c = c0; c < c0 + g; ++c)
            {
                // Round half to even (the default rounding mode); |e / s| <= qmax already,
                // the clamp only guards the contract against a non-default mode.
                float const q = s == 0.0f ? 0.0f : std::nearbyint(residual[c] / s);
                int const code = static_cast<int>(std::min(qmax, std::max(-qmax, q)));
                codec_detail::put_code(codes, codec.bits, c, code);
                residual[c] = s * static_cast<float>(code);  // exact: the stored step
            }
        }
        for (std::size_t c = 0; c < dim; ++c)
            next[c] = keyframe ? residual[c] : reference[c] + residual[c];
        return true;
    }
}  // namespace deltaattn

#endif  // DELTAATTN_CODECS_QUANT_HPP
