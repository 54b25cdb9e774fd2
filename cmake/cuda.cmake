# cmake/cuda.cmake — the CUDA backend: kernels/*.cu compiled by nvcc and src/cuda/*.cpp (host code, C++
# against the CUDA runtime and cuBLAS), added to libinfer and infer_internal with INFER_HAVE_CUDA defined
# so that make_backend("cuda") can create it. Included by the top-level CMakeLists.txt after the library
# targets exist; does nothing unless INFER_HAVE_CUDA (INFER_CUDA=AUTO found nvcc, or INFER_CUDA=ON).
#
# GPU targets (CMAKE_CUDA_ARCHITECTURES): a value set by the user (-D or the CUDAARCHS environment
# variable) is used as is. Otherwise the default below, or, with -DINFER_CUDA_ARCHS_CI=ON, one target only
# (CI has 2 cores and a time budget; the full list is a separate build). The choice is printed.
# tools/ptxas_report.sh checks registers and spills for every kernel and target without building.
#
# The same sources also build for the SIMT emulator (cmake/simt.cmake), with or without nvcc.

if(NOT INFER_HAVE_CUDA OR NOT EXISTS ${PROJECT_SOURCE_DIR}/src/cuda/backend_cuda.cpp)
  return()
endif()

option(INFER_CUDA_ARCHS_CI "Compile the CUDA kernels for one GPU target only (sm_80), to save build time in CI" OFF)

if(DEFINED CMAKE_CUDA_ARCHITECTURES OR DEFINED ENV{CUDAARCHS})
  set(_infer_archs_origin "user-set")
elseif(INFER_CUDA_ARCHS_CI)
  # sm_80 is the oldest supported target: code that builds for it builds for the rest (except the sm_89 fp8
  # paths, which are compiled behind __CUDA_ARCH__ checks and also run in the emulator).
  set(CMAKE_CUDA_ARCHITECTURES 80-real)
  set(_infer_archs_origin "INFER_CUDA_ARCHS_CI")
else()
  set(CMAKE_CUDA_ARCHITECTURES
      80-real     # A100, A30 (Ampere datacenter)
      86-real     # RTX 30xx, A10, A40, RTX A6000 (Ampere consumer / workstation)
      89-real     # RTX 40xx, L4, L40S, RTX 6000 Ada (Ada: fp8 mma)
      90-real     # H100, H200, GH200 (Hopper)
      120-real    # RTX 50xx, RTX PRO 6000 Blackwell (consumer / workstation Blackwell)
      90-virtual  # PTX that the driver JIT-compiles for GPUs without SASS above (B200 sm_100, newer chips)
  )
  set(_infer_archs_origin "default")
endif()

enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
# note: CMake < 3.27 does not know nvcc's C++20 flag, and CUDA sources follow CXX_STANDARD (20) when
# CUDA_STANDARD is unset; teach it (nvcc >= 12 accepts -std=c++20).
if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION AND CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 12.0)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  list(APPEND CMAKE_CUDA_COMPILE_FEATURES cuda_std_20)
endif()
message(STATUS "libinfer: CUDA ${CUDAToolkit_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES} (${_infer_archs_origin})")

file(GLOB INFER_CUDA_KERNEL_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/kernels/*.cu)
list(FILTER INFER_CUDA_KERNEL_SOURCES EXCLUDE REGEX "/simt_selftest\\.cu$")  # emulator self-tests only
file(GLOB INFER_CUDA_HOST_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/cuda/*.cpp)
list(FILTER INFER_CUDA_HOST_SOURCES EXCLUDE REGEX "/cuda_shim\\.cpp$")  # the emulator's runtime shim

# Compiled once, linked into both libinfer and infer_internal.
add_library(infer_cuda_objs OBJECT ${INFER_CUDA_KERNEL_SOURCES} ${INFER_CUDA_HOST_SOURCES})
set_target_properties(infer_cuda_objs PROPERTIES CXX_VISIBILITY_PRESET hidden CUDA_VISIBILITY_PRESET hidden
                                                 VISIBILITY_INLINES_HIDDEN ON POSITION_INDEPENDENT_CODE ON)
target_include_directories(infer_cuda_objs PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src
                                                   ${PROJECT_SOURCE_DIR})
target_link_libraries(infer_cuda_objs PRIVATE CUDA::cudart CUDA::cublas)  # include directories
target_compile_options(infer_cuda_objs PRIVATE
  $<$<COMPILE_LANGUAGE:CXX>:${INFER_WARN_FLAGS}>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Wno-unused-parameter>
  $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${INFER_WERROR}>>:-Werror=all-warnings>
  $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<CONFIG:RelWithDebInfo>>:-lineinfo>)

# libinfer is static by default: its consumers link libcudart and libcublas too. In the build tree that is
# the CUDA:: targets; the installed package names the libraries by path (inferConfig.cmake does not look
# for the CUDA toolkit).
foreach(_t infer infer_internal)
  target_sources(${_t} PRIVATE $<TARGET_OBJECTS:infer_cuda_objs>)
  # created before enable_language(CUDA): give them the architectures too (they link CUDA objects)
  set_target_properties(${_t} PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
endforeach()
target_compile_definitions(infer PRIVATE INFER_HAVE_CUDA=1)
target_compile_definitions(infer_internal PUBLIC INFER_HAVE_CUDA=1)  # tests/test_gpu_*.cpp look for it
target_link_libraries(infer PRIVATE $<BUILD_INTERFACE:CUDA::cudart> $<BUILD_INTERFACE:CUDA::cublas>
                                    $<INSTALL_INTERFACE:${CUDA_cudart_LIBRARY}> $<INSTALL_INTERFACE:${CUDA_cublas_LIBRARY}>)
target_link_libraries(infer_internal PUBLIC CUDA::cudart CUDA::cublas)
