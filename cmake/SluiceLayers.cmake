# Layers the build enforces (docs/ARCHITECTURE.md, "Layers").
#
# Sources include headers by their path from the repository root
# ("common/sl_log.h", "scheduler/core/sl_core.h", <sluice/status.h>). No
# target gets the repository root itself as an include directory: each gets
# an include root of its own in the build tree, ${CMAKE_BINARY_DIR}/layers/
# <target>, holding symbolic links to only the folders and headers of its
# layer, under their usual paths. A target that links a layer's library sees
# that layer's headers (PUBLIC roots travel along target_link_libraries);
# a file that includes a header of a layer it does not link, such as one
# above it, fails to compile with "No such file or directory".
#
# Rejected: rewriting every include to be relative to its own folder (every
# file would change, and the paths would no longer say which layer a header
# belongs to); a script that greps the includes (a second list of the layers
# to keep in step with the link graph, which CMake already has).

# The links are made again at every configuration, so one dropped from a
# list does not outlive it. REMOVE_RECURSE removes links, never what they
# point to.
file(REMOVE_RECURSE ${CMAKE_BINARY_DIR}/layers)

# sl_layer(<target> <PUBLIC|PRIVATE|INTERFACE> [DIRS folder...] [FILES header...])
#
# Give <target> an include root that holds the folders DIRS (paths from the
# repository root, such as scheduler/core; everything under them) and the
# single headers FILES (such as executor/sl_backend.h; a header under
# include/ appears without that prefix, as sluice/status.h). A folder or
# header missing from this checkout is skipped. Calls for the same target
# add to its root (a PRIVATE root is a second one, <target>.private, so that
# what a target keeps to itself never reaches those that link it).
function(sl_layer target scope)
  cmake_parse_arguments(L "" "" "DIRS;FILES" ${ARGN})
  set(root ${CMAKE_BINARY_DIR}/layers/${target})
  if(scope STREQUAL "PRIVATE")
    set(root ${root}.private)
  endif()
  foreach(path ${L_DIRS} ${L_FILES})
    if(NOT EXISTS ${CMAKE_SOURCE_DIR}/${path})
      continue()
    endif()
    string(REGEX REPLACE "^include/" "" name ${path})
    get_filename_component(parent ${root}/${name} DIRECTORY)
    file(MAKE_DIRECTORY ${parent})
    if(NOT IS_SYMLINK ${root}/${name})
      file(CREATE_LINK ${CMAKE_SOURCE_DIR}/${path} ${root}/${name} SYMBOLIC)
    endif()
  endforeach()
  get_target_property(dirs ${target} INCLUDE_DIRECTORIES)
  get_target_property(idirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
  set(entry $<BUILD_INTERFACE:${root}>)
  if(NOT entry IN_LIST dirs AND NOT entry IN_LIST idirs)
    target_include_directories(${target} ${scope} ${entry})
  endif()
endfunction()
