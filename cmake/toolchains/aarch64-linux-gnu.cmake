# Cross build for 64-bit ARM Linux (xsimd's neon64 backend) with Debian's
# g++-aarch64-linux-gnu; tests run under qemu-aarch64 (Debian: qemu-user).
#
#   cmake --workflow --preset aarch64
#
# Invariants:
# - Target libraries (libstdc++, glibc) come from /usr/aarch64-linux-gnu only.
# - Header-only dependencies (xsimd, Eigen, Catch2) and their CMake packages are the
#   host's: they hold no compiled code, so the x86 install serves every target. Debian's
#   cross g++ already searches /usr/include last, after its own sysroot headers.
# - Executables run through CMAKE_CROSSCOMPILING_EMULATOR, so CTest needs no binfmt.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(DELTAATTN_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${DELTAATTN_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${DELTAATTN_CROSS_TRIPLE}-g++)

include(${CMAKE_CURRENT_LIST_DIR}/debian-cross-common.cmake)
deltaattn_cross_setup(qemu-aarch64)
