// heed version, parsed by CMake.
#pragma once

#define HEED_VERSION_MAJOR 0
#define HEED_VERSION_MINOR 1
#define HEED_VERSION_PATCH 0

namespace heed {
constexpr int version_major = HEED_VERSION_MAJOR;
constexpr int version_minor = HEED_VERSION_MINOR;
constexpr int version_patch = HEED_VERSION_PATCH;
}  // namespace heed
