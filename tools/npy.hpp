/**
 * @file tools/npy.hpp
 * Reading and writing NumPy .npy files of float32, C order: what deltaattn-eval takes.
 *
 * Format (numpy.lib.format): the magic "\x93NUMPY", a version byte pair (1.0, 2.0 or
 * 3.0), the header length (2 bytes little-endian in 1.0, 4 in 2.0 and 3.0), then an
 * ASCII dict such as {'descr': '<f4', 'fortran_order': False, 'shape': (4, 2, 8), }
 * padded with spaces to a multiple of 64 bytes, then the raw data.
 *
 * Only little-endian float32 ('<f4'), C order, rank 1 to 3 is accepted; anything else is
 * an error naming the file and what is wrong with it.
 */
#ifndef DELTAATTN_TOOLS_NPY_HPP
#define DELTAATTN_TOOLS_NPY_HPP

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace deltaattn_tools
{
    struct npy_array
    {
        std::vector<std::size_t> shape;
        std::vector<float> data;  ///< C order
    };

    namespace npy_detail
    {
        [[noreturn]] inline void fail(std::string const& path, std::string const& problem)
        {
            throw std::runtime_error(path + ": " + problem);
        }

        /// The text after `'key':` in the header dict, up to the next comma outside parentheses.
        inline std::string field(std::string const& header, std::string const& key, std::string const& path)
        {
            std::size_t at = header.find("'" + key + "'");
            if (at == std::string::npos)
                fail(path, "the .npy header has no '" + key + "'");
            at = header.find(':', at);
            if (at == std::string::npos)
                fail(path, "malformed .npy header near '" + key + "'");
            std::size_t end = ++at;
            int depth = 0;
            for (; end < header.size(); ++end)
            {
                char const c = header[end];
                depth += c == '(' ? 1 : c == ')' ? -1 : 0;
                if (depth == 0 && (c == ',' || c == '}'))
                    break;
            }
            std::string value = header.substr(at, end - at);
            std::size_t const first = value.find_first_not_of(" \t"), last = value.find_last_not_of(" \t");
            return first == std::string::npos ? std::string() : value.substr(first, last - first + 1);
        }

        inline std::vector<std::size_t> parse_shape(std::string const& text, std::string const& path)
        {
            if (text.size() < 2 || text.front() != '(' || text.back() != ')')
                fail(path, "malformed shape " + text);
            std::vector<std::size_t> shape;
            std::string number;
            for (char c : text.substr(1, text.size() - 2) + ",")
            {
                if (c >= '0' && c <= '9')
                    number += c;
                else if (c == ',')
                {
                    if (!number.empty())
                        shape.push_back(std::stoull(number));
                    number.clear();
                }
                else if (c != ' ')
                    fail(path, "malformed shape " + text);
            }
            return shape;
        }
    }  // namespace npy_detail

    /// Reads a float32 C-order array of rank 1 to 3; throws std::runtime_error naming `path`.
    inline npy_array read_npy(std::string const& path)
    {
        using npy_detail::fail;
        std::ifstream in(path, std::ios::binary);
        if (!in)
            fail(path, "cannot open for reading");
        char magic[8];
        if (!in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
            fail(path, "not a .npy file (bad magic)");
        unsigned const major = static_cast<unsigned char>(magic[6]);
        if (major < 1 || major > 3)
            fail(path, "unsupported .npy version " + std::to_string(major));
        unsigned char size_bytes[4] = {};
        std::size_t const width = major == 1 ? 2 : 4;
        if (!in.read(reinterpret_cast<char*>(size_bytes), static_cast<std::streamsize>(width)))
            fail(path, "truncated .npy header");
        std::size_t header_size = 0;
        for (std::size_t i = width; i-- > 0;)
            header_size = header_size * 256 + size_bytes[i];
        std::string header(header_size, '\0');
        if (!in.read(&header[0], static_cast<std::streamsize>(header_size)))
            fail(path, "truncated .npy header");

        std::string const descr = npy_detail::field(header, "descr", path);
        if (descr != "'<f4'" && descr != "'float32'")
            fail(path, "dtype " + descr + " is not little-endian float32 ('<f4'); convert with .astype(numpy.float32)");
        if (npy_detail::field(header, "fortran_order", path) != "False")
            fail(path, "Fortran order is not supported; save numpy.ascontiguousarray(a)");
        npy_array array;
        array.shape = npy_detail::parse_shape(npy_detail::field(header, "shape", path), path);
        if (array.shape.empty() || array.shape.size() > 3)
            fail(path, "rank " + std::to_string(array.shape.size()) + " is not supported (1 to 3)");
        std::size_t count = 1;
        for (std::size_t n : array.shape)
            count *= n;
        array.data.resize(count);
        if (!in.read(reinterpret_cast<char*>(array.data.data()), static_cast<std::streamsize>(count * sizeof(float))))
            fail(path, "truncated data: the shape needs " + std::to_string(count * sizeof(float)) + " bytes");
        return array;
    }

    /// Writes a float32 C-order array (.npy version 1.0); throws std::runtime_error naming `path`.
    inline void write_npy(std::string const& path, std::vector<std::size_t> const& shape, float const* data)
    {
        std::string dims;
        std::size_t count = 1;
        for (std::size_t n : shape)
        {
            dims += std::to_string(n) + ", ";
            count *= n;
        }
        if (!dims.empty())
            dims.erase(dims.size() - (shape.size() > 1 ? 2 : 1));  // "(4, 2, 8)", but "(4,)" for rank 1
        std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
        std::size_t const unpadded = 10 + header.size() + 1;  // magic + version + size, the text, '\n'
        header.append((64 - unpadded % 64) % 64, ' ');
        header += '\n';
        std::ofstream out(path, std::ios::binary);
        if (!out)
            npy_detail::fail(path, "cannot open for writing");
        out.write("\x93NUMPY\x01\x00", 8);
        unsigned char const size_bytes[2] = {static_cast<unsigned char>(header.size() & 0xFF), static_cast<unsigned char>(header.size() >> 8)};
        out.write(reinterpret_cast<char const*>(size_bytes), 2);
        out.write(header.data(), static_cast<std::streamsize>(header.size()));
        out.write(reinterpret_cast<char const*>(data), static_cast<std::streamsize>(count * sizeof(float)));
        if (!out)
            npy_detail::fail(path, "write failed");
    }
}  // namespace deltaattn_tools

#endif  // DELTAATTN_TOOLS_NPY_HPP
