/**
 * @file kernels/hybrid_attention.hpp
 * Hybrid delta attention (SPEC.md §3): prefill and decode on delta K caches.
 *
 * Three levels, from the engine's inner loop outwards:
 *  - `hybrid_prefill` / `hybrid_decode`: one KV head and its `delta_key_cache`;
 *  - `layer_key_cache`: the caches of every KV head of a layer, GQA included;
 *  - `hybrid_attention`: a whole sequence in one call (tools, tests).
 * Values are read from the caller's view (they stay exact, as in the paper).
 */
#ifndef DELTAATTN_KERNELS_HYBRID_ATTENTION_HPP
#define DELTAATTN_KERNELS_HYBRID_ATTENTION_HPP

#include "../delta/delta_key_cache.hpp"
#include "../detail/check_shapes.hpp"
#include "dense_attention.hpp"
#include "stored_chunk.hpp"

#include <algorithm>
#include <type_traits>
#include <vector>

namespace deltaattn
{
    namespace detail
    {
        /// The checks of a whole-sequence call: shapes, options, policies, finiteness. K and
        /// V as float or float16.
        template <class T, class... Policies>
        void check_sequence(tensor_view<const float> q, tensor_view<const T> k, tensor_view<const T> v, tensor_view<float> out,
                            hybrid_options const& options, Policies const&... policies)
        {
            check_attention_shapes_of<T>(q, k, v, out);
            validate_options(options);
            (validate_policy(policies, q.dim), ...);
            if (options.check_finite)
            {
                require_finite_tensor(q, "q");
                require_finite_tensor(k, "k");
                require_finite_tensor(v, "v");
            }
        }

        /// A float copy of a binary16 tensor, token-major (exact: every half is a float).
        inline std::vector<float> widened(tensor_view<const float16> t)
        {
            std::vector<float> copy(t.positions * t.heads * t.dim);
            for (std::size_t r = 0; r < t.positions; ++r)
                for (std::size_t h = 0; h < t.heads; ++h)
                    std::transform(t.at(r, h), t.at(r, h) + t.dim, copy.begin() + static_cast<std::ptrdiff_t>((r * t.heads + h) * t.dim),
                                   [](float16 x) { return to_float(x); });
            return copy;
        }

        inline tensor_view<const float> token_major_like(std::vector<float> const& copy, tensor_view<const float16> t) noexcept
        {
            return make_token_major(copy.data(), t.positions, t.heads, t.dim);
        }

        template <class T>
        void check_chunk(basic_delta_cache<T> const& cache, matrix_view<const float> keys, tensor_view<const float> q, matrix_view<const T> values,
                         tensor_view<float> out)
        {
            cache.check_rows(keys);
            DELTAATTN_REQUIRE(q.dim == cache.dim(), "q", "has head dim " + std::to_string(q.dim) + ", the cache " + std::to_string(cache.dim()));
            DELTAATTN_REQUIRE(q.positions == keys.rows, "q", "has " + std::to_string(q.positions) + " positions, k has " + std::to_string(keys.rows));
            DELTAATTN_REQUIRE(q.heads >= 1, "heads", "q needs at least one head");
            DELTAATTN_REQUIRE(out.positions == q.positions && out.heads == q.heads && out.dim == q.dim, "out", "must have q's shape");
            DELTAATTN_REQUIRE(values.cols == cache.dim(), "v", "has head dim " + std::to_string(values.cols) + ", the cache " + std::to_string(cache.dim()));
            DELTAATTN_REQUIRE(values.rows >= cache.size() + keys.rows, "v",
                    "has " + std::to_string(values.rows) + " positions, the cache will hold " + std::to_string(cache.size() + keys.rows));
            if (cache.options().check_finite)
            {
                require_finite_tensor(q, "q");
                if constexpr (std::is_same<T, float>::value)  // (binary16 values were checked when stored)
                    require_finite_rows(values.slice_rows(0, cache.size() + keys.rows), "v");
            }
        }

