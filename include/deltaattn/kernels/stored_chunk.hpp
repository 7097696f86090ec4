/**
 * @file kernels/stored_chunk.hpp
 * A prefill chunk's rows as a cache of element T stores them. The kernels read the
 * chunk's exact rows from here until they reach the sinks and the window ring, so for a
 * float16 cache they must be the binary16 rows, not the fp32 input.
 */
#ifndef DELTAATTN_KERNELS_STORED_CHUNK_HPP
#define DELTAATTN_KERNELS_STORED_CHUNK_HPP

#include "../fp16.hpp"
#include "../views.hpp"

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

namespace deltaattn
{
    namespace kernels
    {
        template <class T>
        class stored_chunk
        {
        public:
            /// Takes the chunk `x` (positions x heads x dim, fp32). For float16 it is
            /// converted into a head-major copy; this may throw (allocation), so call it
            /// before changing anything.
            void stage(tensor_view<const float> x)
            {
                m_input = x;
                if constexpr (!std::is_same<T, float>::value)
                {
                    std::size_t const n = x.positions, d = x.dim;
                    m_rows.resize(x.heads * n * d);
                    for (std::size_t h = 0; h < x.heads; ++h)
                        for (std::size_t r = 0; r < n; ++r)
                            std::transform(x.at(r, h), x.at(r, h) + d, m_rows.begin() + static_cast<std::ptrdiff_t>((h * n + r) * d), from_float<T>);
                }
            }

            /// Head h of the staged chunk: the input itself for float, else its copy.
            matrix_view<const T> head(std::size_t h) const noexcept
            {
                if constexpr (std::is_same<T, float>::value)
                    return m_input.head(h);
                else
                    return make_matrix_view(m_rows.data() + h * m_input.positions * m_input.dim, m_input.positions, m_input.dim);
            }

            /// Ends the chunk once its rows are pushed to the caches. A multi-position
            /// chunk's float16 copy is freed: kept, it would hold a whole prefill chunk
            /// (2 bytes a value) between calls. A one-position step's row stays for the next
            /// step, so decode steps do not allocate.
            void finish() noexcept
            {
                if (m_input.positions > 1)
                    std::vector<T>().swap(m_rows);
            }

        private:
            tensor_view<const float> m_input;
            std::vector<T> m_rows;  // float16 only
        };
    }  // namespace kernels
}  // namespace deltaattn

#endif  // DELTAATTN_KERNELS_STORED_CHUNK_HPP
