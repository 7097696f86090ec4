# Builds and runs tests/package/consumer against deltaattn, as a user would:
#   MODE=find_package      `cmake --install` the build INSTALL_FROM into a prefix under
#                          WORK_DIR, then find_package(deltaattn VERSION) from there
#   MODE=add_subdirectory  add_subdirectory(SOURCE_DIR) with the options left at defaults
# The consumer uses the caller's GENERATOR, MAKE_PROGRAM, CXX_COMPILER, CXX_FLAGS, CONFIG.
cmake_minimum_required(VERSION 3.16)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(config_args)
if(CONFIG)
  set(config_args --config ${CONFIG})
endif()
set(consumer_args
  -G ${GENERATOR}
  -DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}
  -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
  "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
  -DCMAKE_BUILD_TYPE=${CONFIG}
  -DDELTAATTN_CONSUMER_MODE=${MODE}
  -DDELTAATTN_EXPECTED_VERSION=${VERSION})
if(MODE STREQUAL "find_package")
  set(prefix ${WORK_DIR}/prefix)
  run(${CMAKE_COMMAND} --install ${INSTALL_FROM} --prefix ${prefix} ${config_args})
  list(APPEND consumer_args -DCMAKE_PREFIX_PATH=${prefix})
else()
  list(APPEND consumer_args -DDELTAATTN_SOURCE_DIR=${SOURCE_DIR})
endif()
run(${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR}/consumer -B ${WORK_DIR}/consumer ${consumer_args})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer ${config_args})
find_program(consumer_exe consumer PATHS ${WORK_DIR}/consumer ${WORK_DIR}/consumer/${CONFIG} NO_DEFAULT_PATH)
if(NOT consumer_exe)
  message(FATAL_ERROR "consumer executable not found under ${WORK_DIR}/consumer")
endif()
run(${consumer_exe})
