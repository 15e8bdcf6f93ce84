// The flow layer's fused operations; see fused_ops.h.
#include "worker/kernels/fused_ops.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <utility>
#include <vector>

#include "worker/kernels/fused_kernels.h"

#if defined(LFT_CUDA_KERNELS)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace lft {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::atomic<FusedOpsMode> g_mode{FusedOpsMode::kAuto};

bool DisabledByEnvironment() {
  static const bool off = [] {
    const char* v = std::getenv("LFT_FUSED_KERNELS");
    return v != nullptr && std::strcmp(v, "0") == 0;
  }();
  return off;
}

#if defined(LFT_CUDA_KERNELS)
fused_kernels::ElementType TypeOf(const torch::Tensor& t) {
  return t.scalar_type() == torch::kBFloat16
             ? fused_kernels::ElementType::kBFloat16
             : fused_kernels::ElementType::kFloat32;
}
// Elements of t's dtype per 16-byte vector (bf16 or fp32).
int64_t WidthOf(const torch::Tensor& t) {
  return fused_kernels::VectorWidth(TypeOf(t));
}
#endif

// Whether the CUDA kernels can run on a [B, T, H] activation `a` of this
// dtype: one thread per 16-byte vector of a row, at most 1024 per block.
bool KernelsApply(const torch::Tensor& a) {
#if defined(LFT_CUDA_KERNELS)
  if (!a.is_cuda() || a.dim() != 3) return false;
  const auto type = a.scalar_type();
  if (type != torch::kBFloat16 && type != torch::kFloat) return false;
  const int64_t width = WidthOf(a);
  const int64_t h = a.size(2);
  return h % width == 0 && h / width <= 1024;
#else
  (void)a;
  return false;
#endif
}

// Whether the qkv heads kernels can run on t (qkv or its gradient): a CUDA
// tensor in bf16 or fp32, any layout whose last dim is contiguous.
bool QkvKernelApplies(const torch::Tensor& t) {
#if defined(LFT_CUDA_KERNELS)
  return t.is_cuda() && t.stride(-1) == 1 &&
         (t.scalar_type() == torch::kBFloat16 ||
          t.scalar_type() == torch::kFloat);
#else
  (void)t;
  return false;
#endif
}

// Which form to run, given whether this build's kernels can take the
// operation's inputs.
enum class Route { kLibTorch, kFunction };
Route RouteFor(bool kernels_apply) {
  switch (g_mode.load(std::memory_order_relaxed)) {
    case FusedOpsMode::kOff:
      return Route::kLibTorch;
    case FusedOpsMode::kAlways:
      return Route::kFunction;
    case FusedOpsMode::kAuto:
      break;
  }
  return !DisabledByEnvironment() && kernels_apply ? Route::kFunction
                                                   : Route::kLibTorch;
}

// [B, 1, H] or [B, H] -> [B, H] in a's dtype with contiguous rows: a view
// of the flow layer's AdaLN factors, which are rows of [B, 6, H] (a copy of
// each [B, H] was 36 small kernels per training step).
torch::Tensor PerRow(const torch::Tensor& v, const torch::Tensor& a) {
  torch::Tensor r = v.reshape({a.size(0), a.size(2)}).to(a.scalar_type());
  return r.stride(1) == 1 ? r : r.contiguous();
}

#if defined(LFT_CUDA_KERNELS)
void* StreamOf(const torch::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}
void CheckLaunch(int code, const char* what) {
  TORCH_CHECK(code == 0, "lft fused kernel ", what, ": CUDA error ", code);
}
bool Aligned(const torch::Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
}

bool UseKernels(const torch::Tensor& a,
                std::initializer_list<torch::Tensor> ts) {
  if (!KernelsApply(a)) return false;
  for (const torch::Tensor& t : ts) {
    if (t.defined() && (!t.is_contiguous() || !Aligned(t))) return false;
  }
  return true;
}

// Whether the per-row tensors s and c ([B, H], c may be undefined) can be
// read by the kernels through one row stride: rows contiguous, every row
// 16-byte aligned, the same stride for both.
bool RowsUsable(const torch::Tensor& a, const torch::Tensor& s,
                const torch::Tensor& c) {
  const int64_t width = WidthOf(a);
  for (const torch::Tensor* t : {&s, &c}) {
    if (!t->defined()) continue;
    if (t->dim() != 2 || t->stride(1) != 1 || !Aligned(*t) ||
        t->stride(0) % width != 0 || t->stride(0) != s.stride(0) ||
        t->scalar_type() != a.scalar_type()) {
      return false;
    }
  }
  return true;
}
#endif

// y = a * (offset + s) (+ c) (+ r); s, c [B, H]; r like a.
torch::Tensor ScaleShiftForward(const torch::Tensor& a, const torch::Tensor& s,
                                const torch::Tensor& c, const torch::Tensor& r,
                                double offset) {
#if defined(LFT_CUDA_KERNELS)
  if (UseKernels(a, {a, r}) && RowsUsable(a, s, c)) {
    c10::cuda::CUDAGuard guard(a.device());
    torch::Tensor y = torch::empty_like(a);
    CheckLaunch(fused_kernels::ScaleShiftForward(
                    TypeOf(a), a.data_ptr(), s.data_ptr(),
                    c.defined() ? c.data_ptr() : nullptr,
                    r.defined() ? r.data_ptr() : nullptr, y.data_ptr(),
                    static_cast<float>(offset), a.size(0), a.size(1), a.size(2),
                    s.stride(0), StreamOf(a)),
                "scale-shift forward");
    return y;
  }
#endif
  // The stand-in (kAlways off CUDA): the same arithmetic in LibTorch.
  const auto b = a.size(0), h = a.size(2);
  torch::Tensor y = a * (s.view({b, 1, h}) + offset);
  if (c.defined()) y = y + c.view({b, 1, h});
  if (r.defined()) y = y + r;
  return y;
}

