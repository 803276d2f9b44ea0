// hash_encoding.cu: multiresolution hash encoding on CUDA, fp32: forward (gather + trilinear
// blend), table gradient (atomicAdd scatter), position gradient and its backward. The index and
// weight maths is in hash_encoding.cuh (shared with the CPU backend); this file holds the kernels
// and their launchers.
//
// Layout: a (points x levels) grid, blockIdx.y = level, so the 32 threads of a warp are 32 points
// of one level: they share the level's constants and read one level's table (one cache-friendly
// slice instead of up to L of them). With 2 features per level (the common case) a corner's row is
// one float2 load, the output one float2 store and the gradient one float2 atomicAdd (sm_90+;
// two float atomics below).
#include <cstdint>

#include <cuda_runtime.h>

#include "hash_encoding.cuh"
#include "nerfkit_kernels.h"

namespace nerfkit {
namespace {

constexpr int kThreads = 128;

inline dim3 grid_for(int64_t n_points, int n_levels) {
    return dim3(static_cast<unsigned int>((n_points + kThreads - 1) / kThreads), static_cast<unsigned int>(n_levels));
}

struct Level {
    int res;
    int64_t offset, size;
};

__device__ Level level_of(const int32_t* __restrict__ offsets, const int32_t* __restrict__ resolutions, int level) {
    Level l;
    l.res = resolutions[level];
    l.offset = offsets[level];
    l.size = static_cast<int64_t>(offsets[level + 1]) - l.offset;
    return l;
}

__device__ void load_point(const float* __restrict__ x, int64_t n, float* p) {
    p[0] = x[3 * n];
    p[1] = x[3 * n + 1];
    p[2] = x[3 * n + 2];
}

__device__ void add_feature2(float* target, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float2*>(target), make_float2(a, b));
#else
    atomicAdd(target, a);
    atomicAdd(target + 1, b);
#endif
}

// out[n, l F + f] = sum_c weight_c * table[row_c, f]
template <int kF>
__global__ void hash_encode_fwd_kernel(const float* __restrict__ x, const float* __restrict__ table,
                                       const int32_t* __restrict__ offsets, const int32_t* __restrict__ resolutions,
                                       int64_t n_points, int n_levels, int n_features, float* __restrict__ out) {
    const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int level = blockIdx.y;
    if (n >= n_points) return;
    const Level l = level_of(offsets, resolutions, level);
    float p[3];
    load_point(x, n, p);
    int64_t rows[8];
    float weights[8];
    hash_corners(p, l.res, l.offset, l.size, rows, weights);
    float* o = out + (n * n_levels + level) * n_features;
    if constexpr (kF == 2) {
        float2 acc = make_float2(0.0f, 0.0f);
#pragma unroll
        for (int c = 0; c < 8; ++c) {
            const float2 t = *reinterpret_cast<const float2*>(table + rows[c] * 2);
            acc.x += weights[c] * t.x;
            acc.y += weights[c] * t.y;
        }
        *reinterpret_cast<float2*>(o) = acc;
    } else {
        for (int f = 0; f < n_features; ++f) {
            float acc = 0.0f;
#pragma unroll
            for (int c = 0; c < 8; ++c) acc += weights[c] * table[rows[c] * n_features + f];
            o[f] = acc;
        }
    }
}

// grad_table[row_c, f] += weight_c * grad_out[n, l F + f]
template <int kF>
__global__ void hash_encode_bwd_kernel(const float* __restrict__ x, const float* __restrict__ grad_out,
                                       const int32_t* __restrict__ offsets, const int32_t* __restrict__ resolutions,
                                       int64_t n_points, int n_levels, int n_features, float* __restrict__ grad_table) {
    const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int level = blockIdx.y;
    if (n >= n_points) return;
    const float* g = grad_out + (n * n_levels + level) * n_features;
    const Level l = level_of(offsets, resolutions, level);
    float p[3];
    load_point(x, n, p);
    int64_t rows[8];
    float weights[8];
    if constexpr (kF == 2) {
        const float2 g2 = *reinterpret_cast<const float2*>(g);
        if (g2.x == 0.0f && g2.y == 0.0f) return;    // e.g. samples behind an opaque surface
        hash_corners(p, l.res, l.offset, l.size, rows, weights);
#pragma unroll
        for (int c = 0; c < 8; ++c) add_feature2(grad_table + rows[c] * 2, weights[c] * g2.x, weights[c] * g2.y);
    } else {
        hash_corners(p, l.res, l.offset, l.size, rows, weights);
        for (int f = 0; f < n_features; ++f) {
            const float gf = g[f];
            if (gf == 0.0f) continue;
#pragma unroll
            for (int c = 0; c < 8; ++c) atomicAdd(grad_table + rows[c] * n_features + f, weights[c] * gf);
        }
    }
}

// grad_x[n] = sum_{l, c} d w_c / d x * (table[row_c] . grad_out[n, l]); one thread per point
// (levels in a loop, no atomics).
__global__ void hash_position_grad_fwd_kernel(const float* __restrict__ x, const float* __restrict__ table,
                                              const float* __restrict__ grad_out,
                                              const int32_t* __restrict__ offsets,
                                              const int32_t* __restrict__ resolutions, int64_t n_points,
                                              int n_levels, int n_features, float* __restrict__ grad_x) {
    const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (n >= n_points) return;
    float p[3];
    load_point(x, n, p);
    float acc[3] = {0.0f, 0.0f, 0.0f};
    for (int level = 0; level < n_levels; ++level) {
        const Level l = level_of(offsets, resolutions, level);
        const float* g = grad_out + (n * n_levels + level) * n_features;
        int64_t rows[8];
        float dweights[24];
        hash_corner_gradients(p, l.res, l.offset, l.size, rows, dweights);
        for (int c = 0; c < 8; ++c) {
            float projected = 0.0f;
            for (int f = 0; f < n_features; ++f) projected += table[rows[c] * n_features + f] * g[f];
            acc[0] += dweights[3 * c] * projected;
            acc[1] += dweights[3 * c + 1] * projected;
            acc[2] += dweights[3 * c + 2] * projected;
        }
    }
    grad_x[3 * n] = acc[0];
    grad_x[3 * n + 1] = acc[1];
    grad_x[3 * n + 2] = acc[2];
}

// With along_c = d w_c / d x . grad_grad_x[n]:
//   grad_table[row_c, f] += along_c grad_out[n, l F + f]   (atomics)
//   grad_grad_out[n, l F + f] = sum_c along_c table[row_c, f]
__global__ void hash_position_grad_bwd_kernel(const float* __restrict__ x, const float* __restrict__ table,
                                              const float* __restrict__ grad_out,
                                              const float* __restrict__ grad_grad_x,
                                              const int32_t* __restrict__ offsets,
                                              const int32_t* __restrict__ resolutions, int64_t n_points,
                                              int n_levels, int n_features, float* __restrict__ grad_table,
                                              float* __restrict__ grad_grad_out) {
    const int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int level = blockIdx.y;
    if (n >= n_points) return;
    const Level l = level_of(offsets, resolutions, level);
    float p[3];
    load_point(x, n, p);
    int64_t rows[8];
    float dweights[24];
    hash_corner_gradients(p, l.res, l.offset, l.size, rows, dweights);
    const float gx = grad_grad_x[3 * n], gy = grad_grad_x[3 * n + 1], gz = grad_grad_x[3 * n + 2];
    float along[8];
#pragma unroll
    for (int c = 0; c < 8; ++c) along[c] = dweights[3 * c] * gx + dweights[3 * c + 1] * gy + dweights[3 * c + 2] * gz;
    const int64_t item = (n * n_levels + level) * n_features;
    for (int f = 0; f < n_features; ++f) {
        if (grad_table != nullptr) {
            const float g = grad_out[item + f];
            if (g != 0.0f) {
#pragma unroll
                for (int c = 0; c < 8; ++c) atomicAdd(grad_table + rows[c] * n_features + f, along[c] * g);
            }
        }
        if (grad_grad_out != nullptr) {
            float acc = 0.0f;
#pragma unroll
            for (int c = 0; c < 8; ++c) acc += along[c] * table[rows[c] * n_features + f];
            grad_grad_out[item + f] = acc;
        }
    }
}

}  // namespace