        /// Attention of queries at positions [first, first + q.positions) on `cache`, whose
        /// rows from `chunk_first` on are read from `chunk` (not yet in the ring).
        template <class Arch, class T, class Values>
        attention_work attend_chunk(basic_delta_cache<T> const& cache, matrix_view<const T> chunk, std::size_t chunk_first, std::size_t first,
                                    tensor_view<const float> q, Values const& values, tensor_view<float> out, attention_workspace& ws,
                                    parallel_executor const& executor = {})
        {
            hybrid_options const& o = cache.options();
            float const alpha = effective_scale(o.scale, cache.dim());
            return kernels::run_blocks<Arch>(1, q.heads, q.positions, executor, ws,
                                             [&](std::size_t, auto const& plan, std::size_t block, block_scratch& scratch) {
                                                 plan.attend(block, kernels::cached_rows<T>{&cache, chunk, chunk_first}, q, out, first, values, alpha,
                                                             kernels::hybrid_split{o.sinks, o.window}, scratch);
                                             });
        }

        /// hybrid_prefill once its arguments are checked and the value room reserved.
        template <class Arch>
        attention_work prefill_unchecked(delta_key_cache& cache, matrix_view<const float> keys, tensor_view<const float> q,
                                  matrix_view<const float> values, tensor_view<float> out, attention_workspace& ws)
        {
            std::size_t const first = cache.size();
            // Deltas first (the delta region of late queries reaches into the chunk), the
            // ring last (early queries still need the previous chunk's window).
            for (std::size_t r = 0; r < keys.rows; ++r)
                cache.append_delta(keys.row(r));
            attention_work const work = attend_chunk<Arch>(cache, keys, first, first, q, kernels::dense_rows<float>{values}, out, ws);
            for (std::size_t r = 0; r < keys.rows; ++r)
                cache.push_exact(keys.row(r), first + r);
            return work;
        }
        /// The checks every per-head decode step makes of its cache, query and output.
        template <class T>
        void check_step(basic_delta_cache<T> const& cache, matrix_view<const float> q, matrix_view<float> out)
        {
            DELTAATTN_REQUIRE(cache.size() >= 1, "cache", "is empty: append the step's key before attending");
            DELTAATTN_REQUIRE(q.cols == cache.dim(), "q", "has head dim " + std::to_string(q.cols) + ", the cache " + std::to_string(cache.dim()));
            DELTAATTN_REQUIRE(q.rows >= 1, "q", "needs at least one head");
            DELTAATTN_REQUIRE(out.rows == q.rows && out.cols == q.cols, "out", "must have q's shape");
            if (cache.options().check_finite)
                require_finite_rows(q, "q");
        }

        /// Attention of the cache's last position for the heads of `q`, counted as decode.
        template <class Arch, class T, class Values>
        void decode_step(basic_delta_cache<T> const& cache, matrix_view<const float> q, Values const& values, matrix_view<float> out,
                         attention_workspace& workspace, attention_stats* stats)
        {
            std::size_t const last = cache.size() - 1;
            tensor_view<const float> q_step{q.data, 1, q.rows, q.cols, 0, q.row_stride};
            tensor_view<float> out_step{out.data, 1, out.rows, out.cols, 0, out.row_stride};
            attention_work const work = attend_chunk<Arch>(cache, matrix_view<const T>{}, last + 1, last, q_step, values, out_step, workspace);
            if (stats)
                stats->decode += work;
        }

        /// Sizes `workspace` for decode_layer_unchecked, so the step itself allocates nothing.
        template <class Arch>
        void reserve_layer_decode(attention_workspace& workspace, parallel_executor const& executor, std::size_t kv_heads, std::size_t group,
                                  std::size_t keys, std::size_t dim)
        {
            constexpr std::size_t w = arch_traits<Arch>::width;
            workspace.reserve_workers(executor.workers);
            std::size_t const heads = decode_split(kv_heads, group, executor.workers).per_task * group;
            for (std::size_t worker = 0; worker < executor.workers; ++worker)
                workspace.slot(worker).reserve_decode(heads, (keys + w - 1) / w * w, dim);
        }