struct ScaleShiftGrads {
  torch::Tensor da, ds, dc;  // dc undefined unless asked for
};

ScaleShiftGrads ScaleShiftBackward(const torch::Tensor& dy_in,
                                   const torch::Tensor& a,
                                   const torch::Tensor& s, double offset,
                                   bool want_shift) {
  const torch::Tensor dy = dy_in.contiguous();
  const auto b = a.size(0), h = a.size(2);
  ScaleShiftGrads g;
#if defined(LFT_CUDA_KERNELS)
  if (UseKernels(a, {dy, a}) && RowsUsable(a, s, torch::Tensor())) {
    const auto t = a.size(1);
    c10::cuda::CUDAGuard guard(a.device());
    const int64_t chunks = fused_kernels::ScaleShiftChunks(b, t);
    // The scale's and the shift's partials in one buffer, so that one
    // launch sums both (a launch and a gap less per call, 12 per step).
    const int64_t sums = want_shift ? 2 : 1;
    torch::Tensor partial =
        torch::empty({sums, b, chunks, h}, a.options().dtype(torch::kFloat));
    g.da = torch::empty_like(a);
    CheckLaunch(
        fused_kernels::ScaleShiftBackward(
            TypeOf(a), dy.data_ptr(), a.data_ptr(), s.data_ptr(),
            g.da.data_ptr(), partial[0].data_ptr<float>(),
            want_shift ? partial[1].data_ptr<float>() : nullptr,
            static_cast<float>(offset), b, t, h, s.stride(0), StreamOf(a)),
        "scale-shift backward");
    torch::Tensor out = torch::empty({sums, b, h}, s.options());
    CheckLaunch(fused_kernels::SumChunks(TypeOf(s), partial.data_ptr<float>(),
                                         sums * b, chunks, h, out.data_ptr(),
                                         /*accumulate=*/false, StreamOf(a)),
                "chunk sums");
    g.ds = out[0];
    if (want_shift) g.dc = out[1];
    return g;
  }
#endif
  g.da = dy * (s.view({b, 1, h}) + offset);
  g.ds = (dy * a).sum(1);
  if (want_shift) g.dc = dy.sum(1);
  return g;
}

// d [B] as [B, 1, ...] in x's dtype and rank.
torch::Tensor PerBatch(const torch::Tensor& d, const torch::Tensor& x) {
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  return d.to(x.scalar_type()).view(shape);
}

bool SolverKernelApplies(const torch::Tensor& x, const torch::Tensor& d,
                         const torch::Tensor& u) {
#if defined(LFT_CUDA_KERNELS)
  if (!x.is_cuda() || x.dim() < 1 || x.scalar_type() != torch::kFloat ||
      !x.is_contiguous() || !Aligned(x) || x.size(0) == 0) {
    return false;
  }
  if (u.device() != x.device() || u.sizes() != x.sizes() ||
      !u.is_contiguous() || !Aligned(u) ||
      (u.scalar_type() != torch::kBFloat16 && u.scalar_type() != torch::kFloat))
    return false;
  return d.device() == x.device() && d.dim() == 1 && d.size(0) == x.size(0) &&
         !d.requires_grad() && (x.numel() / x.size(0)) % 4 == 0;
#else
  (void)x;
  (void)d;
  (void)u;
  return false;
#endif
}

// x + d * u with the gradient d * dy for u and dy for x (none for d).
class SolverUpdateFunction
    : public torch::autograd::Function<SolverUpdateFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x,
                               torch::Tensor d, torch::Tensor u) {
    ctx->saved_data["u_type"] = u.scalar_type();
#if defined(LFT_CUDA_KERNELS)
    if (SolverKernelApplies(x, d, u)) {
      c10::cuda::CUDAGuard guard(x.device());
      const torch::Tensor df = d.to(torch::kFloat).contiguous();
      ctx->save_for_backward({df});
      torch::Tensor y = torch::empty_like(x);
      CheckLaunch(fused_kernels::SolverUpdateForward(
                      TypeOf(u), x.data_ptr<float>(), df.data_ptr<float>(),
                      u.data_ptr(), y.data_ptr<float>(), x.size(0),
                      x.numel() / x.size(0), StreamOf(x)),
                  "solver update");
      return y;
    }
#endif
    // The stand-in (kAlways off CUDA).
    ctx->save_for_backward({d});
    return torch::addcmul(x, PerBatch(d, x), u);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const torch::Tensor d = ctx->get_saved_variables()[0];
    const auto u_type = ctx->saved_data["u_type"].toScalarType();
    const torch::Tensor dy = grads[0].contiguous();
#if defined(LFT_CUDA_KERNELS)
    if (dy.is_cuda() && dy.scalar_type() == torch::kFloat && Aligned(dy)) {
      c10::cuda::CUDAGuard guard(dy.device());
      torch::Tensor du = torch::empty(dy.sizes(), dy.options().dtype(u_type));
      CheckLaunch(
          fused_kernels::SolverUpdateBackward(
              TypeOf(du), dy.data_ptr<float>(), d.data_ptr<float>(),
              du.data_ptr(), dy.size(0), dy.numel() / dy.size(0), StreamOf(dy)),
          "solver update backward");
      return {grads[0], torch::Tensor(), du};
    }
#endif
    return {grads[0], torch::Tensor(), (dy * PerBatch(d, dy)).to(u_type)};
  }
};

