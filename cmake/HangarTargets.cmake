# Helpers that keep every component's CMakeLists.txt short and uniform.
#
#   hangar_test(NAME <name> SOURCES <files...> LABELS <kind> <component>
#               [DEPS <targets...>] [TIMEOUT <seconds>] [ARGS <args...>])
#     Builds a GoogleTest binary and registers it with ctest. LABELS must name
#     the kind (unit, integration, e2e, fuzz) and the component (common,
#     engine, runner, catalog, scheduler, optimizer, deployment, gateway, cli)
#     so that `ctest -L gateway` or `ctest -LE fuzz` select what they say.

set(HANGAR_TEST_KINDS unit integration e2e fuzz)
set(HANGAR_COMPONENTS common engine runner catalog scheduler optimizer
    deployment gateway cli)

function(hangar_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LABELS;DEPS;ARGS" ${ARGN})
  if(NOT HANGAR_BUILD_TESTS)
    return()
  endif()
  set(has_kind OFF)
  set(has_component OFF)
  foreach(label ${T_LABELS})
    if(label IN_LIST HANGAR_TEST_KINDS)
      set(has_kind ON)
    endif()
    if(label IN_LIST HANGAR_COMPONENTS)
      set(has_component ON)
    endif()
  endforeach()
  if(NOT has_kind OR NOT has_component)
    message(FATAL_ERROR "hangar_test(${T_NAME}): LABELS must name a kind "
            "(${HANGAR_TEST_KINDS}) and a component (${HANGAR_COMPONENTS})")
  endif()
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_DEPS} GTest::gmock GTest::gtest_main)
  add_test(NAME ${T_NAME} COMMAND ${T_NAME} ${T_ARGS})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${T_NAME} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT})
endfunction()
