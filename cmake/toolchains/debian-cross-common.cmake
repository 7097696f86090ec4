# Shared by the Debian cross toolchain files: where target libraries live, where the
# host's header-only packages may be found, and how CTest runs target executables.
# Expects DELTAATTN_CROSS_TRIPLE (e.g. aarch64-linux-gnu).

set(DELTAATTN_CROSS_ROOT /usr/${DELTAATTN_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH ${DELTAATTN_CROSS_ROOT})
# Programs (ninja, qemu) are the host's; libraries must be the target's.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
# Headers and CMake packages: the target's first, then the host's header-only ones
# (xsimd, Eigen, Catch2). Compiled packages (Google Benchmark) must stay off: the
# presets turn the benchmarks off for cross builds.
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# deltaattn_cross_setup(<qemu>): run target executables (tests, try_run) under
# `<qemu> -L <target root>`, which finds the target's dynamic loader and libraries
# without binfmt or a chroot.
macro(deltaattn_cross_setup qemu)
  find_program(DELTAATTN_CROSS_QEMU ${qemu})
  if(DELTAATTN_CROSS_QEMU)
    set(CMAKE_CROSSCOMPILING_EMULATOR "${DELTAATTN_CROSS_QEMU};-L;${DELTAATTN_CROSS_ROOT}")
  else()
    message(WARNING "${qemu} not found (Debian: apt-get install qemu-user): "
                    "the build works, but its tests cannot run")
  endif()
endmacro()