// Whether the column-sum kernel can take the gradient of a linear layer
// with n outputs in x's dtype (layout is checked on the gradient itself).
bool ColumnSumApplies(const torch::Tensor& x, int64_t n) {
#if defined(LFT_CUDA_KERNELS)
  if (!x.is_cuda()) return false;
  const auto type = x.scalar_type();
  if (type != torch::kBFloat16 && type != torch::kFloat) return false;
  return n % WidthOf(x) == 0;
#else
  (void)x;
  (void)n;
  return false;
#endif
}

#if defined(LFT_CUDA_KERNELS)
// Whether the column-sum kernel can read g [M, N]: 2-D, contiguous and
// aligned, and at most 65535 chunks (grid.y of the first pass).
bool ColumnSumKernelTakes(const torch::Tensor& g) {
  return g.dim() == 2 && ColumnSumApplies(g, g.size(1)) && g.is_contiguous() &&
         Aligned(g) && fused_kernels::ColumnSumChunks(g.size(0)) <= 65535;
}
#endif

// out (+)= g [M, N] summed over M (out [N] in g's dtype, contiguous):
// the column-sum kernel where it applies; false (out untouched) where not.
bool ColumnSumInto(const torch::Tensor& g, const torch::Tensor& out,
                   bool accumulate) {
#if defined(LFT_CUDA_KERNELS)
  if (ColumnSumKernelTakes(g) && out.is_contiguous() &&
      out.scalar_type() == g.scalar_type() && out.device() == g.device() &&
      out.numel() == g.size(1)) {
    c10::cuda::CUDAGuard guard(g.device());
    const int64_t rows = g.size(0), cols = g.size(1);
    const int64_t chunks = fused_kernels::ColumnSumChunks(rows);
    torch::Tensor partial = torch::empty({std::max<int64_t>(1, chunks), cols},
                                         g.options().dtype(torch::kFloat));
    CheckLaunch(
        fused_kernels::ColumnSum(TypeOf(g), g.data_ptr(), rows, cols,
                                 partial.data_ptr<float>(), out.data_ptr(),
                                 accumulate, StreamOf(g)),
        "column sum");
    return true;
  }
#else
  (void)g;
  (void)out;
  (void)accumulate;
#endif
  return false;
}

// partial [chunks, N] += the per-chunk column sums of g [M, N]; false
// (nothing launched) where the kernel or partial does not fit.
bool ColumnPartialsInto(const torch::Tensor& g, const torch::Tensor& partial) {
#if defined(LFT_CUDA_KERNELS)
  if (partial.defined() && ColumnSumKernelTakes(g) &&
      partial.numel() ==
          fused_kernels::ColumnSumChunks(g.size(0)) * g.size(1)) {
    c10::cuda::CUDAGuard guard(g.device());
    CheckLaunch(
        fused_kernels::ColumnSumPartials(TypeOf(g), g.data_ptr(), g.size(0),
                                         g.size(1), partial.data_ptr<float>(),
                                         /*accumulate=*/true, StreamOf(g)),
        "column sum partials");
    return true;
  }
#else
  (void)g;
  (void)partial;
#endif
  return false;
}

// g [M, N] summed over M, in g's dtype.
torch::Tensor ColumnSumOf(const torch::Tensor& g) {
  torch::Tensor out = torch::empty({g.size(-1)}, g.options());
  if (ColumnSumInto(g, out, /*accumulate=*/false)) return out;
  return g.sum(0);
}

// The sinks a forward found for its weights, kept for the backward.
void SaveSinks(AutogradContext* ctx, const torch::Tensor& w,
               const torch::Tensor& b) {
  torch::Tensor w_sink = ScopedWeightGradSinks::SinkOf(w);
  torch::Tensor b_sink = ScopedWeightGradSinks::SinkOf(b);
  if (w_sink.defined()) ctx->saved_data["w_sink"] = w_sink;
  if (b_sink.defined()) ctx->saved_data["b_sink"] = b_sink;
}
// Saves the partials that the backward's sums for `sink` (and `second`)
// collect in, where the scope defers them (fused_ops.h).
void SavePartials(AutogradContext* ctx, const torch::Tensor& sink,
                  const torch::Tensor& second, int64_t rows) {
#if defined(LFT_CUDA_KERNELS)
  torch::Tensor partial = ScopedWeightGradSinks::PartialsFor(
      sink, second, fused_kernels::ColumnSumChunks(rows));
  if (partial.defined()) ctx->saved_data["partial"] = partial;
#else
  (void)ctx;
  (void)sink;
  (void)second;
  (void)rows;
#endif
}
// A tensor that SaveSinks or SavePartials kept, or an undefined one.
torch::Tensor SavedTensor(AutogradContext* ctx, const char* key) {
  auto it = ctx->saved_data.find(key);
  return it == ctx->saved_data.end() ? torch::Tensor() : it->second.toTensor();
}

