// cpu_splat.cpp: the tile rasterizer of projected Gaussians on the CPU, forward and backward, the
// native twin of nerfkit/render/splat_raster.py (same rules; see its docstring):
//
//   sigma = 0.5 (a dx^2 + c dy^2) + b dx dy           (dx, dy = centre - pixel centre)
//   alpha = min(0.999, o exp(-sigma)), skipped below 1/255
//   a pixel stops before the Gaussian that would take its transmittance T to <= 1e-4
//   F = sum_i alpha_i T_i f_i,  alpha_out = 1 - T_final
//
// Tiles run in parallel (OpenMP, dynamic: lists differ in length). Within a tile the loop is
// Gaussian-outer, pixel-inner, so the pixel loop vectorises (`omp simd`, with a polynomial exp that
// vectorises where expf would not). The backward walks each tile's list front to back again with
// the forward's per-pixel count of Gaussians used, so it stops exactly where the forward did;
// every (tile, Gaussian) pair gets its own row of gradients, summed per Gaussian at the end (no
// atomics, deterministic).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu_kernels.h"

namespace nerfkit {
namespace cpu {
namespace {

constexpr float kTransmittanceEps = 1e-4f;
constexpr float kAlphaMax = 0.999f;
constexpr float kAlphaMin = 1.0f / 255.0f;
constexpr int kPairGrads = 6;     // per pair: d mean x, d mean y, d a, d b, d c, d (exponent) for opacity

// exp(x) in float32 (Cephes' expf: Cody-Waite reduction, degree-6 polynomial, 2^n from the
// exponent bits); within 2 ulp of expf, branch-free so that the pixel loops vectorise.
inline float exp_poly(float x) {
    x = std::min(std::max(x, -87.3f), 88.7f);
    const float n = std::floor(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    const float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
}

// The pixel centres of a tile, tile-local (u, v in pixels), and which lie inside the image.
struct TileFrame {
    int first_x, first_y;
    std::vector<float> u, v;
    std::vector<int32_t> inside;
};

void frame_tile(const SplatInputs& in, int64_t tile, TileFrame& frame) {
    const int size = in.tile_size, n_pixels = size * size;
    frame.first_x = static_cast<int>(tile % in.tiles_x) * size;
    frame.first_y = static_cast<int>(tile / in.tiles_x) * size;
    frame.u.resize(n_pixels);
    frame.v.resize(n_pixels);
    frame.inside.resize(n_pixels);
    for (int p = 0; p < n_pixels; ++p) {
        frame.u[p] = static_cast<float>(p % size) + 0.5f;
        frame.v[p] = static_cast<float>(p / size) + 0.5f;
        frame.inside[p] = (frame.first_x + p % size < in.width) && (frame.first_y + p / size < in.height);
    }
}

// One Gaussian as a tile sees it: centre relative to the tile's corner.
struct Splat {
    float mx, my, a, b, c, o;
    const float* feature;
};

Splat splat_at(const SplatInputs& in, int64_t id, const TileFrame& frame) {
    Splat s;
    s.mx = in.means2d[2 * id] - static_cast<float>(frame.first_x);
    s.my = in.means2d[2 * id + 1] - static_cast<float>(frame.first_y);
    s.a = in.conics[3 * id];
    s.b = in.conics[3 * id + 1];
    s.c = in.conics[3 * id + 2];
    s.o = in.opacities[id];
    s.feature = in.features + id * in.n_features;
    return s;
}

// o exp(-sigma) of a Gaussian at a pixel (dx, dy from the centre).
inline float splat_raw(const Splat& s, float dx, float dy) {
    const float sigma = 0.5f * (s.a * dx * dx + s.c * dy * dy) + s.b * dx * dy;
    return s.o * exp_poly(-sigma);
}

// ---- forward ----

struct ForwardScratch {
    TileFrame frame;
    std::vector<float> transmittance, weights, accumulated;   // accumulated: (F, P)
    std::vector<int32_t> done, used;
};

template <int kF>
void forward_tile(const SplatInputs& in, int64_t tile, ForwardScratch& w, float* image, float* alpha,
                  float* t_final, int32_t* n_used) {
    const int n_features = kF > 0 ? kF : in.n_features;
    const int size = in.tile_size, n_pixels = size * size;
    frame_tile(in, tile, w.frame);
    const float* u = w.frame.u.data();
    const float* v = w.frame.v.data();
    w.transmittance.assign(n_pixels, 1.0f);
    w.weights.assign(n_pixels, 0.0f);
    w.accumulated.assign(static_cast<size_t>(n_features) * n_pixels, 0.0f);
    w.used.assign(n_pixels, 0);
    w.done.resize(n_pixels);
    float* T = w.transmittance.data();
    float* weights = w.weights.data();
    int32_t* done = w.done.data();
    int32_t* used = w.used.data();
    int alive = 0;
    for (int p = 0; p < n_pixels; ++p) {
        done[p] = !w.frame.inside[p];
        alive += !done[p];
    }
    const int64_t start = in.tile_offsets[tile], end = in.tile_offsets[tile + 1];
    for (int64_t k = start; k < end && alive > 0; ++k) {
        const Splat s = splat_at(in, in.gaussian_ids[k], w.frame);
        const int32_t position = static_cast<int32_t>(k - start + 1);
        alive = 0;
#pragma omp simd reduction(+ : alive)
        for (int p = 0; p < n_pixels; ++p) {
            const float a = std::min(splat_raw(s, s.mx - u[p], s.my - v[p]), kAlphaMax);
            const bool live = !done[p] && a >= kAlphaMin;
            const float next = T[p] * (1.0f - a);
            const bool stop = live && next <= kTransmittanceEps;
            const bool apply = live && !stop;
            weights[p] = apply ? a * T[p] : 0.0f;
            T[p] = apply ? next : T[p];
            used[p] = apply ? position : used[p];
            done[p] = done[p] | stop;
            alive += !done[p];
        }
        for (int f = 0; f < n_features; ++f) {
            const float value = s.feature[f];
            float* acc = w.accumulated.data() + static_cast<size_t>(f) * n_pixels;
#pragma omp simd
            for (int p = 0; p < n_pixels; ++p) acc[p] += weights[p] * value;
        }
    }
    for (int p = 0; p < n_pixels; ++p) {
        if (!w.frame.inside[p]) continue;
        const int64_t pixel = static_cast<int64_t>(w.frame.first_y + p / size) * in.width + w.frame.first_x + p % size;
        for (int f = 0; f < n_features; ++f) {
            image[pixel * n_features + f] = w.accumulated[static_cast<size_t>(f) * n_pixels + p];
        }
        alpha[pixel] = 1.0f - T[p];
        t_final[pixel] = T[p];
        n_used[pixel] = used[p];
    }
}

// ---- backward ----

struct BackwardScratch {
    TileFrame frame;
    std::vector<float> grad, total, alpha_term, transmittance, running, weights;   // grad: (F, P)
    std::vector<int32_t> used;
};

template <int kF>
void backward_tile(const SplatInputs& in, int64_t tile, BackwardScratch& w, const float* image,
                   const float* t_final, const int32_t* n_used, const float* grad_image, const float* grad_alpha,
                   float* pair_grads) {
    const int n_features = kF > 0 ? kF : in.n_features;
    const int size = in.tile_size, n_pixels = size * size;
    const int row_width = kPairGrads + n_features;
    frame_tile(in, tile, w.frame);
    const float* u = w.frame.u.data();
    const float* v = w.frame.v.data();
    w.grad.assign(static_cast<size_t>(n_features) * n_pixels, 0.0f);
    w.total.assign(n_pixels, 0.0f);        // g . F
    w.alpha_term.assign(n_pixels, 0.0f);   // g_alpha T_final
    w.used.assign(n_pixels, 0);
    w.transmittance.assign(n_pixels, 1.0f);
    w.running.assign(n_pixels, 0.0f);      // S = sum_{j <= i} w_j g . f_j
    w.weights.resize(n_pixels);
    int32_t longest = 0;
    for (int p = 0; p < n_pixels; ++p) {
        if (!w.frame.inside[p]) continue;
        const int64_t pixel = static_cast<int64_t>(w.frame.first_y + p / size) * in.width + w.frame.first_x + p % size;
        float total = 0.0f;
        for (int f = 0; f < n_features; ++f) {
            const float g = grad_image[pixel * n_features + f];
            w.grad[static_cast<size_t>(f) * n_pixels + p] = g;
            total += g * image[pixel * n_features + f];
        }
        w.total[p] = total;
        w.alpha_term[p] = grad_alpha[pixel] * t_final[pixel];
        w.used[p] = n_used[pixel];
        longest = std::max(longest, n_used[pixel]);
    }
    float* T = w.transmittance.data();
    float* S = w.running.data();
    float* weights = w.weights.data();
    const float* total = w.total.data();
    const float* alpha_term = w.alpha_term.data();
    const int32_t* used = w.used.data();
    const float* grad = w.grad.data();
    const int64_t start = in.tile_offsets[tile];
    for (int32_t j = 0; j < longest; ++j) {
        const Splat s = splat_at(in, in.gaussian_ids[start + j], w.frame);
        const float* feature = s.feature;
        float g_mx = 0.0f, g_my = 0.0f, g_a = 0.0f, g_b = 0.0f, g_c = 0.0f, g_exp = 0.0f;
#pragma omp simd reduction(+ : g_mx, g_my, g_a, g_b, g_c, g_exp)
        for (int p = 0; p < n_pixels; ++p) {
            const float dx = s.mx - u[p], dy = s.my - v[p];
            const float raw = splat_raw(s, dx, dy);
            const float a = std::min(raw, kAlphaMax);
            const bool apply = j < used[p] && a >= kAlphaMin;
            const float weight = apply ? a * T[p] : 0.0f;
            float g_dot_f = 0.0f;
            for (int f = 0; f < n_features; ++f) g_dot_f += grad[static_cast<size_t>(f) * n_pixels + p] * feature[f];
            S[p] += weight * g_dot_f;
            const float g_alpha = T[p] * g_dot_f - (total[p] - S[p] - alpha_term[p]) / (1.0f - a);
            const float g_e = (apply && raw <= kAlphaMax) ? -raw * g_alpha : 0.0f;   // d alpha / d exponent = -raw
            g_mx += g_e * (s.a * dx + s.b * dy);
            g_my += g_e * (s.c * dy + s.b * dx);
            g_a += g_e * 0.5f * dx * dx;
            g_b += g_e * dx * dy;
            g_c += g_e * 0.5f * dy * dy;
            g_exp += g_e;
            T[p] = apply ? T[p] * (1.0f - a) : T[p];
            weights[p] = weight;
        }
        float* row = pair_grads + (start + j) * row_width;
        row[0] = g_mx;
        row[1] = g_my;
        row[2] = g_a;
        row[3] = g_b;
        row[4] = g_c;
        row[5] = -g_exp / s.o;                      // exponent = sigma - log(o)
        for (int f = 0; f < n_features; ++f) {
            const float* g = grad + static_cast<size_t>(f) * n_pixels;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int p = 0; p < n_pixels; ++p) sum += weights[p] * g[p];
            row[kPairGrads + f] = sum;
        }
    }
}

template <int kF>
void forward_all(const SplatInputs& in, float* image, float* alpha, float* t_final, int32_t* n_used) {
    const int64_t n_tiles = static_cast<int64_t>(in.tiles_x) * in.tiles_y;
#pragma omp parallel if (n_tiles > 1)
    {
        ForwardScratch scratch;
#pragma omp for schedule(dynamic, 1)
        for (int64_t tile = 0; tile < n_tiles; ++tile) forward_tile<kF>(in, tile, scratch, image, alpha, t_final, n_used);
    }
}

template <int kF>
void backward_all(const SplatInputs& in, const float* image, const float* t_final, const int32_t* n_used,
                  const float* grad_image, const float* grad_alpha, float* pair_grads) {
    const int64_t n_tiles = static_cast<int64_t>(in.tiles_x) * in.tiles_y;
#pragma omp parallel if (n_tiles > 1)
    {
        BackwardScratch scratch;
#pragma omp for schedule(dynamic, 1)
        for (int64_t tile = 0; tile < n_tiles; ++tile) {
            backward_tile<kF>(in, tile, scratch, image, t_final, n_used, grad_image, grad_alpha, pair_grads);
        }
    }
}

}  // namespace

void splat_rasterize_fwd(const SplatInputs& in, float* image, float* alpha, float* t_final, int32_t* n_used) {
    if (in.n_features == 4) {
        forward_all<4>(in, image, alpha, t_final, n_used);
    } else if (in.n_features == 3) {
        forward_all<3>(in, image, alpha, t_final, n_used);
    } else {
        forward_all<0>(in, image, alpha, t_final, n_used);
    }
}

void splat_rasterize_bwd(const SplatInputs& in, const float* image, const float* t_final,
                         const int32_t* n_used, const float* grad_image, const float* grad_alpha,
                         float* grad_means2d, float* grad_conics, float* grad_opacities, float* grad_features) {
    const int64_t n_tiles = static_cast<int64_t>(in.tiles_x) * in.tiles_y;
    const int64_t n_pairs = in.tile_offsets[n_tiles];
    const int n_features = in.n_features;
    const int row_width = kPairGrads + n_features;
    // Rows of pairs a pixel never reached stay 0 (the backward stops at each tile's longest use).
    std::vector<float> pair_grads(static_cast<size_t>(n_pairs) * row_width, 0.0f);
    if (n_features == 4) {
        backward_all<4>(in, image, t_final, n_used, grad_image, grad_alpha, pair_grads.data());
    } else if (n_features == 3) {
        backward_all<3>(in, image, t_final, n_used, grad_image, grad_alpha, pair_grads.data());
    } else {
        backward_all<0>(in, image, t_final, n_used, grad_image, grad_alpha, pair_grads.data());
    }
    // Sum the pair rows per Gaussian: one column per thread at a time (no two threads share a
    // target), pairs in list order (deterministic).
#pragma omp parallel for schedule(dynamic, 1) if (n_pairs > 4096)
    for (int column = 0; column < row_width; ++column) {
        float* target;
        int stride;
        if (column < 2) {
            target = grad_means2d + column;
            stride = 2;
        } else if (column < 5) {
            target = grad_conics + (column - 2);
            stride = 3;
        } else if (column == 5) {
            target = grad_opacities;
            stride = 1;
        } else {
            target = grad_features + (column - kPairGrads);
            stride = n_features;
        }
        for (int64_t k = 0; k < n_pairs; ++k) {
            target[in.gaussian_ids[k] * stride] += pair_grads[static_cast<size_t>(k) * row_width + column];
        }
    }
}

}  // namespace cpu
}  // namespace nerfkit
