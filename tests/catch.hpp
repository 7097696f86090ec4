// Catch2 v2 (Debian 12: <catch2/catch.hpp>) or v3 (newer distros: split headers),
// behind one include, plus the few names that moved between them.
#ifndef DELTAATTN_TESTS_CATCH_HPP
#define DELTAATTN_TESTS_CATCH_HPP

#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#define DELTAATTN_CATCH_V3 1
#else
#include <catch2/catch.hpp>
#define DELTAATTN_CATCH_V3 0
#endif

#include <string>

namespace deltaattn_test
{
    /// A matcher: the message contains `text`.
    inline auto contains(std::string const& text)
    {
#if DELTAATTN_CATCH_V3
        return Catch::Matchers::ContainsSubstring(text);
#else
        return Catch::Contains(text);
#endif
    }
}  // namespace deltaattn_test

#endif  // DELTAATTN_TESTS_CATCH_HPP