        /// A decode step of a layer whose key caches (`caches[0..kv_heads)`) already hold
        /// the step's key: tasks over ranges of KV heads (kernels::hybrid_decode_heads).
        template <class Arch, class T>
        attention_work decode_layer_unchecked(basic_delta_cache<T> const* caches, std::size_t kv_heads, tensor_view<const float> q,
                                              tensor_view<const T> v, tensor_view<float> out, attention_workspace& workspace,
                                              parallel_executor const& executor)
        {
            hybrid_options const& o = caches[0].options();
            float const alpha = effective_scale(o.scale, caches[0].dim());
            decode_split const split(kv_heads, q.heads / kv_heads, executor.workers);
            workspace.reserve_workers(executor.workers);
            workspace.take_work();
            executor(split.tasks, [&](std::size_t task, std::size_t worker) {
                block_scratch& ws = workspace.slot(worker);
                kernels::hybrid_decode_heads<Arch, T>(caches, v, q, out, task * split.per_task, std::min(kv_heads, (task + 1) * split.per_task), alpha,
                                                      kernels::hybrid_split{o.sinks, o.window}, ws, ws.work);
            });
            return workspace.take_work();
        }
    }  // namespace detail

    /**
     * Prefill of a chunk for one KV head: appends `keys` (the chunk's n_c positions) to
     * `cache`, then computes hybrid attention for the chunk's queries.
     * q and out: n_c positions x g query heads x d. `values` holds a row for every
     * position up to the end of the chunk. Chunks may follow earlier prefills or decode
     * steps. All arguments are checked first: on a throw nothing is written.
     */
    template <class Arch = default_arch>
    void hybrid_prefill(delta_key_cache& cache, matrix_view<const float> keys, tensor_view<const float> q, matrix_view<const float> values,
                        tensor_view<float> out, attention_workspace& workspace, attention_stats* stats = nullptr)
    {
        detail::check_chunk(cache, keys, q, values, out);
        kernels::prepare_workspace<Arch>(workspace, {}, q.heads, q.positions, cache.size() + keys.rows, cache.dim());
        cache.reserve_values(keys.rows);  // the last step that may throw
        attention_work work = detail::prefill_unchecked<Arch>(cache, keys, q, values, out, workspace);
        if (stats)
            stats->prefill += work;
    }

    /**
     * One decode step for one KV head: attention of the last position appended to
     * `cache` (append its key first). q and out: g query heads x d. `values` are the
     * head's dense values, of the cache's element type (float, or float16 for a
     * `delta_key_cache_f16`).
     */
    template <class Arch = default_arch, class T>
    void hybrid_decode(basic_delta_cache<T> const& cache, matrix_view<const float> q, matrix_view<const typename basic_delta_cache<T>::element_type> values,
                       matrix_view<float> out, attention_workspace& workspace, attention_stats* stats = nullptr)
    {
        detail::check_step(cache, q, out);
        DELTAATTN_REQUIRE(values.cols == cache.dim(), "v", "has head dim " + std::to_string(values.cols) + ", the cache " + std::to_string(cache.dim()));
        DELTAATTN_REQUIRE(values.rows >= cache.size(), "v", "has " + std::to_string(values.rows) + " positions, the cache " + std::to_string(cache.size()));
        if constexpr (std::is_same<T, float>::value)
            if (cache.options().check_finite)
                detail::require_finite_rows(values.slice_rows(0, cache.size()), "v");
        detail::decode_step<Arch>(cache, q, kernels::dense_rows<T>{values}, out, workspace, stats);
    }

