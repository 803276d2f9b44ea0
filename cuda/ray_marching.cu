// ray_marching.cu: ray/box intersection and two-pass occupancy-grid marching (one thread per ray).
// The per-ray maths is in ray_marching.cuh; this file holds the kernels and their launchers.
#include <cstdint>

#include <cuda_runtime.h>

#include "nerfkit_kernels.h"
#include "ray_marching.cuh"

namespace nerfkit {
namespace {

constexpr int kThreads = 256;

inline unsigned int blocks_for(int64_t n) {
    return static_cast<unsigned int>((n + kThreads - 1) / kThreads);
}

__global__ void ray_aabb_intersect_kernel(const float* __restrict__ origins,
                                          const float* __restrict__ directions,
                                          const float* __restrict__ aabb, int64_t n_rays,
                                          float* __restrict__ t_near, float* __restrict__ t_far) {
    const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (r >= n_rays) return;
    float box[6];
    for (int i = 0; i < 6; ++i) box[i] = aabb[i];
    intersect_ray(origins + 3 * r, directions + 3 * r, box, t_near + r, t_far + r);
}

__device__ MarchSettings settings_of(const MarchArgs& a) {
    float box[6];
    for (int i = 0; i < 6; ++i) box[i] = a.aabb[i];
    MarchSettings s;
    s.grid = make_grid_view(a.grid, a.n_cascades, a.res, box);
    s.step_size = a.step_size;
    s.cone_angle = a.cone_angle;
    s.constant_steps = a.constant_steps;
    s.cap = a.max_samples > 0 ? a.max_samples : 0x7fffffff;
    return s;
}

__global__ void march_count_kernel(const MarchArgs args, int32_t* __restrict__ counts) {
    const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (r >= args.n_rays) return;
    const MarchSettings s = settings_of(args);
    counts[r] = march_ray<false>(args.origins + 3 * r, args.directions + 3 * r, args.t_min[r],
                                 args.t_max[r], s, r, nullptr, nullptr, nullptr);
}

__global__ void march_fill_kernel(const MarchArgs args, const int64_t* __restrict__ offsets,
                                  int64_t* __restrict__ ray_indices, float* __restrict__ t_starts,
                                  float* __restrict__ t_ends) {
    const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (r >= args.n_rays) return;
    const MarchSettings s = settings_of(args);
    const int64_t o = offsets[r];
    march_ray<true>(args.origins + 3 * r, args.directions + 3 * r, args.t_min[r], args.t_max[r], s,
                    r, ray_indices + o, t_starts + o, t_ends + o);
}

}  // namespace

cudaError_t launch_ray_aabb_intersect(const float* origins, const float* directions,
                                      const float* aabb, int64_t n_rays, float* t_near,
                                      float* t_far, cudaStream_t stream) {
    if (n_rays <= 0) return cudaSuccess;
    ray_aabb_intersect_kernel<<<blocks_for(n_rays), kThreads, 0, stream>>>(
        origins, directions, aabb, n_rays, t_near, t_far);
    return cudaGetLastError();
}

cudaError_t launch_march_rays_count(const MarchArgs& args, int32_t* counts, cudaStream_t stream) {
    if (args.n_rays <= 0) return cudaSuccess;
    march_count_kernel<<<blocks_for(args.n_rays), kThreads, 0, stream>>>(args, counts);
    return cudaGetLastError();
}

cudaError_t launch_march_rays_fill(const MarchArgs& args, const int64_t* offsets,
                                   int64_t* ray_indices, float* t_starts, float* t_ends,
                                   cudaStream_t stream) {
    if (args.n_rays <= 0) return cudaSuccess;
    march_fill_kernel<<<blocks_for(args.n_rays), kThreads, 0, stream>>>(
        args, offsets, ray_indices, t_starts, t_ends);
    return cudaGetLastError();
}

}  // namespace nerfkit
