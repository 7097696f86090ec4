/**
 * @file detail/validate.hpp
 * The one way public entry points reject bad input (SPEC.md §8): a
 * `std::invalid_argument` whose message starts with the argument's name.
 */
#ifndef DELTAATTN_DETAIL_VALIDATE_HPP
#define DELTAATTN_DETAIL_VALIDATE_HPP

#include "../fp16.hpp"

#include <cmath>
#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>

/// `detail::require(ok, argument, problem)` with `problem` (a std::string expression) built
/// only when `ok` is false: the checks run on every decode step, and a message built
/// eagerly costs a heap allocation each time.
#define DELTAATTN_REQUIRE(ok, argument, problem) ((ok) ? void(0) : ::deltaattn::detail::reject(argument, problem))

namespace deltaattn
{
    namespace detail
    {
        /// Throws `std::invalid_argument("deltaattn: <argument>: <problem>")`.
        [[noreturn]] inline void reject(char const* argument, std::string const& problem)
        {
            throw std::invalid_argument(std::string("deltaattn: ") + argument + ": " + problem);
        }

        template <class T>
        std::string got(T const& value)
        {
            std::ostringstream s;
            s << " (got " << value << ")";
            return s.str();
        }

        inline void require(bool ok, char const* argument, std::string const& problem)
        {
            if (!ok)
                reject(argument, problem);
        }

        /// `x` is finite and >= 0 (rejects NaN, which every comparison lets through).
        inline void require_non_negative(float x, char const* argument)
        {
            DELTAATTN_REQUIRE(std::isfinite(x) && x >= 0.0f, argument, "must be a finite number >= 0" + got(x));
        }

        /// Every `cols` element of every row is finite.
        template <class View>
        void require_finite_rows(View const& m, char const* argument)
        {
            for (std::size_t i = 0; i < m.rows; ++i)
            {
                auto const* r = m.row(i);
                for (std::size_t c = 0; c < m.cols; ++c)
                    if (!std::isfinite(to_float(r[c])))  // (float or float16 rows)
                    {
                        std::ostringstream s;
                        s << "holds a non-finite value at row " << i << ", channel " << c;
                        reject(argument, s.str());
                    }
            }
        }
    }  // namespace detail
}  // namespace deltaattn

#endif  // DELTAATTN_DETAIL_VALIDATE_HPP