    /**
     * One decode step for one KV head with delta values (SPEC.md §6.1): attention of the
     * last position appended to both `keys` and `values` (same options, same size).
     * q and out: g query heads x d. Both caches have the same element type (float or
     * float16).
     */
    template <class Arch = default_arch, class T>
    void hybrid_decode(basic_delta_cache<T> const& keys, basic_delta_cache<T> const& values, matrix_view<const float> q, matrix_view<float> out,
                       attention_workspace& workspace, attention_stats* stats = nullptr)
    {
        detail::check_step(keys, q, out);
        DELTAATTN_REQUIRE(values.dim() == keys.dim() && values.size() == keys.size(), "values",
                        "the value cache must match the key cache (dim " + std::to_string(values.dim()) + ", size " + std::to_string(values.size()) +
                            "; keys: dim " + std::to_string(keys.dim()) + ", size " + std::to_string(keys.size()) + ")");
        hybrid_options const &ko = keys.options(), &vo = values.options();
        DELTAATTN_REQUIRE(ko.sinks == vo.sinks && ko.window == vo.window && ko.keyframe_interval == vo.keyframe_interval, "values",
                        "the value cache must have the key cache's sinks, window and keyframe interval");
        detail::decode_step<Arch>(keys, q, kernels::cached_rows<T>{&values, {}, values.size()}, out, workspace, stats);
    }

    /**
     * One decode step for a whole layer with delta keys and dense values: the KV heads'
     * key caches `caches` (one per KV head, same options, the step's key appended to
     * each), q and out 1 x Hq x d, `v` the layer's dense V cache (n x Hkv x d, element
     * T, at least as many positions as the caches). Values are read position-major over
     * the KV heads, as the dense step reads them; `executor` spreads ranges of KV heads
     * over threads, with outputs that do not depend on it.
     */
    template <class Arch = default_arch, class T>
    void hybrid_decode(std::vector<basic_delta_cache<T>> const& caches, tensor_view<const float> q, tensor_view<const T> v, tensor_view<float> out,
                       attention_workspace& workspace, attention_stats* stats = nullptr, parallel_executor const& executor = {})
    {
        DELTAATTN_REQUIRE(!caches.empty(), "caches", "needs one cache per KV head");
        basic_delta_cache<T> const& first = caches.front();
        for (auto const& cache : caches)
        {
            DELTAATTN_REQUIRE(cache.size() == first.size() && cache.dim() == first.dim(), "caches", "must all hold the same positions of the same dim");
            hybrid_options const &a = cache.options(), &b = first.options();
            DELTAATTN_REQUIRE(a.sinks == b.sinks && a.window == b.window && a.scale == b.scale, "caches", "must all have the same sinks, window and scale");
        }
        DELTAATTN_REQUIRE(q.positions == 1, "q", "a decode step takes one position" + detail::got(q.positions));
        DELTAATTN_REQUIRE(q.heads % caches.size() == 0 && q.heads / caches.size() <= block_scratch::max_decode_heads, "heads",
                          "query heads (" + std::to_string(q.heads) + ") must be a multiple of the caches (" + std::to_string(caches.size()) +
                              "), at most " + std::to_string(block_scratch::max_decode_heads) + " per cache");
        DELTAATTN_REQUIRE(v.heads == caches.size(), "v", "has " + std::to_string(v.heads) + " heads, one per cache expected (" + std::to_string(caches.size()) + ")");
        DELTAATTN_REQUIRE(v.positions >= first.size(), "v", "has " + std::to_string(v.positions) + " positions, the caches " + std::to_string(first.size()));
        DELTAATTN_REQUIRE(first.size() >= 1, "caches", "are empty: append the step's key before attending");
        DELTAATTN_REQUIRE(q.dim == first.dim(), "q", "has head dim " + std::to_string(q.dim) + ", the caches " + std::to_string(first.dim()));
        DELTAATTN_REQUIRE(v.dim == first.dim(), "v", "has head dim " + std::to_string(v.dim) + ", the caches " + std::to_string(first.dim()));
        DELTAATTN_REQUIRE(out.positions == 1 && out.heads == q.heads && out.dim == q.dim, "out", "must have q's shape");
        if (first.options().check_finite)
        {
            detail::require_finite_tensor(q, "q");
            if constexpr (std::is_same<T, float>::value)
                detail::require_finite_tensor(v.slice_positions(0, first.size()), "v");
        }
        attention_work const work = detail::decode_layer_unchecked<Arch>(caches.data(), caches.size(), q, v, out, workspace, executor);
        if (stats)
            stats->decode += work;
    }

