# Cross build for 32-bit ARMv7 Linux, hard-float ABI with NEON (xsimd's neon backend),
# with Debian's g++-arm-linux-gnueabihf; tests run under qemu-arm (Debian: qemu-user).
#
#   cmake --workflow --preset armv7
#
# Invariants:
# - Debian's armhf default FPU (vfpv3-d16) has no NEON, and xsimd then fails to
#   compile: -mfpu=neon-vfpv4 is part of the compiler flags here, not left to users.
#   -mfloat-abi=hard matches the armhf ABI of /usr/arm-linux-gnueabihf's libraries.
# - Target libraries come from /usr/arm-linux-gnueabihf only; header-only dependencies
#   are the host's (see aarch64-linux-gnu.cmake).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR armv7l)

set(DELTAATTN_CROSS_TRIPLE arm-linux-gnueabihf)
set(CMAKE_C_COMPILER ${DELTAATTN_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${DELTAATTN_CROSS_TRIPLE}-g++)
set(CMAKE_C_FLAGS_INIT "-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard")
set(CMAKE_CXX_FLAGS_INIT "-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard")

include(${CMAKE_CURRENT_LIST_DIR}/debian-cross-common.cmake)
deltaattn_cross_setup(qemu-arm)
