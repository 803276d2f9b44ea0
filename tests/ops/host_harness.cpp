// host_harness.cpp: runs the kernels' per-ray / per-point functions (cuda/*.cuh) on the CPU, so
// tests/ops/test_cuda_host_emulation.py can compare them with the PyTorch twins without a GPU.
// Each function is the CPU twin of one launcher in cuda/nerfkit_kernels.h: the same loop body,
// with a for loop in place of the thread index (and += in place of atomicAdd).
// Build: g++ -O2 -std=c++17 -ffp-contract=off -shared -fPIC -I cuda host_harness.cpp
#include <climits>
#include <cstdint>

#include "compositing.cuh"
#include "hash_encoding.cuh"
#include "ray_marching.cuh"

using namespace nerfkit;

namespace {

MarchSettings settings(const uint8_t* grid, int n_cascades, int res, const float* aabb, double step_size,
                       double cone_angle, int64_t max_samples) {
    MarchSettings s;
    s.grid = make_grid_view(grid, n_cascades, res, aabb);
    s.step_size = static_cast<float>(step_size);
    s.cone_angle = static_cast<float>(cone_angle);
    s.constant_steps = cone_angle <= 0.0;
    s.cap = max_samples <= 0 ? INT_MAX : static_cast<int>(max_samples < INT_MAX ? max_samples : INT_MAX);
    return s;
}

}  // namespace

extern "C" {

void nk_intersect(const float* origins, const float* directions, const float* aabb, int64_t n_rays,
                  float* t_near, float* t_far) {
    for (int64_t r = 0; r < n_rays; ++r) {
        intersect_ray(origins + 3 * r, directions + 3 * r, aabb, t_near + r, t_far + r);
    }
}

void nk_march_count(const float* origins, const float* directions, const float* t_min, const float* t_max,
                    const uint8_t* grid, int n_cascades, int res, const float* aabb, double step_size,
                    double cone_angle, int64_t max_samples, int64_t n_rays, int32_t* counts) {
    const MarchSettings s = settings(grid, n_cascades, res, aabb, step_size, cone_angle, max_samples);
    for (int64_t r = 0; r < n_rays; ++r) {
        counts[r] = march_ray<false>(origins + 3 * r, directions + 3 * r, t_min[r], t_max[r], s, r, nullptr,
                                     nullptr, nullptr);
    }
}

void nk_march_fill(const float* origins, const float* directions, const float* t_min, const float* t_max,
                   const uint8_t* grid, int n_cascades, int res, const float* aabb, double step_size,
                   double cone_angle, int64_t max_samples, int64_t n_rays, const int64_t* offsets,
                   int64_t* ray_indices, float* t_starts, float* t_ends) {
    const MarchSettings s = settings(grid, n_cascades, res, aabb, step_size, cone_angle, max_samples);
    for (int64_t r = 0; r < n_rays; ++r) {
        const int64_t o = offsets[r];
        march_ray<true>(origins + 3 * r, directions + 3 * r, t_min[r], t_max[r], s, r, ray_indices + o,
                        t_starts + o, t_ends + o);
    }
}

void nk_segment_bounds(const int64_t* ray_indices, int64_t n_samples, int64_t n_rays, int64_t* begin,
                       int64_t* end) {
    for (int64_t s = 0; s < n_samples; ++s) segment_bounds_at(s, ray_indices, n_samples, n_rays, begin, end);
}

void nk_composite_fwd(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                      const int64_t* begin, const int64_t* end, int64_t n_rays, float* weights, float* rgb,
                      float* depth, float* alpha) {
    for (int64_t r = 0; r < n_rays; ++r) {
        composite_ray_fwd(begin[r], end[r], sigmas, rgbs, t_starts, t_ends, weights, rgb + 3 * r, depth + r,
                          alpha + r);
    }
}

void nk_composite_bwd(const float* sigmas, const float* rgbs, const float* t_starts, const float* t_ends,
                      const int64_t* begin, const int64_t* end, int64_t n_rays, const float* grad_rgb,
                      const float* grad_depth, const float* grad_alpha, const float* grad_weights,
                      float* grad_sigmas, float* grad_rgbs) {
    for (int64_t r = 0; r < n_rays; ++r) {
        composite_ray_bwd(begin[r], end[r], sigmas, rgbs, t_starts, t_ends, grad_rgb + 3 * r, grad_depth[r],
                          grad_alpha[r], grad_weights, grad_sigmas, grad_rgbs);
    }
}

void nk_hash_fwd(const float* x, const float* table, const int32_t* offsets, const int32_t* resolutions,
                 int64_t n_points, int n_levels, int n_features, float* out) {
    for (int64_t i = 0; i < n_points * n_levels; ++i) {
        const int64_t n = i / n_levels;
        const int level = static_cast<int>(i % n_levels);
        int64_t rows[8];
        float weights[8];
        hash_corners(x + 3 * n, resolutions[level], offsets[level], offsets[level + 1] - offsets[level], rows,
                     weights);
        for (int f = 0; f < n_features; ++f) {
            float acc = 0.0f;
            for (int c = 0; c < 8; ++c) acc += weights[c] * table[rows[c] * n_features + f];
            out[i * n_features + f] = acc;
        }
    }
}

void nk_hash_bwd(const float* x, const float* grad_out, const int32_t* offsets, const int32_t* resolutions,
                 int64_t n_points, int n_levels, int n_features, float* grad_table) {
    for (int64_t i = 0; i < n_points * n_levels; ++i) {
        const int64_t n = i / n_levels;
        const int level = static_cast<int>(i % n_levels);
        int64_t rows[8];
        float weights[8];
        hash_corners(x + 3 * n, resolutions[level], offsets[level], offsets[level + 1] - offsets[level], rows,
                     weights);
        for (int f = 0; f < n_features; ++f) {
            const float g = grad_out[i * n_features + f];
            for (int c = 0; c < 8; ++c) grad_table[rows[c] * n_features + f] += weights[c] * g;
        }
    }
}

}  // extern "C"
