// cpu_ext.cpp: the PyTorch binding of nerfkit's CPU kernels (module `nerfkit_cpu_<machine tag>`).
//
// The functions have the names and arguments of ext.cpp (the CUDA binding) less the stream, plus
// the splat rasterizer. Each checks devices, dtypes, shapes and contiguity (TORCH_CHECK), allocates
// the outputs, releases the GIL and calls the raw-pointer kernels of cpu_kernels.h.
#include <torch/extension.h>

#include <climits>
#include <optional>
#include <string>
#include <tuple>

#include "cpu_kernels.h"

namespace {

using torch::Tensor;
namespace nk = nerfkit::cpu;

void check_tensor(const Tensor& t, const char* name, torch::ScalarType dtype) {
    TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor, got ", t.device());
    TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
    TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

void check_shape(const Tensor& t, const char* name, torch::IntArrayRef shape) {
    TORCH_CHECK(t.sizes() == shape, name, " must have shape ", shape, ", got ", t.sizes());
}

const float* fptr(const Tensor& t) { return t.data_ptr<float>(); }
float* fptr_mut(Tensor& t) { return t.data_ptr<float>(); }

torch::TensorOptions f32() { return torch::TensorOptions().dtype(torch::kFloat32); }
torch::TensorOptions i64() { return torch::TensorOptions().dtype(torch::kInt64); }

// ---- ray marching ----

std::tuple<Tensor, Tensor> ray_aabb_intersect_fwd(const Tensor& origins, const Tensor& directions, const Tensor& aabb) {
    check_tensor(origins, "origins", torch::kFloat32);
    check_tensor(directions, "directions", torch::kFloat32);
    check_tensor(aabb, "aabb", torch::kFloat32);
    TORCH_CHECK(origins.dim() == 2 && origins.size(1) == 3, "origins must be (R, 3), got ", origins.sizes());
    check_shape(directions, "directions", origins.sizes());
    check_shape(aabb, "aabb", {2, 3});
    const int64_t n_rays = origins.size(0);
    Tensor t_near = torch::empty({n_rays}, f32());
    Tensor t_far = torch::empty({n_rays}, f32());
    {
        pybind11::gil_scoped_release no_gil;
        nk::ray_aabb_intersect(fptr(origins), fptr(directions), fptr(aabb), n_rays, fptr_mut(t_near), fptr_mut(t_far));
    }
    return {t_near, t_far};
}

std::tuple<Tensor, Tensor, Tensor> march_rays_fwd(const Tensor& origins, const Tensor& directions, const Tensor& t_min,
                                                  const Tensor& t_max, const Tensor& grid, const Tensor& aabb,
                                                  double step_size, double cone_angle, int64_t max_samples) {
    check_tensor(origins, "origins", torch::kFloat32);
    check_tensor(directions, "directions", torch::kFloat32);
    check_tensor(t_min, "t_min", torch::kFloat32);
    check_tensor(t_max, "t_max", torch::kFloat32);
    check_tensor(grid, "grid", torch::kBool);
    check_tensor(aabb, "aabb", torch::kFloat32);
    TORCH_CHECK(origins.dim() == 2 && origins.size(1) == 3, "origins must be (R, 3), got ", origins.sizes());
    const int64_t n_rays = origins.size(0);
    check_shape(directions, "directions", origins.sizes());
    check_shape(t_min, "t_min", {n_rays});
    check_shape(t_max, "t_max", {n_rays});
    check_shape(aabb, "aabb", {2, 3});
    TORCH_CHECK(grid.dim() == 4 && grid.size(0) > 0 && grid.size(1) > 0 && grid.size(1) == grid.size(2)
                    && grid.size(1) == grid.size(3),
                "grid must be (C, G, G, G) with C, G > 0, got ", grid.sizes());
    TORCH_CHECK(step_size > 0.0, "step_size must be > 0, got ", step_size);
    TORCH_CHECK(grid.size(0) <= INT_MAX && grid.size(1) <= INT_MAX, "grid too large");

    nk::MarchInputs in;
    in.origins = fptr(origins);
    in.directions = fptr(directions);
    in.t_min = fptr(t_min);
    in.t_max = fptr(t_max);
    in.grid = reinterpret_cast<const uint8_t*>(grid.data_ptr<bool>());
    in.aabb = fptr(aabb);
    in.n_rays = n_rays;
    in.n_cascades = static_cast<int>(grid.size(0));
    in.res = static_cast<int>(grid.size(1));
    in.step_size = static_cast<float>(step_size);     // the twin rounds Python floats to float32
    in.cone_angle = static_cast<float>(cone_angle);
    in.constant_steps = cone_angle <= 0.0;             // decided in double, as the twin does
    in.max_samples = max_samples <= 0 ? 0 : static_cast<int>(std::min<int64_t>(max_samples, INT_MAX));

    Tensor ray_indices, t_starts, t_ends;
    {
        pybind11::gil_scoped_release no_gil;
        nk::march_rays(in, [&](int64_t n_samples) {
            ray_indices = torch::empty({n_samples}, i64());
            t_starts = torch::empty({n_samples}, f32());
            t_ends = torch::empty({n_samples}, f32());
            return nk::MarchOutputs{ray_indices.data_ptr<int64_t>(), fptr_mut(t_starts), fptr_mut(t_ends)};
        });
    }
    return {ray_indices, t_starts, t_ends};
}

// ---- compositing ----

void check_packed(const Tensor& sigmas, const Tensor& rgbs, const Tensor& t_starts, const Tensor& t_ends) {
    check_tensor(sigmas, "sigmas", torch::kFloat32);
    check_tensor(rgbs, "rgbs", torch::kFloat32);
    check_tensor(t_starts, "t_starts", torch::kFloat32);
    check_tensor(t_ends, "t_ends", torch::kFloat32);
    TORCH_CHECK(sigmas.dim() == 1, "sigmas must be (S,), got ", sigmas.sizes());
    const int64_t n_samples = sigmas.size(0);
    check_shape(rgbs, "rgbs", {n_samples, 3});
    check_shape(t_starts, "t_starts", {n_samples});
    check_shape(t_ends, "t_ends", {n_samples});
}

// rgb (R, 3), depth (R,), alpha (R,), weights (S,) and each ray's run [ray_begin, ray_end) (R,).
// ValueError when ray_indices is not sorted or not within [0, n_rays).
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> composite_fwd(
        const Tensor& sigmas, const Tensor& rgbs, const Tensor& t_starts, const Tensor& t_ends,
        const Tensor& ray_indices, int64_t n_rays) {
    check_packed(sigmas, rgbs, t_starts, t_ends);
    check_tensor(ray_indices, "ray_indices", torch::kInt64);
    const int64_t n_samples = sigmas.size(0);
    check_shape(ray_indices, "ray_indices", {n_samples});
    TORCH_CHECK(n_rays >= 0, "n_rays must be >= 0, got ", n_rays);
    Tensor ray_begin = torch::zeros({n_rays}, i64());
    Tensor ray_end = torch::zeros({n_rays}, i64());
    Tensor weights = torch::zeros({n_samples}, f32());
    Tensor rgb = torch::empty({n_rays, 3}, f32());
    Tensor depth = torch::empty({n_rays}, f32());
    Tensor alpha = torch::empty({n_rays}, f32());
    std::string problem;
    {
        pybind11::gil_scoped_release no_gil;
        problem = nk::segment_bounds(ray_indices.data_ptr<int64_t>(), n_samples, n_rays,
                                     ray_begin.data_ptr<int64_t>(), ray_end.data_ptr<int64_t>());
        if (problem.empty()) {
            nk::composite_fwd(fptr(sigmas), fptr(rgbs), fptr(t_starts), fptr(t_ends), ray_begin.data_ptr<int64_t>(),
                              ray_end.data_ptr<int64_t>(), n_rays, fptr_mut(weights), fptr_mut(rgb), fptr_mut(depth),
                              fptr_mut(alpha));
        }
    }
    TORCH_CHECK_VALUE(problem.empty(), problem);
    return {rgb, depth, alpha, weights, ray_begin, ray_end};
}

std::tuple<Tensor, Tensor> composite_bwd(const Tensor& sigmas, const Tensor& rgbs, const Tensor& t_starts,
                                         const Tensor& t_ends, const Tensor& ray_begin, const Tensor& ray_end,
                                         const Tensor& grad_rgb, const Tensor& grad_depth, const Tensor& grad_alpha,
                                         const std::optional<Tensor>& grad_weights) {
    check_packed(sigmas, rgbs, t_starts, t_ends);
    const int64_t n_samples = sigmas.size(0);
    check_tensor(ray_begin, "ray_begin", torch::kInt64);
    check_tensor(ray_end, "ray_end", torch::kInt64);
    TORCH_CHECK(ray_begin.dim() == 1, "ray_begin must be (R,), got ", ray_begin.sizes());
    const int64_t n_rays = ray_begin.size(0);
    check_shape(ray_end, "ray_end", {n_rays});
    check_tensor(grad_rgb, "grad_rgb", torch::kFloat32);
    check_tensor(grad_depth, "grad_depth", torch::kFloat32);
    check_tensor(grad_alpha, "grad_alpha", torch::kFloat32);
    check_shape(grad_rgb, "grad_rgb", {n_rays, 3});
    check_shape(grad_depth, "grad_depth", {n_rays});
    check_shape(grad_alpha, "grad_alpha", {n_rays});
    const float* grad_weights_ptr = nullptr;
    if (grad_weights.has_value()) {
        check_tensor(*grad_weights, "grad_weights", torch::kFloat32);
        check_shape(*grad_weights, "grad_weights", {n_samples});
        grad_weights_ptr = fptr(*grad_weights);
    }
    Tensor grad_sigmas = torch::zeros({n_samples}, f32());
    Tensor grad_rgbs = torch::zeros({n_samples, 3}, f32());
    {
        pybind11::gil_scoped_release no_gil;
        nk::composite_bwd(fptr(sigmas), fptr(rgbs), fptr(t_starts), fptr(t_ends), ray_begin.data_ptr<int64_t>(),
                          ray_end.data_ptr<int64_t>(), n_rays, fptr(grad_rgb), fptr(grad_depth), fptr(grad_alpha),
                          grad_weights_ptr, fptr_mut(grad_sigmas), fptr_mut(grad_rgbs));
    }
    return {grad_sigmas, grad_rgbs};
}

// ---- hash encoding ----

nk::HashLayout check_levels(const Tensor& x, const Tensor& offsets, const Tensor& resolutions, int64_t n_rows,
                            int64_t n_features) {
    check_tensor(x, "x", torch::kFloat32);
    check_tensor(offsets, "offsets", torch::kInt32);
    check_tensor(resolutions, "resolutions", torch::kInt32);
    TORCH_CHECK(x.dim() == 2 && x.size(1) == 3, "x must be (N, 3), got ", x.sizes());
    TORCH_CHECK(resolutions.dim() == 1 && resolutions.size(0) > 0, "resolutions must be (L,), L > 0");
    check_shape(offsets, "offsets", {resolutions.size(0) + 1});
    const int n_levels = static_cast<int>(resolutions.size(0));
    const int32_t* off = offsets.data_ptr<int32_t>();
    TORCH_CHECK(off[n_levels] == n_rows, "the table must have offsets[-1] = ", off[n_levels], " rows, got ", n_rows);
    TORCH_CHECK(n_features > 0 && n_features <= INT_MAX, "bad feature count ", n_features);
    return nk::HashLayout{off, resolutions.data_ptr<int32_t>(), n_levels, static_cast<int>(n_features)};
}

nk::Scatter as_scatter(int64_t scatter) {
    TORCH_CHECK(scatter >= 0 && scatter <= 2, "scatter must be 0 (auto), 1 (partials) or 2 (atomics)");
    return static_cast<nk::Scatter>(scatter);
}

void check_table(const Tensor& table) {
    check_tensor(table, "table", torch::kFloat32);
    TORCH_CHECK(table.dim() == 2 && table.size(1) > 0, "table must be (rows, F), got ", table.sizes());
}

Tensor hash_encode_fwd(const Tensor& x, const Tensor& table, const Tensor& offsets, const Tensor& resolutions) {
    check_table(table);
    const nk::HashLayout layout = check_levels(x, offsets, resolutions, table.size(0), table.size(1));
    const int64_t n_points = x.size(0);
    Tensor out = torch::empty({n_points, static_cast<int64_t>(layout.n_levels) * layout.n_features}, f32());
    {
        pybind11::gil_scoped_release no_gil;
        nk::hash_encode_fwd(fptr(x), fptr(table), layout, n_points, fptr_mut(out));
    }
    return out;
}

Tensor hash_encode_bwd(const Tensor& x, const Tensor& grad_out, const Tensor& offsets, const Tensor& resolutions,
                       int64_t n_rows, int64_t n_features, int64_t scatter) {
    const nk::HashLayout layout = check_levels(x, offsets, resolutions, n_rows, n_features);
    check_tensor(grad_out, "grad_out", torch::kFloat32);
    check_shape(grad_out, "grad_out", {x.size(0), static_cast<int64_t>(layout.n_levels) * n_features});
    Tensor grad_table = torch::zeros({n_rows, n_features}, f32());
    {
        pybind11::gil_scoped_release no_gil;
        nk::hash_encode_bwd(fptr(x), fptr(grad_out), layout, x.size(0), fptr_mut(grad_table), as_scatter(scatter));
    }
    return grad_table;
}

Tensor hash_position_grad_fwd(const Tensor& x, const Tensor& table, const Tensor& grad_out, const Tensor& offsets,
                              const Tensor& resolutions) {
    check_table(table);
    const nk::HashLayout layout = check_levels(x, offsets, resolutions, table.size(0), table.size(1));
    check_tensor(grad_out, "grad_out", torch::kFloat32);
    check_shape(grad_out, "grad_out", {x.size(0), static_cast<int64_t>(layout.n_levels) * layout.n_features});
    Tensor grad_x = torch::empty({x.size(0), 3}, f32());
    {
        pybind11::gil_scoped_release no_gil;
        nk::hash_position_grad_fwd(fptr(x), fptr(table), fptr(grad_out), layout, x.size(0), fptr_mut(grad_x));
    }
    return grad_x;
}

// grad_table (rows, F) when need_table, grad_grad_out (N, L F) when need_grad_out (else None).
std::tuple<std::optional<Tensor>, std::optional<Tensor>> hash_position_grad_bwd(
        const Tensor& x, const Tensor& table, const Tensor& grad_out, const Tensor& grad_grad_x, const Tensor& offsets,
        const Tensor& resolutions, bool need_table, bool need_grad_out, int64_t scatter) {
    check_table(table);
    const nk::HashLayout layout = check_levels(x, offsets, resolutions, table.size(0), table.size(1));
    check_tensor(grad_out, "grad_out", torch::kFloat32);
    check_shape(grad_out, "grad_out", {x.size(0), static_cast<int64_t>(layout.n_levels) * layout.n_features});
    check_tensor(grad_grad_x, "grad_grad_x", torch::kFloat32);
    check_shape(grad_grad_x, "grad_grad_x", {x.size(0), 3});
    std::optional<Tensor> grad_table, grad_grad_out;
    if (need_table) grad_table = torch::zeros(table.sizes(), f32());
    if (need_grad_out) grad_grad_out = torch::empty(grad_out.sizes(), f32());
    {
        pybind11::gil_scoped_release no_gil;
        nk::hash_position_grad_bwd(fptr(x), fptr(table), fptr(grad_out), fptr(grad_grad_x), layout, x.size(0),
                                   need_table ? fptr_mut(*grad_table) : nullptr,
                                   need_grad_out ? fptr_mut(*grad_grad_out) : nullptr, as_scatter(scatter));
    }
    return {grad_table, grad_grad_out};
}

// ---- splat rasterizer ----

nk::SplatInputs check_splats(const Tensor& means2d, const Tensor& conics, const Tensor& opacities,
                             const Tensor& features, const Tensor& gaussian_ids, const Tensor& tile_offsets,
                             int64_t tiles_x, int64_t tiles_y, int64_t tile_size, int64_t width, int64_t height) {
    check_tensor(means2d, "means2d", torch::kFloat32);
    check_tensor(conics, "conics", torch::kFloat32);
    check_tensor(opacities, "opacities", torch::kFloat32);
    check_tensor(features, "features", torch::kFloat32);
    check_tensor(gaussian_ids, "gaussian_ids", torch::kInt64);
    check_tensor(tile_offsets, "tile_offsets", torch::kInt64);
    const int64_t n = means2d.size(0);
    check_shape(means2d, "means2d", {n, 2});
    check_shape(conics, "conics", {n, 3});
    check_shape(opacities, "opacities", {n});
    TORCH_CHECK(features.dim() == 2 && features.size(0) == n && features.size(1) > 0,
                "features must be (N, F), got ", features.sizes());
    TORCH_CHECK(tile_size > 0 && tile_size <= 64, "tile_size must be in [1, 64], got ", tile_size);
    TORCH_CHECK(width > 0 && height > 0 && tiles_x * tile_size >= width && tiles_y * tile_size >= height,
                "tiles ", tiles_x, "x", tiles_y, " of ", tile_size, " px do not cover ", width, "x", height);
    check_shape(tile_offsets, "tile_offsets", {tiles_x * tiles_y + 1});
    TORCH_CHECK(gaussian_ids.dim() == 1, "gaussian_ids must be (K,)");
    const int64_t* off = tile_offsets.data_ptr<int64_t>();
    TORCH_CHECK(off[0] == 0 && off[tiles_x * tiles_y] == gaussian_ids.size(0), "tile_offsets must run from 0 to K");
    const int64_t* ids = gaussian_ids.data_ptr<int64_t>();
    for (int64_t k = 0; k < gaussian_ids.size(0); ++k) {
        TORCH_CHECK(ids[k] >= 0 && ids[k] < n, "gaussian_ids[", k, "] = ", ids[k], " is not in [0, ", n, ")");
    }
    nk::SplatInputs in;
    in.means2d = fptr(means2d);
    in.conics = fptr(conics);
    in.opacities = fptr(opacities);
    in.features = fptr(features);
    in.gaussian_ids = gaussian_ids.data_ptr<int64_t>();
    in.tile_offsets = off;
    in.n_gaussians = n;
    in.n_features = static_cast<int>(features.size(1));
    in.tiles_x = static_cast<int>(tiles_x);
    in.tiles_y = static_cast<int>(tiles_y);
    in.tile_size = static_cast<int>(tile_size);
    in.width = static_cast<int>(width);
    in.height = static_cast<int>(height);
    return in;
}

// image (H, W, F), alpha (H, W), t_final (H, W), n_used (H, W) int32.
std::tuple<Tensor, Tensor, Tensor, Tensor> splat_rasterize_fwd(
        const Tensor& means2d, const Tensor& conics, const Tensor& opacities, const Tensor& features,
        const Tensor& gaussian_ids, const Tensor& tile_offsets, int64_t tiles_x, int64_t tiles_y, int64_t tile_size,
        int64_t width, int64_t height) {
    const nk::SplatInputs in = check_splats(means2d, conics, opacities, features, gaussian_ids, tile_offsets, tiles_x,
                                            tiles_y, tile_size, width, height);
    Tensor image = torch::empty({height, width, features.size(1)}, f32());
    Tensor alpha = torch::empty({height, width}, f32());
    Tensor t_final = torch::empty({height, width}, f32());
    Tensor n_used = torch::empty({height, width}, torch::TensorOptions().dtype(torch::kInt32));
    {
        pybind11::gil_scoped_release no_gil;
        nk::splat_rasterize_fwd(in, fptr_mut(image), fptr_mut(alpha), fptr_mut(t_final), n_used.data_ptr<int32_t>());
    }
    return {image, alpha, t_final, n_used};
}

// grad_means2d (N, 2), grad_conics (N, 3), grad_opacities (N,), grad_features (N, F).
std::tuple<Tensor, Tensor, Tensor, Tensor> splat_rasterize_bwd(
        const Tensor& means2d, const Tensor& conics, const Tensor& opacities, const Tensor& features,
        const Tensor& gaussian_ids, const Tensor& tile_offsets, int64_t tiles_x, int64_t tiles_y, int64_t tile_size,
        int64_t width, int64_t height, const Tensor& image, const Tensor& t_final, const Tensor& n_used,
        const Tensor& grad_image, const Tensor& grad_alpha) {
    const nk::SplatInputs in = check_splats(means2d, conics, opacities, features, gaussian_ids, tile_offsets, tiles_x,
                                            tiles_y, tile_size, width, height);
    check_tensor(image, "image", torch::kFloat32);
    check_tensor(t_final, "t_final", torch::kFloat32);
    check_tensor(n_used, "n_used", torch::kInt32);
    check_tensor(grad_image, "grad_image", torch::kFloat32);
    check_tensor(grad_alpha, "grad_alpha", torch::kFloat32);
    check_shape(image, "image", {height, width, features.size(1)});
    check_shape(grad_image, "grad_image", {height, width, features.size(1)});
    check_shape(t_final, "t_final", {height, width});
    check_shape(n_used, "n_used", {height, width});
    check_shape(grad_alpha, "grad_alpha", {height, width});
    Tensor grad_means2d = torch::zeros_like(means2d);
    Tensor grad_conics = torch::zeros_like(conics);
    Tensor grad_opacities = torch::zeros_like(opacities);
    Tensor grad_features = torch::zeros_like(features);
    {
        pybind11::gil_scoped_release no_gil;
        nk::splat_rasterize_bwd(in, fptr(image), fptr(t_final), n_used.data_ptr<int32_t>(), fptr(grad_image),
                                fptr(grad_alpha), fptr_mut(grad_means2d), fptr_mut(grad_conics),
                                fptr_mut(grad_opacities), fptr_mut(grad_features));
    }
    return {grad_means2d, grad_conics, grad_opacities, grad_features};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "nerfkit CPU kernels (use through nerfkit.ops and nerfkit.render, not directly)";
    using pybind11::arg;
    m.def("ray_aabb_intersect_fwd", &ray_aabb_intersect_fwd, "ray/box entry and exit distances", arg("origins"),
          arg("directions"), arg("aabb"));
    m.def("march_rays_fwd", &march_rays_fwd, "occupancy-grid marching -> packed samples", arg("origins"),
          arg("directions"), arg("t_min"), arg("t_max"), arg("grid"), arg("aabb"), arg("step_size"), arg("cone_angle"),
          arg("max_samples"));
    m.def("composite_fwd", &composite_fwd, "packed volume compositing, forward", arg("sigmas"), arg("rgbs"),
          arg("t_starts"), arg("t_ends"), arg("ray_indices"), arg("n_rays"));
    m.def("composite_bwd", &composite_bwd, "packed volume compositing, backward", arg("sigmas"), arg("rgbs"),
          arg("t_starts"), arg("t_ends"), arg("ray_begin"), arg("ray_end"), arg("grad_rgb"), arg("grad_depth"),
          arg("grad_alpha"), arg("grad_weights"));
    m.def("hash_encode_fwd", &hash_encode_fwd, "multiresolution hash encoding, forward", arg("x"), arg("table"),
          arg("offsets"), arg("resolutions"));
    m.def("hash_encode_bwd", &hash_encode_bwd, "multiresolution hash encoding, backward (table grad)", arg("x"),
          arg("grad_out"), arg("offsets"), arg("resolutions"), arg("n_rows"), arg("n_features"), arg("scatter") = 0);
    m.def("hash_position_grad_fwd", &hash_position_grad_fwd, "hash encoding, gradient w.r.t. the positions", arg("x"),
          arg("table"), arg("grad_out"), arg("offsets"), arg("resolutions"));
    m.def("hash_position_grad_bwd", &hash_position_grad_bwd, "backward of the position gradient", arg("x"),
          arg("table"), arg("grad_out"), arg("grad_grad_x"), arg("offsets"), arg("resolutions"), arg("need_table"),
          arg("need_grad_out"), arg("scatter") = 0);
    m.def("splat_rasterize_fwd", &splat_rasterize_fwd, "tile rasterizer of projected Gaussians, forward",
          arg("means2d"), arg("conics"), arg("opacities"), arg("features"), arg("gaussian_ids"), arg("tile_offsets"),
          arg("tiles_x"), arg("tiles_y"), arg("tile_size"), arg("width"), arg("height"));
    m.def("splat_rasterize_bwd", &splat_rasterize_bwd, "tile rasterizer of projected Gaussians, backward",
          arg("means2d"), arg("conics"), arg("opacities"), arg("features"), arg("gaussian_ids"), arg("tile_offsets"),
          arg("tiles_x"), arg("tiles_y"), arg("tile_size"), arg("width"), arg("height"), arg("image"),
          arg("t_final"), arg("n_used"), arg("grad_image"), arg("grad_alpha"));
}
