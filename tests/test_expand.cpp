// Expansion kernels (kernels/arch/expand.hpp) against the generic fallback, bit for bit,
// on every mask of a group, for every arch this binary is compiled for: the suite's
// own archs plus every narrower xsimd arch the flags allow (an AVX-512 build also
// checks the AVX2 and SSSE3 kernels).
#include "catch.hpp"
#include "tester.hpp"

#include <deltaattn/kernels/arch/expand.hpp>
#include <deltaattn/kernels/channel_deltas.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#if defined(__unix__)
#include <sys/mman.h>
#include <unistd.h>
#endif

using namespace deltaattn_test;
using deltaattn::kernels::expand_group;
using deltaattn::kernels::expand_group_generic;
using deltaattn::kernels::expand_isa;
using deltaattn::kernels::expand_isa_of;
using deltaattn::kernels::expand_padding;
constexpr auto vexpandps = deltaattn::kernels::expand_form::vexpandps;
constexpr auto permute = deltaattn::kernels::expand_form::permute;

namespace
{
    using expand_archs = every_compiled_arch;

    /// Packed values with bit patterns a float copy could disturb: -0, a NaN with a
    /// payload, infinities, subnormals; then distinct ordinary values.
    std::vector<float> packed_values(std::size_t count)
    {
        std::uint32_t const special[] = {0x80000000u, 0x7FC01234u, 0xFFA00001u, 0x7F800000u, 0xFF800000u, 0x00000001u, 0x807FFFFFu, 0x3F800000u};
        std::vector<float> values(count);
        for (std::size_t i = 0; i < count; ++i)
        {
            std::uint32_t const bits = i < sizeof special / sizeof special[0] ? special[i] : 0x40000000u + 0x1357u * static_cast<std::uint32_t>(i);
            std::memcpy(&values[i], &bits, sizeof bits);
        }
        return values;
    }

    std::size_t popcount_low(std::uint32_t bits, std::size_t width)
    {
        std::size_t n = 0;
        for (std::size_t l = 0; l < width; ++l)
            n += bits >> l & 1u;
        return n;
    }

    /// What the kernel choice should be, written independently of expand_isa_of: a guard
    /// regression that silently falls back to the generic loop fails here.
    template <class Arch>
    constexpr expand_isa expected_kernel() noexcept
    {
#if defined(__AVX512F__)
        if (std::is_same<Arch, xsimd::avx512f>::value || std::is_same<Arch, xsimd::avx512bw>::value)
            return expand_isa::avx512;
#endif
#if defined(__AVX2__)
        if (std::is_same<Arch, xsimd::avx2>::value || std::is_same<Arch, xsimd::fma3<xsimd::avx2>>::value)
            return expand_isa::avx2;
#endif
#if defined(__SSSE3__)
        if (std::is_same<Arch, xsimd::ssse3>::value || std::is_same<Arch, xsimd::sse4_2>::value)
            return expand_isa::ssse3;
#endif
#if defined(__ARM_NEON)
        if (std::is_same<Arch, xsimd::neon>::value || std::is_same<Arch, xsimd::neon64>::value)
            return expand_isa::neon;
#endif
        return std::is_same<Arch, deltaattn::scalar>::value || std::is_same<Arch, xsimd::sse2>::value ? expand_isa::generic
                                                                                                      : expand_isa_of<Arch>();
    }
}  // namespace

TEMPLATE_LIST_TEST_CASE("expand_group picks the kernel of its arch", "[expand]", expand_archs)
{
    INFO(arch_name<TestType>() << " runs " << deltaattn::kernels::expand_kernel_name<TestType>());
    CHECK(expand_isa_of<TestType>() == expected_kernel<TestType>());
}

