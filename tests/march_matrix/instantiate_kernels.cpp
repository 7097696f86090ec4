// Compile-only check (tests/march_matrix/CMakeLists.txt): every public kernel, and the
// expansion kernels, instantiated for the `default_arch` of this TU's -march. Never run;
// a header change that breaks one target fails the build of that target here.
#include <deltaattn/deltaattn.hpp>
#include <deltaattn/kernels/arch/expand.hpp>
#include <deltaattn/reference/reference.hpp>
#include <deltaattn/synthetic.hpp>

#include <cstdint>
#include <type_traits>
#include <vector>

using arch = deltaattn::default_arch;
static_assert(!std::is_same<arch, deltaattn::scalar>::value, "every -march of the matrix has a SIMD backend");

// Extern linkage, so the compiler must generate the code.
void instantiate_every_kernel(deltaattn::qkv_data const& data, std::vector<float>& out, float const* packed)
{
    using namespace deltaattn;
    auto const view = data.make_output(out);
    attention_workspace workspace;
    attention_stats stats;
    dense_attention<arch>(data.q_view(), data.k_view(), data.v_view(), view);
    dense_decode<arch>(data.q_view().slice_positions(0, 1), data.k_view(), data.v_view(), view.slice_positions(0, 1), 0.0f, workspace);
    hybrid_options const options;
    hybrid_attention<arch>(data.q_view(), data.k_view(), data.v_view(), view, options, fixed_threshold{0.1f}, &stats);

    layer_key_cache cache(data.shape.kv_heads, data.shape.dim, data.shape.positions, options, relative_threshold{0.2f});
    cache.prefill<arch>(data.q_view(), data.k_view(), data.v_view(), view, &stats);
    cache.decode<arch>(data.q_view().slice_positions(0, 1), data.k_view().slice_positions(0, 1), data.v_view(), view.slice_positions(0, 1),
                       &stats);

    delta_key_cache head(data.shape.dim, data.shape.positions, options, fixed_threshold{0.1f});
    hybrid_decode<arch>(head, data.q_view().head(0), data.v_view().head(0), view.head(0), workspace, &stats);

    float lanes[arch_traits<arch>::width];
    arch_traits<arch>::store(lanes, kernels::expand_group<arch>(0x5u, packed));
    arch_traits<arch>::store(lanes, kernels::expand_group_generic<arch>(0x5u, packed));
    out.push_back(lanes[0]);
}
