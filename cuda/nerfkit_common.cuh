// nerfkit_common.cuh: helpers shared by the kernels and by the CPU emulation of the tests.
//
// Every per-ray / per-point function of the kernels is `NK_HD` (host + device) and lives in a
// `.cuh` next to its `.cu`, so `tests/ops/host_harness.cpp` can run the very same code on the CPU
// with g++ and compare it to the PyTorch twins where no GPU is present.
//
// Rounding: the twins are chains of separate PyTorch kernels, each rounding its result to float32.
// To reproduce them bit for bit (marching keeps or drops a sample on a floor(), a compare or a
// ceil(log2())), products and sums that the twins round separately are written with the `_rn`
// helpers below, which nvcc never fuses into an FMA. The build does not use --use_fast_math.
#pragma once

#include <cstdint>
#if !defined(__CUDACC__)
#include <cmath>   // floorf, ceilf, log2f, exp2f, expf, fabsf for the host harness (nvcc has them built in)
#endif

#if defined(__CUDACC__)
#define NK_HD __host__ __device__ __forceinline__
#else
#define NK_HD inline
#endif

namespace nerfkit {

// a * b, a + b, a - b, a / b, each rounded to nearest float (no FMA contraction on the device;
// the host harness is compiled with -ffp-contract=off for the same effect).
NK_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

NK_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

NK_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

NK_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

NK_HD float min_f(float a, float b) { return a < b ? a : b; }
NK_HD float max_f(float a, float b) { return a > b ? a : b; }
NK_HD int min_i(int a, int b) { return a < b ? a : b; }
NK_HD int max_i(int a, int b) { return a > b ? a : b; }

// True for finite x (false for +-inf and NaN), as torch.isfinite.
NK_HD bool finite_f(float x) { return fabsf(x) <= 3.402823466e38f; }

// The twins' loops stop after this many candidate steps per ray (ray_marching._candidate_steps).
constexpr int kMaxSteps = 1 << 16;

}  // namespace nerfkit