// addmm(b, x, w^T) with the bias gradient from ColumnSumOf; the other two
// are AddmmBackward's products. A weight with a sink gets its gradient
// there: the product accumulated in the GEMM, the bias's column sum added
// in its second pass.
class BiasLinearFunction
    : public torch::autograd::Function<BiasLinearFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x,
                               torch::Tensor w, torch::Tensor b) {
    ctx->save_for_backward({x, w});
    SaveSinks(ctx, w, b);
    torch::Tensor b_sink = SavedTensor(ctx, "b_sink");
    if (b_sink.defined() && ColumnSumApplies(x, w.size(0))) {
      SavePartials(ctx, b_sink, torch::Tensor(), x.size(0));
    }
    return torch::addmm(b, x, w.t());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor g = grads[0].contiguous();
    torch::Tensor dx, dw, db;
    if (ctx->needs_input_grad(0)) dx = g.mm(saved[1]);
    const torch::Tensor w_sink = SavedTensor(ctx, "w_sink");
    if (w_sink.defined()) {
      w_sink.addmm_(g.t(), saved[0]);
    } else {
      dw = g.t().mm(saved[0]);
    }
    const torch::Tensor b_sink = SavedTensor(ctx, "b_sink");
    if (!b_sink.defined()) {
      db = ColumnSumOf(g);
    } else if (!ColumnPartialsInto(g, SavedTensor(ctx, "partial")) &&
               !ColumnSumInto(g, b_sink, /*accumulate=*/true)) {
      b_sink.add_(g.sum(0));
    }
    return {dx, dw, db};
  }
};

// Whether the LayerNorm affine-gradient kernel can run on x [.., H].
bool LayerNormKernelApplies(const torch::Tensor& x) {
#if defined(LFT_CUDA_KERNELS)
  if (!x.is_cuda() || x.dim() < 2) return false;
  const auto type = x.scalar_type();
  if (type != torch::kBFloat16 && type != torch::kFloat) return false;
  const int64_t rows = x.numel() / std::max<int64_t>(1, x.size(-1));
  return x.size(-1) % WidthOf(x) == 0 &&
         fused_kernels::ColumnSumChunks(rows) <= 65535;
#else
  (void)x;
  return false;
#endif
}

// The gradients of a LayerNorm's weight and bias from dy and x [.., H] and
// native_layer_norm's mean and rstd (one per row), in x's dtype: added into
// the sinks where given (and then returned undefined), else returned.
// With both sinks, their deferred partials (`partial`, [2, chunks, H]) take
// the sums where given.
std::pair<torch::Tensor, torch::Tensor> LayerNormAffineGrads(
    const torch::Tensor& dy_in, const torch::Tensor& x_in,
    const torch::Tensor& mean, const torch::Tensor& rstd,
    const torch::Tensor& w_sink, const torch::Tensor& b_sink,
    const torch::Tensor& deferred) {
  const int64_t h = x_in.size(-1);
  const torch::Tensor dy = dy_in.contiguous().view({-1, h});
  const torch::Tensor x = x_in.contiguous().view({-1, h});
  const int64_t rows = x.size(0);
#if defined(LFT_CUDA_KERNELS)
  const bool stats = mean.scalar_type() == torch::kFloat &&
                     rstd.scalar_type() == torch::kFloat &&
                     mean.is_contiguous() && rstd.is_contiguous() &&
                     mean.numel() == rows && rstd.numel() == rows;
  // Both sinks or neither: one launch writes the two sums.
  const bool sinks = w_sink.defined() && b_sink.defined();
  const bool sinks_usable =
      !sinks || (w_sink.is_contiguous() && b_sink.is_contiguous() &&
                 w_sink.scalar_type() == x.scalar_type() &&
                 b_sink.scalar_type() == x.scalar_type());
  if (LayerNormKernelApplies(x) && stats && Aligned(dy) && Aligned(x) &&
      sinks_usable && w_sink.defined() == b_sink.defined()) {
    c10::cuda::CUDAGuard guard(x.device());
    const int64_t chunks = fused_kernels::ColumnSumChunks(rows);
    if (sinks && deferred.defined() && deferred.numel() == 2 * chunks * h) {
      CheckLaunch(
          fused_kernels::LayerNormAffinePartials(
              TypeOf(x), dy.data_ptr(), x.data_ptr(), mean.data_ptr<float>(),
              rstd.data_ptr<float>(), rows, h, deferred.data_ptr<float>(),
              /*accumulate=*/true, StreamOf(x)),
          "LayerNorm affine gradient partials");
      return {};
    }
    torch::Tensor partial = torch::empty({2, std::max<int64_t>(1, chunks), h},
                                         x.options().dtype(torch::kFloat));
    torch::Tensor out =
        sinks ? torch::Tensor() : torch::empty({2, h}, x.options());
    torch::Tensor dw = sinks ? w_sink : out[0];
    torch::Tensor db = sinks ? b_sink : out[1];
    CheckLaunch(fused_kernels::LayerNormAffineGrad(
                    TypeOf(x), dy.data_ptr(), x.data_ptr(),
                    mean.data_ptr<float>(), rstd.data_ptr<float>(), rows, h,
                    partial.data_ptr<float>(), dw.data_ptr(), db.data_ptr(),
                    /*accumulate=*/sinks, StreamOf(x)),
                "LayerNorm affine gradient");
    if (sinks) return {};
    return {dw, db};
  }
#else
  (void)deferred;
#endif
  // The stand-in: the same sums in LibTorch, accumulated in fp32 (fp64
  // for fp64 inputs) as native_layer_norm_backward does.
  const auto acc =
      x.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  const torch::Tensor g = dy.to(acc);
  const torch::Tensor xhat = (x.to(acc) - mean.reshape({rows, 1}).to(acc)) *
                             rstd.reshape({rows, 1}).to(acc);
  torch::Tensor dw = (g * xhat).sum(0).to(x.scalar_type());
  torch::Tensor db = g.sum(0).to(x.scalar_type());
  if (w_sink.defined()) {
    w_sink.add_(dw.view_as(w_sink));
    dw = torch::Tensor();
  }
  if (b_sink.defined()) {
    b_sink.add_(db.view_as(b_sink));
    db = torch::Tensor();
  }
  return {dw, db};
}

