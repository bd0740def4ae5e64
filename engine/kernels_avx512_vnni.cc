// The AVX-512 kernels built again with AVX-512 VNNI (see kernels_avx512.cc):
// chosen at run time on CPUs that report avx512vnni.
#define HANGAR_KERNELS_VNNI 1
#include "engine/kernels_avx512.cc"  // NOLINT(build/include)
