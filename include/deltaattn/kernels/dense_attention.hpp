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
#include "attend_block.hpp"

namespace deltaattn
{
    namespace kernels
    {
        /// Query positions per block for `heads` query heads per KV head: about 16
        /// query vectors share each key row loaded.
        constexpr std::size_t block_positions(std::size_t heads) noexcept { return heads >= 16 ? 1 : 16 / heads; }

        /// The query heads of KV head `kv` (GQA: consecutive query heads share a KV head).
        template <class T>
        tensor_view<T> group_heads(tensor_view<T> t, std::size_t kv, std::size_t group) noexcept
        {
            return {t.at(0, kv * group), t.positions, group, t.dim, t.pos_stride, t.head_stride};
        }

        /// Runs `attend_block` over the query blocks of one KV group.
        template <class Arch, class Keys>
        void attend_group(Keys const& keys, tensor_view<const float> q, tensor_view<float> out, std::size_t first,
                          matrix_view<const float> values, float scale, hybrid_split split, attention_workspace& ws, qk_work& work)
        {
            std::size_t const step = block_positions(q.heads);
            for (std::size_t p0 = 0; p0 < q.positions; p0 += step)
            {
                std::size_t const count = std::min(step, q.positions - p0);
                attend_block<Arch>(keys, q.slice_positions(p0, count), out.slice_positions(p0, count), first + p0, values, scale,
                                   split, ws, work);
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