// native_layer_norm forward; its backward for the input, with the weight's
// and bias's gradients from LayerNormAffineGrads.
class LayerNormFunction : public torch::autograd::Function<LayerNormFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x,
                               torch::Tensor w, torch::Tensor b, double eps) {
    auto [y, mean, rstd] = at::native_layer_norm(x, {x.size(-1)}, w, b, eps);
    ctx->save_for_backward({x, w, b, mean, rstd});
    SaveSinks(ctx, w, b);
    const torch::Tensor w_sink = SavedTensor(ctx, "w_sink");
    const torch::Tensor b_sink = SavedTensor(ctx, "b_sink");
    if (w_sink.defined() && b_sink.defined() && LayerNormKernelApplies(x)) {
      SavePartials(ctx, w_sink, b_sink, x.numel() / x.size(-1));
    }
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    const torch::Tensor dy = grads[0].contiguous();
    torch::Tensor dx;
    if (ctx->needs_input_grad(0)) {
      dx = std::get<0>(at::native_layer_norm_backward(
          dy, x, {x.size(-1)}, saved[3], saved[4], saved[1], saved[2],
          {true, false, false}));
    }
    auto [dw, db] = LayerNormAffineGrads(
        dy, x, saved[3], saved[4], SavedTensor(ctx, "w_sink"),
        SavedTensor(ctx, "b_sink"), SavedTensor(ctx, "partial"));
    return {dx, dw, db, torch::Tensor()};
  }
};

// a * (1 + scale) + shift, differentiable in all three.
class ModulateFunction : public torch::autograd::Function<ModulateFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor a,
                               torch::Tensor scale, torch::Tensor shift) {
    ctx->saved_data["scale_shape"] = scale.sizes().vec();
    ctx->saved_data["shift_shape"] = shift.sizes().vec();
    ctx->saved_data["scale_type"] = scale.scalar_type();
    torch::Tensor s = PerRow(scale, a), c = PerRow(shift, a);
    ctx->save_for_backward({a, s});
    return ScaleShiftForward(a, s, c, torch::Tensor(), 1.0);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    ScaleShiftGrads g =
        ScaleShiftBackward(grads[0], saved[0], saved[1], 1.0, true);
    const auto type = ctx->saved_data["scale_type"].toScalarType();
    return {g.da,
            g.ds.to(type).view(ctx->saved_data["scale_shape"].toIntVector()),
            g.dc.to(type).view(ctx->saved_data["shift_shape"].toIntVector())};
  }
};

// gate * branch (+ base): the forward and backward that GateFunction and
// GatedResidualFunction share.
torch::Tensor GateForward(AutogradContext* ctx, const torch::Tensor& gate,
                          const torch::Tensor& branch,
                          const torch::Tensor& base) {
  ctx->saved_data["gate_shape"] = gate.sizes().vec();
  ctx->saved_data["gate_type"] = gate.scalar_type();
  torch::Tensor g = PerRow(gate, branch);
  ctx->save_for_backward({branch, g});
  return ScaleShiftForward(
      branch, g, torch::Tensor(),
      base.defined() ? base.to(branch.scalar_type()) : torch::Tensor(), 0.0);
}

// {d gate, d branch}.
variable_list GateBackward(AutogradContext* ctx, const variable_list& grads) {
  const variable_list saved = ctx->get_saved_variables();
  ScaleShiftGrads g =
      ScaleShiftBackward(grads[0], saved[0], saved[1], 0.0, false);
  const auto type = ctx->saved_data["gate_type"].toScalarType();
  return {g.ds.to(type).view(ctx->saved_data["gate_shape"].toIntVector()),
          g.da};
}

// gate * branch, differentiable in both. LibTorch 1.13's Function::apply
// cannot take an undefined tensor, so the residual form is its own class.
class GateFunction : public torch::autograd::Function<GateFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor gate,
                               torch::Tensor branch) {
    return GateForward(ctx, gate, branch, torch::Tensor());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return GateBackward(ctx, grads);
  }
};

// base + gate * branch, differentiable in all three.
class GatedResidualFunction
    : public torch::autograd::Function<GatedResidualFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor base,
                               torch::Tensor gate, torch::Tensor branch) {
    return GateForward(ctx, gate, branch, base);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list g = GateBackward(ctx, grads);
    return {grads[0], g[0], g[1]};
  }
};

// The LibTorch form of the rotation (the flow layer's original
// expression): splits and cats, products and sum in qk's dtype.
torch::Tensor RotateQkLibTorch(const torch::Tensor& qk,
                               const torch::Tensor& cos,
                               const torch::Tensor& sin, int64_t rot) {
  const int64_t hd = qk.size(-1), half = rot / 2, t = qk.size(1);
  std::vector<torch::Tensor> rp =
      rot == hd ? std::vector<torch::Tensor>{qk}
                : qk.split_with_sizes({rot, hd - rot}, -1);
  std::vector<torch::Tensor> h = rp[0].split(half, -1);
  torch::Tensor c = cos.to(qk.scalar_type()).view({1, t, 1, 1, rot});
  torch::Tensor sn = sin.to(qk.scalar_type()).view({1, t, 1, 1, rot});
  // Separate multiplies and add (not addcmul): the same roundings as the
  // in-place path of the teacher, so both give the same bits.
  torch::Tensor out = rp[0] * c + torch::cat({-h[1], h[0]}, -1) * sn;
  return rot == hd ? out : torch::cat({out, rp[1]}, -1);
}

