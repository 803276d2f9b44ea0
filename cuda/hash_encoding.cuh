// hash_encoding.cuh: per-(point, level) device/host function of hash_encoding.cu
// (see nerfkit_common.cuh). Reproduces `_corner_indices_and_weights` of
// nerfkit/ops/hash_encoding.py for one point and one level.
#pragma once

#include "nerfkit_common.cuh"

namespace nerfkit {

// Table rows and trilinear weights of the 8 corners of the cell holding point x at a level of
// `res` cells per axis whose rows are [offset, offset + size).
//
//   pos = x * res;  base = min(max(floor(pos), 0), max(res - 1, 0));  f = clamp(pos - base, 0, 1)
//   corner c = (c & 1, c >> 1 & 1, c >> 2 & 1), vertex v = base + c
//   dense level ((res + 1)^3 <= size):  row = offset + v.x + v.y (res + 1) + v.z (res + 1)^2
//   hashed level:  row = offset + ((v.x * 1) ^ (v.y * 2654435761) ^ (v.z * 805459861)) & (size - 1)
//                  (uint32 arithmetic, Mueller et al. 2022 Eq. 4)
//   weight = w.x * w.y * w.z with w = f for a corner offset of 1, 1 - f for 0.
NK_HD void hash_corners(const float* x, int res, int64_t offset, int64_t size, int64_t* rows,
                        float* weights) {
    const float res_f = static_cast<float>(res);
    const float hi = max_f(res_f - 1.0f, 0.0f);
    uint32_t base[3];
    float frac[3];
    for (int i = 0; i < 3; ++i) {
        const float pos = mul_rn(x[i], res_f);
        const float b = min_f(max_f(floorf(pos), 0.0f), hi);
        frac[i] = min_f(max_f(sub_rn(pos, b), 0.0f), 1.0f);
        base[i] = static_cast<uint32_t>(b);
    }
    const int64_t side = static_cast<int64_t>(res) + 1;
    const bool hashed = side * side * side > size;
    const uint32_t mask = static_cast<uint32_t>(size - 1);
    for (int c = 0; c < 8; ++c) {
        const uint32_t vx = base[0] + (c & 1), vy = base[1] + ((c >> 1) & 1), vz = base[2] + ((c >> 2) & 1);
        int64_t idx;
        if (hashed) {
            idx = static_cast<int64_t>((vx * 1u ^ vy * 2654435761u ^ vz * 805459861u) & mask);
        } else {
            idx = static_cast<int64_t>(vx) + static_cast<int64_t>(vy) * side
                  + static_cast<int64_t>(vz) * side * side;
        }
        rows[c] = offset + idx;
        const float wx = (c & 1) ? frac[0] : sub_rn(1.0f, frac[0]);
        const float wy = ((c >> 1) & 1) ? frac[1] : sub_rn(1.0f, frac[1]);
        const float wz = ((c >> 2) & 1) ? frac[2] : sub_rn(1.0f, frac[2]);
        weights[c] = mul_rn(mul_rn(wx, wy), wz);
    }
}

}  // namespace nerfkit
