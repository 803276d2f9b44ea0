// cpu_hash.cpp: the multiresolution hash encoding on the CPU: forward, table gradient, position
// gradient and its backward, parallel with OpenMP. The index and weight maths is hash_encoding.cuh,
// shared with the CUDA kernels (see cpu_kernels.h).
//
// Scattering into the table gradient without a lock: every level owns its own rows, so the levels
// are dealt out to the threads (level l to thread l mod T) and each row has one writer. A thread
// walks the points in blocks of kBlock and, per block, all of its levels, so the block's slice of
// grad_out is read from cache rather than once per level from memory. With more threads than
// levels a level's points are split into chunks as well; then small levels (<= kPartialFloats)
// go to private partial tables summed in chunk order afterwards (deterministic), large ones take
// atomic adds (rare conflicts in a large table; the sum order then varies from run to run).
// Measured on the 2-core VM (cuda/README.md): the level split beat per-thread partial tables and
// atomics, so it is what `kAuto` uses whenever there are no more threads than levels.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "cpu_kernels.h"
#include "hash_encoding.cuh"

namespace nerfkit {
namespace cpu {
namespace {

constexpr int64_t kBlock = 2048;                 // points per cache block of the scatter
constexpr int64_t kPartialFloats = int64_t(1) << 16;   // private partials up to 256 KB per level

int64_t level_offset(const HashLayout& layout, int level) { return layout.offsets[level]; }
int64_t level_size(const HashLayout& layout, int level) {
    return static_cast<int64_t>(layout.offsets[level + 1]) - layout.offsets[level];
}

// ---- forward ----

// kF > 0: the feature count known at compile time (the common 1, 2, 4, 8); 0: layout.n_features.
template <int kF>
void encode_points(const float* x, const float* table, const HashLayout& layout, int64_t n_points, float* out) {
    const int n_features = kF > 0 ? kF : layout.n_features;
    const int n_levels = layout.n_levels;
#pragma omp parallel for schedule(static) if (n_points > 256)
    for (int64_t n = 0; n < n_points; ++n) {
        const float* p = x + 3 * n;
        float* row_out = out + n * n_levels * n_features;
        for (int level = 0; level < n_levels; ++level) {
            int64_t rows[8];
            float weights[8];
            hash_corners(p, layout.resolutions[level], level_offset(layout, level), level_size(layout, level), rows,
                         weights);
            float* o = row_out + level * n_features;
            for (int f = 0; f < n_features; ++f) o[f] = 0.0f;
            for (int c = 0; c < 8; ++c) {
                const float* t = table + rows[c] * n_features;
                for (int f = 0; f < n_features; ++f) o[f] += weights[c] * t[f];
            }
        }
    }
}

// ---- the conflict-free scatter ----

// Where one work item (a level, or a chunk of a level's points) adds its table gradients.
struct DirectAdd {        // the item is the only writer of its level's rows
    float* table;
    int n_features;
    void operator()(int64_t row, int f, float v) const { table[row * n_features + f] += v; }
};
struct PartialAdd {       // a private copy of the level's rows
    float* partial;
    int64_t first_row;
    int n_features;
    void operator()(int64_t row, int f, float v) const { partial[(row - first_row) * n_features + f] += v; }
};
struct AtomicAdd {        // shared rows, another chunk of the same level may write them
    float* table;
    int n_features;
    void operator()(int64_t row, int f, float v) const {
        float& target = table[row * n_features + f];
#pragma omp atomic
        target += v;
    }
};

enum class Target { kDirect, kPartial, kAtomic };

struct Item {
    int level;
    int64_t first, last;     // points [first, last)
    Target target;
    int64_t partial_start;   // into the partial buffer, when kPartial
};

struct Plan {
    std::vector<Item> items;
    int64_t partial_floats = 0;
    int chunks = 1;
};

Plan plan_scatter(const HashLayout& layout, int64_t n_points, Scatter scatter) {
    const int n_levels = layout.n_levels;
    const int threads = omp_get_max_threads();
    int chunks = (threads + n_levels - 1) / n_levels;
    if (scatter != Scatter::kAuto) chunks = std::max(chunks, 2);
    chunks = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(chunks, n_points)));
    Plan plan;
    plan.chunks = chunks;
    for (int c = 0; c < chunks; ++c) {
        for (int level = 0; level < n_levels; ++level) {
            Item item{level, n_points * c / chunks, n_points * (c + 1) / chunks, Target::kDirect, 0};
            if (chunks > 1) {
                const int64_t floats = level_size(layout, level) * layout.n_features;
                const bool partial = scatter == Scatter::kPartials
                                     || (scatter == Scatter::kAuto && floats <= kPartialFloats);
                item.target = partial ? Target::kPartial : Target::kAtomic;
                if (partial) {
                    item.partial_start = plan.partial_floats;
                    plan.partial_floats += floats;
                }
            }
            plan.items.push_back(item);
        }
    }
    return plan;
}

// Runs body(n, level, add) for every point and level, add(row, f, value) accumulating into
// grad_table (rows x F) through the target of the item that holds (n, level).
template <class Body>
void scatter_into_table(const HashLayout& layout, int64_t n_points, float* grad_table, Scatter scatter,
                        const Body& body) {
    if (n_points <= 0) return;
    const Plan plan = plan_scatter(layout, n_points, scatter);
    std::vector<float> partials(plan.partial_floats, 0.0f);
    const int n_features = layout.n_features;
    const int64_t n_items = static_cast<int64_t>(plan.items.size());
#pragma omp parallel
    {
        const int64_t team = omp_get_num_threads(), me = omp_get_thread_num();
        for (int64_t block = 0; block < n_points; block += kBlock) {
            for (int64_t i = me; i < n_items; i += team) {   // items i = me, me + team, ...: one writer each
                const Item& item = plan.items[i];
                const int64_t first = std::max(item.first, block);
                const int64_t last = std::min(item.last, block + kBlock);
                if (first >= last) continue;
                if (item.target == Target::kDirect) {
                    const DirectAdd add{grad_table, n_features};
                    for (int64_t n = first; n < last; ++n) body(n, item.level, add);
                } else if (item.target == Target::kPartial) {
                    const PartialAdd add{partials.data() + item.partial_start, level_offset(layout, item.level),
                                         n_features};
                    for (int64_t n = first; n < last; ++n) body(n, item.level, add);
                } else {
                    const AtomicAdd add{grad_table, n_features};
                    for (int64_t n = first; n < last; ++n) body(n, item.level, add);
                }
            }
        }
    }
    if (plan.partial_floats == 0) return;
    // Sum the partial tables into grad_table, chunk after chunk (a fixed order), rows in parallel.
    for (const Item& item : plan.items) {
        if (item.target != Target::kPartial) continue;
        const int64_t floats = level_size(layout, item.level) * n_features;
        float* target = grad_table + level_offset(layout, item.level) * n_features;
        const float* source = partials.data() + item.partial_start;
#pragma omp parallel for schedule(static) if (floats > 65536)
        for (int64_t k = 0; k < floats; ++k) target[k] += source[k];
    }
}

bool all_zero(const float* values, int n) {
    for (int i = 0; i < n; ++i) {
        if (values[i] != 0.0f) return false;
    }
    return true;
}

}  // namespace

