# The CMake package of nspl_filler's C++ library, installed inside the Python package:
#
#   find_package(NsplFiller REQUIRED)
#   target_link_libraries(app PRIVATE nspl_filler::nspl_filler)
#
# CMAKE_PREFIX_PATH must name this package's prefix and that of the torch it was built with;
# `python -m nspl_filler --cmake-prefix-path` prints both. The target brings torch along.
include(CMakeFindDependencyMacro)
find_dependency(Torch)

get_filename_component(_nspl_filler_root "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(_nspl_filler_library "${_nspl_filler_root}/lib/libnspl_filler.so")
if(NOT EXISTS "${_nspl_filler_library}")
  set(NsplFiller_FOUND FALSE)
  set(NsplFiller_NOT_FOUND_MESSAGE
      "${_nspl_filler_library} does not exist: nspl_filler's C++ library is not built "
      "(pip install --no-build-isolation -e . in its checkout, or install its wheel)")
  return()
endif()

if(NOT TARGET nspl_filler::nspl_filler)
  add_library(nspl_filler::nspl_filler SHARED IMPORTED)
  set_target_properties(nspl_filler::nspl_filler PROPERTIES
    IMPORTED_LOCATION "${_nspl_filler_library}"
    IMPORTED_SONAME "libnspl_filler.so"
    INTERFACE_INCLUDE_DIRECTORIES "${_nspl_filler_root}/include"
    INTERFACE_COMPILE_FEATURES cxx_std_17
    # Loading the library registers the nspl_filler ops. A program that reaches them only
    # through the dispatcher uses none of its symbols, and --as-needed would drop it.
    INTERFACE_LINK_LIBRARIES "torch;-Wl,--no-as-needed,\"${_nspl_filler_library}\" -Wl,--as-needed")
endif()

set(NsplFiller_INCLUDE_DIRS "${_nspl_filler_root}/include")
set(NsplFiller_LIBRARIES nspl_filler::nspl_filler)
unset(_nspl_filler_library)
unset(_nspl_filler_root)
