# Driver of the packaging tests (cmake -P). HEED_STEP selects what to do:
#   install           cmake --install HEED_BINARY_DIR into HEED_PREFIX (fresh)
#   find_package      configure + build consumer/ against HEED_PREFIX, run its programs
#   add_subdirectory  configure + build consumer/ with add_subdirectory(HEED_SOURCE_DIR), run
cmake_minimum_required(VERSION 3.16)

function(run_checked)
  string(REPLACE ";" " " _pretty "${ARGN}")
  message(STATUS "+ ${_pretty}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "command failed (${_rc}): ${_pretty}")
  endif()
endfunction()

if(NOT HEED_CONFIG OR HEED_CONFIG STREQUAL "NoConfig")
  set(HEED_CONFIG Release)
endif()
if(NOT HEED_CONSUMER_CONFIG)
  set(HEED_CONSUMER_CONFIG "${HEED_CONFIG}")
endif()

if(HEED_STEP STREQUAL "install")
  file(REMOVE_RECURSE "${HEED_PREFIX}")
  run_checked("${CMAKE_COMMAND}" --install "${HEED_BINARY_DIR}" --prefix "${HEED_PREFIX}"
              --config "${HEED_CONFIG}")
  foreach(f include/heed/c/heed.h include/heed/attention/dense_dispatch.hpp)
    if(NOT EXISTS "${HEED_PREFIX}/${f}")
      message(FATAL_ERROR "not installed: ${f}")
    endif()
  endforeach()
  file(GLOB_RECURSE _cfg "${HEED_PREFIX}/*/heedConfig.cmake")
  file(GLOB_RECURSE _ver "${HEED_PREFIX}/*/heedConfigVersion.cmake")
  if(NOT _cfg OR NOT _ver)
    message(FATAL_ERROR "heedConfig.cmake / heedConfigVersion.cmake not installed")
  endif()
  return()
endif()

if(NOT HEED_STEP STREQUAL "find_package" AND NOT HEED_STEP STREQUAL "add_subdirectory")
  message(FATAL_ERROR "unknown HEED_STEP '${HEED_STEP}'")
endif()

# The flags the heed build itself used, so sanitized / no-exception libraries link.
set(_cflags "")
set(_ldflags "")
if(HEED_SANITIZE)
  string(APPEND _cflags " -fsanitize=address,undefined -fno-omit-frame-pointer"
                        " -fno-sanitize-recover=all")
  string(APPEND _ldflags " -fsanitize=address,undefined")
endif()
set(_cxxflags "${_cflags}")
if(HEED_NO_EXCEPTIONS)
  string(APPEND _cxxflags " -fno-exceptions")
endif()

set(_args
  -S "${HEED_CONSUMER_SOURCE_DIR}" -B "${HEED_WORK_DIR}"
  -G "${HEED_GENERATOR}"
  "-DCMAKE_BUILD_TYPE=${HEED_CONSUMER_CONFIG}"
  "-DCMAKE_C_COMPILER=${HEED_C_COMPILER}"
  "-DCMAKE_CXX_COMPILER=${HEED_CXX_COMPILER}"
  "-DCMAKE_C_FLAGS=${_cflags}"
  "-DCMAKE_CXX_FLAGS=${_cxxflags}"
  "-DCMAKE_EXE_LINKER_FLAGS=${_ldflags}"
  "-DHEED_CONSUMER_MODE=${HEED_STEP}"
  -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON)
if(HEED_MAKE_PROGRAM)
  list(APPEND _args "-DCMAKE_MAKE_PROGRAM=${HEED_MAKE_PROGRAM}")
endif()
if(HEED_STEP STREQUAL "find_package")
  list(APPEND _args "-DCMAKE_PREFIX_PATH=${HEED_PREFIX}" "-DHEED_EXPECTED_PREFIX=${HEED_PREFIX}"
       "-DHEED_C_TEST_SOURCE=${HEED_C_TEST_SOURCE}"
       "-DHEED_C_CACHE_TEST_SOURCE=${HEED_C_CACHE_TEST_SOURCE}"
       "-DHEED_CUSTOM_POLICY_SOURCE=${HEED_CUSTOM_POLICY_SOURCE}")
else()
  # What this step checks is that heed builds and links inside another project, not its
  # kernels (the main build compiles and tests every one): only the baseline ISA's are built,
  # which keeps the step to a minute.
  list(APPEND _args "-DHEED_SOURCE_DIR=${HEED_SOURCE_DIR}" -DHEED_BUILD_TESTS=OFF
       -DHEED_BUILD_BENCHMARKS=OFF -DHEED_BUILD_EXAMPLES=OFF
       -DHEED_ENABLE_AVX2=OFF -DHEED_ENABLE_AVX512=OFF
       "-DHEED_SANITIZE=${HEED_SANITIZE}" "-DHEED_NO_EXCEPTIONS=${HEED_NO_EXCEPTIONS}")
endif()

file(REMOVE_RECURSE "${HEED_WORK_DIR}")
run_checked("${CMAKE_COMMAND}" ${_args})
run_checked("${CMAKE_COMMAND}" --build "${HEED_WORK_DIR}" --config "${HEED_CONSUMER_CONFIG}" -j 2)

# The consumer writes the list of programs it built.
file(STRINGS "${HEED_WORK_DIR}/programs.txt" _programs)
if(NOT _programs)
  message(FATAL_ERROR "the consumer built no programs")
endif()
foreach(p IN LISTS _programs)
  set(_exe "${HEED_WORK_DIR}/${p}")
  if(NOT EXISTS "${_exe}")
    file(GLOB _exe "${HEED_WORK_DIR}/${HEED_CONSUMER_CONFIG}/${p}*")
  endif()
  run_checked("${_exe}")
endforeach()
