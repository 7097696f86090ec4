/**
 * @file caches/layer_quant_cache.hpp
 * The K and V caches of one layer with a quantized far context (SPEC.md §10): the sinks
 * and the window exact (fp32, or binary16 for `layer_quant_cache_f16`), every position
 * past the sinks also kept as a code row, so a decode step reads b-bit codes, not dense
 * rows, for everything older than the window.
 *
 * Values are coded with their own codec, or (no value codec) kept exact for every
 * position: "K only".
 *
 * Prefill reconstructs the chunk's far rows k̂ (and v̂) once, densely, and runs the
 * prefill kernel's dense path on them (exact and far rows read alike, each lane taking
 * the row of its class); a decode step (one position) reads the codes
 * directly (kernels/quant_decode.hpp). Both give the spec's output; the oracle is
 * `reference::quant_attention`.
 *
 * Every call is all or nothing: arguments are checked, scratch is reserved and the
 * chunk is coded (rolled back if a row fails) before anything visible changes.
 */
#ifndef DELTAATTN_CACHES_LAYER_QUANT_CACHE_HPP
#define DELTAATTN_CACHES_LAYER_QUANT_CACHE_HPP

#include "../detail/aligned_vector.hpp"
#include "../counters.hpp"
#include "../detail/check_shapes.hpp"
#include "../detail/validate.hpp"
#include "../kernels/dense_attention.hpp"
#include "../kernels/quant_decode.hpp"
#include "../kernels/stored_chunk.hpp"
#include "../parallel.hpp"
#include "quant_cache.hpp"