cudaError_t launch_hash_encode_fwd(const float* x, const float* table, const int32_t* offsets,
                                   const int32_t* resolutions, int64_t n_points, int n_levels,
                                   int n_features, float* out, cudaStream_t stream) {
    if (n_points <= 0 || n_levels <= 0 || n_features <= 0) return cudaSuccess;
    const dim3 grid = grid_for(n_points, n_levels);
    if (n_features == 2) {
        hash_encode_fwd_kernel<2><<<grid, kThreads, 0, stream>>>(x, table, offsets, resolutions, n_points, n_levels,
                                                                n_features, out);
    } else {
        hash_encode_fwd_kernel<0><<<grid, kThreads, 0, stream>>>(x, table, offsets, resolutions, n_points, n_levels,
                                                                n_features, out);
    }
    return cudaGetLastError();
}

cudaError_t launch_hash_encode_bwd(const float* x, const float* grad_out, const int32_t* offsets,
                                   const int32_t* resolutions, int64_t n_points, int n_levels,
                                   int n_features, float* grad_table, cudaStream_t stream) {
    if (n_points <= 0 || n_levels <= 0 || n_features <= 0) return cudaSuccess;
    const dim3 grid = grid_for(n_points, n_levels);
    if (n_features == 2) {
        hash_encode_bwd_kernel<2><<<grid, kThreads, 0, stream>>>(x, grad_out, offsets, resolutions, n_points,
                                                                n_levels, n_features, grad_table);
    } else {
        hash_encode_bwd_kernel<0><<<grid, kThreads, 0, stream>>>(x, grad_out, offsets, resolutions, n_points,
                                                                n_levels, n_features, grad_table);
    }
    return cudaGetLastError();
}

cudaError_t launch_hash_position_grad_fwd(const float* x, const float* table, const float* grad_out,
                                          const int32_t* offsets, const int32_t* resolutions, int64_t n_points,
                                          int n_levels, int n_features, float* grad_x, cudaStream_t stream) {
    if (n_points <= 0) return cudaSuccess;
    const unsigned int blocks = static_cast<unsigned int>((n_points + kThreads - 1) / kThreads);
    hash_position_grad_fwd_kernel<<<blocks, kThreads, 0, stream>>>(x, table, grad_out, offsets, resolutions, n_points,
                                                                   n_levels, n_features, grad_x);
    return cudaGetLastError();
}

cudaError_t launch_hash_position_grad_bwd(const float* x, const float* table, const float* grad_out,
                                          const float* grad_grad_x, const int32_t* offsets,
                                          const int32_t* resolutions, int64_t n_points, int n_levels,
                                          int n_features, float* grad_table, float* grad_grad_out,
                                          cudaStream_t stream) {
    if (n_points <= 0 || n_levels <= 0 || n_features <= 0) return cudaSuccess;
    hash_position_grad_bwd_kernel<<<grid_for(n_points, n_levels), kThreads, 0, stream>>>(
        x, table, grad_out, grad_grad_x, offsets, resolutions, n_points, n_levels, n_features, grad_table,
        grad_grad_out);
    return cudaGetLastError();
}

}  // namespace nerfkit
