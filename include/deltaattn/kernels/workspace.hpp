/**
 * @file kernels/workspace.hpp
 * Scratch memory of the attention kernels: sized once, reused by every call, so the
 * kernels themselves never allocate. One slot per worker thread.
 */
#ifndef DELTAATTN_KERNELS_WORKSPACE_HPP
#define DELTAATTN_KERNELS_WORKSPACE_HPP

#include "../counters.hpp"
#include "../detail/aligned_vector.hpp"
#include "arch/expand_kernel.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace deltaattn
{
    /// The scratch of one query block on one thread.
    class block_scratch
    {
    public:
        /// Keys per tile of the online softmax. 64 rather than 32: a tile's fixed costs
        /// (the softmax's rescale of every lane's accumulators, the sparse p·V's pass over
        /// its output channels) weigh half as much; measured on Zen 4, 7 shuffled rounds:
        /// K+V prefill at 60% and 80% delta sparsity 1.07-1.11x faster, dense within noise
        /// (1.00-1.04x, d 64 and 128).
        static constexpr std::size_t tile = 64;

        /// Grows (never shrinks) to fit blocks of `lanes` query vectors of `dim` channels.
        void reserve(std::size_t lanes, std::size_t dim)
        {
            if (lanes <= m_lanes && dim <= m_dim)
                return;
            std::size_t const new_lanes = std::max(lanes, m_lanes), new_dim = std::max(dim, m_dim);
            transposed.assign(new_lanes * new_dim, 0.0f);
            lane_acc.assign(new_lanes * new_dim, 0.0f);
            lane_scores.assign(new_lanes * tile, 0.0f);
            far_scores.assign(new_lanes * tile, 0.0f);
            lane_factor.assign(new_lanes, 0.0f);
            lane_sum.assign(new_lanes, 0.0f);
            value_keys.assign(tile, 0);
            value_tile.assign(tile * new_dim + converted_padding, 0.0f);
            far_tile.assign(tile * new_dim, 0.0f);
            value_weighted.assign(new_lanes * new_dim, 0.0f);
            value_reference.assign(new_dim, 0.0f);
            converted.assign(new_dim + converted_padding, 0.0f);
            converted_keys.assign(max_score_keys * (new_dim + converted_padding), 0.0f);
            // Only now: if an assign above threw, the next call tries again.
            m_lanes = new_lanes;
            m_dim = new_dim;
        }

        /// Grows (never shrinks) to fit a decode step of `heads` heads, score rows of
        /// `stride` keys and `dim` channels.
        void reserve_decode(std::size_t heads, std::size_t stride, std::size_t dim)
        {
            reserve(std::max<std::size_t>(heads, 16), dim);
            if (decode_scores.size() < heads * stride)
                decode_scores.resize(std::max(heads * stride, 2 * decode_scores.size()));
        }

        /// Query heads of one KV head a decode step takes at once (group_plan's 4 registers).
        static constexpr std::size_t max_decode_heads = 64;

        /// Decode steps take the channel-parallel delta path up to this many heads per block.
        static constexpr std::size_t max_channel_heads = 8;

        aligned_vector<float> transposed;   ///< queries, [dim][lane]
        aligned_vector<float> lane_acc;     ///< output accumulators, [lane][dim]
        aligned_vector<float> lane_scores;  ///< a tile's scores, then probabilities, [key][lane]
        aligned_vector<float> far_scores;   ///< a tile's far dots q·k̂_j when far keys are dense rows, [key][lane]
        aligned_vector<float> lane_factor;  ///< per lane: the tile's softmax rescale factor
        aligned_vector<float> lane_sum;     ///< per lane: the softmax denominator
        /// Floats past a converted row's end that stay readable (the expansion kernels
        /// load whole registers).
        static constexpr std::size_t converted_padding = kernels::expand_padding;
        aligned_vector<std::uint16_t> value_keys;     ///< tile keys one lane group reads exact values of
        aligned_vector<float> value_tile;             ///< a tile's exact value rows, contiguous and widened, [key][dim]
        aligned_vector<float> far_tile;               ///< a tile's rebuilt far value rows v̂_j, [key][dim]
        aligned_vector<float> value_weighted;         ///< delta values: Σ weight Δv, [dim][head] (decode) or [dim][lane] (prefill)
        aligned_vector<float> value_reference;        ///< prefill, delta values: the running reference v̂
        aligned_vector<float> decode_scores;  ///< decode: scores, then probabilities, [head][key]
        aligned_vector<float> converted;      ///< a float16 row widened to float (convert.hpp)
        /// Keys one register block of the prefill's exact scores reads at most.
        static constexpr std::size_t max_score_keys = 8;
        aligned_vector<float> converted_keys;  ///< that block's float16 keys widened, a row per converted_stride()
        std::size_t converted_stride() const noexcept { return m_dim + converted_padding; }
        aligned_vector<float> quant;          ///< code-row decode: permuted queries and outputs (quant_decode.hpp)

        aligned_vector<std::int32_t> quant_words;  ///< code-row decode with int8 queries: query and start words (quant_int8_dots.hpp)

        /// Grows (never shrinks) `quant` to `floats` and `quant_words` to `words`.
        void reserve_quant(std::size_t floats, std::size_t words = 0)
        {
            if (quant.size() < floats)
                quant.assign(floats, 0.0f);
            if (quant_words.size() < words)
                quant_words.assign(words, 0);
        }
        attention_work work;  ///< work of the tasks this slot ran in the current call

    private:
        std::size_t m_lanes = 0, m_dim = 0;
    };

    /// Scratch for the attention kernels: a `block_scratch` per worker thread.
    class attention_workspace
    {
    public:
        /// The slot of `worker`; slots for workers 0..workers-1 exist after `reserve_workers`.
        block_scratch& slot(std::size_t worker) noexcept { return m_slots[worker]; }

        /// Makes sure there is a slot per worker (call before running tasks in parallel).
        void reserve_workers(std::size_t workers)
        {
            if (m_slots.size() < workers)
                m_slots.resize(workers);
        }

        /// Sums and clears the slots' work counters (integers: the order does not matter).
        attention_work take_work() noexcept
        {
            attention_work total;
            for (auto& s : m_slots)
            {
                total += s.work;
                s.work = attention_work{};
            }
            return total;
        }

    private:
        std::vector<block_scratch> m_slots = std::vector<block_scratch>(1);
    };
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_WORKSPACE_HPP
