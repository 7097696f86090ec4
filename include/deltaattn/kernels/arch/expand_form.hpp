/**
 * @file kernels/arch/expand_form.hpp
 * Which AVX-512 instruction sequence expands a register of a delta row on the CPU at
 * hand: the choice the ISA cannot make, because it depends on the microarchitecture.
 *
 * Two forms give the same bits (tests/test_expand.cpp):
 *  - `vexpandps`: a plain load, then the register form of vexpandps. One or two uops on
 *    Intel cores (uop tables; not measured here); on AMD Zen 5 a slow, unpipelined
 *    instruction (~2 ns per group measured, where a plain load and four FMAs take ~0.9
 *    ns). On Zen 4 (family 0x19 model 0x11) ~2.1 ns a register, as slow, and the
 *    permute form 0.80-0.87x of that (bench/bench_expand.cpp, 2026-12-03).
 *  - `permute`: a plain load, the lanes' source indices computed as
 *    popcount(mask & ((1 << lane) - 1)) with vpopcntd, then vpermps. Four pipelined
 *    uops: within 1.1-1.3x of a plain load on Zen 5 (bench/bench_expand.cpp). On Intel
 *    they all queue on port 5, where vexpandps needs one slot. Needs AVX512_VPOPCNTDQ
 *    (Ice Lake and later, Zen 4 and later) in the translation unit's flags.
 *
 * The choice is made once per process from cpuid (`detected_expand_form`) and passed to
 * the kernels as a value; each kernel is instantiated for both forms. The functions that
 * run code are templates on the arch, like every kernel: a baseline TU and an AVX-512
 * TU never emit one inline function each with its own instructions (the runtime
 * dispatch recipe's ODR rule).
 */
#ifndef DELTAATTN_KERNELS_ARCH_EXPAND_FORM_HPP
#define DELTAATTN_KERNELS_ARCH_EXPAND_FORM_HPP

#include <cstdlib>
#include <cstring>

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#define DELTAATTN_HAVE_CPUID 1
#else
#define DELTAATTN_HAVE_CPUID 0
#endif

namespace deltaattn
{
    namespace kernels
    {
        /// The AVX-512 expansion sequences (see the file comment).
        enum class expand_form
        {
            vexpandps,  ///< plain load + register vexpandps
            permute     ///< plain load + vpopcntd indices + vpermps
        };

        /// What the form choice needs to know of a CPU.
        struct cpu_identity
        {
            enum class maker
            {
                other,
                intel,
                amd
            };
            maker vendor = maker::other;
            unsigned family = 0;            ///< display family (base + extended)
            bool avx512_vpopcntdq = false;  ///< CPUID.(7,0):ECX bit 14
        };

        /// The form for a CPU: permute on AMD Zen 4 and later (family 0x19 with
        /// AVX-512, 0x1A), where vexpandps is slow; vexpandps everywhere else. A CPU
        /// without VPOPCNTDQ cannot run permute.
        constexpr expand_form preferred_expand_form(cpu_identity const& cpu) noexcept
        {
            return cpu.vendor == cpu_identity::maker::amd && cpu.family >= 0x19 && cpu.avx512_vpopcntdq ? expand_form::permute
                                                                                                         : expand_form::vexpandps;
        }

        /// This CPU, from cpuid; `cpu_identity{}` where there is none (not x86).
        template <class Arch>
        cpu_identity this_cpu() noexcept
        {
            cpu_identity cpu;
#if DELTAATTN_HAVE_CPUID
            unsigned a = 0, b = 0, c = 0, d = 0;
            if (!__get_cpuid(0, &a, &b, &c, &d))
                return cpu;
            unsigned const max_leaf = a;
            char vendor[13] = {};
            std::memcpy(vendor, &b, 4);
            std::memcpy(vendor + 4, &d, 4);
            std::memcpy(vendor + 8, &c, 4);
            cpu.vendor = std::strcmp(vendor, "AuthenticAMD") == 0   ? cpu_identity::maker::amd
                         : std::strcmp(vendor, "GenuineIntel") == 0 ? cpu_identity::maker::intel
                                                                     : cpu_identity::maker::other;
            if (__get_cpuid(1, &a, &b, &c, &d))
            {
                unsigned const base = (a >> 8) & 0xFu, extended = (a >> 20) & 0xFFu;
                cpu.family = base == 0xFu ? base + extended : base;
            }
            if (max_leaf >= 7)
            {
                __cpuid_count(7, 0, a, b, c, d);
                cpu.avx512_vpopcntdq = (c >> 14) & 1u;
            }
#endif
            return cpu;
        }

        /**
         * The form the decode kernels use in this process: preferred_expand_form of this
         * CPU, read once. The environment variable DELTAATTN_EXPAND_FORM (`vexpandps` or
         * `permute`), read at the same moment, overrides it, for A/B runs of one binary;
         * a kernel built without VPOPCNTDQ runs vexpandps whatever this says.
         */
        template <class Arch>
        expand_form detected_expand_form() noexcept
        {
            static expand_form const form = [] {
                if (char const* forced = std::getenv("DELTAATTN_EXPAND_FORM"))
                {
                    if (std::strcmp(forced, "permute") == 0)
                        return expand_form::permute;
                    if (std::strcmp(forced, "vexpandps") == 0)
                        return expand_form::vexpandps;
                }
                return preferred_expand_form(this_cpu<Arch>());
            }();
            return form;
        }

        /// The name of a form, for reports.
        constexpr char const* expand_form_name(expand_form form) noexcept
        {
            return form == expand_form::permute ? "vpopcntd + vpermps" : "vexpandps";
        }
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_ARCH_EXPAND_FORM_HPP
