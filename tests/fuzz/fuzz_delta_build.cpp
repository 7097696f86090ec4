// libFuzzer harness: delta construction (SPEC.md §2, §5, §7, §8).
//
// From the fuzzer's bytes: a policy with its parameters (now and then one parameter
// made invalid on purpose), options, a head dim of 1..96, up to 64 keys of edge floats
// (±0, subnormals, huge, exact threshold ties; NaN/Inf only with check_finite on), a
// capacity, and a sequence of appends through the three ways in: a row, a chunk, and
// the kernels' delta-first-then-ring path. Properties:
//  - invalid parameters throw std::invalid_argument naming one broken argument, valid
//    ones never throw at construction;
//  - an append past the capacity, or of a non-finite key with checking on, throws
//    std::invalid_argument naming the key and leaves the cache as it was;
//  - the accepted rows are bit-exact with reference::build_delta_rows: update masks
//    (no stray bits past the last channel), packed deltas, the running reference,
//    keyframe and base rows, the per-row threshold, the counters; sinks and the window
//    ring hold the dense keys.
//
// Input layout (see tests/fuzz/make_seed_corpus.py): policy byte, invalid-parameter
// byte, dim, positions, capacity, sinks, window, keyframe interval, check_finite,
// policy parameters, then the keys, then the append schedule.
#include "fuzz_support.hpp"

#include <deltaattn/reference/reference.hpp>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

using namespace deltaattn_fuzz;

namespace
{
    enum class broken
    {
        none,
        dim,
        sinks,
        window,
        scale,
        policy
    };

    struct build_case
    {
        std::size_t dim = 1, positions = 0, capacity = 0;
        hybrid_options options;
        delta_policy policy;
        std::vector<char const*> expected_names;  // the arguments a rejection may name
        std::vector<float> keys;                  // positions x dim

        bool valid() const { return expected_names.empty(); }

        std::string describe() const
        {
            std::ostringstream s;
            s << "dim=" << dim << " positions=" << positions << " capacity=" << capacity << " sinks=" << options.sinks
              << " window=" << options.window << " keyframes=" << options.keyframe_interval << " scale=" << options.scale
              << " check_finite=" << options.check_finite << " " << deltaattn::describe(policy);
            return s.str();
        }
    };

    float threshold_value(byte_reader& in)
    {
        float const table[] = {0.0f, -0.0f, 0.125f, 0.25f, 0.5f, 1.0f, 2.0f, 1e-45f, 1e-3f, 3e38f, 0.1f, 0.3f};
        std::uint8_t const b = in.byte();
        if (b < 200)
            return table[b % (sizeof table / sizeof table[0])];
        return std::fabs(edge_float(in, 0.0f, false));
    }

    float bad_threshold(byte_reader& in)
    {
        float const table[] = {-0.125f, -1e-45f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity()};
        return table[in.byte() % 5];
    }

    /// SPEC.md §8's validity of a policy for `dim` channels, decided here from the
    /// definition (not by asking the library): the argument names a rejection may use.
    void policy_problems(delta_policy const& policy, std::size_t dim, std::vector<char const*>& names)
    {
        auto const non_negative = [](float x) { return std::isfinite(x) && x >= 0.0f; };
        if (auto const* p = std::get_if<fixed_threshold>(&policy))
        {
            if (!non_negative(p->theta))
                names.push_back("theta");
        }
        else if (auto const* r = std::get_if<relative_threshold>(&policy))
        {
            if (!non_negative(r->ratio))
                names.push_back("ratio");
        }
        else if (auto const* t = std::get_if<target_sparsity>(&policy))
        {
            if (!(t->sparsity >= 0.0f && t->sparsity < 1.0f))
                names.push_back("sparsity");
        }
        else
        {
            auto const& b = std::get<block_threshold>(policy);
            if (!(b.group == 4 || b.group == 8 || b.group == 16) || (dim != 0 && dim % b.group != 0))
                names.push_back("group");
            if (!non_negative(b.theta))
                names.push_back("theta");
        }
    }

