// ext.cpp: the PyTorch binding of nerfkit's CUDA kernels (module `nerfkit_cuda`).
//
// Checks devices, dtypes, shapes and contiguity with TORCH_CHECK, allocates outputs and calls the
// raw-pointer launchers of nerfkit_kernels.h. It includes only <torch/extension.h> (no ATen/cuda
// headers), so it cannot ask c10 for the current stream: every function takes `stream`, the
// integer handle of the stream to run on, which nerfkit/ops/_native.py passes as
// torch.cuda.current_stream(device).cuda_stream (0 = the legacy default stream). Likewise the
// caller makes the tensors' device current (torch.cuda.device(...)); the checks below insist that
// all tensors of a call share one CUDA device.
#include <torch/extension.h>

#include <climits>
#include <optional>
#include <tuple>

#include "nerfkit_kernels.h"

namespace {

using torch::Tensor;

cudaStream_t as_stream(int64_t handle) { return reinterpret_cast<cudaStream_t>(handle); }

void check_launch(cudaError_t err, const char* what) {
    TORCH_CHECK(err == cudaSuccess, "nerfkit CUDA kernel ", what, " failed: ", cudaGetErrorString(err));
}

// A CUDA tensor of `dtype`, contiguous, on the device of `like`.
void check_tensor(const Tensor& t, const char* name, torch::ScalarType dtype, const Tensor& like) {
    TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
    TORCH_CHECK(t.device() == like.device(), name, " must be on ", like.device(), ", got ", t.device());
    TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
    TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

void check_shape(const Tensor& t, const char* name, torch::IntArrayRef shape) {
    TORCH_CHECK(t.sizes() == shape, name, " must have shape ", shape, ", got ", t.sizes());
}

const float* fptr(const Tensor& t) { return t.data_ptr<float>(); }
float* fptr_mut(Tensor& t) { return t.data_ptr<float>(); }

// ---- ray marching ----

std::tuple<Tensor, Tensor> ray_aabb_intersect_fwd(const Tensor& origins, const Tensor& directions,
                                                  const Tensor& aabb, int64_t stream) {
    check_tensor(origins, "origins", torch::kFloat32, origins);
    check_tensor(directions, "directions", torch::kFloat32, origins);
    check_tensor(aabb, "aabb", torch::kFloat32, origins);
    TORCH_CHECK(origins.dim() == 2 && origins.size(1) == 3, "origins must be (R, 3), got ", origins.sizes());
    check_shape(directions, "directions", origins.sizes());
    check_shape(aabb, "aabb", {2, 3});
    const int64_t n_rays = origins.size(0);
    Tensor t_near = torch::empty({n_rays}, origins.options());
    Tensor t_far = torch::empty({n_rays}, origins.options());
    check_launch(nerfkit::launch_ray_aabb_intersect(fptr(origins), fptr(directions), fptr(aabb), n_rays,
                                                    fptr_mut(t_near), fptr_mut(t_far), as_stream(stream)),
                 "ray_aabb_intersect");
    return {t_near, t_far};
}

std::tuple<Tensor, Tensor, Tensor> march_rays_fwd(const Tensor& origins, const Tensor& directions,
                                                  const Tensor& t_min, const Tensor& t_max,
                                                  const Tensor& grid, const Tensor& aabb, double step_size,
                                                  double cone_angle, int64_t max_samples, int64_t stream) {
    check_tensor(origins, "origins", torch::kFloat32, origins);
    check_tensor(directions, "directions", torch::kFloat32, origins);
    check_tensor(t_min, "t_min", torch::kFloat32, origins);
    check_tensor(t_max, "t_max", torch::kFloat32, origins);
    check_tensor(grid, "grid", torch::kBool, origins);
    check_tensor(aabb, "aabb", torch::kFloat32, origins);
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

    nerfkit::MarchArgs args;
    args.origins = fptr(origins);
    args.directions = fptr(directions);
    args.t_min = fptr(t_min);
    args.t_max = fptr(t_max);
    args.grid = reinterpret_cast<const uint8_t*>(grid.data_ptr<bool>());
    args.aabb = fptr(aabb);
    args.n_rays = n_rays;
    args.n_cascades = static_cast<int>(grid.size(0));
    args.res = static_cast<int>(grid.size(1));
    args.step_size = static_cast<float>(step_size);     // the twin rounds Python floats to float32
    args.cone_angle = static_cast<float>(cone_angle);
    args.constant_steps = cone_angle <= 0.0;             // decided in double, as the twin does
    args.max_samples = max_samples <= 0 ? 0 : static_cast<int>(std::min<int64_t>(max_samples, INT_MAX));

    auto opts_f = origins.options();
    auto opts_i64 = origins.options().dtype(torch::kInt64);
    if (n_rays == 0) {
        return {torch::empty({0}, opts_i64), torch::empty({0}, opts_f), torch::empty({0}, opts_f)};
    }
    const cudaStream_t s = as_stream(stream);
    Tensor counts = torch::empty({n_rays}, origins.options().dtype(torch::kInt32));
    check_launch(nerfkit::launch_march_rays_count(args, counts.data_ptr<int32_t>(), s), "march_rays_count");
    // Exclusive scan in torch (same stream: the caller made it current); .item() waits for it.
    Tensor inclusive = counts.cumsum(0, torch::kInt64);
    const int64_t n_samples = inclusive[n_rays - 1].item<int64_t>();
    Tensor offsets = inclusive - counts;
    Tensor ray_indices = torch::empty({n_samples}, opts_i64);
    Tensor t_starts = torch::empty({n_samples}, opts_f);
    Tensor t_ends = torch::empty({n_samples}, opts_f);
    if (n_samples > 0) {
        check_launch(nerfkit::launch_march_rays_fill(args, offsets.data_ptr<int64_t>(),
                                                     ray_indices.data_ptr<int64_t>(), fptr_mut(t_starts),
                                                     fptr_mut(t_ends), s),
                     "march_rays_fill");
    }
    return {ray_indices, t_starts, t_ends};
}

// ---- compositing ----

void check_packed(const Tensor& sigmas, const Tensor& rgbs, const Tensor& t_starts, const Tensor& t_ends) {
    check_tensor(sigmas, "sigmas", torch::kFloat32, sigmas);
    check_tensor(rgbs, "rgbs", torch::kFloat32, sigmas);
    check_tensor(t_starts, "t_starts", torch::kFloat32, sigmas);
    check_tensor(t_ends, "t_ends", torch::kFloat32, sigmas);
    TORCH_CHECK(sigmas.dim() == 1, "sigmas must be (S,), got ", sigmas.sizes());
    const int64_t n_samples = sigmas.size(0);
    check_shape(rgbs, "rgbs", {n_samples, 3});
    check_shape(t_starts, "t_starts", {n_samples});
    check_shape(t_ends, "t_ends", {n_samples});
}

// Returns rgb (R, 3), depth (R,), alpha (R,), weights (S,) and each ray's sample run
// [ray_begin, ray_end) (R,) int64, which the backward takes back.
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> composite_fwd(
        const Tensor& sigmas, const Tensor& rgbs, const Tensor& t_starts, const Tensor& t_ends,
        const Tensor& ray_indices, int64_t n_rays, int64_t stream) {
    check_packed(sigmas, rgbs, t_starts, t_ends);
    check_tensor(ray_indices, "ray_indices", torch::kInt64, sigmas);
    const int64_t n_samples = sigmas.size(0);
    check_shape(ray_indices, "ray_indices", {n_samples});
    TORCH_CHECK(n_rays >= 0, "n_rays must be >= 0, got ", n_rays);
    const cudaStream_t s = as_stream(stream);
    auto opts_i64 = sigmas.options().dtype(torch::kInt64);
    Tensor ray_begin = torch::zeros({n_rays}, opts_i64);
    Tensor ray_end = torch::zeros({n_rays}, opts_i64);
    check_launch(nerfkit::launch_segment_bounds(ray_indices.data_ptr<int64_t>(), n_samples, n_rays,
                                                ray_begin.data_ptr<int64_t>(), ray_end.data_ptr<int64_t>(), s),
                 "segment_bounds");
    Tensor weights = torch::zeros({n_samples}, sigmas.options());   // samples of no valid ray stay 0
    Tensor rgb = torch::empty({n_rays, 3}, sigmas.options());
    Tensor depth = torch::empty({n_rays}, sigmas.options());
    Tensor alpha = torch::empty({n_rays}, sigmas.options());
    check_launch(nerfkit::launch_composite_fwd(fptr(sigmas), fptr(rgbs), fptr(t_starts), fptr(t_ends),
                                               ray_begin.data_ptr<int64_t>(), ray_end.data_ptr<int64_t>(),
                                               n_rays, fptr_mut(weights), fptr_mut(rgb), fptr_mut(depth),
                                               fptr_mut(alpha), s),
                 "composite_fwd");
    return {rgb, depth, alpha, weights, ray_begin, ray_end};
}

// Returns grad_sigmas (S,), grad_rgbs (S, 3); grad_weights may be None.
std::tuple<Tensor, Tensor> composite_bwd(const Tensor& sigmas, const Tensor& rgbs, const Tensor& t_starts,
                                         const Tensor& t_ends, const Tensor& ray_begin, const Tensor& ray_end,
                                         const Tensor& grad_rgb, const Tensor& grad_depth,
                                         const Tensor& grad_alpha, const std::optional<Tensor>& grad_weights,
                                         int64_t stream) {
    check_packed(sigmas, rgbs, t_starts, t_ends);
    const int64_t n_samples = sigmas.size(0);
    check_tensor(ray_begin, "ray_begin", torch::kInt64, sigmas);
    check_tensor(ray_end, "ray_end", torch::kInt64, sigmas);
    TORCH_CHECK(ray_begin.dim() == 1, "ray_begin must be (R,), got ", ray_begin.sizes());
    const int64_t n_rays = ray_begin.size(0);
    check_shape(ray_end, "ray_end", {n_rays});
    check_tensor(grad_rgb, "grad_rgb", torch::kFloat32, sigmas);
    check_tensor(grad_depth, "grad_depth", torch::kFloat32, sigmas);
    check_tensor(grad_alpha, "grad_alpha", torch::kFloat32, sigmas);
    check_shape(grad_rgb, "grad_rgb", {n_rays, 3});
    check_shape(grad_depth, "grad_depth", {n_rays});
    check_shape(grad_alpha, "grad_alpha", {n_rays});
    const float* grad_weights_ptr = nullptr;
    if (grad_weights.has_value()) {
        check_tensor(*grad_weights, "grad_weights", torch::kFloat32, sigmas);
        check_shape(*grad_weights, "grad_weights", {n_samples});
        grad_weights_ptr = fptr(*grad_weights);
    }
    // zeros: samples outside every ray's run (out-of-range ray index) get no gradient
    Tensor grad_sigmas = torch::zeros({n_samples}, sigmas.options());
    Tensor grad_rgbs = torch::zeros({n_samples, 3}, sigmas.options());
    check_launch(nerfkit::launch_composite_bwd(fptr(sigmas), fptr(rgbs), fptr(t_starts), fptr(t_ends),
                                               ray_begin.data_ptr<int64_t>(), ray_end.data_ptr<int64_t>(),
                                               n_rays, fptr(grad_rgb), fptr(grad_depth), fptr(grad_alpha),
                                               grad_weights_ptr, fptr_mut(grad_sigmas), fptr_mut(grad_rgbs),
                                               as_stream(stream)),
                 "composite_bwd");
    return {grad_sigmas, grad_rgbs};
}

// ---- hash encoding ----

void check_levels(const Tensor& x, const Tensor& offsets, const Tensor& resolutions) {
    check_tensor(x, "x", torch::kFloat32, x);
    check_tensor(offsets, "offsets", torch::kInt32, x);
    check_tensor(resolutions, "resolutions", torch::kInt32, x);
    TORCH_CHECK(x.dim() == 2 && x.size(1) == 3, "x must be (N, 3), got ", x.sizes());
    TORCH_CHECK(resolutions.dim() == 1 && resolutions.size(0) > 0, "resolutions must be (L,), L > 0");
    check_shape(offsets, "offsets", {resolutions.size(0) + 1});
}

Tensor hash_encode_fwd(const Tensor& x, const Tensor& table, const Tensor& offsets, const Tensor& resolutions,
                       int64_t stream) {
    check_levels(x, offsets, resolutions);
    check_tensor(table, "table", torch::kFloat32, x);
    TORCH_CHECK(table.dim() == 2 && table.size(1) > 0, "table must be (rows, F), got ", table.sizes());
    // table.size(0) == offsets[-1] is checked by the Python caller (reading it here would sync).
    const int64_t n_points = x.size(0);
    const int n_levels = static_cast<int>(resolutions.size(0));
    const int n_features = static_cast<int>(table.size(1));
    Tensor out = torch::empty({n_points, static_cast<int64_t>(n_levels) * n_features}, x.options());
    check_launch(nerfkit::launch_hash_encode_fwd(fptr(x), fptr(table), offsets.data_ptr<int32_t>(),
                                                 resolutions.data_ptr<int32_t>(), n_points, n_levels, n_features,
                                                 fptr_mut(out), as_stream(stream)),
                 "hash_encode_fwd");
    return out;
}

Tensor hash_encode_bwd(const Tensor& x, const Tensor& grad_out, const Tensor& offsets, const Tensor& resolutions,
                       int64_t n_rows, int64_t n_features, int64_t stream) {
    check_levels(x, offsets, resolutions);
    check_tensor(grad_out, "grad_out", torch::kFloat32, x);
    TORCH_CHECK(n_rows >= 0 && n_features > 0, "bad table shape (", n_rows, ", ", n_features, ")");
    const int n_levels = static_cast<int>(resolutions.size(0));
    check_shape(grad_out, "grad_out", {x.size(0), n_levels * n_features});
    Tensor grad_table = torch::zeros({n_rows, n_features}, x.options());
    check_launch(nerfkit::launch_hash_encode_bwd(fptr(x), fptr(grad_out), offsets.data_ptr<int32_t>(),
                                                 resolutions.data_ptr<int32_t>(), x.size(0), n_levels,
                                                 static_cast<int>(n_features), fptr_mut(grad_table),
                                                 as_stream(stream)),
                 "hash_encode_bwd");
    return grad_table;
}

Tensor hash_position_grad_fwd(const Tensor& x, const Tensor& table, const Tensor& grad_out, const Tensor& offsets,
                              const Tensor& resolutions, int64_t stream) {
    check_levels(x, offsets, resolutions);
    check_tensor(table, "table", torch::kFloat32, x);
    TORCH_CHECK(table.dim() == 2 && table.size(1) > 0, "table must be (rows, F), got ", table.sizes());
    const int n_levels = static_cast<int>(resolutions.size(0));
    const int n_features = static_cast<int>(table.size(1));
    check_tensor(grad_out, "grad_out", torch::kFloat32, x);
    check_shape(grad_out, "grad_out", {x.size(0), static_cast<int64_t>(n_levels) * n_features});
    Tensor grad_x = torch::empty({x.size(0), 3}, x.options());
    check_launch(nerfkit::launch_hash_position_grad_fwd(fptr(x), fptr(table), fptr(grad_out),
                                                        offsets.data_ptr<int32_t>(), resolutions.data_ptr<int32_t>(),
                                                        x.size(0), n_levels, n_features, fptr_mut(grad_x),
                                                        as_stream(stream)),
                 "hash_position_grad_fwd");
    return grad_x;
}

// grad_table (rows, F) when need_table, grad_grad_out (N, L F) when need_grad_out (else None).
std::tuple<std::optional<Tensor>, std::optional<Tensor>> hash_position_grad_bwd(
        const Tensor& x, const Tensor& table, const Tensor& grad_out, const Tensor& grad_grad_x, const Tensor& offsets,
        const Tensor& resolutions, bool need_table, bool need_grad_out, int64_t stream) {
    check_levels(x, offsets, resolutions);
    check_tensor(table, "table", torch::kFloat32, x);
    TORCH_CHECK(table.dim() == 2 && table.size(1) > 0, "table must be (rows, F), got ", table.sizes());
    const int n_levels = static_cast<int>(resolutions.size(0));
    const int n_features = static_cast<int>(table.size(1));
    check_tensor(grad_out, "grad_out", torch::kFloat32, x);
    check_shape(grad_out, "grad_out", {x.size(0), static_cast<int64_t>(n_levels) * n_features});
    check_tensor(grad_grad_x, "grad_grad_x", torch::kFloat32, x);
    check_shape(grad_grad_x, "grad_grad_x", {x.size(0), 3});
    std::optional<Tensor> grad_table, grad_grad_out;
    if (need_table) grad_table = torch::zeros(table.sizes(), x.options());
    if (need_grad_out) grad_grad_out = torch::empty(grad_out.sizes(), x.options());
    check_launch(nerfkit::launch_hash_position_grad_bwd(
                     fptr(x), fptr(table), fptr(grad_out), fptr(grad_grad_x), offsets.data_ptr<int32_t>(),
                     resolutions.data_ptr<int32_t>(), x.size(0), n_levels, n_features,
                     need_table ? fptr_mut(*grad_table) : nullptr, need_grad_out ? fptr_mut(*grad_grad_out) : nullptr,
                     as_stream(stream)),
                 "hash_position_grad_bwd");
    return {grad_table, grad_grad_out};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "nerfkit CUDA kernels (use through nerfkit.ops, not directly)";
    using py::arg;
    m.def("ray_aabb_intersect_fwd", &ray_aabb_intersect_fwd, "ray/box entry and exit distances",
          arg("origins"), arg("directions"), arg("aabb"), arg("stream"));
    m.def("march_rays_fwd", &march_rays_fwd, "occupancy-grid marching -> packed samples", arg("origins"),
          arg("directions"), arg("t_min"), arg("t_max"), arg("grid"), arg("aabb"), arg("step_size"),
          arg("cone_angle"), arg("max_samples"), arg("stream"));
    m.def("composite_fwd", &composite_fwd, "packed volume compositing, forward", arg("sigmas"), arg("rgbs"),
          arg("t_starts"), arg("t_ends"), arg("ray_indices"), arg("n_rays"), arg("stream"));
    m.def("composite_bwd", &composite_bwd, "packed volume compositing, backward", arg("sigmas"), arg("rgbs"),
          arg("t_starts"), arg("t_ends"), arg("ray_begin"), arg("ray_end"), arg("grad_rgb"), arg("grad_depth"),
          arg("grad_alpha"), arg("grad_weights"), arg("stream"));
    m.def("hash_encode_fwd", &hash_encode_fwd, "multiresolution hash encoding, forward", arg("x"), arg("table"),
          arg("offsets"), arg("resolutions"), arg("stream"));
    m.def("hash_encode_bwd", &hash_encode_bwd, "multiresolution hash encoding, backward (table grad)", arg("x"),
          arg("grad_out"), arg("offsets"), arg("resolutions"), arg("n_rows"), arg("n_features"), arg("stream"));
    m.def("hash_position_grad_fwd", &hash_position_grad_fwd, "hash encoding, gradient w.r.t. the positions", arg("x"),
          arg("table"), arg("grad_out"), arg("offsets"), arg("resolutions"), arg("stream"));
    m.def("hash_position_grad_bwd", &hash_position_grad_bwd, "backward of the position gradient", arg("x"),
          arg("table"), arg("grad_out"), arg("grad_grad_x"), arg("offsets"), arg("resolutions"), arg("need_table"),
          arg("need_grad_out"), arg("stream"));
}
