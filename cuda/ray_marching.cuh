// ray_marching.cuh: per-ray device/host functions of ray_marching.cu (see nerfkit_common.cuh).
//
// They reproduce nerfkit/ops/ray_marching.py (`ray_aabb_intersect_ref`, `grid_lookup`,
// `march_rays_ref`) operation by operation, in the same float32 rounding order.
#pragma once

#include "nerfkit_common.cuh"

namespace nerfkit {

// Slab test: t0 = (lo - o) / d, t1 = (hi - o) / d per axis (|d| < 1e-12 replaced by +1e-12),
// t_near = max(0, max_axis min(t0, t1)), t_far = min_axis max(t0, t1); both inf on a miss
// (t_far <= t_near).
NK_HD void intersect_ray(const float* o, const float* d, const float* aabb, float* t_near_out,
                         float* t_far_out) {
    float t_near = -INFINITY, t_far = INFINITY;
    for (int i = 0; i < 3; ++i) {
        const float di = fabsf(d[i]) < 1e-12f ? 1e-12f : d[i];
        const float inv = div_rn(1.0f, di);
        const float t0 = mul_rn(sub_rn(aabb[i], o[i]), inv);
        const float t1 = mul_rn(sub_rn(aabb[3 + i], o[i]), inv);
        t_near = max_f(t_near, min_f(t0, t1));
        t_far = min_f(t_far, max_f(t0, t1));
    }
    t_near = max_f(t_near, 0.0f);
    const bool miss = t_far <= t_near;
    *t_near_out = miss ? INFINITY : t_near;
    *t_far_out = miss ? INFINITY : t_far;
}

// A multi-cascade occupancy grid: occ[c][x][y][z] (bytes 0/1), cascade c covers the box of
// cascade 0 scaled by 2^c about its centre.
struct GridView {
    const uint8_t* occ;
    int n_cascades;
    int res;
    float centre[3];   // (lo + hi) * 0.5
    float half[3];     // (hi - lo) * 0.5
};

NK_HD GridView make_grid_view(const uint8_t* occ, int n_cascades, int res, const float* aabb) {
    GridView g;
    g.occ = occ;
    g.n_cascades = n_cascades;
    g.res = res;
    for (int i = 0; i < 3; ++i) {
        g.centre[i] = mul_rn(add_rn(aabb[i], aabb[3 + i]), 0.5f);
        g.half[i] = mul_rn(sub_rn(aabb[3 + i], aabb[i]), 0.5f);
    }
    return g;
}

// Occupancy of point p, as grid_lookup: rel = (p - centre) / half (cascade 0 is [-1, 1]^3);
// cascade = max(0, ceil(log2(max(|rel|_inf, 1e-12)))) (false when >= n_cascades);
// cell = clamp(floor((rel * 2^-cascade * 0.5 + 0.5) * G), 0, G - 1).
NK_HD bool grid_occupied(const GridView& g, const float* p) {
    float rel[3];
    float extent = 0.0f;
    for (int i = 0; i < 3; ++i) {
        rel[i] = div_rn(sub_rn(p[i], g.centre[i]), g.half[i]);
        extent = max_f(extent, fabsf(rel[i]));
    }
    extent = max_f(extent, 1e-12f);
    const float cascade_f = max_f(ceilf(log2f(extent)), 0.0f);
    if (!(cascade_f < static_cast<float>(g.n_cascades))) return false;
    const int cascade = static_cast<int>(cascade_f);
    // rel / 2^cascade as rel * 2^-cascade: the same exact quotient, so bit-identical to the twin's
    // division (both round the one real number), and a multiplication instead of a division.
    const float inv_scale = exp2f(-static_cast<float>(cascade));
    const float res_f = static_cast<float>(g.res);
    int64_t flat = cascade;
    for (int i = 0; i < 3; ++i) {
        const float u = mul_rn(add_rn(mul_rn(mul_rn(rel[i], inv_scale), 0.5f), 0.5f), res_f);
        const float cell = min_f(max_f(floorf(u), 0.0f), res_f - 1.0f);
        flat = flat * g.res + static_cast<int64_t>(cell);
    }
    return g.occ[flat] != 0;
}

// Everything one ray's march needs besides the ray itself.
struct MarchSettings {
    GridView grid;
    float step_size;       // minimum step, float32 as the twin rounds it
    float cone_angle;      // step growth with distance
    bool constant_steps;   // the twin's `cone_angle <= 0` branch: start_k = t_min + k * step_size
    int cap;               // max samples kept per ray (INT_MAX for no cap)
};

// March one ray over [t_min, t_max]; returns the number of kept samples and, when kWrite, writes
// them (ray index, start, end) to the given arrays, nearest first.
//
// Candidate steps, as march_rays_ref / _candidate_steps (at most kMaxSteps per ray):
//   constant_steps: start_k = t_min + k * step_size,  width_k = step_size
//   else:           start_0 = t_min, width_k = max(start_k * cone_angle, step_size),
//                   start_{k+1} = start_k + width_k
// mid_k = start_k + 0.5 * width_k; the march ends at the first mid_k >= t_max (mids never
// decrease); a step is kept when the cell of o + d * mid_k is occupied, with
// end_k = min(start_k + width_k, t_max), until `cap` are kept. Rays with non-finite t_min/t_max
// or t_max <= t_min have none.
template <bool kWrite>
NK_HD int march_ray(const float* o, const float* d, float t_min, float t_max, const MarchSettings& s,
                    int64_t ray, int64_t* ray_indices, float* t_starts, float* t_ends) {
    if (!(finite_f(t_min) && finite_f(t_max) && t_max > t_min)) return 0;
    int kept = 0;
    float t = t_min;
    for (int k = 0; k < kMaxSteps && kept < s.cap; ++k) {
        float start, width;
        if (s.constant_steps) {
            start = add_rn(t_min, mul_rn(static_cast<float>(k), s.step_size));
            width = s.step_size;
        } else {
            start = t;
            width = max_f(mul_rn(t, s.cone_angle), s.step_size);
            t = add_rn(t, width);
        }
        const float mid = add_rn(start, mul_rn(0.5f, width));
        if (!(mid < t_max)) break;
        float p[3];
        for (int i = 0; i < 3; ++i) p[i] = add_rn(o[i], mul_rn(d[i], mid));
        if (!grid_occupied(s.grid, p)) continue;
        if (kWrite) {
            ray_indices[kept] = ray;
            t_starts[kept] = start;
            t_ends[kept] = min_f(add_rn(start, width), t_max);
        }
        ++kept;
    }
    return kept;
}

}  // namespace nerfkit
