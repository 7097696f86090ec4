# Finds xsimd and makes sure a target named `xsimd` exists, on every xsimd we support.
#
# Debian 12's xsimd 8.1 exports a target whose interface links `xtl`, a library that
# is not installed (xsimd needs only its headers): clear that link. xsimd 12+ behaves.
# Without a CMake package at all, fall back to the header on the include path.
macro(deltaattn_find_xsimd)
  if(NOT TARGET xsimd)
    find_package(xsimd QUIET)
    if(TARGET xsimd)
      if(xsimd_VERSION VERSION_LESS 9)
        set_target_properties(xsimd PROPERTIES INTERFACE_LINK_LIBRARIES "")
      endif()
    else()
      find_path(DELTAATTN_XSIMD_INCLUDE_DIR xsimd/xsimd.hpp)
      if(NOT DELTAATTN_XSIMD_INCLUDE_DIR)
        message(FATAL_ERROR "deltaattn needs xsimd (Debian/Ubuntu: apt-get install libxsimd-dev)")
      endif()
      add_library(xsimd INTERFACE IMPORTED)
      set_target_properties(xsimd PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${DELTAATTN_XSIMD_INCLUDE_DIR}")
    endif()
  endif()
endmacro()
