/**
 * @file kernels/layer_kv_cache.hpp
 * The delta K *and* V caches of one layer (SPEC.md §6.1, §7): keys and values both kept
 * as sinks + a window ring + compressed delta rows, so a decode step reads neither
 * dense keys nor dense values older than the window.
 *
 * Unlike `layer_key_cache`, whose values stay in the caller's dense V cache, this cache
 * owns the values: prefill and decode take the chunk's (or the step's) values only.
 *
 * `layer_kv_cache_f16` stores both in binary16 (delta/delta_key_cache.hpp says how
 * keys and deltas are rounded); inputs, queries, outputs and arithmetic stay fp32.
 */
#ifndef DELTAATTN_KERNELS_LAYER_KV_CACHE_HPP
#define DELTAATTN_KERNELS_LAYER_KV_CACHE_HPP

#include "../delta/delta_key_cache.hpp"
#include "../detail/check_shapes.hpp"
#include "dense_attention.hpp"
#include "hybrid_attention.hpp"
#include "stored_chunk.hpp"

#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

namespace deltaattn
{
    template <class T>
    class basic_layer_kv_cache
    {
    public:
        using element_type = T;

        /**
         * Caches for `kv_heads` heads of `dim` channels, up to `capacity` positions.
         * Keys are built with `key_policy`, values with `value_policy` (SPEC.md §6.1:
         * with a fixed θ_v each output channel moves by at most θ_v).
         * Throws `std::invalid_argument` naming the argument on bad options or policies.
         */
        basic_layer_kv_cache(std::size_t kv_heads, std::size_t dim, std::size_t capacity, hybrid_options const& options,
                             delta_policy const& key_policy, delta_policy const& value_policy)
        {
            DELTAATTN_REQUIRE(kv_heads >= 1, "heads", "kv_heads must be >= 1" + detail::got(kv_heads));
            m_keys.reserve(kv_heads);
            m_values.reserve(kv_heads);
            for (std::size_t h = 0; h < kv_heads; ++h)
            {
                m_keys.emplace_back(dim, capacity, options, key_policy, "k");
                m_values.emplace_back(dim, capacity, options, value_policy, "v");
            }
        }

        std::size_t kv_heads() const noexcept { return m_keys.size(); }
        std::size_t dim() const noexcept { return m_keys.front().dim(); }
        std::size_t size() const noexcept { return m_keys.front().size(); }
        std::size_t capacity() const noexcept { return m_keys.front().capacity(); }
        basic_delta_cache<T> const& keys(std::size_t h) const noexcept { return m_keys[h]; }
        basic_delta_cache<T> const& values(std::size_t h) const noexcept { return m_values[h]; }

        /// Spreads later calls over threads (per head, per query block); results do not change.
        void set_executor(parallel_executor executor) { m_executor = std::move(executor); }

        /**
         * Appends the chunk's keys and values `k`, `v` (n_c x Hkv x d) and computes hybrid
         * attention for its queries `q` (n_c x Hq x d) into `out`. All arguments are
         * checked first: on a throw nothing is written and the caches are unchanged.
         */
        template <class Arch = default_arch>
        void prefill(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const float> v, tensor_view<float> out,
                     attention_stats* stats = nullptr)
        {
            attention_work const work = attend_chunk<Arch>(q, k, v, out);
            if (stats)
            {
                stats->prefill += work;
                fill_cache_stats(*stats);
            }
        }

        /// One decode step: `q`, `k`, `v` and `out` hold one position; counted as decode work.
        template <class Arch = default_arch>
        void decode(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const float> v, tensor_view<float> out,
                    attention_stats* stats = nullptr)
        {
            DELTAATTN_REQUIRE(q.positions == 1, "q", "a decode step takes one position" + detail::got(q.positions));
            attention_work const work = attend_chunk<Arch>(q, k, v, out);
            if (stats)
            {
                stats->decode += work;
                fill_cache_stats(*stats);
            }
        }

        /// Appends keys and values (n x Hkv x d) with no query to attend (e.g. a cached
        /// prompt prefix). All or nothing.
        void append(tensor_view<const float> k, tensor_view<const float> v)
        {
            check_heads(k, v);
            std::size_t const heads = kv_heads();
            for (std::size_t h = 0; h < heads; ++h)
            {
                m_keys[h].reserve_values(k.positions);
                m_values[h].reserve_values(v.positions);
            }
            for (std::size_t h = 0; h < heads; ++h)
                for (std::size_t r = 0; r < k.positions; ++r)
                {
                    m_keys[h].append(k.at(r, h));
                    m_values[h].append(v.at(r, h));
                }
        }