TEMPLATE_LIST_TEST_CASE("expand_group equals the generic fallback bit for bit on every mask", "[expand]", expand_archs)
{
    using ops = arch_traits<TestType>;
    constexpr std::size_t w = ops::width;
    static_assert(w <= 16, "masks are enumerated exhaustively up to 16 lanes");
    std::vector<float> const values = packed_values(w + expand_padding);
    std::uint32_t const masks = 1u << w;
    // Bits above the group must be ignored: every mask is also tried with garbage there.
    std::uint32_t const garbage = w < 32 ? ~0u << w : 0u;

    std::size_t mismatches = 0;
    std::uint32_t first_bad = 0;
    for (std::uint32_t m = 0; m < masks; ++m)
    {
        alignas(64) float fast[w], fast_noisy[w], generic[w], expected[w];
        float const* p_fast = values.data();
        float const* p_noisy = values.data();
        float const* p_generic = values.data();
        ops::store(fast, expand_group<TestType>(m, p_fast));
        ops::store(fast_noisy, expand_group<TestType>(m | garbage, p_noisy));
        ops::store(generic, expand_group_generic<TestType>(m, p_generic));
        std::size_t next = 0;
        for (std::size_t l = 0; l < w; ++l)
            expected[l] = (m >> l & 1u) ? values[next++] : 0.0f;

        std::size_t const used = popcount_low(m, w);
        bool const ok = std::memcmp(fast, generic, sizeof fast) == 0 && std::memcmp(fast_noisy, generic, sizeof fast) == 0 &&
                        std::memcmp(generic, expected, sizeof fast) == 0 && p_fast == values.data() + used &&
                        p_noisy == values.data() + used && p_generic == values.data() + used;
        if (!ok && mismatches++ == 0)
            first_bad = m;
    }
    INFO(arch_name<TestType>() << " (" << deltaattn::kernels::expand_kernel_name<TestType>() << "): " << masks << " masks, " << mismatches
                               << " mismatch(es)" << (mismatches ? ", the first at mask " : "") << (mismatches ? std::to_string(first_bad) : ""));
    CHECK(mismatches == 0);
}

#if defined(__unix__)
namespace
{
    /// A readable page followed by an unreadable one: a kernel that reads past end() faults.
    class guarded_page
    {
    public:
        guarded_page() : m_page(static_cast<std::size_t>(sysconf(_SC_PAGESIZE)))
        {
            m_region = mmap(nullptr, 2 * m_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            REQUIRE(m_region != MAP_FAILED);
            REQUIRE(mprotect(static_cast<char*>(m_region) + m_page, m_page, PROT_NONE) == 0);
        }
        ~guarded_page() { munmap(m_region, 2 * m_page); }
        guarded_page(guarded_page const&) = delete;
        guarded_page& operator=(guarded_page const&) = delete;

        /// The first unreadable element of type T.
        template <class T>
        T* end() const
        {
            return reinterpret_cast<T*>(static_cast<char*>(m_region) + m_page);
        }

    private:
        std::size_t m_page;
        void* m_region;
    };
}  // namespace

TEMPLATE_LIST_TEST_CASE("expand_group reads no further than expand_padding past the row", "[expand]", expand_archs)
{
    // The row's values end exactly expand_padding floats before an unreadable page: a
    // kernel that reads further faults.
    using ops = arch_traits<TestType>;
    constexpr std::size_t w = ops::width;
    guarded_page const guard;
    float* const end = guard.end<float>();
    std::uint32_t const all = w >= 32 ? ~0u : (1u << w) - 1u;
    for (std::uint32_t m : {all, 1u, 1u << (w - 1), 0u})
    {
        std::size_t const used = popcount_low(m, w);
        float* const row = end - expand_padding - used;
        for (std::size_t i = 0; i < used + expand_padding; ++i)
            row[i] = static_cast<float>(i + 1);
        float const* p = row;
        alignas(64) float lanes[w];
        ops::store(lanes, expand_group<TestType>(m, p));
        CHECK(p == row + used);
    }
}
#endif

// ---- binary16 rows and the AVX-512 forms ---------------------------------------------

namespace
{
    /// Halves with the same kinds of bit patterns as packed_values: -0, quiet NaNs with
    /// payloads, infinities, subnormals, then distinct ordinary values. (Not signaling
    /// NaNs: vcvtph2ps quiets them, the portable widening keeps them, and a cache never
    /// stores a NaN delta.)
    std::vector<deltaattn::float16> packed_halves(std::size_t count)
    {
        std::uint16_t const special[] = {0x8000u, 0x7E12u, 0xFF01u, 0x7C00u, 0xFC00u, 0x0001u, 0x83FFu, 0x3C00u};
        std::vector<deltaattn::float16> values(count);
        for (std::size_t i = 0; i < count; ++i)
            values[i].bits = i < sizeof special / sizeof special[0] ? special[i] : static_cast<std::uint16_t>(0x4000u + 0x35u * i);
        return values;
    }

