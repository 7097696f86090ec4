/**
 * @file kernels/workspace.hpp
 * Scratch memory of the attention kernels: sized once, reused by every call, so the
 * kernels themselves never allocate.
 */
#ifndef DELTAATTN_KERNELS_WORKSPACE_HPP
#define DELTAATTN_KERNELS_WORKSPACE_HPP

#include <algorithm>
#include <cstddef>
#include <vector>

namespace deltaattn
{
    class attention_workspace
    {
    public:
        /// Keys per tile of the online softmax.
        static constexpr std::size_t tile = 32;

        /// Grows (never shrinks) to fit blocks of `lanes` query vectors of `dim` channels.
        void reserve(std::size_t lanes, std::size_t dim)
        {
            if (lanes <= m_lanes && dim <= m_dim)
                return;
            m_lanes = std::max(lanes, m_lanes);
            m_dim = std::max(dim, m_dim);
            transposed.assign(m_lanes * m_dim, 0.0f);
            lane_acc.assign(m_lanes * m_dim, 0.0f);
            lane_scores.assign(m_lanes * tile, 0.0f);
            lane_factor.assign(m_lanes, 0.0f);
            lane_sum.assign(m_lanes, 0.0f);
            value_rows.assign(tile, nullptr);
        }

        std::vector<float> transposed;   ///< queries, [dim][lane]
        std::vector<float> lane_acc;     ///< output accumulators, [lane][dim]
        std::vector<float> lane_scores;  ///< a tile's scores, then probabilities, [key][lane]
        std::vector<float> lane_factor;  ///< per lane: the tile's softmax rescale factor
        std::vector<float> lane_sum;     ///< per lane: the softmax denominator
        std::vector<float const*> value_rows;

    private:
        std::size_t m_lanes = 0, m_dim = 0;
    };
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_WORKSPACE_HPP
