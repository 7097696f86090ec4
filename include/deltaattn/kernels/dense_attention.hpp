/**
 * @file kernels/dense_attention.hpp
 * Dense causal attention, the baseline hybrid attention is measured against.
 *
 * Flash-style (online softmax over key tiles), GQA, strided views: an engine's
 * `[pos][head][dim]` K/V cache is read in place.
 */
#ifndef DELTAATTN_KERNELS_DENSE_ATTENTION_HPP
#define DELTAATTN_KERNELS_DENSE_ATTENTION_HPP

#include "../detail/check_shapes.hpp"
#include "../options.hpp"
#include "attention_block.hpp"

namespace deltaattn
{
    namespace kernels
    {
        /// The query heads of KV head `kv` (GQA: consecutive query heads share a KV head).
        template <class T>
        tensor_view<T> group_heads(tensor_view<T> t, std::size_t kv, std::size_t group) noexcept
        {
            return {t.at(0, kv * group), t.positions, group, t.dim, t.pos_stride, t.head_stride};
        }

        /// attend_block with R chosen at run time (R registers of lanes, R <= 4).
        template <class Arch, class Keys>
        void attend_block_any(std::size_t registers, Keys const& keys, tensor_view<const float> q, tensor_view<float> out, std::size_t first,
                               matrix_view<const float> values, float scale, hybrid_split split, attention_workspace& ws, qk_work& work)
        {
            switch (registers)
            {
            case 1: return attend_block<Arch, 1>(keys, q, out, first, values, scale, split, ws, work);
            case 2: return attend_block<Arch, 2>(keys, q, out, first, values, scale, split, ws, work);
            case 3: return attend_block<Arch, 3>(keys, q, out, first, values, scale, split, ws, work);
            default: return attend_block<Arch, 4>(keys, q, out, first, values, scale, split, ws, work);
            }
        }

        /**
         * Attention of the queries of one KV group, in blocks of about two registers
         * of query vectors (heads split in sub-groups of at most four registers).
         */
        template <class Arch, class Keys>
        void attend_group(Keys const& keys, tensor_view<const float> q, tensor_view<float> out, std::size_t first,
                          matrix_view<const float> values, float scale, hybrid_split split, attention_workspace& ws, qk_work& work)
        {
            constexpr std::size_t w = arch_traits<Arch>::width;
            std::size_t const heads = std::min(q.heads, 4 * w);
            std::size_t const step = std::max<std::size_t>(1, 2 * w / heads);
            for (std::size_t h0 = 0; h0 < q.heads; h0 += heads)
            {
                std::size_t const hn = std::min(heads, q.heads - h0);
                tensor_view<const float> qh{q.at(0, h0), q.positions, hn, q.dim, q.pos_stride, q.head_stride};
                tensor_view<float> oh{out.at(0, h0), out.positions, hn, out.dim, out.pos_stride, out.head_stride};
                for (std::size_t p0 = 0; p0 < q.positions; p0 += step)
                {
                    std::size_t const count = std::min(step, q.positions - p0);
                    attend_block_any<Arch>((count * hn + w - 1) / w, keys, qh.slice_positions(p0, count), oh.slice_positions(p0, count),
                                            first + p0, values, scale, split, ws, work);
                }
            }
        }
    }  // namespace kernels

    /**
     * Dense causal attention: `out = softmax(scale * q k^T) v`, causal.
     *
     * q and out: n_q positions x Hq heads x d; k and v: n_kv x Hkv x d, n_q <= n_kv,
     * `Hq % Hkv == 0`. Query row r sits at position `n_kv - n_q + r` (so n_q == n_kv is
     * a prefill, n_q == 1 a decode step) and sees keys 0..position. Query head h reads
     * KV head `h / (Hq / Hkv)`. scale 0 means 1/sqrt(d). Throws std::invalid_argument
     * naming the argument on bad shapes; nothing is written then.
     */
    template <class Arch = default_arch>
    void dense_attention(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const float> v, tensor_view<float> out,
                         float scale, attention_workspace& workspace, qk_work* work = nullptr)
    {
        detail::check_attention_shapes(q, k, v, out);
        detail::require(std::isfinite(scale), "scale", "must be finite" + detail::got(scale));
        std::size_t const group = q.heads / k.heads;
        float const alpha = effective_scale(scale, q.dim);
        qk_work done;
        for (std::size_t kv = 0; kv < k.heads; ++kv)
            kernels::attend_group<Arch>(kernels::dense_keys{k.head(kv)}, kernels::group_heads(q, kv, group),
                                        kernels::group_heads(out, kv, group), k.positions - q.positions, v.head(kv), alpha,
                                        kernels::hybrid_split{1, 0}, workspace, done);
        if (work)
            *work += done;
    }

    /// As above, with a workspace of its own (one allocation per call).
    template <class Arch = default_arch>
    void dense_attention(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const float> v, tensor_view<float> out,
                         float scale = 0.0f)
    {
        attention_workspace workspace;
        dense_attention<Arch>(q, k, v, out, scale, workspace);
    }

    /// One decode step: q and out hold a single position, the last of k and v.
    template <class Arch = default_arch>
    void dense_decode(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const float> v, tensor_view<float> out,
                      float scale, attention_workspace& workspace)
    {
        detail::require(q.positions == 1, "q", "a decode step takes one position" + detail::got(q.positions));
        dense_attention<Arch>(q, k, v, out, scale, workspace);
    }
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_DENSE_ATTENTION_HPP
