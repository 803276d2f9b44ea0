// nerfkit_kernels.h: host launchers of nerfkit's CUDA kernels (raw pointers, no torch).
//
// Every pointer is device memory, every array is contiguous, floats are float32. Each launcher
// enqueues its kernel(s) on `stream` (0 = the legacy default stream) and returns
// cudaGetLastError(); zero-sized inputs launch nothing. The binding in ext.cpp passes the stream
// PyTorch is using (torch.cuda.current_stream().cuda_stream, handed over from Python).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace nerfkit {

// ---- ray_marching.cu ----

// t_near / t_far (R,) of rays (R, 3) through the box aabb = (min xyz, max xyz) (6 floats);
// both inf for a miss.
cudaError_t launch_ray_aabb_intersect(const float* origins, const float* directions,
                                      const float* aabb, int64_t n_rays, float* t_near,
                                      float* t_far, cudaStream_t stream);

// Inputs of the two marching passes.
struct MarchArgs {
    const float* origins;      // (R, 3)
    const float* directions;   // (R, 3)
    const float* t_min;        // (R,)
    const float* t_max;        // (R,)
    const uint8_t* grid;       // (C, G, G, G) occupancy bytes, cascade-major
    const float* aabb;         // 6 floats: box of cascade 0
    int64_t n_rays;            // R
    int n_cascades;            // C
    int res;                   // G
    float step_size;
    float cone_angle;
    bool constant_steps;       // cone_angle <= 0 (decided in double, as the twin does)
    int max_samples;           // <= 0: no cap
};

// Pass 1: counts[r] = number of samples ray r keeps.
cudaError_t launch_march_rays_count(const MarchArgs& args, int32_t* counts, cudaStream_t stream);

// Pass 2: writes ray r's samples at offsets[r] .. offsets[r] + counts[r] (exclusive scan of the
// counts): ray_indices (S,) int64, t_starts (S,), t_ends (S,).
cudaError_t launch_march_rays_fill(const MarchArgs& args, const int64_t* offsets,
                                   int64_t* ray_indices, float* t_starts, float* t_ends,
                                   cudaStream_t stream);

// ---- compositing.cu ----

// begin/end (R,), zero-filled by the caller, receive each ray's run [begin, end) of samples in a
// sorted ray_indices (S,).
cudaError_t launch_segment_bounds(const int64_t* ray_indices, int64_t n_samples, int64_t n_rays,
                                  int64_t* begin, int64_t* end, cudaStream_t stream);

// Forward: weights (S,), rgb (R, 3), depth (R,), alpha (R,).
cudaError_t launch_composite_fwd(const float* sigmas, const float* rgbs, const float* t_starts,
                                 const float* t_ends, const int64_t* begin, const int64_t* end,
                                 int64_t n_rays, float* weights, float* rgb, float* depth,
                                 float* alpha, cudaStream_t stream);

// Backward: grad_sigmas (S,), grad_rgbs (S, 3) from grad_rgb (R, 3), grad_depth (R,),
// grad_alpha (R,) and grad_weights (S,) or nullptr.
cudaError_t launch_composite_bwd(const float* sigmas, const float* rgbs, const float* t_starts,
                                 const float* t_ends, const int64_t* begin, const int64_t* end,
                                 int64_t n_rays, const float* grad_rgb, const float* grad_depth,
                                 const float* grad_alpha, const float* grad_weights,
                                 float* grad_sigmas, float* grad_rgbs, cudaStream_t stream);

// ---- hash_encoding.cu ----

// Forward: out (N, L * F) from positions x (N, 3), table (offsets[L], F), offsets (L + 1,) and
// resolutions (L,) int32 (device memory).
cudaError_t launch_hash_encode_fwd(const float* x, const float* table, const int32_t* offsets,
                                   const int32_t* resolutions, int64_t n_points, int n_levels,
                                   int n_features, float* out, cudaStream_t stream);

// Backward: grad_table (offsets[L], F), zero-filled by the caller, += the scattered grad_out.
cudaError_t launch_hash_encode_bwd(const float* x, const float* grad_out, const int32_t* offsets,
                                   const int32_t* resolutions, int64_t n_points, int n_levels,
                                   int n_features, float* grad_table, cudaStream_t stream);

// Position gradient: grad_x (N, 3) = sum over levels and corners of d w_c / d x * (table[row_c] .
// grad_out[n, level]).
cudaError_t launch_hash_position_grad_fwd(const float* x, const float* table, const float* grad_out,
                                          const int32_t* offsets, const int32_t* resolutions, int64_t n_points,
                                          int n_levels, int n_features, float* grad_x, cudaStream_t stream);

// Its backward from grad_grad_x (N, 3): grad_table (zero-filled by the caller) and grad_grad_out
// (N, L * F); either may be nullptr when not needed.
cudaError_t launch_hash_position_grad_bwd(const float* x, const float* table, const float* grad_out,
                                          const float* grad_grad_x, const int32_t* offsets,
                                          const int32_t* resolutions, int64_t n_points, int n_levels,
                                          int n_features, float* grad_table, float* grad_grad_out,
                                          cudaStream_t stream);

}  // namespace nerfkit
