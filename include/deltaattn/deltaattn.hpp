/**
 * @file deltaattn.hpp
 * The one documented include of deltaattn: temporal-delta attention kernels.
 *
 * Keys of a sequence change little from one position to the next, so they are kept as
 * a delta key matrix (DeltaLLM, arXiv 2507.19608): a dense first row, then sparse
 * deltas against a memorized reference. Attention is hybrid: sinks and a recent window
 * exact, the keys between through prefix sums that skip the zero deltas.
 *
 * See README.md for the method and docs/api.md, docs/kernels.md for the API and how the SIMD backend is chosen.
 */
#ifndef DELTAATTN_DELTAATTN_HPP
#define DELTAATTN_DELTAATTN_HPP

#include "config.hpp"
#include "arch.hpp"
#include "fp16.hpp"
#include "views.hpp"
#include "options.hpp"
#include "counters.hpp"
#include "parallel.hpp"
#include "policies/threshold.hpp"
#include "delta/delta_builder.hpp"
#include "delta/delta_key_cache.hpp"
#include "kernels/dense_attention.hpp"
#include "kernels/hybrid_attention.hpp"
#include "kernels/layer_kv_cache.hpp"
#include "codecs/quant.hpp"
#include "caches/quant_cache.hpp"
#include "caches/layer_quant_cache.hpp"

#endif  // DELTAATTN_DELTAATTN_HPP