    build_case decode_case(byte_reader& in)
    {
        build_case c;
        std::uint8_t const kind = in.byte() % 4;
        std::uint8_t const breaker = in.byte();
        // One time in eight, one parameter is made invalid on purpose.
        broken const to_break = breaker % 8 != 0 ? broken::none : static_cast<broken>(1 + (breaker >> 3) % 5);

        c.dim = in.pick(1, 96);
        c.positions = in.pick(0, 64);
        // Mostly room for every key; sometimes less, so that appends hit the capacity.
        c.capacity = in.flag() ? c.positions + in.pick(0, 2) : in.pick(0, c.positions);
        c.options.sinks = in.pick(1, 8);
        c.options.window = in.pick(1, 16);
        c.options.keyframe_interval = in.pick(0, 9);
        c.options.check_finite = in.flag();

        switch (kind)
        {
        case 0: c.policy = fixed_threshold{to_break == broken::policy ? bad_threshold(in) : threshold_value(in)}; break;
        case 1:
        {
            float const ratios[] = {0.0f, 0.1f, 0.25f, 0.5f, 1.0f, 4.0f, 1e-30f, 1e30f};
            c.policy = relative_threshold{to_break == broken::policy ? bad_threshold(in) : ratios[in.byte() % 8]};
            break;
        }
        case 2:
        {
            float const rho[] = {0.0f, 0.1f, 0.25f, 0.5f, 0.6f, 0.9f, 0.99f, std::nextafter(1.0f, 0.0f)};
            float const bad_rho[] = {1.0f, -0.01f, std::numeric_limits<float>::quiet_NaN(), 1.5f, std::numeric_limits<float>::infinity()};
            std::uint8_t const b = in.byte();
            c.policy = target_sparsity{to_break == broken::policy ? bad_rho[b % 5] : b < 128 ? rho[b % 8] : static_cast<float>(b - 128) / 128.0f};
            break;
        }
        default:
        {
            std::size_t const groups[] = {4, 8, 16};
            std::size_t const bad_groups[] = {0, 1, 2, 3, 5, 12, 32};
            std::uint8_t const b = in.byte();
            block_threshold p{groups[b % 3], threshold_value(in)};
            if (to_break == broken::policy)
            {
                if (b & 0x80u)
                    p.group = bad_groups[(b >> 2) % 7];
                else
                    p.theta = bad_threshold(in);
            }
            // Groups that do not divide dim arise by themselves: dim is drawn freely.
            c.policy = p;
            break;
        }
        }

        switch (to_break)
        {
        case broken::dim: c.dim = 0; break;
        case broken::sinks: c.options.sinks = 0; break;
        case broken::window: c.options.window = 0; break;
        case broken::scale: c.options.scale = non_finite(in.byte()); break;
        default: break;
        }
        if (c.dim == 0)
            c.expected_names.push_back("dim");
        if (c.options.sinks == 0)
            c.expected_names.push_back("sinks");
        if (c.options.window == 0)
            c.expected_names.push_back("window");
        if (!std::isfinite(c.options.scale))
            c.expected_names.push_back("scale");
        policy_problems(c.policy, c.dim, c.expected_names);

        c.keys.resize(c.positions * c.dim);
        for (std::size_t j = 0; j < c.positions; ++j)
            for (std::size_t ch = 0; ch < c.dim; ++ch)
                c.keys[j * c.dim + ch] = edge_float(in, j == 0 ? 0.0f : c.keys[(j - 1) * c.dim + ch], c.options.check_finite);
        return c;
    }

    /// What must not change when an append is rejected.
    struct cache_snapshot
    {
        std::size_t size, bytes;
        delta_stats stats;
        std::vector<float> reference;

        explicit cache_snapshot(delta_key_cache const& cache)
            : size(cache.size()), bytes(cache.bytes()), stats(cache.stats()), reference(cache.reference_row(), cache.reference_row() + cache.dim())
        {
        }

        bool same_as(cache_snapshot const& o) const
        {
            if (size != o.size || bytes != o.bytes || stats.rows != o.stats.rows || stats.updated != o.stats.updated)
                return false;
            for (std::size_t c = 0; c < reference.size(); ++c)
                if (!same_bits(reference[c], o.reference[c]))
                    return false;
            return true;
        }
    };

