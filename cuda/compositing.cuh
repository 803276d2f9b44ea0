// compositing.cuh: per-ray device/host functions of compositing.cu (see nerfkit_common.cuh).
//
// Volume rendering of one ray's packed samples i = begin .. end-1, front to back
// (nerfkit/ops/compositing.py, NeRF Eq. 3):
//
//   delta_i = t_end_i - t_start_i,   x_i = sigma_i * delta_i,   e_i = exp(-x_i)
//   alpha_i = 1 - e_i,               T_i = prod_{j<i} e_j,      w_i = T_i * alpha_i
//   rgb = sum_i w_i c_i,   depth = sum_i w_i (t_start_i + t_end_i) / 2,   alpha = sum_i w_i
//
// Early termination: the loop stops at the first sample with T_i < kMinTransmittance; that sample
// and all after it get w = 0 and receive no gradient. The twin has no such cut, so outputs differ
// from it by at most kMinTransmittance (times max |c| or the depth) per ray.
#pragma once

#include "nerfkit_common.cuh"

namespace nerfkit {

constexpr float kMinTransmittance = 1e-4f;

// Sample i's transmittance factor e_i = exp(-sigma_i * (t_end_i - t_start_i)). The forward and
// both backward passes call this one function, so they agree on where a ray terminates.
NK_HD float sample_transmit(float sigma, float t_start, float t_end) {
    return expf(-mul_rn(sigma, sub_rn(t_end, t_start)));
}

// The run of samples of each ray in a sorted `ray_indices`: for sample s of ray r, sets
// begin[r] = s if s starts the run and end[r] = s + 1 if s ends it (rays without samples keep the
// zeros they were given). Samples with a ray index outside [0, n_rays) are ignored.
NK_HD void segment_bounds_at(int64_t s, const int64_t* ray_indices, int64_t n_samples,
                             int64_t n_rays, int64_t* begin, int64_t* end) {
    const int64_t r = ray_indices[s];
    if (r < 0 || r >= n_rays) return;
    if (s == 0 || ray_indices[s - 1] != r) begin[r] = s;
    if (s == n_samples - 1 || ray_indices[s + 1] != r) end[r] = s + 1;
}

// Forward for one ray: writes weights[begin..end), rgb_out[0..3), *depth_out, *alpha_out.
NK_HD void composite_ray_fwd(int64_t begin, int64_t end, const float* sigmas, const float* rgbs,
                             const float* t_starts, const float* t_ends, float* weights,
                             float* rgb_out, float* depth_out, float* alpha_out) {
    float T = 1.0f;
    float acc_r = 0.0f, acc_g = 0.0f, acc_b = 0.0f, acc_depth = 0.0f, acc_alpha = 0.0f;
    int64_t s = begin;
    for (; s < end && T >= kMinTransmittance; ++s) {
        const float e = sample_transmit(sigmas[s], t_starts[s], t_ends[s]);
        const float w = T * (1.0f - e);
        weights[s] = w;
        acc_r += w * rgbs[3 * s + 0];
        acc_g += w * rgbs[3 * s + 1];
        acc_b += w * rgbs[3 * s + 2];
        acc_depth += w * (0.5f * (t_starts[s] + t_ends[s]));
        acc_alpha += w;
        T *= e;   // T_{i+1} = T_i * e_i (more accurate than T_i * (1 - alpha_i) when e_i is small)
    }
    for (; s < end; ++s) weights[s] = 0.0f;   // terminated samples
    rgb_out[0] = acc_r;
    rgb_out[1] = acc_g;
    rgb_out[2] = acc_b;
    *depth_out = acc_depth;
    *alpha_out = acc_alpha;
}

// Backward for one ray.
//
// With the upstream gradients gC = dL/drgb (3), gD = dL/ddepth, gA = dL/dalpha and
// gW_i = dL/dw_i (0 when weights are unused), every output is linear in the weights:
//   G_i := dL/dw_i (total) = gC . c_i + gD * m_i + gA + gW_i,     m_i = (t_start_i + t_end_i) / 2
// so dL/dc_i = gC * w_i. For the densities, w_k depends on x_i = sigma_i delta_i through
//   dw_i/dx_i = T_i e_i  (alpha_i' = e_i),   dw_k/dx_i = -w_k  (k > i, T_k' = -T_k),   0 (k < i)
// hence
//   dL/dsigma_i = delta_i * ( G_i T_i e_i - sum_{k > i} G_k w_k ).
// The suffix sum is total - prefix, with total = sum_k G_k w_k from a first pass. Both passes
// recompute T exactly as the forward did and stop at the same sample, so terminated samples
// (w = 0 there) get zero gradients, consistent with the forward.
NK_HD void composite_ray_bwd(int64_t begin, int64_t end, const float* sigmas, const float* rgbs,
                             const float* t_starts, const float* t_ends, const float* grad_rgb,
                             float grad_depth, float grad_alpha, const float* grad_weights,
                             float* grad_sigmas, float* grad_rgbs) {
    const float gr = grad_rgb[0], gg = grad_rgb[1], gb = grad_rgb[2];
    // Pass 1: total = sum_k G_k w_k over the samples the forward used.
    float T = 1.0f, total = 0.0f;
    for (int64_t s = begin; s < end && T >= kMinTransmittance; ++s) {
        const float e = sample_transmit(sigmas[s], t_starts[s], t_ends[s]);
        const float w = T * (1.0f - e);
        float G = gr * rgbs[3 * s] + gg * rgbs[3 * s + 1] + gb * rgbs[3 * s + 2]
                  + grad_depth * (0.5f * (t_starts[s] + t_ends[s])) + grad_alpha;
        if (grad_weights != nullptr) G += grad_weights[s];
        total += G * w;
        T *= e;
    }
    // Pass 2: per-sample gradients; suffix_i = total - sum_{k <= i} G_k w_k.
    T = 1.0f;
    float prefix = 0.0f;
    int64_t s = begin;
    for (; s < end && T >= kMinTransmittance; ++s) {
        const float e = sample_transmit(sigmas[s], t_starts[s], t_ends[s]);
        const float w = T * (1.0f - e);
        float G = gr * rgbs[3 * s] + gg * rgbs[3 * s + 1] + gb * rgbs[3 * s + 2]
                  + grad_depth * (0.5f * (t_starts[s] + t_ends[s])) + grad_alpha;
        if (grad_weights != nullptr) G += grad_weights[s];
        prefix += G * w;
        const float delta = sub_rn(t_ends[s], t_starts[s]);
        grad_sigmas[s] = delta * (G * (T * e) - (total - prefix));
        grad_rgbs[3 * s + 0] = gr * w;
        grad_rgbs[3 * s + 1] = gg * w;
        grad_rgbs[3 * s + 2] = gb * w;
        T *= e;
    }
    for (; s < end; ++s) {   // terminated samples: no influence on any output
        grad_sigmas[s] = 0.0f;
        grad_rgbs[3 * s + 0] = grad_rgbs[3 * s + 1] = grad_rgbs[3 * s + 2] = 0.0f;
    }
}

}  // namespace nerfkit