// q, k, v of qkv5 [B, T, heads, 3, hd] as LibTorch forms them: views of
// the split, q and k rotated together (one new tensor).
std::vector<torch::Tensor> SplitQkvLibTorch(const torch::Tensor& qkv5,
                                            const torch::Tensor& cos,
                                            const torch::Tensor& sin,
                                            int64_t rot) {
  std::vector<torch::Tensor> parts = qkv5.split_with_sizes({2, 1}, 3);
  torch::Tensor qk = parts[0];
  if (rot > 0) qk = RotateQkLibTorch(qk, cos, sin, rot);
  std::vector<torch::Tensor> qk2 = qk.unbind(3);
  return {qk2[0], qk2[1], parts[1].squeeze(3)};
}

#if defined(LFT_CUDA_KERNELS)
fused_kernels::QkvLayout QkvLayoutOf(const torch::Tensor& qkv5,
                                     const std::vector<torch::Tensor>& parts,
                                     int64_t rot) {
  fused_kernels::QkvLayout l{};
  l.batch = qkv5.size(0);
  l.seq = qkv5.size(1);
  l.heads = qkv5.size(2);
  l.head_dim = qkv5.size(4);
  l.rot = rot;
  for (int i = 0; i < 4; ++i) l.qkv_stride[i] = qkv5.stride(i);
  for (int j = 0; j < 3; ++j) {
    for (int i = 0; i < 3; ++i) l.part_stride[j][i] = parts[j].stride(i);
  }
  return l;
}
#endif

// The forward: three contiguous [B, T, heads, hd] tensors.
std::vector<torch::Tensor> SplitQkvRaw(const torch::Tensor& qkv5,
                                       const torch::Tensor& cos,
                                       const torch::Tensor& sin, int64_t rot) {
  const auto shape = std::vector<int64_t>{qkv5.size(0), qkv5.size(1),
                                          qkv5.size(2), qkv5.size(4)};
#if defined(LFT_CUDA_KERNELS)
  if (QkvKernelApplies(qkv5)) {
    c10::cuda::CUDAGuard guard(qkv5.device());
    std::vector<torch::Tensor> parts;
    for (int j = 0; j < 3; ++j)
      parts.push_back(torch::empty(shape, qkv5.options()));
    void* out[3] = {parts[0].data_ptr(), parts[1].data_ptr(),
                    parts[2].data_ptr()};
    CheckLaunch(fused_kernels::SplitQkvHeads(TypeOf(qkv5), qkv5.data_ptr(),
                                             QkvLayoutOf(qkv5, parts, rot),
                                             rot > 0 ? cos.data_ptr() : nullptr,
                                             rot > 0 ? sin.data_ptr() : nullptr,
                                             out, StreamOf(qkv5)),
                "qkv heads");
    return parts;
  }
#endif
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts = SplitQkvLibTorch(qkv5, cos, sin, rot);
  for (auto& p : parts) p = p.contiguous();
  return parts;
}

// The backward: the gradient of qkv5 (`shape`, `options`) from those of
// q, k, v (undefined ones are zero), as one contiguous tensor.
torch::Tensor JoinQkvGradRaw(std::vector<torch::Tensor> grads,
                             const std::vector<int64_t>& shape,
                             const torch::TensorOptions& options,
                             const torch::Tensor& cos, const torch::Tensor& sin,
                             int64_t rot) {
  const std::vector<int64_t> part{shape[0], shape[1], shape[2], shape[4]};
  for (auto& g : grads) {
    if (!g.defined()) g = torch::zeros(part, options);
    if (g.stride(-1) != 1) g = g.contiguous();
  }
#if defined(LFT_CUDA_KERNELS)
  torch::Tensor out = torch::empty(shape, options);
  if (QkvKernelApplies(out)) {
    c10::cuda::CUDAGuard guard(out.device());
    const void* in[3] = {grads[0].data_ptr(), grads[1].data_ptr(),
                         grads[2].data_ptr()};
    CheckLaunch(
        fused_kernels::JoinQkvHeadsGrad(
            TypeOf(out), in, QkvLayoutOf(out, grads, rot),
            rot > 0 ? cos.data_ptr() : nullptr,
            rot > 0 ? sin.data_ptr() : nullptr, out.data_ptr(), StreamOf(out)),
        "qkv heads backward");
    return out;
  }
#endif
  // The stand-in: the transpose rotates by -angle, i.e. the same form with
  // sin negated (exact in any dtype); the split's transpose is a stack.
  torch::NoGradGuard no_grad;
  torch::Tensor qk = torch::stack({grads[0], grads[1]}, 3);
  if (rot > 0) qk = RotateQkLibTorch(qk, cos, -sin, rot);
  return torch::cat({qk, grads[2].unsqueeze(3)}, 3).contiguous();
}

