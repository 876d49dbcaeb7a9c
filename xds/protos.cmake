# Envoy's v3 API as C++ classes.
#
# The .proto files come from the npm package @grpc/grpc-js-xds at a pinned
# version (DESIGN.md, "Configuration"). The tarball is fetched once into a cache
# outside the build tree, its sha256 is checked, and only the import closure of
# the roots below is compiled. Nothing from the package is committed.

set(SKIFF_XDS_NPM_VERSION "1.14.1")
set(SKIFF_XDS_NPM_SHA256 "fd27db4119c139d5b59e8fe99d109bed04bff491302743ae3bf096667105c607")
set(SKIFF_PROTO_CACHE "$ENV{HOME}/.cache/skiff" CACHE PATH "Where the fetched API tarball is kept")

# The protos skiff reads or speaks. Their import closure is what gets compiled.
set(SKIFF_PROTO_ROOTS
  envoy/config/bootstrap/v3/bootstrap.proto
  envoy/service/discovery/v3/ads.proto
  envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto
  envoy/extensions/filters/http/router/v3/router.proto
  envoy/extensions/transport_sockets/tls/v3/tls.proto
  envoy/extensions/upstreams/http/v3/http_protocol_options.proto
  envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto
  envoy/extensions/filters/listener/original_dst/v3/original_dst.proto
  envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto
  envoy/extensions/access_loggers/file/v3/file.proto
  envoy/extensions/access_loggers/stream/v3/stream.proto
  envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto
  envoy/extensions/filters/http/fault/v3/fault.proto
  envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto
  envoy/extensions/filters/http/rbac/v3/rbac.proto
  envoy/extensions/filters/http/health_check/v3/health_check.proto
  envoy/extensions/filters/http/cors/v3/cors.proto
  envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto
)

find_program(NPM npm REQUIRED)
find_program(PROTOC protoc REQUIRED)

set(_tgz "${SKIFF_PROTO_CACHE}/grpc-grpc-js-xds-${SKIFF_XDS_NPM_VERSION}.tgz")
if(EXISTS "${_tgz}")
  file(SHA256 "${_tgz}" _sum)
  if(NOT _sum STREQUAL SKIFF_XDS_NPM_SHA256)
    message(STATUS "skiff: cached ${_tgz} has the wrong checksum; fetching again")
    file(REMOVE "${_tgz}")
  endif()
endif()
if(NOT EXISTS "${_tgz}")
  file(MAKE_DIRECTORY "${SKIFF_PROTO_CACHE}")
  message(STATUS "skiff: fetching @grpc/grpc-js-xds@${SKIFF_XDS_NPM_VERSION} with npm pack")
  execute_process(
    COMMAND ${NPM} pack --silent "@grpc/grpc-js-xds@${SKIFF_XDS_NPM_VERSION}"
    WORKING_DIRECTORY "${SKIFF_PROTO_CACHE}"
    RESULT_VARIABLE _rc OUTPUT_QUIET)
  if(NOT _rc EQUAL 0 OR NOT EXISTS "${_tgz}")
    message(FATAL_ERROR "skiff: npm pack @grpc/grpc-js-xds@${SKIFF_XDS_NPM_VERSION} failed (${_rc})")
  endif()
  file(SHA256 "${_tgz}" _sum)
  if(NOT _sum STREQUAL SKIFF_XDS_NPM_SHA256)
    file(REMOVE "${_tgz}")
    message(FATAL_ERROR "skiff: ${_tgz} sha256 ${_sum} != ${SKIFF_XDS_NPM_SHA256}")
  endif()
endif()

set(_api "${CMAKE_BINARY_DIR}/envoy-api")
set(_gen "${CMAKE_BINARY_DIR}/envoy-api-gen")
# The stamp names the package and the roots: changing either regenerates.
string(SHA256 _roots_hash "${SKIFF_PROTO_ROOTS}")
set(_stamp "${_gen}/.stamp-${SKIFF_XDS_NPM_SHA256}-${_roots_hash}")
set(_inc "${_api}/package/deps")
set(_proto_path
  "-I${_inc}/envoy-api" "-I${_inc}/xds" "-I${_inc}/googleapis"
  "-I${_inc}/protoc-gen-validate" "-I/usr/include")

