// cpu_kernels.h: the CPU backend of nerfkit's kernels (raw pointers, no torch), built by g++ with
// OpenMP into the extension `nerfkit_cpu` (cpu_ext.cpp is its binding).
//
// The per-ray / per-point maths is the very code the CUDA kernels run (the NK_HD functions of
// ray_marching.cuh, compositing.cuh, hash_encoding.cuh); these files only replace the thread index
// by OpenMP loops and atomicAdd by conflict-free writes. Every pointer is host memory, every array
// contiguous, floats are float32. Loops run on the calling thread's OpenMP team (the size that
// torch.set_num_threads sets: torch and this extension share one libgomp). The build uses
// -ffp-contract=off and no fast math, so marching keeps the twins' float32 rounding bit for bit.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace nerfkit {
namespace cpu {

// ---- cpu_rays.cpp: intersection, marching, compositing ----

void ray_aabb_intersect(const float* origins, const float* directions, const float* aabb, int64_t n_rays,
                        float* t_near, float* t_far);

struct MarchInputs {
    const float* origins;      // (R, 3)
    const float* directions;   // (R, 3)
    const float* t_min;        // (R,)
    const float* t_max;        // (R,)
    const uint8_t* grid;       // (C, G, G, G) occupancy bytes, cascade-major
    const float* aabb;         // 6 floats: box of cascade 0
    int64_t n_rays;
    int n_cascades;
    int res;
    float step_size;
    float cone_angle;
    bool constant_steps;       // cone_angle <= 0, decided in double as the twin does
    int max_samples;           // <= 0: no cap
};

// Receives the total sample count S once it is known and returns where to write
// ray_indices (S,), t_starts (S,), t_ends (S,).
struct MarchOutputs {
    int64_t* ray_indices;
    float* t_starts;
    float* t_ends;
};
using MarchAllocator = std::function<MarchOutputs(int64_t n_samples)>;

// One marching pass: contiguous blocks of rays march into per-block buffers in parallel, then the
// buffers are copied, in ray order, into the outputs (the GPU's count + fill marches twice instead).
void march_rays(const MarchInputs& in, const MarchAllocator& allocate);

// begin/end (R,) of each ray's run in ray_indices (S,). Returns "" when ray_indices is sorted and
// within [0, n_rays), else a sentence naming the first offending sample.
std::string segment_bounds(const int64_t* ray_indices, int64_t n_samples, int64_t n_rays, int64_t* begin,
                           int64_t* end);

void composite_fwd(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                   const int64_t* begin, const int64_t* end, int64_t n_rays, float* weights, float* rgb,
                   float* depth, float* alpha);

void composite_bwd(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                   const int64_t* begin, const int64_t* end, int64_t n_rays, const float* grad_rgb,
                   const float* grad_depth, const float* grad_alpha, const float* grad_weights,
                   float* grad_sigmas, float* grad_rgbs);

// ---- cpu_hash.cpp: hash encoding ----

struct HashLayout {
    const int32_t* offsets;       // (L + 1,) first table row of each level
    const int32_t* resolutions;   // (L,) cells per axis
    int n_levels;                 // L
    int n_features;               // F
};

// How the table-gradient scatter avoids write conflicts between threads (cpu_hash.cpp):
//   kScatterAuto       levels split over threads (each level's rows are written by one thread);
//                      with more threads than levels, a level's points are also split: private
//                      partial tables for small levels, atomic adds for large ones
//   kScatterPartials   force the point split, private partial tables for every level
//   kScatterAtomics    force the point split, atomic adds for every level
enum class Scatter : int { kAuto = 0, kPartials = 1, kAtomics = 2 };

// out (N, L F) = trilinear blend of the 8 corner rows per level.
void hash_encode_fwd(const float* x, const float* table, const HashLayout& layout, int64_t n_points,
                     float* out);

// grad_table (offsets[L], F), zero-filled by the caller, += the scattered grad_out (N, L F).
void hash_encode_bwd(const float* x, const float* grad_out, const HashLayout& layout, int64_t n_points,
                     float* grad_table, Scatter scatter);

// grad_x (N, 3) = sum over levels and corners of d w_c / d x * (table[row_c] . grad_out[n, level]).
void hash_position_grad_fwd(const float* x, const float* table, const float* grad_out,
                            const HashLayout& layout, int64_t n_points, float* grad_x);

// Backward of hash_position_grad_fwd from grad_grad_x (N, 3): grad_table (zero-filled by the
// caller) and grad_grad_out (N, L F); either may be nullptr when not needed.
void hash_position_grad_bwd(const float* x, const float* table, const float* grad_out,
                            const float* grad_grad_x, const HashLayout& layout, int64_t n_points,
                            float* grad_table, float* grad_grad_out, Scatter scatter);

// ---- cpu_splat.cpp: the tile rasterizer of projected Gaussians ----

struct SplatInputs {
    const float* means2d;         // (N, 2) pixel centres
    const float* conics;          // (N, 3) a, b, c of the inverse 2D covariance
    const float* opacities;       // (N,)
    const float* features;        // (N, F)
    const int64_t* gaussian_ids;  // (K,) depth-sorted per tile
    const int64_t* tile_offsets;  // (T + 1,)
    int64_t n_gaussians;
    int n_features;
    int tiles_x, tiles_y, tile_size;
    int width, height;
};

// image (H, W, F), alpha (H, W), t_final (H, W) transmittance behind the last Gaussian used, and
// n_used (H, W) int32: 1 + the list position of the last Gaussian used per pixel (0: none).
void splat_rasterize_fwd(const SplatInputs& in, float* image, float* alpha, float* t_final, int32_t* n_used);

// From grad_image (H, W, F) and grad_alpha (H, W): grad_means2d (N, 2), grad_conics (N, 3),
// grad_opacities (N,), grad_features (N, F), all zero-filled by the caller.
void splat_rasterize_bwd(const SplatInputs& in, const float* image, const float* t_final,
                         const int32_t* n_used, const float* grad_image, const float* grad_alpha,
                         float* grad_means2d, float* grad_conics, float* grad_opacities, float* grad_features);

}  // namespace cpu
}  // namespace nerfkit