    bool all_finite(float const* x, std::size_t n)
    {
        return std::all_of(x, x + n, [](float v) { return std::isfinite(v); });
    }

    /// Runs the append schedule; returns the keys the cache accepted, in order.
    std::vector<float> run_appends(byte_reader& in, build_case const& c, delta_key_cache& cache)
    {
        std::string const context = c.describe();
        std::size_t const d = c.dim;
        std::vector<float> accepted;
        std::size_t next = 0;
        std::size_t last_bytes = cache.bytes();
        while (next < c.positions)
        {
            std::uint8_t const op = in.byte() % 3;
            std::size_t const rows = op == 0 ? 1 : std::min(in.pick(1, 8), c.positions - next);
            float const* first = c.keys.data() + next * d;
            bool const fits = cache.size() + rows <= c.capacity;
            bool const finite = all_finite(first, rows * d);
            bool const must_accept = fits && (finite || !c.options.check_finite);
            cache_snapshot const before(cache);

            // The argument a rejection must name: the cache's rows, "k", for a row or a chunk.
            char const* const argument = "k";
            try
            {
                if (op == 0)
                    cache.append(first);
                else if (op == 1)
                    cache.append(make_matrix_view<const float>(first, rows, d));
                else
                {
                    // The kernels' chunk path: deltas first, dense rows after. Checked
                    // here by the caller, as hybrid_prefill does, so it is all or nothing.
                    cache.check_rows(make_matrix_view<const float>(first, rows, d));
                    cache.reserve_values(rows);
                    std::size_t const start = cache.size();
                    for (std::size_t r = 0; r < rows; ++r)
                        cache.append_delta(first + r * d);
                    for (std::size_t r = 0; r < rows; ++r)
                        cache.push_exact(first + r * d, start + r);
                }
                check(must_accept, "an append that should have been rejected was accepted (" + std::to_string(rows) + " rows)", context);
                accepted.insert(accepted.end(), first, first + rows * d);
            }
            catch (std::invalid_argument const& e)
            {
                char const* const named = op == 2 ? "k" : argument;
                check(!must_accept, std::string("a valid append was rejected: ") + e.what(), context);
                check(names(e, named), std::string("the rejection does not name '") + named + "': " + e.what(), context);
                check(cache_snapshot(cache).same_as(before), "a rejected append changed the cache", context);
            }
            check(cache.bytes() >= last_bytes, "bytes() shrank after an append", context);
            last_bytes = cache.bytes();
            next += rows;
        }
        return accepted;
    }