if(NOT EXISTS "${_stamp}")
  file(REMOVE_RECURSE "${_api}" "${_gen}")
  file(MAKE_DIRECTORY "${_api}" "${_gen}")
  file(ARCHIVE_EXTRACT INPUT "${_tgz}" DESTINATION "${_api}" PATTERNS "package/deps/*")

  # The package's validate.proto predates the Envoy protos it ships with: they
  # use StringRules.ignore_empty, which it lacks. Add that one field back.
  set(_validate "${_inc}/protoc-gen-validate/validate/validate.proto")
  file(READ "${_validate}" _text)
  string(FIND "${_text}" "ignore_empty" _has)
  if(_has EQUAL -1)
    string(REPLACE "message StringRules {" "message StringRules {\n    optional bool ignore_empty = 26;"
      _text "${_text}")
    file(WRITE "${_validate}" "${_text}")
  endif()

  # protoc lists the whole import closure in a make-style dependency file, but
  # only for one input; so the roots are imported by one file of our own.
  set(_roots_text "syntax = \"proto3\";\n")
  foreach(_root IN LISTS SKIFF_PROTO_ROOTS)
    string(APPEND _roots_text "import public \"${_root}\";\n")
  endforeach()
  file(WRITE "${_gen}/roots/skiff_roots.proto" "${_roots_text}")
  execute_process(
    COMMAND ${PROTOC} ${_proto_path} "-I${_gen}/roots" --include_imports
      "--descriptor_set_out=${_gen}/closure.pb" "--dependency_out=${_gen}/closure.d"
      skiff_roots.proto
    RESULT_VARIABLE _rc ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "skiff: protoc closure failed:\n${_err}")
  endif()
  file(READ "${_gen}/closure.d" _deps)
  string(REGEX REPLACE "\\\\\n" " " _deps "${_deps}")
  string(REGEX MATCHALL "[^ \t\n:]+\\.proto" _files "${_deps}")
  set(_closure "")
  foreach(_f IN LISTS _files)
    if(_f MATCHES "^/usr/include/")  # well-known types ship in libprotobuf
      continue()
    endif()
    foreach(_root envoy-api xds googleapis protoc-gen-validate)
      string(FIND "${_f}" "${_inc}/${_root}/" _at)
      if(_at EQUAL 0)
        string(LENGTH "${_inc}/${_root}/" _n)
        string(SUBSTRING "${_f}" ${_n} -1 _rel)
        list(APPEND _closure "${_rel}")
      endif()
    endforeach()
  endforeach()
  list(REMOVE_DUPLICATES _closure)
  list(LENGTH _closure _count)
  message(STATUS "skiff: generating C++ for ${_count} protos")
  execute_process(
    COMMAND ${PROTOC} ${_proto_path} "--cpp_out=${_gen}" ${_closure}
    RESULT_VARIABLE _rc ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "skiff: protoc --cpp_out failed:\n${_err}")
  endif()
  file(WRITE "${_stamp}" "${_closure}")
endif()

file(READ "${_stamp}" _closure)
set(SKIFF_API_SOURCES "")
foreach(_rel IN LISTS _closure)
  string(REGEX REPLACE "\\.proto$" ".pb.cc" _cc "${_rel}")
  list(APPEND SKIFF_API_SOURCES "${_gen}/${_cc}")
endforeach()

# An object library, not a static one: a config names types through Any
# (typed_config), so every generated descriptor must be linked in and
# registered even though no code references it.
add_library(skiff_api OBJECT ${SKIFF_API_SOURCES})
target_include_directories(skiff_api SYSTEM PUBLIC "${_gen}")
target_link_libraries(skiff_api PUBLIC ${SKIFF_PROTOBUF})
target_compile_options(skiff_api PRIVATE -w)

# For code generated elsewhere against the same API (test gRPC services):
# protoc's include path and the folder holding the generated headers.
set(SKIFF_PROTO_PATH ${_proto_path})
set(SKIFF_API_GEN_DIR "${_gen}")
