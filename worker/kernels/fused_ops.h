// Fused, differentiable operations of the latent flow layer: the AdaLN
// modulation and gates, the NeoX attention heads with their rotary
// embedding, the ODE solver update, biased linear layers, LayerNorm, the
// weight-gradient sinks a training step sums its evaluations' gradients
// in, and AdamW.
//
// On a CUDA tensor, in a build whose nvcc compiled worker/kernels, each is
// one memory pass forward and one backward (the gate and shift gradients
// are summed over the sequence inside the backward pass). Everywhere else
// they are the plain LibTorch expressions the flow layer used before, with
// the same bits, so CPU runs (and their checked-in numbers) do not change.
//
// PyTorch's stock kernels take a slow, non-vectorised path for the [B, 1, H]
// broadcasts of AdaLN and run the sums over T as separate reductions; at
// width 1024 those passes cost the trainer more GPU time than the matmuls
// they sit between (docs/benchmarks.md, "Trainer at width 1024").
#ifndef LFT_WORKER_KERNELS_FUSED_OPS_H_
#define LFT_WORKER_KERNELS_FUSED_OPS_H_

#include <torch/torch.h>

#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

namespace lft {

// kAuto: fused kernels where they apply (CUDA tensor, bf16 or fp32; for
// the AdaLN ops a width that is a multiple of one 16-byte vector and at
// most 1024 of them: 8192 in bf16, 4096 in fp32) unless LFT_FUSED_KERNELS=0
// is set. kOff: the LibTorch expressions everywhere (the A/B rows of the
// trainer benchmark). kAlways: the fused autograd functions on every
// device, with a LibTorch stand-in for the kernels off CUDA (tests of the
// functions' gradients).
enum class FusedOpsMode { kAuto, kOff, kAlways };

// Process-wide; set before a step is recorded as a CUDA graph.
void SetFusedOpsMode(FusedOpsMode mode);
FusedOpsMode GetFusedOpsMode();

// True when this binary carries the CUDA kernels.
bool FusedKernelsBuilt();

// True when CUDA tensors take the kernels: built, not turned off by
// LFT_FUSED_KERNELS=0, mode not kOff.
bool FusedKernelsEnabled();

// a * (1 + scale) + shift, with a [B, T, H] and scale, shift [B, 1, H] or
// [B, H] (AdaLN's modulation of a LayerNorm output).
torch::Tensor Modulate(const torch::Tensor& a, const torch::Tensor& scale,
                       const torch::Tensor& shift);

// base + gate * branch, or gate * branch when base is undefined; branch and
// base [B, T, H], gate [B, 1, H] or [B, H] (AdaLN's gated residual).
torch::Tensor GatedBranch(const torch::Tensor& base, const torch::Tensor& gate,
                          const torch::Tensor& branch);

// x + d * u, one explicit ODE solver update: x [B, ...], d [B] (times; no
// gradient), u shaped like x, in x's dtype or a lower one; the result has
// x's dtype. On CUDA with x float32 one vectorised pass each way, where
// LibTorch's addcmul of a float32 and a bf16 tensor takes its slow
// mixed-dtype path; elsewhere addcmul(x, d viewed as [B, 1, ...], u), the
// solvers' expression before (the same bits).
torch::Tensor SolverUpdate(const torch::Tensor& x, const torch::Tensor& d,
                           const torch::Tensor& u);

// Where a training step wants its weights' gradients. While a scope is
// alive on a thread, BiasLinear and LayerNorm recorded on that thread add
// the gradient of each weight it names into that weight's sink, inside
// their backward: the weight gradient's matmul accumulates (beta = 1) and
// the bias and LayerNorm sums add to what the sink holds. Autograd gets no
// gradient for those weights. A flow-matching step evaluates the layer six
// times, and autograd added the six gradients of every weight in 65
// separate passes per step (docs/benchmarks.md). Ops on LibTorch's path
// (kernels off, shapes the kernels do not take) still return their
// gradients to autograd, so a caller adds what reached the weights' .grad
// to the sinks after the backward. The backward may run on another thread:
// the sinks are looked up when the forward runs. On CUDA the bias and
// LayerNorm sums of all the evaluations collect in per-chunk partials that
// Finish() adds to the sinks: one launch per weight and step where every
// evaluation's backward launched its own.
class ScopedWeightGradSinks {
 public:
  // (weight, sink) pairs: each sink has its weight's shape, dtype and
  // device, is contiguous and takes no part in autograd.
  explicit ScopedWeightGradSinks(
      const std::vector<std::pair<torch::Tensor, torch::Tensor>>& sinks);
  // Finishes what is pending (a safety net: call Finish()).
  ~ScopedWeightGradSinks();
  ScopedWeightGradSinks(const ScopedWeightGradSinks&) = delete;
  ScopedWeightGradSinks& operator=(const ScopedWeightGradSinks&) = delete;

