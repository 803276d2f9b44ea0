// hash_encoding.cuh: per-(point, level) device/host functions of hash_encoding.cu and of the CPU
// backend (cpu_hash.cpp); see nerfkit_common.cuh. They reproduce `_cell`, `_corner_rows` and
// `_weight_gradients` of nerfkit/ops/reference.py for one point and one level.
#pragma once

#include "nerfkit_common.cuh"

namespace nerfkit {

// The cell holding point x at a level of `res` cells per axis whose rows are [offset, offset + size):
//
//   pos = x * res;  base = min(max(floor(pos), 0), max(res - 1, 0));  raw = pos - base
//   frac = clamp(raw, 0, 1);  slope = d frac / d x = res where 0 <= raw <= 1, else 0
//   dense level ((res + 1)^3 <= size) or hashed (Mueller et al. 2022 Eq. 4, uint32 arithmetic)
struct HashCell {
    uint32_t base[3];
    float frac[3];
    float slope[3];
    int64_t offset;
    int64_t side;      // res + 1 vertices per axis
    uint32_t mask;     // size - 1 (hashed levels have power-of-two sizes)
    bool hashed;
};

NK_HD HashCell hash_cell(const float* x, int res, int64_t offset, int64_t size) {
    HashCell cell;
    const float res_f = static_cast<float>(res);
    const float hi = max_f(res_f - 1.0f, 0.0f);
    for (int i = 0; i < 3; ++i) {
        const float pos = mul_rn(x[i], res_f);
        const float b = min_f(max_f(floorf(pos), 0.0f), hi);
        const float raw = sub_rn(pos, b);
        cell.frac[i] = min_f(max_f(raw, 0.0f), 1.0f);
        cell.slope[i] = (raw >= 0.0f && raw <= 1.0f) ? res_f : 0.0f;
        cell.base[i] = static_cast<uint32_t>(b);
    }
    cell.offset = offset;
    cell.side = static_cast<int64_t>(res) + 1;
    cell.hashed = cell.side * cell.side * cell.side > size;
    cell.mask = static_cast<uint32_t>(size - 1);
    return cell;
}

// Table row of corner c = (c & 1, c >> 1 & 1, c >> 2 & 1) of the cell:
//   dense:  offset + v.x + v.y (res + 1) + v.z (res + 1)^2
//   hashed: offset + ((v.x * 1) ^ (v.y * 2654435761) ^ (v.z * 805459861)) & (size - 1)
NK_HD int64_t corner_row(const HashCell& cell, int c) {
    const uint32_t vx = cell.base[0] + (c & 1), vy = cell.base[1] + ((c >> 1) & 1);
    const uint32_t vz = cell.base[2] + ((c >> 2) & 1);
    if (cell.hashed) {
        return cell.offset + static_cast<int64_t>((vx * 1u ^ vy * 2654435761u ^ vz * 805459861u) & cell.mask);
    }
    return cell.offset + static_cast<int64_t>(vx) + static_cast<int64_t>(vy) * cell.side
           + static_cast<int64_t>(vz) * cell.side * cell.side;
}

// Per-axis trilinear factor of corner c: frac for a corner offset of 1, 1 - frac for 0.
NK_HD float corner_factor(const HashCell& cell, int c, int axis) {
    return ((c >> axis) & 1) ? cell.frac[axis] : sub_rn(1.0f, cell.frac[axis]);
}

// Table rows and trilinear weights w_c = (w_x w_y) w_z of the 8 corners of the cell holding x.
NK_HD void hash_corners(const float* x, int res, int64_t offset, int64_t size, int64_t* rows,
                        float* weights) {
    const HashCell cell = hash_cell(x, res, offset, size);
    for (int c = 0; c < 8; ++c) {
        rows[c] = corner_row(cell, c);
        weights[c] = mul_rn(mul_rn(corner_factor(cell, c, 0), corner_factor(cell, c, 1)), corner_factor(cell, c, 2));
    }
}

// Table rows and the position gradients of the weights, dweights[3 c + i] = d w_c / d x_i:
//   (dw_x w_y) w_z,  (w_x dw_y) w_z,  (w_x w_y) dw_z   with dw = +slope (offset 1) or -slope (0).
NK_HD void hash_corner_gradients(const float* x, int res, int64_t offset, int64_t size, int64_t* rows,
                                 float* dweights) {
    const HashCell cell = hash_cell(x, res, offset, size);
    for (int c = 0; c < 8; ++c) {
        rows[c] = corner_row(cell, c);
        const float wx = corner_factor(cell, c, 0), wy = corner_factor(cell, c, 1), wz = corner_factor(cell, c, 2);
        const float dx = (c & 1) ? cell.slope[0] : -cell.slope[0];
        const float dy = ((c >> 1) & 1) ? cell.slope[1] : -cell.slope[1];
        const float dz = ((c >> 2) & 1) ? cell.slope[2] : -cell.slope[2];
        dweights[3 * c + 0] = mul_rn(mul_rn(dx, wy), wz);
        dweights[3 * c + 1] = mul_rn(mul_rn(wx, dy), wz);
        dweights[3 * c + 2] = mul_rn(mul_rn(wx, wy), dz);
    }
}

}  // namespace nerfkit
