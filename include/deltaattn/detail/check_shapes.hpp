/**
 * @file detail/check_shapes.hpp
 * Shape checks shared by the attention entry points (SPEC.md §8).
 */
#ifndef DELTAATTN_DETAIL_CHECK_SHAPES_HPP
#define DELTAATTN_DETAIL_CHECK_SHAPES_HPP

#include "../views.hpp"
#include "validate.hpp"

#include <string>

namespace deltaattn
{
    namespace detail
    {
        /// q: n_q x Hq x d, k and v: n_kv x Hkv x d with n_q <= n_kv, out shaped as q.
        /// T: the element of k and v (float or float16).
        template <class T>
        void check_attention_shapes_of(tensor_view<const float> q, tensor_view<const T> k, tensor_view<const T> v, tensor_view<float> out)
        {
            DELTAATTN_REQUIRE(q.dim >= 1, "dim", "must be >= 1" + got(q.dim));
            DELTAATTN_REQUIRE(k.dim == q.dim, "k", "has head dim " + std::to_string(k.dim) + ", q has " + std::to_string(q.dim));
            DELTAATTN_REQUIRE(v.dim == q.dim, "v", "has head dim " + std::to_string(v.dim) + ", q has " + std::to_string(q.dim));
            DELTAATTN_REQUIRE(k.heads >= 1 && q.heads % k.heads == 0, "heads",
                    "query heads (" + std::to_string(q.heads) + ") must be a multiple of kv heads (" + std::to_string(k.heads) + ")");
            DELTAATTN_REQUIRE(v.heads == k.heads, "v", "has " + std::to_string(v.heads) + " heads, k has " + std::to_string(k.heads));
            DELTAATTN_REQUIRE(v.positions == k.positions, "v", "has " + std::to_string(v.positions) + " positions, k has " + std::to_string(k.positions));
            DELTAATTN_REQUIRE(q.positions <= k.positions, "q",
                    "has " + std::to_string(q.positions) + " positions, more than k (" + std::to_string(k.positions) + ")");
            DELTAATTN_REQUIRE(out.positions == q.positions && out.heads == q.heads && out.dim == q.dim, "out", "must have q's shape");
        }

        inline void check_attention_shapes(tensor_view<const float> q, tensor_view<const float> k, tensor_view<const float> v,
                                           tensor_view<float> out)
        {
            check_attention_shapes_of<float>(q, k, v, out);
        }

        /// A layer cache's k and v chunk: `kv_heads` heads each, the same positions.
        inline void check_layer_rows(tensor_view<const float> k, tensor_view<const float> v, std::size_t kv_heads)
        {
            DELTAATTN_REQUIRE(k.heads == kv_heads, "k", "has " + std::to_string(k.heads) + " heads, the cache " + std::to_string(kv_heads));
            DELTAATTN_REQUIRE(v.heads == kv_heads, "v", "has " + std::to_string(v.heads) + " heads, the cache " + std::to_string(kv_heads));
            DELTAATTN_REQUIRE(v.positions == k.positions, "v", "has " + std::to_string(v.positions) + " positions, k has " + std::to_string(k.positions));
        }

        /// A layer cache's attention call: q and out n_c x Hq x dim, Hq a multiple of
        /// kv_heads, k (checked by check_layer_rows) n_c positions too.
        inline void check_layer_queries(tensor_view<const float> q, tensor_view<const float> k, tensor_view<float> out, std::size_t kv_heads,
                                        std::size_t dim)
        {
            DELTAATTN_REQUIRE(q.heads % kv_heads == 0 && q.heads >= 1, "heads",
                    "query heads (" + std::to_string(q.heads) + ") must be a multiple of kv heads (" + std::to_string(kv_heads) + ")");
            DELTAATTN_REQUIRE(q.dim == dim, "q", "has head dim " + std::to_string(q.dim) + ", the cache " + std::to_string(dim));
            DELTAATTN_REQUIRE(k.positions == q.positions, "k", "has " + std::to_string(k.positions) + " positions, q has " + std::to_string(q.positions));
            DELTAATTN_REQUIRE(out.positions == q.positions && out.heads == q.heads && out.dim == q.dim, "out", "must have q's shape");
        }

        /// Rows of one head of a tensor view, as a matrix, for finiteness checks.
        template <class T>
        void require_finite_tensor(tensor_view<T> t, char const* argument)
        {
            for (std::size_t h = 0; h < t.heads; ++h)
                require_finite_rows(t.head(h), argument);
        }
    }  // namespace detail
}  // namespace deltaattn

#endif  // DELTAATTN_DETAIL_CHECK_SHAPES_HPP