  // Adds the partials the backward left to their sinks. Call once the
  // backward of everything recorded in the scope has run (the scope alive
  // through it), before the sinks are read.
  void Finish();

  // The sink of `weight` (the same tensor, not an equal one) in the
  // innermost scope alive on this thread, or an undefined tensor.
  static torch::Tensor SinkOf(const torch::Tensor& weight);

  // For the fused ops' forward: fp32 partials [parts, chunks, n], zeroed,
  // that every backward summing into `sink` (and `second`, with parts = 2)
  // adds its chunks' sums to, and that Finish() sums into them; made on
  // the first request. Undefined without a scope on this thread, for a
  // sink not of it, or for chunks other than the first request's.
  static torch::Tensor PartialsFor(const torch::Tensor& sink,
                                   const torch::Tensor& second, int64_t chunks);

 private:
  struct PendingSum {
    torch::Tensor partial, first, second;  // second undefined: one sum
    int64_t chunks = 0;
  };
  std::vector<PendingSum> pending_;
  std::unordered_map<const void*, size_t> pending_index_;  // by first
  // Keyed by TensorImpl; the weights are held so no address is reused.
  std::unordered_map<const void*, std::pair<torch::Tensor, torch::Tensor>>
      sinks_;
  ScopedWeightGradSinks* outer_;
};

// x [M, in] @ w^T + b (w [N, in], b [N]) as one addmm, whose epilogue adds
// the bias on the GPU. Under autograd on CUDA (bf16 or fp32, N a multiple
// of one 16-byte vector) the bias gradient is worker/kernels' column sum,
// two passes near the memory bandwidth, instead of LibTorch's reduction,
// which ran at about a third of it at the trainer's shapes and was the
// largest non-matmul cost of a step at 8 x 512. The gradients of w and b
// go to their sinks where a ScopedWeightGradSinks names them.
torch::Tensor BiasLinear(const torch::Tensor& x, const torch::Tensor& w,
                         const torch::Tensor& b);

// torch::layer_norm over the last dim of x (w and b [H]). Under autograd,
// on CUDA tensors the kernels take (bf16 or fp32, H a multiple of one
// 16-byte vector): LibTorch's forward and input gradient, with the
// gradients of w and b summed in one pass over dy and x (two sums at once,
// as the bias's column sum) and added into their sinks when a
// ScopedWeightGradSinks names them. LibTorch's weight and bias gradient
// kernel ran at about 1 TB/s at the trainer's shapes (15 us a call, this
// one 7 us; docs/benchmarks.md).
// Elsewhere torch::layer_norm itself (the same bits).
torch::Tensor LayerNorm(const torch::Tensor& x, const torch::Tensor& w,
                        const torch::Tensor& b, double eps);

// The attention's q, k and v of qkv [B, T, heads, 3, hd] (HF GPT-NeoX's
// layout: per head q, k, v; any strides), each [B, T, heads, hd], with HF's
// rotary embedding x * cos + rotate_half(x) * sin on the first `rot` of the
// hd dims of q and k (rot even, 0: none). cos and sin are [T, rot] in qkv's
// dtype (undefined when rot is 0). With the kernels: one pass forward into
// three contiguous tensors and one pass back into qkv's gradient, where
// LibTorch's split, rotation and unbind cost three passes forward and, in
// the backward, a stack, the rotation's transpose and a strided cat. The
// kernels round as the LibTorch expression does (products, then their
// sum, in qkv's dtype), so both give the same bits.
std::vector<torch::Tensor> SplitQkvHeads(const torch::Tensor& qkv,
                                         const torch::Tensor& cos,
                                         const torch::Tensor& sin, int64_t rot);

// One AdamW step (worker/model/adamw.h's rule) in one pass over float32
// CUDA buffers of one size, contiguous: param, exp_avg and exp_avg_sq
// updated in place, grad only read, times grad_scale first when that is
// defined (a one-element float32 tensor on the same device: a clipping
// coefficient that never leaves the GPU). The unfused update is about ten
// passes over four buffers of the optimizer's size; at 19M parameters it
// was the trainer's largest elementwise cost after GELU. Returns false and
// touches nothing where the kernel does not apply (not CUDA or not float32,
// kernels not built, mode kOff or LFT_FUSED_KERNELS=0).
struct AdamWHyper {
  double lr = 0, weight_decay = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double bias_correction1 = 1, bias_correction2 = 1;  // 1 - beta^k
};
bool FusedAdamWStep(const torch::Tensor& param, const torch::Tensor& exp_avg,
                    const torch::Tensor& exp_avg_sq, const torch::Tensor& grad,
                    const torch::Tensor& grad_scale, const AdamWHyper& hyper);

}  // namespace lft

#endif  // LFT_WORKER_KERNELS_FUSED_OPS_H_