    /**
     * The delta K caches of one layer: one per KV head, all with the same options and
     * policy. Prefill and decode take whole-layer tensors (positions x heads x d): q, k
     * and out in fp32, v as the engine's V cache holds it, of the element T the keys are
     * stored as (`layer_key_cache_f16`: binary16 keys, and a binary16 V cache viewed in
     * place).
     */
    template <class T>
    class basic_layer_key_cache
    {
    public:
        using element_type = T;

        basic_layer_key_cache(std::size_t kv_heads, std::size_t dim, std::size_t capacity, hybrid_options const& options,
                              delta_policy const& policy)
        {
            DELTAATTN_REQUIRE(kv_heads >= 1, "heads", "kv_heads must be >= 1" + detail::got(kv_heads));
            m_heads.reserve(kv_heads);
            for (std::size_t h = 0; h < kv_heads; ++h)
                m_heads.emplace_back(dim, capacity, options, policy);
        }

        std::size_t kv_heads() const noexcept { return m_heads.size(); }
        std::size_t dim() const noexcept { return m_heads.front().dim(); }
        std::size_t size() const noexcept { return m_heads.front().size(); }
        std::size_t capacity() const noexcept { return m_heads.front().capacity(); }
        basic_delta_cache<T> const& head(std::size_t h) const noexcept { return m_heads[h]; }

        /**
         * Appends the chunk's keys `k` (n_c x Hkv x d) and computes hybrid attention for
         * its queries `q` (n_c x Hq x d) into `out`. `v` holds every position so far,
         * the chunk's included (size() + n_c rows).
         */
        template <class Arch = default_arch>
        void prefill(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const T> v, tensor_view<float> out,
                     attention_stats* stats = nullptr)
        {
            check_layer(q, k, v, out);
            std::size_t const group = q.heads / k.heads;
            for (std::size_t h = 0; h < m_heads.size(); ++h)
                detail::check_chunk(m_heads[h], k.head(h), kernels::group_heads(q, h, group), v.head(h), kernels::group_heads(out, h, group));
            kernels::prepare_workspace<Arch>(m_workspace, m_executor, q.heads / k.heads, q.positions, size() + k.positions, dim());
            m_staged_keys.stage(k);
            for (auto& cache : m_heads)
                cache.reserve_values(k.positions);  // the last step that may throw

            std::size_t const first = size(), heads = m_heads.size();
            // Deltas first (late queries' delta regions reach into the chunk), one task per
            // head; attention by (head, query block); the window rings last.
            m_executor(heads, [&](std::size_t h, std::size_t) {
                for (std::size_t r = 0; r < k.positions; ++r)
                    m_heads[h].append_delta(k.at(r, h));
            });
            hybrid_options const& o = m_heads.front().options();
            float const alpha = effective_scale(o.scale, dim());
            attention_work const work = kernels::run_blocks<Arch>(
                heads, group, q.positions, m_executor, m_workspace,
                [&](std::size_t h, auto const& plan, std::size_t block, block_scratch& scratch) {
                    plan.attend(block, kernels::cached_rows<T>{&m_heads[h], m_staged_keys.head(h), first}, kernels::group_heads(q, h, group),
                                kernels::group_heads(out, h, group), first, kernels::dense_rows<T>{v.head(h)}, alpha, kernels::hybrid_split{o.sinks, o.window}, scratch);
                });
            for (std::size_t h = 0; h < heads; ++h)
                for (std::size_t r = 0; r < k.positions; ++r)
                    m_heads[h].push_exact(m_staged_keys.head(h).row(r), first + r);
            m_staged_keys.finish();
            if (stats)
            {
                stats->prefill += work;
                fill_cache_stats(*stats);
            }
        }

