# deltaattn_find_xsimd(): makes sure a usable target named `xsimd` exists, on every xsimd
# we support, and sets DELTAATTN_XSIMD_FOUND. Used by CMakeLists.txt and by the installed
# deltaattnConfig.cmake, so a build tree and an install behave alike.
#
# - xsimd 8.x (Debian 12) exports a target whose interface links `xtl`, even when xtl is
#   not installed (`cannot find -lxtl`); xsimd needs only xtl's headers, and only for
#   XSIMD_ENABLE_XTL_COMPLEX. Drop that link when no `xtl` target exists. This is done
#   even when the project found xsimd before us: its target is the one we link.
# - xsimd 12+ exports the same plain `xsimd` target, without the stray link.
# - No CMake package at all: fall back to xsimd/xsimd.hpp on the include path.
macro(deltaattn_find_xsimd)
  if(NOT TARGET xsimd)
    find_package(xsimd QUIET)
  endif()
  if(NOT TARGET xsimd)
    find_path(DELTAATTN_XSIMD_INCLUDE_DIR xsimd/xsimd.hpp)
    if(DELTAATTN_XSIMD_INCLUDE_DIR)
      add_library(xsimd INTERFACE IMPORTED)
      set_target_properties(xsimd PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${DELTAATTN_XSIMD_INCLUDE_DIR}")
    endif()
  endif()
  if(TARGET xsimd)
    get_target_property(_deltaattn_xsimd_libs xsimd INTERFACE_LINK_LIBRARIES)
    if(_deltaattn_xsimd_libs AND NOT TARGET xtl)
      list(FIND _deltaattn_xsimd_libs xtl _deltaattn_xtl_index)
      if(NOT _deltaattn_xtl_index EQUAL -1)
        list(REMOVE_ITEM _deltaattn_xsimd_libs xtl)
        set_property(TARGET xsimd PROPERTY INTERFACE_LINK_LIBRARIES "${_deltaattn_xsimd_libs}")
      endif()
    endif()
    set(DELTAATTN_XSIMD_FOUND TRUE)
  else()
    set(DELTAATTN_XSIMD_FOUND FALSE)
  endif()
  unset(_deltaattn_xsimd_libs)
  unset(_deltaattn_xtl_index)
endmacro()