    void check_against_oracle(build_case const& c, delta_key_cache const& cache, std::vector<float> const& accepted)
    {
        std::string const context = c.describe();
        std::size_t const d = c.dim, n = accepted.size() / d;
        check(cache.size() == n, "size() is not the number of accepted rows", context);
        auto const keys = make_matrix_view<const float>(accepted.data(), n, d);
        reference::delta_rows const want = reference::build_delta_rows(keys, c.policy);

        std::size_t const words = (d + 63) / 64;
        std::size_t updated_after_first = 0;
        for (std::size_t j = 0; j < n; ++j)
        {
            std::string const at = context + " row " + std::to_string(j);
            delta_row const row = cache.delta(j);
            std::size_t packed = 0;
            for (std::size_t ch = 0; ch < words * 64; ++ch)
            {
                bool const bit = row.mask[ch / 64] >> (ch % 64) & 1u;
                if (ch >= d)
                {
                    check(!bit, "a mask bit past the last channel is set", at);
                    continue;
                }
                check(bit == (want.updated_row(j)[ch] != 0), "update mask differs from the oracle at channel " + std::to_string(ch), at);
                if (bit)
                {
                    check(packed < row.nnz, "more mask bits than packed values", at);
                    check(same_bits(row.values[packed], want.delta_row(j)[ch]), "packed delta differs from the oracle at channel " + std::to_string(ch), at);
                    ++packed;
                }
            }
            check(packed == row.nnz, "nnz is not the number of mask bits", at);
            if (j >= 1)
            {
                updated_after_first += row.nnz;
                float const theta = cache.row_threshold(keys.row(j));
                check((std::isnan(theta) && std::isnan(want.theta[j])) || same_bits(theta, want.theta[j]), "row threshold differs from the oracle", at);
            }

            // Keyframes sit at sinks - 1 + t * R (t >= 1); keyframe_row() does not return the base row.
            std::size_t const base = c.options.sinks - 1, R = c.options.keyframe_interval;
            bool const keyframe = R != 0 && j > base && (j - base) % R == 0;
            float const* const kf = cache.keyframe_row(j);
            check((kf != nullptr) == keyframe, "keyframe_row() presence is wrong", at);
            if (kf)
                for (std::size_t ch = 0; ch < d; ++ch)
                    check(same_bits(kf[ch], want.reference_row(j)[ch]), "keyframe row differs from the oracle's reference row", at);
        }
        if (n >= 1)
            for (std::size_t ch = 0; ch < d; ++ch)
                check(same_bits(cache.reference_row()[ch], want.reference_row(n - 1)[ch]), "running reference differs from the oracle", context);
        if (n >= c.options.sinks)
            for (std::size_t ch = 0; ch < d; ++ch)
                check(same_bits(cache.base_row()[ch], want.reference_row(c.options.sinks - 1)[ch]), "base row differs from the oracle", context);

        // Dense rows: every sink, and the last min(window, capacity) positions.
        for (std::size_t j = 0; j < std::min(n, c.options.sinks); ++j)
            for (std::size_t ch = 0; ch < d; ++ch)
                check(same_bits(cache.sink_row(j)[ch], keys.row(j)[ch]), "sink row is not the key", context);
        std::size_t const ring = std::max<std::size_t>(1, std::min(c.options.window, c.capacity));
        for (std::size_t j = n - std::min(n, ring); j < n; ++j)
            for (std::size_t ch = 0; ch < d; ++ch)
                check(same_bits(cache.exact_row(j)[ch], keys.row(j)[ch]), "exact row " + std::to_string(j) + " is not the key", context);

        delta_stats const stats = cache.stats(), analytic = reference::delta_statistics(want);
        check(stats.rows == analytic.rows && stats.channels == analytic.channels && stats.updated == analytic.updated,
              "delta statistics differ from the oracle's", context);
        check(stats.updated == updated_after_first, "delta statistics differ from the stored rows", context);
    }
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    byte_reader in(data, size);
    build_case const c = decode_case(in);
    std::string const context = c.describe();
    trace_case(context + (c.valid() ? "" : " (invalid)"));

    if (!c.valid())
    {
        try
        {
            delta_key_cache cache(c.dim, c.capacity, c.options, c.policy);
            fail("invalid parameters were accepted", context);
        }
        catch (std::invalid_argument const& e)
        {
            bool named = false;
            for (char const* argument : c.expected_names)
                named = named || names(e, argument);
            check(named, std::string("the rejection names none of the broken arguments: ") + e.what(), context);
        }
        return 0;
    }

    // Valid parameters must never throw at construction (any exception escapes and
    // libFuzzer reports it as a crash).
    delta_key_cache cache(c.dim, c.capacity, c.options, c.policy);
    check(cache.size() == 0 && cache.capacity() == c.capacity && cache.dim() == c.dim, "a new cache has the wrong shape", context);
    std::vector<float> const accepted = run_appends(in, c, cache);
    check_against_oracle(c, cache, accepted);

    // A full cache refuses one more row by name, and stays as it was.
    if (cache.size() == c.capacity && c.dim >= 1)
    {
        std::vector<float> const extra(c.dim, 0.5f);
        cache_snapshot const before(cache);
        try
        {
            cache.append(extra.data());
            fail("a full cache accepted another key", context);
        }
        catch (std::invalid_argument const& e)
        {
            check(names(e, "k"), std::string("the full-cache rejection does not name 'k': ") + e.what(), context);
            check(cache_snapshot(cache).same_as(before), "a rejected append changed a full cache", context);
        }
    }
    return 0;
}