class QkvHeadsFunction : public torch::autograd::Function<QkvHeadsFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, torch::Tensor qkv5,
                               torch::Tensor cos, torch::Tensor sin,
                               int64_t rot) {
    ctx->save_for_backward({cos, sin});
    ctx->saved_data["rot"] = rot;
    ctx->saved_data["shape"] = qkv5.sizes().vec();
    ctx->saved_data["dtype"] = qkv5.scalar_type();
    ctx->saved_data["device"] = qkv5.device();
    return SplitQkvRaw(qkv5, cos, sin, rot);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const auto options = torch::TensorOptions()
                             .dtype(ctx->saved_data["dtype"].toScalarType())
                             .device(ctx->saved_data["device"].toDevice());
    return {JoinQkvGradRaw(std::move(grads),
                           ctx->saved_data["shape"].toIntVector(), options,
                           saved[0], saved[1], ctx->saved_data["rot"].toInt()),
            torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

namespace {
thread_local ScopedWeightGradSinks* t_innermost_sinks = nullptr;
}  // namespace

ScopedWeightGradSinks::ScopedWeightGradSinks(
    const std::vector<std::pair<torch::Tensor, torch::Tensor>>& sinks)
    : outer_(t_innermost_sinks) {
  for (const auto& [weight, sink] : sinks) {
    TORCH_CHECK(weight.defined() && sink.defined(),
                "ScopedWeightGradSinks: a weight and its sink must be defined");
    TORCH_CHECK(sink.sizes() == weight.sizes() &&
                    sink.scalar_type() == weight.scalar_type() &&
                    sink.device() == weight.device() && sink.is_contiguous() &&
                    !sink.requires_grad(),
                "ScopedWeightGradSinks: a sink must be a contiguous tensor of "
                "its weight's shape, dtype and device outside autograd; got ",
                sink.sizes(), " for a weight of ", weight.sizes());
    sinks_[weight.unsafeGetTensorImpl()] = {weight, sink};
  }
  t_innermost_sinks = this;
}

ScopedWeightGradSinks::~ScopedWeightGradSinks() {
  t_innermost_sinks = outer_;
  try {
    Finish();
  } catch (const std::exception&) {
    // A failed launch here resurfaces as the stream's error on its next op.
  }
}

void ScopedWeightGradSinks::Finish() {
#if defined(LFT_CUDA_KERNELS)
  for (const PendingSum& p : pending_) {
    c10::cuda::CUDAGuard guard(p.first.device());
    const int64_t n = p.first.numel();
    const auto type = TypeOf(p.first);
    if (p.second.defined()) {
      CheckLaunch(fused_kernels::SumChunkPairs(
                      type, p.partial.data_ptr<float>(), p.chunks, n,
                      p.first.data_ptr(), p.second.data_ptr(),
                      /*accumulate=*/true, StreamOf(p.first)),
                  "deferred sums");
    } else {
      CheckLaunch(
          fused_kernels::SumChunks(type, p.partial.data_ptr<float>(), 1,
                                   p.chunks, n, p.first.data_ptr(),
                                   /*accumulate=*/true, StreamOf(p.first)),
          "deferred sums");
    }
  }
#endif
  pending_.clear();
  pending_index_.clear();
}

torch::Tensor ScopedWeightGradSinks::PartialsFor(const torch::Tensor& sink,
                                                 const torch::Tensor& second,
                                                 int64_t chunks) {
  ScopedWeightGradSinks* scope = t_innermost_sinks;
  if (scope == nullptr || !sink.defined() || chunks < 1) {
    return torch::Tensor();
  }
  auto it = scope->pending_index_.find(sink.unsafeGetTensorImpl());
  if (it != scope->pending_index_.end()) {
    const PendingSum& p = scope->pending_[it->second];
    const bool same = p.chunks == chunks &&
                      p.second.defined() == second.defined() &&
                      (!second.defined() || p.second.is_same(second));
    return same ? p.partial : torch::Tensor();
  }
  const int64_t parts = second.defined() ? 2 : 1;
  PendingSum p;
  p.partial = torch::zeros({parts, chunks, sink.numel()},
                           sink.options().dtype(torch::kFloat));
  p.first = sink;
  p.second = second;
  p.chunks = chunks;
  scope->pending_index_[sink.unsafeGetTensorImpl()] = scope->pending_.size();
  scope->pending_.push_back(std::move(p));
  return scope->pending_.back().partial;
}

torch::Tensor ScopedWeightGradSinks::SinkOf(const torch::Tensor& weight) {
  const ScopedWeightGradSinks* scope = t_innermost_sinks;
  if (scope == nullptr || !weight.defined()) return torch::Tensor();
  auto it = scope->sinks_.find(weight.unsafeGetTensorImpl());
  return it == scope->sinks_.end() ? torch::Tensor() : it->second.second;
}

void SetFusedOpsMode(FusedOpsMode mode) {
  g_mode.store(mode, std::memory_order_relaxed);
}

FusedOpsMode GetFusedOpsMode() {
  return g_mode.load(std::memory_order_relaxed);
}

bool FusedKernelsBuilt() {
#if defined(LFT_CUDA_KERNELS)
  return true;
#else
  return false;
#endif
}

torch::Tensor Modulate(const torch::Tensor& a, const torch::Tensor& scale,
                       const torch::Tensor& shift) {
  if (RouteFor(KernelsApply(a)) == Route::kLibTorch || a.dim() != 3) {
    // addcmul(a, b, c) = a + b * c in one pass over [B, T, H].
    return torch::addcmul(shift, a, 1 + scale);
  }
  return ModulateFunction::apply(a, scale, shift);
}

torch::Tensor GatedBranch(const torch::Tensor& base, const torch::Tensor& gate,
                          const torch::Tensor& branch) {
  if (RouteFor(KernelsApply(branch)) == Route::kLibTorch || branch.dim() != 3) {
    return base.defined() ? torch::addcmul(base, gate, branch) : gate * branch;
  }
  return base.defined() ? GatedResidualFunction::apply(base, gate, branch)
                        : GateFunction::apply(gate, branch);
}

torch::Tensor SolverUpdate(const torch::Tensor& x, const torch::Tensor& d,
                           const torch::Tensor& u) {
  if (RouteFor(SolverKernelApplies(x, d, u)) == Route::kLibTorch ||
      d.requires_grad() || u.sizes() != x.sizes()) {
    return torch::addcmul(x, PerBatch(d, x), u);
  }
  return SolverUpdateFunction::apply(x, d, u);
}

torch::Tensor BiasLinear(const torch::Tensor& x, const torch::Tensor& w,
                         const torch::Tensor& b) {
  const bool shapes =
      x.dim() == 2 && w.dim() == 2 && b.defined() && b.dim() == 1;
  if (!shapes) return torch::nn::functional::linear(x, w, b);
  if (!torch::GradMode::is_enabled() ||
      RouteFor(ColumnSumApplies(x, w.size(0))) == Route::kLibTorch) {
    return torch::addmm(b, x, w.t());
  }
  return BiasLinearFunction::apply(x, w, b);
}

torch::Tensor LayerNorm(const torch::Tensor& x, const torch::Tensor& w,
                        const torch::Tensor& b, double eps) {
  const int64_t h = x.dim() > 0 ? x.size(-1) : 0;
  const bool shapes = x.dim() >= 2 && w.defined() && b.defined() &&
                      w.dim() == 1 && b.dim() == 1 && w.size(0) == h &&
                      b.size(0) == h;
  if (!shapes || !torch::GradMode::is_enabled() ||
      RouteFor(LayerNormKernelApplies(x)) == Route::kLibTorch) {
    return torch::layer_norm(x, {h}, w, b, eps);
  }
  return LayerNormFunction::apply(x, w, b, eps);
}

std::vector<torch::Tensor> SplitQkvHeads(const torch::Tensor& qkv5,
                                         const torch::Tensor& cos,
                                         const torch::Tensor& sin,
                                         int64_t rot) {
  TORCH_CHECK(qkv5.dim() == 5 && qkv5.size(3) == 3,
              "SplitQkvHeads: qkv must be [B, T, heads, 3, hd], got ",
              qkv5.sizes());
  if (RouteFor(QkvKernelApplies(qkv5)) == Route::kLibTorch || rot % 2 != 0 ||
      rot < 0 || rot > qkv5.size(4)) {
    return SplitQkvLibTorch(qkv5, cos, sin, rot);
  }
  // Empty tables when nothing rotates: autograd takes no undefined inputs.
  const torch::Tensor none = torch::empty({0}, qkv5.options());
  torch::Tensor c = rot > 0 ? cos.contiguous() : none;
  torch::Tensor sn = rot > 0 ? sin.contiguous() : none;
  return QkvHeadsFunction::apply(qkv5, c, sn, rot);
}

bool FusedAdamWStep(const torch::Tensor& param, const torch::Tensor& exp_avg,
                    const torch::Tensor& exp_avg_sq, const torch::Tensor& grad,
                    const torch::Tensor& grad_scale, const AdamWHyper& h) {
#if defined(LFT_CUDA_KERNELS)
  if (GetFusedOpsMode() == FusedOpsMode::kOff || DisabledByEnvironment())
    return false;
  const int64_t n = param.numel();
  for (const torch::Tensor* t : {&param, &exp_avg, &exp_avg_sq, &grad}) {
    if (!t->is_cuda() || t->scalar_type() != torch::kFloat ||
        !t->is_contiguous() || t->numel() != n ||
        t->device() != param.device()) {
      return false;
    }
  }
  if (grad_scale.defined() &&
      (grad_scale.device() != param.device() ||
       grad_scale.scalar_type() != torch::kFloat || grad_scale.numel() != 1)) {
    return false;
  }
  const c10::cuda::CUDAGuard guard(param.device());
  fused_kernels::AdamWScalars s;
  s.decay = static_cast<float>(1 - h.lr * h.weight_decay);
  s.beta1 = static_cast<float>(h.beta1);
  s.one_minus_beta1 = static_cast<float>(1 - h.beta1);
  s.beta2 = static_cast<float>(h.beta2);
  s.one_minus_beta2 = static_cast<float>(1 - h.beta2);
  s.eps = static_cast<float>(h.eps);
  s.inv_sqrt_bc2 = static_cast<float>(1 / std::sqrt(h.bias_correction2));
  s.step = static_cast<float>(-h.lr / h.bias_correction1);
  CheckLaunch(fused_kernels::AdamWStep(
                  param.data_ptr<float>(), exp_avg.data_ptr<float>(),
                  exp_avg_sq.data_ptr<float>(), grad.data_ptr<float>(),
                  grad_scale.defined() ? grad_scale.data_ptr<float>() : nullptr,
                  n, s, StreamOf(param)),
              "AdamW step");
  return true;
#else
  (void)param;
  (void)exp_avg;
  (void)exp_avg_sq;
  (void)grad;
  (void)grad_scale;
  (void)h;
  return false;
#endif
}

bool FusedKernelsEnabled() {
  return FusedKernelsBuilt() && !DisabledByEnvironment() &&
         GetFusedOpsMode() != FusedOpsMode::kOff;
}

}  // namespace lft