    /// Runs `expand` on every mask of a group of `Arch` (with garbage above it) against
    /// the generic lane loop on the same values; returns the masks that differ in any bit
    /// of the result or in how far the packed pointer moved.
    template <class Arch, class T, class Expand>
    std::size_t mismatching_masks(std::vector<T> const& values, Expand expand)
    {
        using ops = arch_traits<Arch>;
        constexpr std::size_t w = ops::width;
        std::uint32_t const garbage = ~0u << w;
        std::size_t mismatches = 0;
        for (std::uint32_t m = 0; m < (1u << w); ++m)
        {
            alignas(64) float fast[w], generic[w];
            T const* p_fast = values.data();
            T const* p_generic = values.data();
            ops::store(fast, expand(m | garbage, p_fast));
            ops::store(generic, deltaattn::kernels::expand_kernel<expand_isa::generic>::run<Arch>(m, p_generic));
            mismatches += std::memcmp(fast, generic, sizeof fast) != 0 || p_fast != p_generic;
        }
        return mismatches;
    }
}  // namespace

TEMPLATE_LIST_TEST_CASE("expand_lanes on binary16 rows equals the generic widening bit for bit on every mask", "[expand][fp16]", expand_archs)
{
    auto const values = packed_halves(arch_traits<TestType>::width + expand_padding);
    bool const own_kernel = deltaattn::kernels::expands_stored<TestType, deltaattn::float16>();
    INFO(arch_name<TestType>() << (own_kernel ? ": the kernel of its ISA" : ": the generic loop"));
    CHECK(mismatching_masks<TestType>(values, [](std::uint32_t bits, deltaattn::float16 const*& p) {
              return deltaattn::kernels::expand_lanes<TestType, vexpandps>(bits, p);
          }) == 0);
    CHECK(mismatching_masks<TestType>(values, [](std::uint32_t bits, deltaattn::float16 const*& p) {
              return deltaattn::kernels::expand_lanes<TestType, permute>(bits, p);
          }) == 0);
}

#if defined(__AVX512F__)
TEST_CASE("every AVX-512 expansion form gives the same bits as the generic loop", "[expand][fp16]")
{
    using arch = xsimd::avx512f;
    using avx512 = deltaattn::kernels::expand_kernel<expand_isa::avx512>;
    auto const floats = packed_values(16 + expand_padding);
    auto const halves = packed_halves(16 + expand_padding);
    CHECK(mismatching_masks<arch>(floats, [](std::uint32_t b, float const*& p) { return avx512::run<arch>(b, p); }) == 0);
    CHECK(mismatching_masks<arch>(floats, [](std::uint32_t b, float const*& p) { return avx512::run_expand_load<arch>(b, p); }) == 0);
    CHECK(mismatching_masks<arch>(halves, [](std::uint32_t b, deltaattn::float16 const*& p) { return avx512::run<arch>(b, p); }) == 0);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    CHECK(mismatching_masks<arch>(halves, [](std::uint32_t b, deltaattn::float16 const*& p) { return avx512::run_masked_load<arch>(b, p); }) == 0);
#endif
#if defined(__AVX512VPOPCNTDQ__)
    CHECK(mismatching_masks<arch>(floats, [](std::uint32_t b, float const*& p) { return avx512::run_permute<arch>(b, p); }) == 0);
    CHECK(mismatching_masks<arch>(halves, [](std::uint32_t b, deltaattn::float16 const*& p) { return avx512::run_permute<arch>(b, p); }) == 0);
    // The bits read from a mask word in memory, as each group of four: the other groups'
    // bits all set, so a read of the wrong half or the wrong 32 bits shows.
    for (unsigned g = 0; g < 4; ++g)
    {
        auto const in_word = [g](std::uint32_t b, auto const*& p) {
            std::uint64_t const word = ~(0xFFFFull << 16 * g) | std::uint64_t(b & 0xFFFFu) << 16 * g;
            return avx512::run_permute_in_word<arch>(&word, g, p);
        };
        CHECK(mismatching_masks<arch>(floats, in_word) == 0);
        CHECK(mismatching_masks<arch>(halves, in_word) == 0);
    }
#else
    WARN("SKIPPED: the permute form (this build has no AVX512_VPOPCNTDQ; the x86-avx512 suite's vpopcntdq binary runs it)");
#endif
}
#endif

#if defined(__unix__)
TEMPLATE_LIST_TEST_CASE("expand_lanes on binary16 rows reads no further than expand_padding past the row", "[expand][fp16]", expand_archs)
{
    using ops = arch_traits<TestType>;
    constexpr std::size_t w = ops::width;
    guarded_page const guard;
    auto* const end = guard.end<deltaattn::float16>();
    std::uint32_t const all = (1u << w) - 1u;
    for (std::uint32_t m : {all, 1u, 1u << (w - 1), 0u})
    {
        std::size_t const used = popcount_low(m, w);
        deltaattn::float16* const row = end - expand_padding - used;
        for (std::size_t i = 0; i < used + expand_padding; ++i)
            row[i].bits = static_cast<std::uint16_t>(0x3C00u + i);
        alignas(64) float lanes[w];
        deltaattn::float16 const* p = row;
        ops::store(lanes, deltaattn::kernels::expand_lanes<TestType, vexpandps>(m, p));
        CHECK(p == row + used);
        p = row;
        ops::store(lanes, deltaattn::kernels::expand_lanes<TestType, permute>(m, p));
        CHECK(p == row + used);
    }
}
#endif

// ---- the form a CPU gets ----------------------------------------------------------------

TEST_CASE("the expansion form is pinned per CPU family", "[expand]")
{
    using deltaattn::kernels::cpu_identity;
    using deltaattn::kernels::preferred_expand_form;
    using maker = cpu_identity::maker;
    struct pinned
    {
        char const* cpu;
        cpu_identity id;
        deltaattn::kernels::expand_form form;
    };
    pinned const table[] = {
        {"AMD Zen 5 (family 0x1A)", {maker::amd, 0x1A, true}, permute},
        {"AMD Zen 4 (family 0x19, VPOPCNTDQ)", {maker::amd, 0x19, true}, permute},
        {"AMD Zen 3 (family 0x19, no AVX-512)", {maker::amd, 0x19, false}, vexpandps},
        {"AMD Zen 2 (family 0x17)", {maker::amd, 0x17, false}, vexpandps},
        {"Intel Ice Lake / Sapphire Rapids (VPOPCNTDQ)", {maker::intel, 6, true}, vexpandps},
        {"Intel Skylake-X (no VPOPCNTDQ)", {maker::intel, 6, false}, vexpandps},
        {"another vendor", {maker::other, 0x1A, true}, vexpandps},
    };
    for (auto const& p : table)
    {
        INFO(p.cpu);
        CHECK(preferred_expand_form(p.id) == p.form);
    }
}

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
TEST_CASE("this_cpu reads the vendor and VPOPCNTDQ the compiler's cpuid reads", "[expand]")
{
    __builtin_cpu_init();
    auto const cpu = deltaattn::kernels::this_cpu<deltaattn::default_arch>();
    CHECK(cpu.avx512_vpopcntdq == (__builtin_cpu_supports("avx512vpopcntdq") != 0));
    CHECK((cpu.vendor == deltaattn::kernels::cpu_identity::maker::amd) == (__builtin_cpu_is("amd") != 0));
    CHECK((cpu.vendor == deltaattn::kernels::cpu_identity::maker::intel) == (__builtin_cpu_is("intel") != 0));
    INFO("family " << cpu.family);
    CHECK(cpu.family >= 6);
}
#endif

TEST_CASE("the decode kernels' delta rows give the same bits with either expansion form", "[expand][decode]")
{
    using arch = deltaattn::default_arch;
    if (!deltaattn::kernels::has_permute_expand<arch>())
    {
        WARN("SKIPPED: " << arch_name<arch>() << " in this build has one form only (no AVX-512 with VPOPCNTDQ)");
        return;
    }
    std::size_t const d = 128, n = 300, heads = 4;
    deltaattn::hybrid_options o;
    o.sinks = 4;
    o.keyframe_interval = 64;
    std::vector<float> keys(n * d);
    std::uint32_t state = 12345;
    for (auto& x : keys)
        x = static_cast<float>((state = state * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    deltaattn::delta_key_cache cache(d, n, o, deltaattn::target_sparsity{0.6f});
    cache.append(deltaattn::matrix_view<const float>{keys.data(), n, d, d});
    std::vector<float> q(heads * d), start(heads, 0.25f), p(heads * n);
    for (std::size_t i = 0; i < q.size(); ++i)
        q[i] = static_cast<float>(i % 17) / 17.0f - 0.5f;
    for (std::size_t i = 0; i < p.size(); ++i)
        p[i] = static_cast<float>(i % 29) / 290.0f;
    float const* qh[heads] = {q.data(), q.data() + d, q.data() + 2 * d, q.data() + 3 * d};
    std::vector<float> converted(d + expand_padding);
    auto const scores = [&](auto form) {
        std::vector<float> s(heads * n, 0.0f);
        deltaattn::kernels::channel_delta_scores<arch, decltype(form)::value>(cache, qh, heads, start.data(), o.sinks, n - 10, s.data(), n,
                                                                                converted.data());
        return s;
    };
    auto const values = [&](auto form) {
        std::vector<float> out(heads * d, 0.0f);
        deltaattn::kernels::channel_delta_values<arch, decltype(form)::value>(cache, p.data(), n, heads, o.sinks, n - 10, out.data(),
                                                                                converted.data());
        return out;
    };
    using as_vexpandps = std::integral_constant<deltaattn::kernels::expand_form, vexpandps>;
    using as_permute = std::integral_constant<deltaattn::kernels::expand_form, permute>;
    CHECK(scores(as_vexpandps{}) == scores(as_permute{}));
    CHECK(values(as_vexpandps{}) == values(as_permute{}));
}
