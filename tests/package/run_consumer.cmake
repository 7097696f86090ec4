# Builds and runs tests/package/consumer against deltaattn, as a user would:
#   MODE=find_package      install deltaattn to a prefix, then find_package(deltaattn)
#   MODE=add_subdirectory  add_subdirectory(<deltaattn source>)
cmake_minimum_required(VERSION 3.16)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}")
  endif()
endfunction()

set(work ${BUILD_DIR}/${MODE})
file(REMOVE_RECURSE ${work})
set(consumer_args -DDELTAATTN_CONSUMER_MODE=${MODE})
if(MODE STREQUAL "find_package")
  set(prefix ${work}/prefix)
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${work}/deltaattn -G ${GENERATOR}
      -DDELTAATTN_BUILD_TESTS=OFF -DDELTAATTN_BUILD_EXAMPLES=OFF -DDELTAATTN_BUILD_BENCHMARKS=OFF
      -DDELTAATTN_INSTALL=ON -DCMAKE_INSTALL_PREFIX=${prefix})
  run(${CMAKE_COMMAND} --install ${work}/deltaattn)
  list(APPEND consumer_args -DCMAKE_PREFIX_PATH=${prefix})
else()
  list(APPEND consumer_args -DDELTAATTN_SOURCE_DIR=${SOURCE_DIR})
endif()
run(${CMAKE_COMMAND} -S ${CMAKE_CURRENT_LIST_DIR}/consumer -B ${work}/consumer -G ${GENERATOR} ${consumer_args})
run(${CMAKE_COMMAND} --build ${work}/consumer)
run(${work}/consumer/consumer)
