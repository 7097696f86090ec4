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
#include "../parallel.hpp"
#include "attention_block.hpp"
#include "decode_step.hpp"

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

        /**
         * Registers of query lanes in a prefill block: four where the arch has 32 vector
         * registers (AVX-512, aarch64), else two. A stored delta element costs a bit scan,
         * an address and a broadcast whatever R is, and feeds R FMAs: with four, that fixed
         * cost is spread over twice the lanes (Zen 5, d 128, n 2048, 1 thread: hybrid K
         * prefill at 60% delta sparsity 273 -> 239 ms, dense within noise; eight registers
         * were slower, the exact-score micro-kernel then loads a query register per FMA).
         * Sixteen registers hold four sets of prefix sums only at R = 2.
         */
        template <class Arch>
        constexpr std::size_t block_registers() noexcept
        {
            return arch_traits<Arch>::registers >= 32 ? 4 : 2;
        }

        /// attend_block with R chosen at run time: 1, 2, or block_registers (3 runs as 4,
        /// the last register padding). A block of more lanes (a KV group of more heads than
        /// block_registers registers hold) runs as sub-blocks of its heads: each R is a
        /// copy of the whole prefill kernel, per key and value type.
        template <class Arch, class Keys, class Values>
        void attend_block_any(std::size_t registers, Keys const& keys, tensor_view<const float> q, tensor_view<float> out, std::size_t first,
                              Values const& values, float scale, hybrid_split split, block_scratch& ws, attention_work& work)
        {
            if constexpr (!reads_dense_far_rows<Keys>::value)  // (decode_block reads delta rows)
                if (q.positions == 1)                              // a decode step
                    return decode_block<Arch>(keys, q, out, first, values, scale, split, ws, work);
            if (registers == 1)
                return attend_block<Arch, 1>(keys, q, out, first, values, scale, split, ws, work);
            if (registers == 2)
                return attend_block<Arch, 2>(keys, q, out, first, values, scale, split, ws, work);
            constexpr std::size_t most = block_registers<Arch>();
            if constexpr (most == 4)
                if (registers <= 4)
                    return attend_block<Arch, 4>(keys, q, out, first, values, scale, split, ws, work);
            constexpr std::size_t w = arch_traits<Arch>::width;
            std::size_t const per = std::max<std::size_t>(1, most * w / q.positions);  // heads per sub-block
            for (std::size_t h0 = 0; h0 < q.heads; h0 += per)
            {
                std::size_t const hn = std::min(per, q.heads - h0);
                tensor_view<const float> qs{q.at(0, h0), q.positions, hn, q.dim, q.pos_stride, q.head_stride};
                tensor_view<float> os{out.at(0, h0), out.positions, hn, out.dim, out.pos_stride, out.head_stride};
                attend_block_any<Arch>((q.positions * hn + w - 1) / w, keys, qs, os, first, values, scale, split, ws, work);
            }
        }

        /**
         * How the queries of one KV group split into blocks: about block_registers
         * registers of query vectors each, heads in sub-groups of at most four registers.
         */
        template <class Arch>
        struct group_plan
        {
            static constexpr std::size_t width = arch_traits<Arch>::width;
            std::size_t heads, positions;  // of the whole group
            std::size_t block_heads = std::min(heads, 4 * width);
            std::size_t block_positions = std::max<std::size_t>(1, block_registers<Arch>() * width / std::max<std::size_t>(1, block_heads));
            std::size_t head_blocks = (heads + block_heads - 1) / std::max<std::size_t>(1, block_heads);
            std::size_t position_blocks = (positions + block_positions - 1) / block_positions;

            std::size_t blocks() const noexcept { return head_blocks * position_blocks; }

            /// Block `b` of the group: its query and output views and first position.
            template <class Keys, class Values>
            void attend(std::size_t b, Keys const& keys, tensor_view<const float> q, tensor_view<float> out, std::size_t first,
                        Values const& values, float scale, hybrid_split split, block_scratch& ws) const
            {
                std::size_t const h0 = (b / position_blocks) * block_heads, p0 = (b % position_blocks) * block_positions;
                std::size_t const hn = std::min(block_heads, heads - h0), pn = std::min(block_positions, positions - p0);
                tensor_view<const float> qb{q.at(p0, h0), pn, hn, q.dim, q.pos_stride, q.head_stride};
                tensor_view<float> ob{out.at(p0, h0), pn, hn, out.dim, out.pos_stride, out.head_stride};
                attend_block_any<Arch>((pn * hn + width - 1) / width, keys, qb, ob, first + p0, values, scale, split, ws, ws.work);
            }
        };

        /**
         * Sizes `workspace` for run_blocks over `positions` query positions of `group`
         * heads against up to `keys` keys, so the attention itself allocates nothing.
         * Callers that mutate a cache call it first: a bad_alloc then leaves it unchanged.
         */
        template <class Arch>
        void prepare_workspace(attention_workspace& workspace, parallel_executor const& executor, std::size_t group, std::size_t positions,
                               std::size_t keys, std::size_t dim)
        {
            constexpr std::size_t w = arch_traits<Arch>::width;
            group_plan<Arch> const plan{group, positions};
            workspace.reserve_workers(executor.workers);
            for (std::size_t worker = 0; worker < executor.workers; ++worker)
            {
                // Any block of one position (a decode step, or a prefill's last block) runs
                // decode_block; the others attend_block, with up to block_registers of lanes.
                workspace.slot(worker).reserve_decode(plan.block_heads, (keys + w - 1) / w * w, dim);
                if (positions > 1)
                    workspace.slot(worker).reserve(block_registers<Arch>() * w, dim);
            }
        }

        /**
         * Runs `attend(kv, plan, block, scratch)` for every block of every KV group, as
         * tasks on `executor`, and returns the summed work.
         */
        template <class Arch, class Attend>
        attention_work run_blocks(std::size_t kv_heads, std::size_t group, std::size_t positions, parallel_executor const& executor,
                           attention_workspace& workspace, Attend&& attend)
        {
            group_plan<Arch> const plan{group, positions};
            std::size_t const blocks = plan.blocks();
            workspace.reserve_workers(executor.workers);
            workspace.take_work();
            executor(kv_heads * blocks, [&](std::size_t task, std::size_t worker) {
                attend(task / blocks, plan, task % blocks, workspace.slot(worker));
            });
            return workspace.take_work();
        }
    }  // namespace kernels

    namespace detail
    {
        /// How a layer's decode step (dense or hybrid) splits into tasks: ranges of
        /// `per_task` KV heads, position-major inside each, a range per worker.
        struct decode_split
        {
            std::size_t per_task, tasks;

            decode_split(std::size_t kv_heads, std::size_t group, std::size_t workers) noexcept
                : per_task(std::max<std::size_t>(1, std::min(block_scratch::max_decode_heads / group, (kv_heads + workers - 1) / workers))),
                  tasks((kv_heads + per_task - 1) / per_task)
            {
            }
        };

        /// dense_attention for K/V elements T (float or float16).
        template <class Arch, class T>
        void dense_attention_of(tensor_view<const float> q, tensor_view<const T> k, tensor_view<const T> v, tensor_view<float> out, float scale,
                                attention_workspace& workspace, attention_work* work, parallel_executor const& executor)
        {
            check_attention_shapes_of<T>(q, k, v, out);
            DELTAATTN_REQUIRE(std::isfinite(scale), "scale", "must be finite" + got(scale));
            std::size_t const group = q.heads / k.heads, first = k.positions - q.positions;
            float const alpha = effective_scale(scale, q.dim);
            if (q.positions == 1 && k.positions > 0 && group <= block_scratch::max_decode_heads)
            {
                // A decode step: position-major over ranges of KV heads, a range per worker
                // (kernels::dense_decode_heads).
                decode_split const split(k.heads, group, executor.workers);
                workspace.reserve_workers(executor.workers);
                workspace.take_work();
                executor(split.tasks, [&](std::size_t task, std::size_t worker) {
                    block_scratch& ws = workspace.slot(worker);
                    kernels::dense_decode_heads<Arch, T>(k, v, q, out, task * split.per_task, std::min(k.heads, (task + 1) * split.per_task), alpha, ws,
                                                         ws.work);
                });
                if (work)
                    *work += workspace.take_work();
                return;
            }
            attention_work const done = kernels::run_blocks<Arch>(
                k.heads, group, q.positions, executor, workspace, [&](std::size_t kv, auto const& plan, std::size_t block, block_scratch& ws) {
                    plan.attend(block, kernels::dense_rows<T>{k.head(kv)}, kernels::group_heads(q, kv, group), kernels::group_heads(out, kv, group),
                                first, kernels::dense_rows<T>{v.head(kv)}, alpha, kernels::hybrid_split{1, 0}, ws);
                });
            if (work)
                *work += done;
        }
    }  // namespace detail

    /**
     * Dense causal attention: `out = softmax(scale * q k^T) v`, causal.
     *
     * q and out: n_q positions x Hq heads x d; k and v: n_kv x Hkv x d, n_q <= n_kv,
     * `Hq % Hkv == 0`. Query row r sits at position `n_kv - n_q + r` (so n_q == n_kv is
     * a prefill, n_q == 1 a decode step) and sees keys 0..position. Query head h reads
     * KV head `h / (Hq / Hkv)`. scale 0 means 1/sqrt(d). `executor` spreads (KV head,
     * query block) tasks over threads; the result does not depend on it. Throws
     * std::invalid_argument naming the argument on bad shapes; nothing is written then.
     */
    template <class Arch = default_arch>
    void dense_attention(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const float> v, tensor_view<float> out,
                         float scale, attention_workspace& workspace, attention_work* work = nullptr, parallel_executor const& executor = {})
    {
        detail::dense_attention_of<Arch, float>(q, k, v, out, scale, workspace, work, executor);
    }

    /**
     * As above, on an fp16 K/V cache (`float16`: binary16, e.g. an engine's `ggml_fp16_t`
     * cache viewed in place): rows are widened to fp32 as they are loaded and all
     * arithmetic is fp32, so the result is dense attention of exactly those binary16
     * values (the oracle on the widened rows, to fp32 rounding).
     */
    template <class Arch = default_arch>
    void dense_attention(tensor_view<const float> q, tensor_view<const float16> k, tensor_view<const float16> v, tensor_view<float> out,
                         float scale, attention_workspace& workspace, attention_work* work = nullptr, parallel_executor const& executor = {})
    {
        detail::dense_attention_of<Arch, float16>(q, k, v, out, scale, workspace, work, executor);
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
                      float scale, attention_workspace& workspace, parallel_executor const& executor = {})
    {
        DELTAATTN_REQUIRE(q.positions == 1, "q", "a decode step takes one position" + detail::got(q.positions));
        dense_attention<Arch>(q, k, v, out, scale, workspace, nullptr, executor);
    }

    /// One decode step on an fp16 K/V cache.
    template <class Arch = default_arch>
    void dense_decode(tensor_view<const float> q, tensor_view<const float16> k, tensor_view<const float16> v, tensor_view<float> out,
                      float scale, attention_workspace& workspace, parallel_executor const& executor = {})
    {
        DELTAATTN_REQUIRE(q.positions == 1, "q", "a decode step takes one position" + detail::got(q.positions));
        dense_attention<Arch>(q, k, v, out, scale, workspace, nullptr, executor);
    }
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_DENSE_ATTENTION_HPP
