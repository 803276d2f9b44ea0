// cpu_splat.cpp: the tile rasterizer of projected Gaussians on the CPU, forward and backward, the
// native twin of nerfkit/render/splat_raster.py (same rules; see its docstring):
//
//   sigma = 0.5 (a dx^2 + c dy^2) + b dx dy           (dx, dy = centre - pixel centre)
//   alpha = min(0.999, o exp(-sigma)), skipped below 1/255
//   a pixel stops before the Gaussian that would take its transmittance T to <= 1e-4
//   F = sum_i alpha_i T_i f_i,  alpha_out = 1 - T_final
//
// Tiles run in parallel (OpenMP, dynamic: lists differ in length). Within a tile the loop is
// Gaussian-outer, pixel-inner; pixels go in blocks of 16 as GCC/Clang vector-extension values (one
// AVX-512 register, two AVX2 ones; a polynomial exp in place of expf), because the compiler's own
// vectorisation of these short loops fell back to scalar code on 8x8 tiles. Each Gaussian only
// visits the blocks of rows its footprint reaches (where alpha >= 1/255 is possible). The backward walks each tile's list front to back again with
// the forward's per-pixel count of Gaussians used, so it stops exactly where the forward did;
// every (tile, Gaussian) pair gets its own row of gradients, summed per Gaussian at the end (no
// atomics, deterministic).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
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

// Sixteen pixels' worth of floats / ints (GCC and Clang vector extensions: element-wise operators,
// vector conditionals; the compiler maps them onto the machine's vector ISA).
constexpr int kBlock = 16;
typedef float Floats __attribute__((vector_size(kBlock * sizeof(float))));
typedef int32_t Ints __attribute__((vector_size(kBlock * sizeof(int32_t))));

inline Floats broadcast(float value) { return Floats{} + value; }
inline float lane_sum(Floats v) {
    float sum = 0.0f;
    for (int q = 0; q < kBlock; ++q) sum += v[q];
    return sum;
}
inline int lane_sum(Ints v) {
    int sum = 0;
    for (int q = 0; q < kBlock; ++q) sum += v[q];
    return sum;
}