#include <algorithm>
#include <cstddef>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace deltaattn
{
    namespace kernels
    {
        /// A quantized cache's far rows, reconstructed densely for a prefill: every far
        /// row reads as a keyframe (the prefill kernel's "restart from a dense row").
        struct dense_far_view
        {
            float const* base;
            float const* rows;  // k̂_j for j in [first, ...), dim apart
            std::size_t first, dim;

            float const* base_row() const noexcept { return base; }
            float const* keyframe_row(std::size_t j) const noexcept { return rows + (j - first) * dim; }
            delta_row delta(std::size_t) const noexcept { return {}; }  // never reached: every far row is a keyframe
        };

        /// Keys (or values) of a quantized cache for the prefill kernel: exact rows as
        /// quant_exact_rows, far rows dense.
        template <class T>
        struct reconstructed_rows
        {
            dense_far_view const* cache;
            quant_exact_rows<T> exact;

            static constexpr bool has_deltas = true;
            static constexpr bool dense_far_rows = true;
            T const* exact_row(std::size_t j) const noexcept { return exact.exact_row(j); }
        };

        /// Values of a quantized cache for the prefill kernel: exact rows, and the far
        /// rows v̂_j (j >= first) dense, read like exact ones by the lanes they are far for.
        template <class T>
        struct reconstructed_values
        {
            quant_exact_rows<T> exact;
            float const* far;
            std::size_t first, dim;

            static constexpr bool has_deltas = false;
            static constexpr bool dense_far_rows = true;
            T const* exact_row(std::size_t j) const noexcept { return exact.exact_row(j); }
            float const* far_row(std::size_t j) const noexcept { return far + (j - first) * dim; }
        };
    }  // namespace kernels

    /**
     * One decode step for one KV head: attention of the last position appended to both
     * `keys` and `values` (same dim, size, sinks and window; `values` may be uncoded).
     * q and out: g query heads x d, g <= block_scratch::max_decode_heads.
     */
    template <class Arch = default_arch, class T>
    void quant_decode(basic_quant_cache<T> const& keys, basic_quant_cache<T> const& values, matrix_view<const float> q, matrix_view<float> out,
                      attention_workspace& workspace, attention_stats* stats = nullptr)
    {
        hybrid_options const &ko = keys.options(), &vo = values.options();
        DELTAATTN_REQUIRE(keys.size() >= 1, "keys", "is empty: append the step's key and value before attending");
        DELTAATTN_REQUIRE(values.dim() == keys.dim() && values.size() == keys.size() && ko.sinks == vo.sinks && ko.window == vo.window, "values",
                        "the value cache must match the key cache (dim, size, sinks, window)");
        DELTAATTN_REQUIRE(q.cols == keys.dim(), "q", "has head dim " + std::to_string(q.cols) + ", the cache " + std::to_string(keys.dim()));
        DELTAATTN_REQUIRE(q.rows >= 1 && q.rows <= block_scratch::max_decode_heads, "q",
                        "needs 1 to " + std::to_string(block_scratch::max_decode_heads) + " heads" + detail::got(q.rows));
        DELTAATTN_REQUIRE(out.rows == q.rows && out.cols == q.cols, "out", "must have q's shape");
        if (ko.check_finite)
            detail::require_finite_rows(q, "q");
        if (keys.codec().int8_queries)
            for (std::size_t h = 0; h < q.rows; ++h)
                kernels::require_int8_query_range(q.row(h), q.cols);
        std::size_t const d = keys.dim(), last = keys.size() - 1;
        kernels::prepare_workspace<Arch>(workspace, {}, q.rows, 1, keys.size(), d);
        std::size_t floats = kernels::quant_scratch_floats(q.rows, d, keys.codec());
        if (values.coded())
            floats = std::max(floats, kernels::quant_scratch_floats(q.rows, d, values.codec()));
        block_scratch& ws = workspace.slot(0);
        ws.reserve_quant(floats, kernels::quant_scratch_words(q.rows, d, keys.codec()));
        attention_work work;
        kernels::quant_decode_block<Arch>(keys, values, {}, {}, keys.size(), tensor_view<const float>{q.data, 1, q.rows, q.cols, 0, q.row_stride},
                                          tensor_view<float>{out.data, 1, out.rows, out.cols, 0, out.row_stride}, last,
                                          effective_scale(ko.scale, d), kernels::hybrid_split{ko.sinks, ko.window}, ws, work);
        if (stats)
            stats->decode += work;
    }

    template <class T>
    class basic_layer_quant_cache
    {
    public:
        using element_type = T;

        /**
         * Caches for `kv_heads` heads of `dim` channels, up to `capacity` positions; keys
         * coded with `key_codec`, values with `value_codec` or (nullopt) kept exact.
         * Throws `std::invalid_argument` naming the parameter on bad options or codecs.
         */
        basic_layer_quant_cache(std::size_t kv_heads, std::size_t dim, std::size_t capacity, hybrid_options const& options,
                                quant_codec const& key_codec, std::optional<quant_codec> const& value_codec = std::nullopt)
        {
            DELTAATTN_REQUIRE(kv_heads >= 1, "heads", "kv_heads must be >= 1" + detail::got(kv_heads));
            validate_codec(key_codec, dim, "bits", "scale_group");
            if (value_codec)
            {
                DELTAATTN_REQUIRE(!value_codec->int8_queries, "value_int8_queries", "int8 queries apply to the key codec only");
                validate_codec(*value_codec, dim, "value_bits", "value_scale_group");
            }
            m_keys.reserve(kv_heads);
            m_values.reserve(kv_heads);
            for (std::size_t h = 0; h < kv_heads; ++h)
            {
                m_keys.emplace_back(dim, capacity, options, key_codec, "k");
                m_values.emplace_back(dim, capacity, options, value_codec, "v");
            }
        }

        std::size_t kv_heads() const noexcept { return m_keys.size(); }
        std::size_t dim() const noexcept { return m_keys.front().dim(); }
        std::size_t size() const noexcept { return m_keys.front().size(); }
        std::size_t capacity() const noexcept { return m_keys.front().capacity(); }
        hybrid_options const& options() const noexcept { return m_keys.front().options(); }
        basic_quant_cache<T> const& keys(std::size_t h) const noexcept { return m_keys[h]; }
        basic_quant_cache<T> const& values(std::size_t h) const noexcept { return m_values[h]; }

        /// Spreads later calls over threads (per head, per query block); results do not change.
        void set_executor(parallel_executor executor) { m_executor = std::move(executor); }

        /// Appends the chunk's keys and values (n_c x Hkv x d) and computes attention for
        /// its queries `q` (n_c x Hq x d) into `out`. All or nothing.
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

        /// One decode step: `q`, `k`, `v` and `out` hold one position.
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

        /// Appends keys and values (n x Hkv x d) with no query to attend. All or nothing.
        void append(tensor_view<const float> k, tensor_view<const float> v)
        {
            check_heads(k, v);
            m_staged_keys.stage(k);
            m_staged_values.stage(v);
            std::size_t const first = size();
            code_chunk(k, v);
            push_chunk(k.positions, first);
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
            std::size_t const first = size(), heads = kv_heads(), group = q.heads / heads, d = dim(), n_c = q.positions;
            std::size_t const last = first + n_c - 1;
            hybrid_options const& o = options();
            bool const step = n_c == 1;
            // The far rows any query of the chunk reads: [sinks, far_end).
            std::size_t const far_end = o.window <= last && last - o.window >= o.sinks ? last - o.window + 1 : o.sinks;
            std::size_t const far_rows = far_end - o.sinks;

            // Everything that allocates or throws comes first.
            kernels::prepare_workspace<Arch>(m_workspace, m_executor, group, n_c, first + n_c, d);
            for (std::size_t worker = 0; worker < m_executor.workers; ++worker)
                m_workspace.slot(worker).reserve_quant(quant_scratch_floats(group, d), kernels::quant_scratch_words(group, d, m_keys.front().codec()));
            // The far rows reconstructed for a multi-position chunk live only for the call:
            // a dense fp32 copy of the far context is 8x the bytes of its 4-bit codes, and
            // kept between calls it would outweigh the cache it serves. One head's rows at
            // a time, so they stay in L2 for every query block that reads them.
            scratch_vector<float> far_keys(step ? 0 : far_rows * d);
            scratch_vector<float> far_values(step || !m_values.front().coded() ? 0 : far_rows * d);
            m_staged_keys.stage(k);
            m_staged_values.stage(v);
            code_chunk(k, v);

            hybrid_options const& opt = o;
            float const alpha = effective_scale(opt.scale, d);
            kernels::hybrid_split const split{opt.sinks, opt.window};
            attention_work work;
            if (step)
            {
                m_workspace.take_work();
                m_executor(heads, [&](std::size_t h, std::size_t worker) {
                    block_scratch& ws = m_workspace.slot(worker);
                    kernels::quant_decode_block<Arch>(m_keys[h], m_values[h], m_staged_keys.head(h), m_staged_values.head(h), first,
                                                      kernels::group_heads(q, h, group), kernels::group_heads(out, h, group), last, alpha, split,
                                                      ws, ws.work);
                });
                work = m_workspace.take_work();
            }
            else
            {
                for (std::size_t h = 0; h < heads; ++h)
                {
                    m_keys[h].reconstruct(far_end, far_keys.data());
                    if (m_values[h].coded())
                        m_values[h].reconstruct(far_end, far_values.data());
                    float const* const head_far_values = far_values.empty() ? nullptr : far_values.data();
                    work += kernels::run_blocks<Arch>(1, group, n_c, m_executor, m_workspace,
                                                      [&](std::size_t, auto const& plan, std::size_t block, block_scratch& scratch) {
                                                          attend_block_of(plan, h, block, q, out, first, far_keys.data(), head_far_values, alpha, split,
                                                                          scratch);
                                                      });
                }
            }
            push_chunk(n_c, first);
            return work;
        }

        /// One query block of head h; `far_keys` / `far_values` are the head's reconstructed
        /// far rows (values: unused where they are not coded).
        template <class Plan>
        void attend_block_of(Plan const& plan, std::size_t h, std::size_t block, tensor_view<const float> q, tensor_view<float> out, std::size_t first,
                             float const* far_keys, float const* far_values, float alpha, kernels::hybrid_split split, block_scratch& scratch) const
        {
            std::size_t const group = q.heads / kv_heads(), d = dim();
            kernels::quant_exact_rows<T> const exact_keys{&m_keys[h], m_staged_keys.head(h), first};
            kernels::quant_exact_rows<T> const exact_values{&m_values[h], m_staged_values.head(h), first};
            kernels::dense_far_view const far_key_rows{m_keys[h].base_row(), far_keys, split.sinks, d};
            kernels::reconstructed_rows<T> const keys{&far_key_rows, exact_keys};
            auto const qg = kernels::group_heads(q, h, group);
            auto const og = kernels::group_heads(out, h, group);
            if (m_values[h].coded())
                plan.attend(block, keys, qg, og, first, kernels::reconstructed_values<T>{exact_values, far_values, split.sinks, d}, alpha, split,
                            scratch);
            else
                plan.attend(block, keys, qg, og, first, exact_values, alpha, split, scratch);
        }

        std::size_t quant_scratch_floats(std::size_t group, std::size_t d) const noexcept
        {
            std::size_t floats = kernels::quant_scratch_floats(group, d, m_keys.front().codec());
            if (m_values.front().coded())
                floats = std::max(floats, kernels::quant_scratch_floats(group, d, m_values.front().codec()));
            return floats;
        }

        /// Codes the chunk's rows into every head's caches, or (on a throw) none.
        void code_chunk(tensor_view<const float> k, tensor_view<const float> v)
        {
            std::size_t const heads = kv_heads();
            // A task per head (their caches share nothing). A task's exception (a scale
            // beyond binary16, with checking on) is kept, not thrown across the caller's
            // executor: the lowest head's, so the message does not depend on the threads.
            // It is rethrown once all finished, and every head rolls back. (No allocation:
            // decode steps come through here.)
            std::mutex error_mutex;
            std::exception_ptr error;
            std::size_t error_head = heads;
            for (std::size_t h = 0; h < heads; ++h)
            {
                m_keys[h].checkpoint();
                m_values[h].checkpoint();
            }
            // A decode step's one row per head is too little to wake the workers for.
            parallel_executor const on_caller{};
            parallel_executor const& coder = k.positions > 1 ? m_executor : on_caller;
            try
            {
                coder(heads, [&](std::size_t h, std::size_t) {
                    try
                    {
                        for (std::size_t r = 0; r < k.positions; ++r)
                        {
                            m_keys[h].append_coded(k.at(r, h));
                            m_values[h].append_coded(v.at(r, h));
                        }
                    }
                    catch (...)
                    {
                        std::lock_guard<std::mutex> lock(error_mutex);
                        if (h < error_head)
                        {
                            error = std::current_exception();
                            error_head = h;
                        }
                    }
                });
                if (error)
                    std::rethrow_exception(error);
            }
            catch (...)
            {
                for (std::size_t h = 0; h < heads; ++h)
                {
                    m_keys[h].rollback();
                    m_values[h].rollback();
                }
                throw;
            }
        }

        /// The chunk's exact rows, as stored, into the sinks and rings (after attention:
        /// the chunk's early queries read the rings as they were).
        void push_chunk(std::size_t positions, std::size_t first) noexcept
        {
            for (std::size_t h = 0; h < kv_heads(); ++h)
            {
                matrix_view<const T> const keys = m_staged_keys.head(h), values = m_staged_values.head(h);
                for (std::size_t r = 0; r < positions; ++r)
                {
                    m_keys[h].push_exact(keys.row(r), first + r);
                    m_values[h].push_exact(values.row(r), first + r);
                }
            }
            m_staged_keys.finish();
            m_staged_values.finish();
        }

        void check_chunk(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const float> v, tensor_view<float> out) const
        {
            check_heads(k, v);
            detail::check_layer_queries(q, k, out, kv_heads(), dim());
            std::size_t const group = q.heads / kv_heads();
            DELTAATTN_REQUIRE(group <= block_scratch::max_decode_heads, "heads",
                            "at most " + std::to_string(block_scratch::max_decode_heads) + " query heads per kv head" + detail::got(group));
            DELTAATTN_REQUIRE(q.positions >= 1, "q", "must hold at least one position");
            if (options().check_finite)
                detail::require_finite_tensor(q, "q");
            if (q.positions == 1 && m_keys.front().codec().int8_queries)
                for (std::size_t h = 0; h < q.heads; ++h)
                    kernels::require_int8_query_range(q.at(0, h), q.dim);
        }

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
            std::uint64_t const dense = sizeof(T) * size() * dim() * kv_heads();
            s.kcache_bytes = key_bytes();
            s.vcache_bytes = value_bytes();
            s.kcache_dense_bytes = s.vcache_dense_bytes = dense;
        }

        static std::size_t sum_bytes(std::vector<basic_quant_cache<T>> const& caches) noexcept
        {
            std::size_t b = 0;
            for (auto const& cache : caches)
                b += cache.bytes();
            return b;
        }

        std::vector<basic_quant_cache<T>> m_keys, m_values;
        kernels::stored_chunk<T> m_staged_keys, m_staged_values;
        attention_workspace m_workspace;
        parallel_executor m_executor;
    };

    /// Quantized K and V caches of one layer, exact sets in fp32.
    using layer_quant_cache = basic_layer_quant_cache<float>;
    /// Quantized K and V caches of one layer, exact sets in binary16 (fp32 compute).
    using layer_quant_cache_f16 = basic_layer_quant_cache<float16>;

    /**
     * Hybrid attention of a whole sequence with a quantized far context (SPEC.md §10):
     * q and out n_q x Hq x d, k and v n_kv x Hkv x d, query row r at position
     * n_kv - n_q + r. The oracle is `reference::quant_attention<T>`.
     */
    template <class Arch = default_arch, class T = float>
    void quant_attention(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const float> v, tensor_view<float> out,
                         hybrid_options const& options, quant_codec const& key_codec, std::optional<quant_codec> const& value_codec = std::nullopt,
                         attention_stats* stats = nullptr, parallel_executor const& executor = {})
    {
        detail::check_attention_shapes(q, k, v, out);
        basic_layer_quant_cache<T> cache(k.heads, k.dim, k.positions, options, key_codec, value_codec);
        cache.set_executor(executor);
        std::size_t const skipped = k.positions - q.positions;
        attention_stats local;
        cache.append(k.slice_positions(0, skipped), v.slice_positions(0, skipped));
        if (q.positions > 0)
            cache.template prefill<Arch>(q, k.slice_positions(skipped, q.positions), v.slice_positions(skipped, q.positions), out, &local);
        if (stats)
        {
            stats->prefill += local.prefill;
            stats->kcache_bytes = local.kcache_bytes;
            stats->kcache_dense_bytes = local.kcache_dense_bytes;
            stats->vcache_bytes = local.vcache_bytes;
            stats->vcache_dense_bytes = local.vcache_dense_bytes;
        }
    }
}  // namespace deltaattn

#endif  // DELTAATTN_CACHES_LAYER_QUANT_CACHE_HPP
