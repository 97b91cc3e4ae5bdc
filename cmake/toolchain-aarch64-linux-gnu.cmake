# Cross-compiles heed for aarch64 with Debian's g++-aarch64-linux-gnu; the tests run under
# qemu-user (Debian's qemu-user), which CMake calls for every test through
# CMAKE_CROSSCOMPILING_EMULATOR. See docs/arm64.md:
#
#   cmake -S . -B build-aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu)

# Libraries and headers of the target come from the cross sysroot; the header-only xsimd and
# Eigen (architecture-independent) from the host's packages, whose CMake files live in host
# paths. GoogleTest is built from Debian's sources (/usr/src/googletest): the host's library is
# x86-64.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
if(EXISTS /usr/lib/x86_64-linux-gnu/cmake/xsimd)
  set(xsimd_DIR /usr/lib/x86_64-linux-gnu/cmake/xsimd CACHE PATH "")
endif()
if(EXISTS /usr/share/eigen3/cmake)
  set(Eigen3_DIR /usr/share/eigen3/cmake CACHE PATH "")
endif()
if(EXISTS /usr/src/googletest/CMakeLists.txt)
  set(HEED_GTEST_SOURCE_DIR /usr/src/googletest CACHE PATH "")
endif()
