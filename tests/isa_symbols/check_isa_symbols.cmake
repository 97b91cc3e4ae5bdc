# Driver of the isa_symbols test (cmake -P; CMakeLists.txt beside it). Reads the weak code
# symbols (nm type W: inline functions and template instantiations, emitted by every translation
# unit that uses them, of which the linker keeps one copy) of every object in HEED_OBJECTS_FILE
# and fails, listing them, when one is defined by translation units of different groups: each
# ISA of HEED_ISAS is a group (its objects: src/isa/<body>_<isa>[_d<D>]), every other object is
# the group "non-isa". Within a group the flags are the same and sharing is harmless; across
# groups the copy the linker keeps may hold instructions of an ISA the CPU lacks. Weak data
# (vtables, typeinfo, the statics of inline functions: nm V, u) is not checked: it holds no
# instructions, and the code a vtable points to is itself a weak code symbol.
#
# heed's own symbols (namespace heed) must keep to one group: the per-ISA namespaces make them
# distinct. Others (the standard library's, xsimd's), which heed cannot rename, may also be
# shared by the non-ISA objects and the ISAs of HEED_ISAS_BASELINE, compiled with the same flags
# (their copies are the same code): at -O1, xsimd's SSE2 exp and log1p are not inlined in the
# SSE2 kernels nor in the scores the C API compiles. Without optimization (HEED_OPTIMIZED off:
# -O0, a Debug build) nothing is inlined and dozens of those (std::min, std::copy, xsimd's
# constants) are shared by every ISA: they are listed, not checked.
cmake_minimum_required(VERSION 3.16)

if(NOT HEED_NM OR NOT HEED_OBJECTS_FILE OR NOT HEED_ISAS)
  message(FATAL_ERROR "usage: cmake -DHEED_NM=<nm> -DHEED_OBJECTS_FILE=<file> "
    "-DHEED_ISAS=<isa;...> [-DHEED_ISAS_BASELINE=<isa;...>] [-DHEED_OPTIMIZED=ON|OFF] "
    "[-DHEED_CXXFILT=<c++filt>] -P ${CMAKE_CURRENT_LIST_FILE}")
endif()
file(STRINGS "${HEED_OBJECTS_FILE}" _objects)

set(_all "")      # every weak code symbol seen (mangled)
set(_groups "")   # the groups that have objects
foreach(obj IN LISTS _objects)
  if(NOT EXISTS "${obj}")
    message(FATAL_ERROR "no object ${obj}: build heed first")
  endif()
  get_filename_component(_name "${obj}" NAME)
  set(_group non-isa)
  foreach(isa IN LISTS HEED_ISAS)
    if(obj MATCHES "/isa/[^/]*_${isa}(_d[0-9]+)?\\.[^/]*$")
      set(_group ${isa})
    endif()
  endforeach()
  list(APPEND _groups ${_group})
  execute_process(COMMAND "${HEED_NM}" --defined-only "${obj}"
    RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "${HEED_NM} failed on ${obj}:\n${_err}")
  endif()
  # "<address> W <mangled name>" (a mangled name has no blank, semicolon or bracket)
  string(REGEX MATCHALL "[0-9a-fA-F]+ W [^\n]+" _lines "${_out}")
  foreach(line IN LISTS _lines)
    string(REGEX REPLACE "^[0-9a-fA-F]+ W " "" _sym "${line}")
    if(NOT _sym MATCHES "^_Z")  # not C++: a compiler's helper (clang's __clang_call_terminate)
      continue()
    endif()
    if(NOT DEFINED _in_${_sym})
      list(APPEND _all "${_sym}")
      set(_in_${_sym} "")
      set(_at_${_sym} "")
    endif()
    if(NOT _group IN_LIST _in_${_sym})
      list(APPEND _in_${_sym} ${_group})
    endif()
    list(APPEND _at_${_sym} ${_name})
  endforeach()
endforeach()

# Nothing inspected is no pass: every ISA of the build must have objects with weak symbols.
list(REMOVE_DUPLICATES _groups)
foreach(isa IN LISTS HEED_ISAS)
  if(NOT isa IN_LIST _groups)
    message(FATAL_ERROR "no object of ISA ${isa} among the ${HEED_OBJECTS_FILE} objects")
  endif()
endforeach()
list(LENGTH _all _n_all)
if(_n_all EQUAL 0)
  message(FATAL_ERROR "no weak code symbol in the objects: nm read nothing?")
endif()

set(_report "")      # shared symbols that fail the test
set(_n_bad 0)
set(_unchecked "")   # unoptimized build: shared symbols outside heed
set(_n_unchecked 0)
foreach(sym IN LISTS _all)
  set(_eff ${_in_${sym}})
  set(_own OFF)
  if(sym MATCHES "^_ZZ?N[KVRO]*4heed")
    set(_own ON)
  else()  # not heed's own: the flags decide
    foreach(isa IN LISTS HEED_ISAS_BASELINE)
      list(TRANSFORM _eff REPLACE "^${isa}$" non-isa)
    endforeach()
    list(REMOVE_DUPLICATES _eff)
  endif()
  list(LENGTH _eff _n)
  if(_n GREATER 1)
    set(_shown "${sym}")
    if(HEED_CXXFILT)
      execute_process(COMMAND "${HEED_CXXFILT}" "${sym}" OUTPUT_VARIABLE _shown
        OUTPUT_STRIP_TRAILING_WHITESPACE)
    endif()
    string(REPLACE ";" " " _g "${_in_${sym}}")
    list(REMOVE_DUPLICATES _at_${sym})
    string(REPLACE ";" " " _at "${_at_${sym}}")
    set(_entry "  ${_shown}\n    groups: ${_g}\n    objects: ${_at}\n")
    if(_own OR HEED_OPTIMIZED)
      math(EXPR _n_bad "${_n_bad} + 1")
      string(APPEND _report "${_entry}")
    else()
      math(EXPR _n_unchecked "${_n_unchecked} + 1")
      string(APPEND _unchecked "${_entry}")
    endif()
  endif()
endforeach()
list(LENGTH _objects _n_obj)
if(_n_bad GREATER 0)
  message(FATAL_ERROR "${_n_bad} weak code symbols are defined by translation units of "
    "different ISAs (or by a per-ISA one and another): the linker keeps one copy for all, "
    "compiled with one ISA's flags. Code a per-ISA translation unit compiles belongs inside "
    "HEED_ISA_BEGIN / HEED_ISA_END (heed/config.hpp); a standard library or xsimd template "
    "must be inlined there, or take an argument of the ISA's namespace:\n${_report}")
endif()
if(_n_unchecked GREATER 0)
  message(STATUS "not an optimized build: ${_n_unchecked} weak code symbols of the standard "
    "library and xsimd, not inlined, are shared between ISAs (not checked; such a library must "
    "only run on CPUs with every ISA it holds):\n${_unchecked}")
endif()
set(_which "heed's or any other")
if(NOT HEED_OPTIMIZED)
  set(_which "heed's")
endif()
message(STATUS "${_n_all} weak code symbols in ${_n_obj} objects (groups: ${_groups}): "
  "none of ${_which} is shared between groups")
