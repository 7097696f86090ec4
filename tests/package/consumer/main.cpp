// A user's program: include the umbrella, run a real kernel, check its result.
#include <deltaattn/deltaattn.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main()
{
    using namespace deltaattn;
    // One query attending to two keys with equal scores: the output is the mean of the values.
    std::size_t const n = 2, d = 4;
    std::vector<float> q(n * d, 0.0f), k(n * d, 1.0f), v{1, 2, 3, 4, 3, 4, 5, 6}, out(n * d);
    hybrid_attention(make_token_major<const float>(q.data(), n, 1, d), make_token_major<const float>(k.data(), n, 1, d),
                     make_token_major<const float>(v.data(), n, 1, d), make_token_major(out.data(), n, 1, d), hybrid_options{},
                     fixed_threshold{0.0f});
    float const want[] = {2, 3, 4, 5};
    for (std::size_t c = 0; c < d; ++c)
        if (std::fabs(out[d + c] - want[c]) > 1e-6f)
        {
            std::printf("consumer: wrong output %g at channel %zu (want %g)\n", out[d + c], c, want[c]);
            return 1;
        }
    std::printf("deltaattn %d.%d.%d consumer ok, arch %s\n", DELTAATTN_VERSION_MAJOR, DELTAATTN_VERSION_MINOR, DELTAATTN_VERSION_PATCH,
                active_arch_name());
    return 0;
}