void hash_encode_fwd(const float* x, const float* table, const HashLayout& layout, int64_t n_points,
                     float* out) {
    switch (layout.n_features) {
        case 1: encode_points<1>(x, table, layout, n_points, out); break;
        case 2: encode_points<2>(x, table, layout, n_points, out); break;
        case 4: encode_points<4>(x, table, layout, n_points, out); break;
        case 8: encode_points<8>(x, table, layout, n_points, out); break;
        default: encode_points<0>(x, table, layout, n_points, out); break;
    }
}

void hash_encode_bwd(const float* x, const float* grad_out, const HashLayout& layout, int64_t n_points,
                     float* grad_table, Scatter scatter) {
    const int n_levels = layout.n_levels, n_features = layout.n_features;
    scatter_into_table(layout, n_points, grad_table, scatter, [&](int64_t n, int level, const auto& add) {
        const float* g = grad_out + (n * n_levels + level) * n_features;
        if (all_zero(g, n_features)) return;     // e.g. samples behind an opaque surface
        int64_t rows[8];
        float weights[8];
        hash_corners(x + 3 * n, layout.resolutions[level], level_offset(layout, level), level_size(layout, level),
                     rows, weights);
        for (int c = 0; c < 8; ++c) {
            for (int f = 0; f < n_features; ++f) add(rows[c], f, weights[c] * g[f]);
        }
    });
}