        /// Spreads later calls over threads (per head, per query block); results do not change.
        void set_executor(parallel_executor executor) { m_executor = std::move(executor); }

        /// Appends keys (n x Hkv x d) with no query to attend (e.g. a cached prompt prefix).
        void append(tensor_view<const float> k)
        {
            DELTAATTN_REQUIRE(k.heads == m_heads.size(), "k", "has " + std::to_string(k.heads) + " heads, the cache " + std::to_string(m_heads.size()));
            for (std::size_t h = 0; h < m_heads.size(); ++h)
                m_heads[h].check_rows(k.head(h));
            for (auto& cache : m_heads)
                cache.reserve_values(k.positions);
            for (std::size_t h = 0; h < m_heads.size(); ++h)
                for (std::size_t r = 0; r < k.positions; ++r)
                    m_heads[h].append(k.at(r, h));
        }

        /// One decode step: `q`, `k` and `out` hold one position; counted as decode work.
        template <class Arch = default_arch>
        void decode(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const T> v, tensor_view<float> out,
                    attention_stats* stats = nullptr)
        {
            DELTAATTN_REQUIRE(q.positions == 1, "q", "a decode step takes one position" + detail::got(q.positions));
            check_layer(q, k, v, out);
            std::size_t const group = q.heads / k.heads;
            if (group > block_scratch::max_decode_heads)  // (beyond the step kernel's heads: as a one-position prefill)
            {
                attention_stats local;
                prefill<Arch>(q, k, v, out, &local);
                if (stats)
                {
                    stats->decode += local.prefill + local.decode;
                    fill_cache_stats(*stats);
                }
                return;
            }
            for (std::size_t h = 0; h < m_heads.size(); ++h)
                detail::check_chunk(m_heads[h], k.head(h), kernels::group_heads(q, h, group), v.head(h), kernels::group_heads(out, h, group));
            detail::reserve_layer_decode<Arch>(m_workspace, m_executor, m_heads.size(), group, size() + 1, dim());
            for (auto& cache : m_heads)
                cache.reserve_values(1);  // the last step that may throw
            for (std::size_t h = 0; h < m_heads.size(); ++h)
                m_heads[h].append(k.at(0, h));
            attention_work const work = detail::decode_layer_unchecked<Arch>(m_heads.data(), m_heads.size(), q, v, out, m_workspace, m_executor);
            if (stats)
            {
                stats->decode += work;
                fill_cache_stats(*stats);
            }
        }

        /// Delta construction statistics summed over the heads.
        delta_stats stats() const noexcept
        {
            delta_stats s;
            for (auto const& cache : m_heads)
                s += cache.stats();
            return s;
        }

        /// Bytes held by all heads.
        std::size_t bytes() const noexcept
        {
            std::size_t b = 0;
            for (auto const& cache : m_heads)
                b += cache.bytes();
            return b;
        }

    private:
        void check_layer(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const T> v, tensor_view<float> out) const
        {
            DELTAATTN_REQUIRE(k.heads == m_heads.size(), "k", "has " + std::to_string(k.heads) + " heads, the cache " + std::to_string(m_heads.size()));
            DELTAATTN_REQUIRE(k.dim == dim(), "k", "has head dim " + std::to_string(k.dim) + ", the cache " + std::to_string(dim()));
            DELTAATTN_REQUIRE(q.heads % k.heads == 0 && q.heads >= 1, "heads",
                            "query heads (" + std::to_string(q.heads) + ") must be a multiple of kv heads (" + std::to_string(k.heads) + ")");
            DELTAATTN_REQUIRE(v.heads == k.heads, "v", "has " + std::to_string(v.heads) + " heads, k has " + std::to_string(k.heads));
            DELTAATTN_REQUIRE(out.heads == q.heads, "out", "must have q's shape");
        }

