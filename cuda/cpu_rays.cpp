// cpu_rays.cpp: ray/box intersection, occupancy-grid marching and packed compositing on the CPU,
// parallel over rays with OpenMP. The per-ray maths is ray_marching.cuh / compositing.cuh, shared
// with the CUDA kernels (see cpu_kernels.h).
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <string>
#include <vector>

#include "compositing.cuh"
#include "cpu_kernels.h"
#include "ray_marching.cuh"

namespace nerfkit {
namespace cpu {

void ray_aabb_intersect(const float* origins, const float* directions, const float* aabb, int64_t n_rays,
                        float* t_near, float* t_far) {
#pragma omp parallel for schedule(static) if (n_rays > 4096)
    for (int64_t r = 0; r < n_rays; ++r) {
        intersect_ray(origins + 3 * r, directions + 3 * r, aabb, t_near + r, t_far + r);
    }
}

namespace {

MarchSettings settings_of(const MarchInputs& in) {
    MarchSettings s;
    s.grid = make_grid_view(in.grid, in.n_cascades, in.res, in.aabb);
    s.step_size = in.step_size;
    s.cone_angle = in.cone_angle;
    s.constant_steps = in.constant_steps;
    s.cap = in.max_samples > 0 ? in.max_samples : INT_MAX;
    return s;
}

// One block of consecutive rays and the samples they kept, in ray order.
struct MarchBlock {
    std::vector<int64_t> ray_indices;
    std::vector<float> t_starts;
    std::vector<float> t_ends;
};

// Marches rays [first, last) into `block`. A ray's samples are first written to `scratch` (sized
// for the cap) and then appended, so the buffers grow by whole rays.
void march_block(const MarchInputs& in, const MarchSettings& s, int64_t first, int64_t last,
                 MarchBlock& block, MarchBlock& scratch) {
    for (int64_t r = first; r < last; ++r) {
        const int kept = march_ray<true>(in.origins + 3 * r, in.directions + 3 * r, in.t_min[r], in.t_max[r], s, r,
                                         scratch.ray_indices.data(), scratch.t_starts.data(),
                                         scratch.t_ends.data());
        block.ray_indices.insert(block.ray_indices.end(), scratch.ray_indices.begin(),
                                 scratch.ray_indices.begin() + kept);
        block.t_starts.insert(block.t_starts.end(), scratch.t_starts.begin(), scratch.t_starts.begin() + kept);
        block.t_ends.insert(block.t_ends.end(), scratch.t_ends.begin(), scratch.t_ends.begin() + kept);
    }
}

}  // namespace

void march_rays(const MarchInputs& in, const MarchAllocator& allocate) {
    const int64_t n_rays = in.n_rays;
    if (n_rays <= 0) {
        allocate(0);
        return;
    }
    const MarchSettings s = settings_of(in);
    const int64_t per_ray = std::min<int64_t>(s.cap, kMaxSteps);   // march_ray writes at most this many
    const int64_t threads = omp_get_max_threads();
    const int64_t block_rays = std::max<int64_t>(32, n_rays / (threads * 32));
    const int64_t n_blocks = (n_rays + block_rays - 1) / block_rays;
    std::vector<MarchBlock> blocks(n_blocks);
#pragma omp parallel if (n_blocks > 1)
    {
        MarchBlock scratch;
        scratch.ray_indices.resize(per_ray);
        scratch.t_starts.resize(per_ray);
        scratch.t_ends.resize(per_ray);
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < n_blocks; ++b) {
            march_block(in, s, b * block_rays, std::min(n_rays, (b + 1) * block_rays), blocks[b], scratch);
        }
    }
    std::vector<int64_t> starts(n_blocks + 1, 0);
    for (int64_t b = 0; b < n_blocks; ++b) starts[b + 1] = starts[b] + blocks[b].ray_indices.size();
    const MarchOutputs out = allocate(starts[n_blocks]);
#pragma omp parallel for schedule(static) if (n_blocks > 1)
    for (int64_t b = 0; b < n_blocks; ++b) {
        const MarchBlock& block = blocks[b];
        const size_t n = block.ray_indices.size();
        if (n == 0) continue;
        std::memcpy(out.ray_indices + starts[b], block.ray_indices.data(), n * sizeof(int64_t));
        std::memcpy(out.t_starts + starts[b], block.t_starts.data(), n * sizeof(float));
        std::memcpy(out.t_ends + starts[b], block.t_ends.data(), n * sizeof(float));
    }
}

std::string segment_bounds(const int64_t* ray_indices, int64_t n_samples, int64_t n_rays, int64_t* begin,
                           int64_t* end) {
    int64_t first_bad = n_samples;
#pragma omp parallel for schedule(static) reduction(min : first_bad) if (n_samples > 16384)
    for (int64_t s = 0; s < n_samples; ++s) {
        const int64_t r = ray_indices[s];
        if (r < 0 || r >= n_rays || (s > 0 && ray_indices[s - 1] > r)) {
            first_bad = std::min(first_bad, s);
            continue;
        }
        segment_bounds_at(s, ray_indices, n_samples, n_rays, begin, end);
    }
    if (first_bad == n_samples) return "";
    const int64_t r = ray_indices[first_bad];
    if (r < 0 || r >= n_rays) {
        return "composite expects ray_indices in [0, " + std::to_string(n_rays) + "), got " + std::to_string(r) +
               " at sample " + std::to_string(first_bad);
    }
    return "composite expects ray_indices sorted (each ray's samples together, front to back), got ray " +
           std::to_string(r) + " after ray " + std::to_string(ray_indices[first_bad - 1]) + " at sample " +
           std::to_string(first_bad);
}

void composite_fwd(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                   const int64_t* begin, const int64_t* end, int64_t n_rays, float* weights, float* rgb,
                   float* depth, float* alpha) {
#pragma omp parallel for schedule(static) if (n_rays > 1024)
    for (int64_t r = 0; r < n_rays; ++r) {
        composite_ray_fwd(begin[r], end[r], sigmas, rgbs, t_starts, t_ends, weights, rgb + 3 * r, depth + r,
                          alpha + r);
    }
}

void composite_bwd(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                   const int64_t* begin, const int64_t* end, int64_t n_rays, const float* grad_rgb,
                   const float* grad_depth, const float* grad_alpha, const float* grad_weights,
                   float* grad_sigmas, float* grad_rgbs) {
#pragma omp parallel for schedule(static) if (n_rays > 1024)
    for (int64_t r = 0; r < n_rays; ++r) {
        composite_ray_bwd(begin[r], end[r], sigmas, rgbs, t_starts, t_ends, grad_rgb + 3 * r, grad_depth[r],
                          grad_alpha[r], grad_weights, grad_sigmas, grad_rgbs);
    }
}

}  // namespace cpu
}  // namespace nerfkit