void hash_position_grad_fwd(const float* x, const float* table, const float* grad_out,
                            const HashLayout& layout, int64_t n_points, float* grad_x) {
    const int n_levels = layout.n_levels, n_features = layout.n_features;
#pragma omp parallel for schedule(static) if (n_points > 256)
    for (int64_t n = 0; n < n_points; ++n) {
        float acc[3] = {0.0f, 0.0f, 0.0f};
        for (int level = 0; level < n_levels; ++level) {
            const float* g = grad_out + (n * n_levels + level) * n_features;
            if (all_zero(g, n_features)) continue;
            int64_t rows[8];
            float dweights[24];
            hash_corner_gradients(x + 3 * n, layout.resolutions[level], level_offset(layout, level),
                                  level_size(layout, level), rows, dweights);
            for (int c = 0; c < 8; ++c) {
                const float* t = table + rows[c] * n_features;
                float projected = 0.0f;               // table[row_c] . grad_out[n, level]
                for (int f = 0; f < n_features; ++f) projected += t[f] * g[f];
                for (int i = 0; i < 3; ++i) acc[i] += dweights[3 * c + i] * projected;
            }
        }
        for (int i = 0; i < 3; ++i) grad_x[3 * n + i] = acc[i];
    }
}

void hash_position_grad_bwd(const float* x, const float* table, const float* grad_out,
                            const float* grad_grad_x, const HashLayout& layout, int64_t n_points,
                            float* grad_table, float* grad_grad_out, Scatter scatter) {
    const int n_levels = layout.n_levels, n_features = layout.n_features;
    // along_c = d w_c / d x . grad_grad_x[n], per (point, level, corner)
    auto along = [&](int64_t n, int level, int64_t* rows, float* out) {
        float dweights[24];
        hash_corner_gradients(x + 3 * n, layout.resolutions[level], level_offset(layout, level),
                              level_size(layout, level), rows, dweights);
        const float* gg = grad_grad_x + 3 * n;
        for (int c = 0; c < 8; ++c) {
            out[c] = dweights[3 * c] * gg[0] + dweights[3 * c + 1] * gg[1] + dweights[3 * c + 2] * gg[2];
        }
    };
    if (grad_grad_out != nullptr) {         // grad_grad_out[n, level] = sum_c along_c table[row_c]
#pragma omp parallel for schedule(static) if (n_points > 256)
        for (int64_t n = 0; n < n_points; ++n) {
            for (int level = 0; level < n_levels; ++level) {
                int64_t rows[8];
                float a[8];
                along(n, level, rows, a);
                float* o = grad_grad_out + (n * n_levels + level) * n_features;
                for (int f = 0; f < n_features; ++f) o[f] = 0.0f;
                for (int c = 0; c < 8; ++c) {
                    const float* t = table + rows[c] * n_features;
                    for (int f = 0; f < n_features; ++f) o[f] += a[c] * t[f];
                }
            }
        }
    }
    if (grad_table != nullptr) {            // grad_table[row_c] += along_c grad_out[n, level]
        scatter_into_table(layout, n_points, grad_table, scatter, [&](int64_t n, int level, const auto& add) {
            const float* g = grad_out + (n * n_levels + level) * n_features;
            if (all_zero(g, n_features) || all_zero(grad_grad_x + 3 * n, 3)) return;
            int64_t rows[8];
            float a[8];
            along(n, level, rows, a);
            for (int c = 0; c < 8; ++c) {
                for (int f = 0; f < n_features; ++f) add(rows[c], f, a[c] * g[f]);
            }
        });
    }
}

}  // namespace cpu
}  // namespace nerfkit