        void fill_cache_stats(attention_stats& s) const noexcept
        {
            s.keys = stats();
            s.kcache_bytes = bytes();
            s.kcache_dense_bytes = sizeof(T) * size() * dim() * m_heads.size();
        }

        std::vector<basic_delta_cache<T>> m_heads;
        kernels::stored_chunk<T> m_staged_keys;
        attention_workspace m_workspace;
        parallel_executor m_executor;
    };

    /// The delta K caches of one layer, fp32 keys and values.
    using layer_key_cache = basic_layer_key_cache<float>;
    /// The delta K caches of one layer in binary16, over a binary16 V cache (fp32 compute).
    using layer_key_cache_f16 = basic_layer_key_cache<float16>;

    namespace detail
    {
        /// hybrid_attention after its checks: keys as floats, stored as T; V read as T.
        template <class Arch, class T>
        void hybrid_attention_of(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const T> v, tensor_view<float> out,
                                 hybrid_options const& options, delta_policy const& policy, attention_stats* stats, parallel_executor const& executor)
        {
            std::size_t const skipped = k.positions - q.positions;  // keys before the first query
            basic_layer_key_cache<T> cache(k.heads, k.dim, k.positions, options, policy);
            cache.set_executor(executor);
            cache.append(k.slice_positions(0, skipped));
            attention_stats local;
            cache.template prefill<Arch>(q, k.slice_positions(skipped, q.positions), v, out, &local);
            if (stats)
            {
                stats->prefill += local.prefill;
                stats->keys = local.keys;
                stats->kcache_bytes = local.kcache_bytes;
                stats->kcache_dense_bytes = local.kcache_dense_bytes;
            }
        }
    }  // namespace detail

    /**
     * Hybrid attention of a whole sequence in one call: q and out n_q x Hq x d, k and v
     * n_kv x Hkv x d, query row r at position n_kv - n_q + r (as `dense_attention`).
     * Builds the delta K caches, fills `stats` (prefill work) if given.
     */
    template <class Arch = default_arch>
    void hybrid_attention(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const float> v, tensor_view<float> out,
                          hybrid_options const& options, delta_policy const& policy, attention_stats* stats = nullptr,
                          parallel_executor const& executor = {})
    {
        detail::check_sequence(q, k, v, out, options, policy);
        detail::hybrid_attention_of<Arch, float>(q, k, v, out, options, policy, stats, executor);
    }

    /**
     * As above, on binary16 K and V (an engine's fp16 cache, viewed in place): keys stored
     * as `layer_key_cache_f16` stores them, V read as it is. The keys are widened into one
     * float copy first (n_kv x Hkv x d floats), since a cache builds its delta rows from
     * float keys; widening is exact, so this is hybrid attention of exactly those halves
     * (the oracle: `reference::hybrid_attention<float16>` on the widened K and V).
     */
    template <class Arch = default_arch>
    void hybrid_attention(tensor_view<const float> q, tensor_view<const float16> k, tensor_view<const float16> v, tensor_view<float> out,
                          hybrid_options const& options, delta_policy const& policy, attention_stats* stats = nullptr,
                          parallel_executor const& executor = {})
    {
        detail::check_sequence(q, k, v, out, options, policy);
        std::vector<float> const keys = detail::widened(k);
        detail::hybrid_attention_of<Arch, float16>(q, detail::token_major_like(keys, k), v, out, options, policy, stats, executor);
    }
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_HYBRID_ATTENTION_HPP