// exp(x) in float32 per lane (Cephes' expf: Cody-Waite reduction, degree-6 polynomial, 2^n from the
// exponent bits); within 2 ulp of expf, branch-free.
inline Floats exp_poly(Floats x) {
    x = x < -87.3f ? broadcast(-87.3f) : x;
    x = x > 88.7f ? broadcast(88.7f) : x;
    const Floats y = x * 1.44269504088896341f + 0.5f;
    Floats n = __builtin_convertvector(__builtin_convertvector(y, Ints), Floats);   // trunc
    n = n > y ? n - 1.0f : n;                                                        // floor
    Floats r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    const Floats r2 = r * r;
    Floats p = broadcast(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r + 1.0f;
    const Ints bits = (__builtin_convertvector(n, Ints) + 127) << 23;
    Floats scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
}

// Scratch arrays hold a tile's pixels padded up to whole blocks, each block 64-byte aligned;
// padding pixels are outside the image and never written.
constexpr int kAlign = 64;

inline int padded(int n_pixels) { return (n_pixels + kBlock - 1) / kBlock * kBlock; }

// A 64-byte aligned scratch array.
template <typename T>
class Scratch {
public:
    T* assign(size_t n, T value) {
        storage_.assign(n + kAlign / sizeof(T), value);
        const auto address = reinterpret_cast<uintptr_t>(storage_.data());
        data_ = storage_.data() + ((kAlign - address % kAlign) % kAlign) / sizeof(T);
        return data_;
    }
    T* data() { return data_; }
    const T* data() const { return data_; }

private:
    std::vector<T> storage_;
    T* data_ = nullptr;
};

inline Floats& block_at(float* p) { return *reinterpret_cast<Floats*>(p); }
inline const Floats& block_at(const float* p) { return *reinterpret_cast<const Floats*>(p); }
inline Ints& block_at(int32_t* p) { return *reinterpret_cast<Ints*>(p); }
inline const Ints& block_at(const int32_t* p) { return *reinterpret_cast<const Ints*>(p); }

// The pixel centres of a tile, tile-local (u, v in pixels), and which lie inside the image.
struct TileFrame {
    int first_x, first_y;
    Scratch<float> u, v;
    Scratch<int32_t> inside;
};

void frame_tile(const SplatInputs& in, int64_t tile, TileFrame& frame) {
    const int size = in.tile_size, n_pixels = size * size, n_padded = padded(n_pixels);
    frame.first_x = static_cast<int>(tile % in.tiles_x) * size;
    frame.first_y = static_cast<int>(tile / in.tiles_x) * size;
    float* u = frame.u.assign(n_padded, 0.0f);
    float* v = frame.v.assign(n_padded, 0.0f);
    int32_t* inside = frame.inside.assign(n_padded, 0);
    for (int p = 0; p < n_pixels; ++p) {
        u[p] = static_cast<float>(p % size) + 0.5f;
        v[p] = static_cast<float>(p / size) + 0.5f;
        inside[p] = (frame.first_x + p % size < in.width) && (frame.first_y + p / size < in.height);
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

// The blocks [begin, end) of a tile holding every pixel where a Gaussian can reach alpha >= 1/255;
// pixels outside fail the alpha test anyway, so skipping them changes no value. The ellipse
// sigma <= log(255 o) spans |dy| <= sqrt(2 log(255 o) a / (ac - b^2)); one pixel of margin keeps
// the band conservative under float rounding. Degenerate or huge footprints take the whole tile.
struct Band {
    int begin, end;
};

inline Band blocks_reached(const Splat& s, int size) {
    const int n_blocks = padded(size * size) / kBlock;
    const float threshold = std::log(255.0f * s.o);
    if (threshold < -1e-3f) return {0, 0};   // o < 1/255: nowhere visible
    const float det = s.a * s.c - s.b * s.b;
    if (!(det > 0.0f) || !(s.a > 0.0f) || det < 1e-5f * s.a) return {0, n_blocks};
    const float half = std::sqrt(2.0f * std::max(threshold, 0.0f) * s.a / det) + 1.0f;
    const float low = std::floor(s.my - 0.5f - half), high = std::ceil(s.my - 0.5f + half);
    if (!(low == low) || !(high == high)) return {0, n_blocks};
    if (high < 0.0f || low > static_cast<float>(size - 1)) return {0, 0};
    const int first_row = static_cast<int>(std::max(low, 0.0f));
    const int last_row = static_cast<int>(std::min(high, static_cast<float>(size - 1)));
    return {first_row * size / kBlock, ((last_row + 1) * size + kBlock - 1) / kBlock};
}

// o exp(-sigma) of a Gaussian at a block of pixels (dx, dy from the centre).
inline Floats splat_raw(const Splat& s, Floats dx, Floats dy) {
    const Floats sigma = 0.5f * (s.a * dx * dx + s.c * dy * dy) + s.b * dx * dy;
    return s.o * exp_poly(-sigma);
}

// ---- forward ----

struct ForwardScratch {
    TileFrame frame;
    Scratch<float> transmittance, accumulated;   // accumulated: (F, padded P)
    Scratch<int32_t> done, used;
};

template <int kF>
void forward_tile(const SplatInputs& in, int64_t tile, ForwardScratch& w, float* image, float* alpha,
                  float* t_final, int32_t* n_used) {
    const int n_features = kF > 0 ? kF : in.n_features;
    const int size = in.tile_size, n_padded = padded(size * size);
    frame_tile(in, tile, w.frame);
    const float* u = w.frame.u.data();
    const float* v = w.frame.v.data();
    const int32_t* inside = w.frame.inside.data();
    float* T = w.transmittance.assign(n_padded, 1.0f);
    float* accumulated = w.accumulated.assign(static_cast<size_t>(n_features) * n_padded, 0.0f);
    int32_t* used = w.used.assign(n_padded, 0);
    int32_t* done = w.done.assign(n_padded, 0);
    int alive = 0;
    for (int p = 0; p < n_padded; ++p) {
        done[p] = !inside[p];
        alive += !done[p];
    }
    const int64_t start = in.tile_offsets[tile], end = in.tile_offsets[tile + 1];
    for (int64_t k = start; k < end && alive > 0; ++k) {
        const Splat s = splat_at(in, in.gaussian_ids[k], w.frame);
        const int32_t position = static_cast<int32_t>(k - start + 1);
        const Band band = blocks_reached(s, size);
        Ints stops{};
        for (int block = band.begin; block < band.end; ++block) {
            const int o = block * kBlock;
            Floats& bT = block_at(T + o);
            Ints& bused = block_at(used + o);
            Ints& bdone = block_at(done + o);
            Floats a = splat_raw(s, s.mx - block_at(u + o), s.my - block_at(v + o));
            a = a > kAlphaMax ? broadcast(kAlphaMax) : a;
            const Ints live = (bdone == 0) & (a >= kAlphaMin);
            const Floats next = bT * (1.0f - a);
            const Ints stop = live & (next <= kTransmittanceEps);
            const Ints apply = live & ~stop;
            const Floats bw = apply ? a * bT : Floats{};
            bT = apply ? next : bT;
            bused = apply ? Ints{} + position : bused;
            bdone = bdone | (stop & 1);
            stops += stop & 1;
            for (int f = 0; f < n_features; ++f) {
                Floats& acc = block_at(accumulated + static_cast<size_t>(f) * n_padded + o);
                acc += bw * s.feature[f];
            }
        }
        const int stopped = lane_sum(stops);
        alive -= stopped;
    }
    for (int p = 0; p < size * size; ++p) {
        if (!inside[p]) continue;
        const int64_t pixel = static_cast<int64_t>(w.frame.first_y + p / size) * in.width + w.frame.first_x + p % size;
        for (int f = 0; f < n_features; ++f) {
            image[pixel * n_features + f] = accumulated[static_cast<size_t>(f) * n_padded + p];
        }
        alpha[pixel] = 1.0f - T[p];
        t_final[pixel] = T[p];
        n_used[pixel] = used[p];
    }
}

// ---- backward ----

struct BackwardScratch {
    TileFrame frame;
    Scratch<float> grad, total, alpha_term, transmittance, running;   // grad: (F, padded P)
    Scratch<int32_t> used;
    std::vector<Floats> feature_sums;   // (F,) when F is not a compile-time constant
};

template <int kF>
void backward_tile(const SplatInputs& in, int64_t tile, BackwardScratch& w, const float* image,
                   const float* t_final, const int32_t* n_used, const float* grad_image, const float* grad_alpha,
                   float* pair_grads) {
    const int n_features = kF > 0 ? kF : in.n_features;
    const int size = in.tile_size, n_padded = padded(size * size);
    const int row_width = kPairGrads + n_features;
    frame_tile(in, tile, w.frame);
    const float* u = w.frame.u.data();
    const float* v = w.frame.v.data();
    const int32_t* inside = w.frame.inside.data();
    float* grad = w.grad.assign(static_cast<size_t>(n_features) * n_padded, 0.0f);
    float* total = w.total.assign(n_padded, 0.0f);             // g . F
    float* alpha_term = w.alpha_term.assign(n_padded, 0.0f);   // g_alpha T_final
    int32_t* used = w.used.assign(n_padded, 0);                // padding: 0, so never applied
    float* T = w.transmittance.assign(n_padded, 1.0f);
    float* S = w.running.assign(n_padded, 0.0f);               // S = sum_{j <= i} w_j g . f_j
    w.feature_sums.resize(n_features);
    int32_t longest = 0;
    for (int p = 0; p < size * size; ++p) {
        if (!inside[p]) continue;
        const int64_t pixel = static_cast<int64_t>(w.frame.first_y + p / size) * in.width + w.frame.first_x + p % size;
        float sum = 0.0f;
        for (int f = 0; f < n_features; ++f) {
            const float g = grad_image[pixel * n_features + f];
            grad[static_cast<size_t>(f) * n_padded + p] = g;
            sum += g * image[pixel * n_features + f];
        }
        total[p] = sum;
        alpha_term[p] = grad_alpha[pixel] * t_final[pixel];
        used[p] = n_used[pixel];
        longest = std::max(longest, n_used[pixel]);
    }
    const int64_t start = in.tile_offsets[tile];
    for (int32_t j = 0; j < longest; ++j) {
        const Splat s = splat_at(in, in.gaussian_ids[start + j], w.frame);
        const float* feature = s.feature;
        const Band band = blocks_reached(s, size);
        Floats g_mx{}, g_my{}, g_a{}, g_b{}, g_c{}, g_exp{};
        Floats local_sums[kF > 0 ? kF : 1];
        Floats* feature_sums = kF > 0 ? local_sums : w.feature_sums.data();
        std::fill(feature_sums, feature_sums + n_features, Floats{});
        for (int block = band.begin; block < band.end; ++block) {
            const int o = block * kBlock;
            Floats& bT = block_at(T + o);
            Floats& bS = block_at(S + o);
            const Floats dx = s.mx - block_at(u + o), dy = s.my - block_at(v + o);
            const Floats raw = splat_raw(s, dx, dy);
            const Floats a = raw > kAlphaMax ? broadcast(kAlphaMax) : raw;
            const Ints apply = (block_at(used + o) > j) & (a >= kAlphaMin);
            const Floats weight = apply ? a * bT : Floats{};
            Floats g_dot_f{};
            for (int f = 0; f < n_features; ++f) g_dot_f += block_at(grad + static_cast<size_t>(f) * n_padded + o) * feature[f];
            bS += weight * g_dot_f;
            const Floats g_alpha = bT * g_dot_f - (block_at(total + o) - bS - block_at(alpha_term + o)) / (1.0f - a);
            const Floats g_e = (apply & (raw <= kAlphaMax)) ? -raw * g_alpha : Floats{};   // d alpha / d exponent = -raw
            g_mx += g_e * (s.a * dx + s.b * dy);
            g_my += g_e * (s.c * dy + s.b * dx);
            g_a += g_e * 0.5f * dx * dx;
            g_b += g_e * dx * dy;
            g_c += g_e * 0.5f * dy * dy;
            g_exp += g_e;
            bT = apply ? bT * (1.0f - a) : bT;
            for (int f = 0; f < n_features; ++f) {
                feature_sums[f] += weight * block_at(grad + static_cast<size_t>(f) * n_padded + o);
            }
        }
        float* row = pair_grads + (start + j) * row_width;
        row[0] = lane_sum(g_mx);
        row[1] = lane_sum(g_my);
        row[2] = lane_sum(g_a);
        row[3] = lane_sum(g_b);
        row[4] = lane_sum(g_c);
        row[5] = -lane_sum(g_exp) / s.o;            // exponent = sigma - log(o)
        for (int f = 0; f < n_features; ++f) row[kPairGrads + f] = lane_sum(feature_sums[f]);
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
