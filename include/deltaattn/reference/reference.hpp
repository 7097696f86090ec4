/**
 * @file reference/reference.hpp
 * The double-precision oracle of SPEC.md §9: every kernel is tested against it.
 */
#ifndef DELTAATTN_REFERENCE_REFERENCE_HPP
#define DELTAATTN_REFERENCE_REFERENCE_HPP

#include "attention.hpp"
#include "counts.hpp"
#include "delta_rows.hpp"
#include "quant_rows.hpp"

#endif  // DELTAATTN_REFERENCE_REFERENCE_HPP