        /// Bytes held by every head's K and V caches.
        std::size_t bytes() const noexcept { return key_bytes() + value_bytes(); }
        std::size_t key_bytes() const noexcept { return sum_bytes(m_keys); }
        std::size_t value_bytes() const noexcept { return sum_bytes(m_values); }

    private:
        template <class Arch>
        attention_work attend_chunk(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const float> v, tensor_view<float> out)
        {
            check_chunk(q, k, v, out);
            kernels::prepare_workspace<Arch>(m_workspace, m_executor, q.heads / kv_heads(), q.positions, size() + k.positions, dim());
            m_staged_keys.stage(k);
            m_staged_values.stage(v);
            for (std::size_t h = 0; h < kv_heads(); ++h)
            {
                m_keys[h].reserve_values(k.positions);  // the last steps that may throw
                m_values[h].reserve_values(v.positions);
            }

            std::size_t const first = size(), heads = kv_heads(), group = q.heads / heads, d = dim();
            hybrid_options const& o = m_keys.front().options();
            // The far value rows v̂_j any query of a multi-position chunk reads, [sinks,
            // far_end), are rebuilt once per head for every query block (a step reads the
            // delta rows directly).
            std::size_t const last = first + q.positions - 1;
            std::size_t const far_end = q.positions > 1 && o.window <= last && last - o.window >= o.sinks ? last - o.window + 1 : o.sinks;
            std::size_t const far_rows = far_end - o.sinks;
            // One head's far rows at a time, its query blocks spread over the workers: the
            // rows stay in L2 for every block that reads them (all heads' rows at once
            // were 8x the bytes, read from L3 and faulted in fresh every call). Allocated
            // before anything changes, and only for the call: a dense copy of the far
            // context is what this cache exists not to keep.
            scratch_vector<float> far_values(far_rows * d);
            kernels::far_delta_columns far_columns;  // the same rows' deltas, for a sparse p·V

            // Deltas first (late queries' delta regions reach into the chunk), one task per
            // head; then, head by head, its far rows and attention by query block; the
            // window rings last.
            m_executor(heads, [&](std::size_t h, std::size_t) {
                for (std::size_t r = 0; r < k.positions; ++r)
                {
                    m_keys[h].append_delta(k.at(r, h));
                    m_values[h].append_delta(v.at(r, h));
                }
            });
            float const alpha = effective_scale(o.scale, d);
            attention_work work;
            block_scratch& scratch = m_workspace.slot(0);  // the rebuild runs between the tasks
            for (std::size_t h = 0; h < heads; ++h)
            {
                kernels::rebuild_far_values<Arch>(m_values[h], far_end, far_values.data(), scratch.value_reference.data(), scratch.converted.data());
                bool const columns = far_columns.build(m_values[h], far_end, block_scratch::tile);
                work += kernels::run_blocks<Arch>(
                    1, group, q.positions, m_executor, m_workspace, [&](std::size_t, auto const& plan, std::size_t block, block_scratch& worker_scratch) {
                        kernels::cached_rows<T> const values{&m_values[h], m_staged_values.head(h), first, far_rows ? far_values.data() : nullptr,
                                                                       far_rows && columns ? &far_columns : nullptr};
                        plan.attend(block, kernels::cached_rows<T>{&m_keys[h], m_staged_keys.head(h), first}, kernels::group_heads(q, h, group),
                                    kernels::group_heads(out, h, group), first, values, alpha, kernels::hybrid_split{o.sinks, o.window}, worker_scratch);
                    });
            }
            for (std::size_t h = 0; h < heads; ++h)
            {
                matrix_view<const T> const keys = m_staged_keys.head(h), values = m_staged_values.head(h);
                for (std::size_t r = 0; r < k.positions; ++r)
                {
                    m_keys[h].push_exact(keys.row(r), first + r);
                    m_values[h].push_exact(values.row(r), first + r);
                }
            }
            m_staged_keys.finish();
            m_staged_values.finish();
            return work;
        }

        void check_chunk(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const float> v, tensor_view<float> out) const
        {
            check_heads(k, v);
            detail::check_layer_queries(q, k, out, kv_heads(), dim());
            if (m_keys.front().options().check_finite)
                detail::require_finite_tensor(q, "q");
        }

        /// k and v match each other and the cache, and fit (capacity, finiteness if checking).
        void check_heads(tensor_view<const float> k, tensor_view<const float> v) const
        {
            std::size_t const heads = kv_heads();
            detail::check_layer_rows(k, v, heads);
            for (std::size_t h = 0; h < heads; ++h)
            {
                m_keys[h].check_rows(k.head(h));
                m_values[h].check_rows(v.head(h));
            }
        }

