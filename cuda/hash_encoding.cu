// hash_encoding.cu: multiresolution hash encoding forward (gather + trilinear blend) and backward
// (atomicAdd scatter into the table gradient), fp32, one thread per (point, level). The index and
// weight maths is in hash_encoding.cuh; this file holds the kernels and their launchers.
#include <cstdint>

#include <cuda_runtime.h>

#include "hash_encoding.cuh"
#include "nerfkit_kernels.h"

namespace nerfkit {
namespace {

constexpr int kThreads = 256;

inline unsigned int blocks_for(int64_t n) {
    return static_cast<unsigned int>((n + kThreads - 1) / kThreads);
}

// Thread i handles point i / L at level i % L, so neighbouring threads write neighbouring
// features of out (N, L * F).
__device__ void corners_of(int64_t i, int n_levels, const float* __restrict__ x,
                           const int32_t* __restrict__ offsets,
                           const int32_t* __restrict__ resolutions, int64_t* rows, float* weights) {
    const int64_t n = i / n_levels;
    const int level = static_cast<int>(i % n_levels);
    const int64_t offset = offsets[level];
    const float p[3] = {x[3 * n], x[3 * n + 1], x[3 * n + 2]};
    hash_corners(p, resolutions[level], offset, offsets[level + 1] - offset, rows, weights);
}

// out[n, l F + f] = sum_c weight_c * table[row_c, f]
__global__ void hash_encode_fwd_kernel(const float* __restrict__ x, const float* __restrict__ table,
                                       const int32_t* __restrict__ offsets,
                                       const int32_t* __restrict__ resolutions, int64_t n_items,
                                       int n_levels, int n_features, float* __restrict__ out) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n_items) return;
    int64_t rows[8];
    float weights[8];
    corners_of(i, n_levels, x, offsets, resolutions, rows, weights);
    for (int f = 0; f < n_features; ++f) {
        float acc = 0.0f;
#pragma unroll
        for (int c = 0; c < 8; ++c) acc += weights[c] * table[rows[c] * n_features + f];
        out[i * n_features + f] = acc;
    }
}

// grad_table[row_c, f] += weight_c * grad_out[n, l F + f]
__global__ void hash_encode_bwd_kernel(const float* __restrict__ x, const float* __restrict__ grad_out,
                                       const int32_t* __restrict__ offsets,
                                       const int32_t* __restrict__ resolutions, int64_t n_items,
                                       int n_levels, int n_features, float* __restrict__ grad_table) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n_items) return;
    int64_t rows[8];
    float weights[8];
    corners_of(i, n_levels, x, offsets, resolutions, rows, weights);
    for (int f = 0; f < n_features; ++f) {
        const float g = grad_out[i * n_features + f];
        if (g == 0.0f) continue;
#pragma unroll
        for (int c = 0; c < 8; ++c) atomicAdd(grad_table + rows[c] * n_features + f, weights[c] * g);
    }
}

}  // namespace

cudaError_t launch_hash_encode_fwd(const float* x, const float* table, const int32_t* offsets,
                                   const int32_t* resolutions, int64_t n_points, int n_levels,
                                   int n_features, float* out, cudaStream_t stream) {
    const int64_t n_items = n_points * n_levels;
    if (n_items <= 0 || n_features <= 0) return cudaSuccess;
    hash_encode_fwd_kernel<<<blocks_for(n_items), kThreads, 0, stream>>>(
        x, table, offsets, resolutions, n_items, n_levels, n_features, out);
    return cudaGetLastError();
}

cudaError_t launch_hash_encode_bwd(const float* x, const float* grad_out, const int32_t* offsets,
                                   const int32_t* resolutions, int64_t n_points, int n_levels,
                                   int n_features, float* grad_table, cudaStream_t stream) {
    const int64_t n_items = n_points * n_levels;
    if (n_items <= 0 || n_features <= 0) return cudaSuccess;
    hash_encode_bwd_kernel<<<blocks_for(n_items), kThreads, 0, stream>>>(
        x, grad_out, offsets, resolutions, n_items, n_levels, n_features, grad_table);
    return cudaGetLastError();
}

}  // namespace nerfkit
