// compositing.cu: packed volume compositing forward and backward (one thread per ray, a
// sequential loop over its samples). The per-ray maths and the gradient derivation are in
// compositing.cuh; this file holds the kernels and their launchers.
#include <cstdint>

#include <cuda_runtime.h>

#include "compositing.cuh"
#include "nerfkit_kernels.h"

namespace nerfkit {
namespace {

constexpr int kThreads = 256;

inline unsigned int blocks_for(int64_t n) {
    return static_cast<unsigned int>((n + kThreads - 1) / kThreads);
}

__global__ void segment_bounds_kernel(const int64_t* __restrict__ ray_indices, int64_t n_samples,
                                      int64_t n_rays, int64_t* __restrict__ begin,
                                      int64_t* __restrict__ end) {
    const int64_t s = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (s >= n_samples) return;
    segment_bounds_at(s, ray_indices, n_samples, n_rays, begin, end);
}

__global__ void composite_fwd_kernel(const float* __restrict__ sigmas, const float* __restrict__ rgbs,
                                     const float* __restrict__ t_starts,
                                     const float* __restrict__ t_ends,
                                     const int64_t* __restrict__ begin,
                                     const int64_t* __restrict__ end, int64_t n_rays,
                                     float* __restrict__ weights, float* __restrict__ rgb,
                                     float* __restrict__ depth, float* __restrict__ alpha) {
    const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (r >= n_rays) return;
    composite_ray_fwd(begin[r], end[r], sigmas, rgbs, t_starts, t_ends, weights, rgb + 3 * r,
                      depth + r, alpha + r);
}

__global__ void composite_bwd_kernel(const float* __restrict__ sigmas, const float* __restrict__ rgbs,
                                     const float* __restrict__ t_starts,
                                     const float* __restrict__ t_ends,
                                     const int64_t* __restrict__ begin,
                                     const int64_t* __restrict__ end, int64_t n_rays,
                                     const float* __restrict__ grad_rgb,
                                     const float* __restrict__ grad_depth,
                                     const float* __restrict__ grad_alpha,
                                     const float* __restrict__ grad_weights,
                                     float* __restrict__ grad_sigmas, float* __restrict__ grad_rgbs) {
    const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (r >= n_rays) return;
    composite_ray_bwd(begin[r], end[r], sigmas, rgbs, t_starts, t_ends, grad_rgb + 3 * r,
                      grad_depth[r], grad_alpha[r], grad_weights, grad_sigmas, grad_rgbs);
}

}  // namespace

cudaError_t launch_segment_bounds(const int64_t* ray_indices, int64_t n_samples, int64_t n_rays,
                                  int64_t* begin, int64_t* end, cudaStream_t stream) {
    if (n_samples <= 0 || n_rays <= 0) return cudaSuccess;
    segment_bounds_kernel<<<blocks_for(n_samples), kThreads, 0, stream>>>(
        ray_indices, n_samples, n_rays, begin, end);
    return cudaGetLastError();
}

cudaError_t launch_composite_fwd(const float* sigmas, const float* rgbs, const float* t_starts,
                                 const float* t_ends, const int64_t* begin, const int64_t* end,
                                 int64_t n_rays, float* weights, float* rgb, float* depth,
                                 float* alpha, cudaStream_t stream) {
    if (n_rays <= 0) return cudaSuccess;
    composite_fwd_kernel<<<blocks_for(n_rays), kThreads, 0, stream>>>(
        sigmas, rgbs, t_starts, t_ends, begin, end, n_rays, weights, rgb, depth, alpha);
    return cudaGetLastError();
}

cudaError_t launch_composite_bwd(const float* sigmas, const float* rgbs, const float* t_starts,
                                 const float* t_ends, const int64_t* begin, const int64_t* end,
                                 int64_t n_rays, const float* grad_rgb, const float* grad_depth,
                                 const float* grad_alpha, const float* grad_weights,
                                 float* grad_sigmas, float* grad_rgbs, cudaStream_t stream) {
    if (n_rays <= 0) return cudaSuccess;
    composite_bwd_kernel<<<blocks_for(n_rays), kThreads, 0, stream>>>(
        sigmas, rgbs, t_starts, t_ends, begin, end, n_rays, grad_rgb, grad_depth, grad_alpha,
        grad_weights, grad_sigmas, grad_rgbs);
    return cudaGetLastError();
}

}  // namespace nerfkit