        void fill_cache_stats(attention_stats& s) const noexcept
        {
            s.keys = s.values = delta_stats{};
            for (std::size_t h = 0; h < kv_heads(); ++h)
            {
                s.keys += m_keys[h].stats();
                s.values += m_values[h].stats();
            }
            std::uint64_t const dense = sizeof(T) * size() * dim() * kv_heads();
            s.kcache_bytes = key_bytes();
            s.vcache_bytes = value_bytes();
            s.kcache_dense_bytes = s.vcache_dense_bytes = dense;
        }

        static std::size_t sum_bytes(std::vector<basic_delta_cache<T>> const& caches) noexcept
        {
            std::size_t b = 0;
            for (auto const& cache : caches)
                b += cache.bytes();
            return b;
        }

        std::vector<basic_delta_cache<T>> m_keys, m_values;
        kernels::stored_chunk<T> m_staged_keys, m_staged_values;
        attention_workspace m_workspace;
        parallel_executor m_executor;
    };

    /// Delta K and V caches of one layer, fp32 storage.
    using layer_kv_cache = basic_layer_kv_cache<float>;
    /// Delta K and V caches of one layer, binary16 storage (fp32 compute).
    using layer_kv_cache_f16 = basic_layer_kv_cache<float16>;

    namespace detail
    {
        /// The keys-and-values hybrid_attention after its checks: K and V as floats, stored as T.
        template <class Arch, class T>
        void hybrid_attention_of(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const float> v, tensor_view<float> out,
                                 hybrid_options const& options, delta_policy const& key_policy, delta_policy const& value_policy,
                                 attention_stats* stats, parallel_executor const& executor)
        {
            std::size_t const skipped = k.positions - q.positions;  // keys before the first query
            basic_layer_kv_cache<T> cache(k.heads, k.dim, k.positions, options, key_policy, value_policy);
            cache.set_executor(executor);
            attention_stats local;
            cache.append(k.slice_positions(0, skipped), v.slice_positions(0, skipped));
            cache.template prefill<Arch>(q, k.slice_positions(skipped, q.positions), v.slice_positions(skipped, q.positions), out, &local);
            if (stats)
            {
                stats->prefill += local.prefill;
                stats->keys = local.keys;
                stats->values = local.values;
                stats->kcache_bytes = local.kcache_bytes;
                stats->kcache_dense_bytes = local.kcache_dense_bytes;
                stats->vcache_bytes = local.vcache_bytes;
                stats->vcache_dense_bytes = local.vcache_dense_bytes;
            }
        }
    }  // namespace detail

    /**
     * Hybrid attention of a whole sequence with delta keys *and* delta values (SPEC.md
     * §6.1): as `hybrid_attention` (q and out n_q x Hq x d, k and v n_kv x Hkv x d, query
     * row r at position n_kv - n_q + r), values built with `value_policy`.
     */
    template <class Arch = default_arch>
    void hybrid_attention(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const float> v, tensor_view<float> out,
                          hybrid_options const& options, delta_policy const& key_policy, delta_policy const& value_policy,
                          attention_stats* stats = nullptr, parallel_executor const& executor = {})
    {
        detail::check_sequence(q, k, v, out, options, key_policy, value_policy);
        detail::hybrid_attention_of<Arch, float>(q, k, v, out, options, key_policy, value_policy, stats, executor);
    }

    /**
     * As above, on binary16 K and V (an engine's fp16 cache, viewed in place), stored as
     * `layer_kv_cache_f16` stores them. K and V are widened into float copies first
     * (2 x n_kv x Hkv x d floats: a cache builds its delta rows from floats); widening is
     * exact, so the oracle is `reference::hybrid_attention<float16>` on the widened K and V.
     */
    template <class Arch = default_arch>
    void hybrid_attention(tensor_view<const float> q, tensor_view<const float16> k, tensor_view<const float16> v, tensor_view<float> out,
                          hybrid_options const& options, delta_policy const& key_policy, delta_policy const& value_policy,
                          attention_stats* stats = nullptr, parallel_executor const& executor = {})
    {
        detail::check_sequence(q, k, v, out, options, key_policy, value_policy);
        std::vector<float> const keys = detail::widened(k), values = detail::widened(v);
        detail::hybrid_attention_of<Arch, float16>(q, detail::token_major_like(keys, k), detail::token_major_like(values, v), out, options,
                                                   key_policy, value_policy, stats, executor);
    }
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_LAYER_KV_CACHE_HPP
