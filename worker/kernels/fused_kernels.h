// Launchers of worker/kernels' CUDA kernels (fused_kernels.cu). Plain
// pointers and sizes, no LibTorch or CUDA types, so fused_ops.cc (compiled
// by the host compiler) and the .cu file (by nvcc) share only this header.
#ifndef LFT_WORKER_KERNELS_FUSED_KERNELS_H_
#define LFT_WORKER_KERNELS_FUSED_KERNELS_H_

#include <cstdint>

namespace lft {
namespace fused_kernels {

enum class ElementType { kFloat32, kBFloat16 };

// Values per 16-byte vector: every [.., H] row is read and written in
// vectors, so H must be a multiple of this and pointers 16-byte aligned.
constexpr int64_t VectorWidth(ElementType t) {
  return t == ElementType::kFloat32 ? 4 : 8;
}

// y = a * (offset + scale[b]) (+ shift[b]) (+ base), over [B, T, H]; scale
// and shift [B, H] with row_stride elements between rows (H when
// contiguous; the flow layer's AdaLN factors are rows of [B, 6, H], 6H);
// shift and base may be null. Returns a CUDA error code (0 = success).
int ScaleShiftForward(ElementType type, const void* a, const void* scale,
                      const void* shift, const void* base, void* y,
                      float offset, int64_t batch, int64_t seq, int64_t hidden,
                      int64_t row_stride, void* stream);

// Backward of ScaleShiftForward with respect to a, scale and shift:
// da = dy * (offset + scale[b]); scale_partial[b, c] = sum over the rows t of
// chunk c of dy * a; shift_partial[b, c] = sum of dy (null: not wanted).
// Partials are fp32 [B, chunks, H] with chunks = ScaleShiftChunks(seq); the
// caller sums them over c, which keeps the result deterministic.
int64_t ScaleShiftChunks(int64_t batch, int64_t seq);
int ScaleShiftBackward(ElementType type, const void* dy, const void* a,
                       const void* scale, void* da, float* scale_partial,
                       float* shift_partial, float offset, int64_t batch,
                       int64_t seq, int64_t hidden, int64_t row_stride,
                       void* stream);

// The attention's q, k and v heads of qkv [B, T, heads, 3, hd] (per head
// q, k, v: HF GPT-NeoX's layout), each [B, T, heads, hd], with HF's rotary
// embedding on the first rot dims of q and k (rot even; 0: none). Strides
// in elements, the last dim contiguous everywhere; cos and sin contiguous
// [T, rot]. part_stride[j] are the b, t, h strides of q (j = 0), k, v.
struct QkvLayout {
  int64_t batch, seq, heads, head_dim, rot;
  int64_t qkv_stride[4];  // b, t, h, j
  int64_t part_stride[3][3];
};
// qkv -> parts (the forward).
int SplitQkvHeads(ElementType type, const void* qkv, const QkvLayout& layout,
                  const void* cos, const void* sin, void* const parts[3],
                  void* stream);
// The transpose: the gradients of q, k, v (through part_stride) -> the
// gradient of qkv (through qkv_stride), in one pass.
int JoinQkvHeadsGrad(ElementType type, const void* const grads[3],
                     const QkvLayout& layout, const void* cos, const void* sin,
                     void* qkv_grad, void* stream);

// Sums over the rows of a row-major [rows, cols] matrix into out [cols]
// (of type), accumulated in fp32: per chunk of rows into partial
// [ColumnSumChunks(rows), cols] (fp32, caller-allocated), then over the
// chunks in order, so the result does not depend on scheduling. cols a
// multiple of VectorWidth(type); in 16-byte aligned. With accumulate the
// sum is added to out's values (rounded once). A linear layer's bias
// gradient; LibTorch's reduction ran at about a third of the bandwidth.
int64_t ColumnSumChunks(int64_t rows);
int ColumnSum(ElementType type, const void* in, int64_t rows, int64_t cols,
              float* partial, void* out, bool accumulate, void* stream);
// ColumnSum's first stage alone: partial [ColumnSumChunks(rows), cols]
// gets (accumulate: adds) the chunks' sums, so that the sums of several
// calls of one shape collect in one partial that SumChunks finishes once.
int ColumnSumPartials(ElementType type, const void* in, int64_t rows,
                      int64_t cols, float* partial, bool accumulate,
                      void* stream);
// out[b, c] (+)= sum over k of partial[b, k, c] (fp32 [batch, chunks,
// cols]), in order, written as out_type: the second stage of ColumnSum, of
// LayerNormAffineGrad and of ScaleShiftBackward's sums.
int SumChunks(ElementType out_type, const float* partial, int64_t batch,
              int64_t chunks, int64_t cols, void* out, bool accumulate,
              void* stream);

// The gradients of a LayerNorm's weight and bias over the rows of dy and x
// (row-major [rows, cols] of type, 16-byte aligned, cols a multiple of
// VectorWidth(type)): weight_grad[c] (+)= sum over r of dy[r, c] * (x[r, c]
// - mean[r]) * rstd[r], bias_grad[c] (+)= sum of dy[r, c], with mean and
// rstd fp32 [rows] (native_layer_norm's). Two sums in one pass over dy and
// x, in chunks as ColumnSum (partial: fp32 [2, ColumnSumChunks(rows),
// cols]); one launch finishes both when bias_grad is weight_grad + cols.
// LibTorch's kernel for this ran at about 1 TB/s (15 us a call at 8 x 512
// x 1024 in bf16; this one 7 us).
int LayerNormAffineGrad(ElementType type, const void* dy, const void* x,
                        const float* mean, const float* rstd, int64_t rows,
                        int64_t cols, float* partial, void* weight_grad,
                        void* bias_grad, bool accumulate, void* stream);
// LayerNormAffineGrad's first stage alone, into partial [2,
// ColumnSumChunks(rows), cols] (accumulate: added to); and its second:
// partial[0] summed into first and partial[1] into second, in one launch
// where second is first + cols.
int LayerNormAffinePartials(ElementType type, const void* dy, const void* x,
                            const float* mean, const float* rstd, int64_t rows,
                            int64_t cols, float* partial, bool accumulate,
                            void* stream);
int SumChunkPairs(ElementType type, const float* partial, int64_t chunks,
                  int64_t cols, void* first, void* second, bool accumulate,
                  void* stream);

// An ODE solver's update y = x + d[b] * u over [B, per_batch] elements: x
// and y float32, u of `u_type`, d float32 [B]. per_batch a multiple of 4;
// x, y 16-byte and u 8-byte aligned (bf16; 16 for fp32).
int SolverUpdateForward(ElementType u_type, const float* x, const float* d,
                        const void* u, float* y, int64_t batch,
                        int64_t per_batch, void* stream);
// Its gradient with respect to u: du = d[b] * dy, rounded to u_type.
int SolverUpdateBackward(ElementType u_type, const float* dy, const float* d,
                         void* du, int64_t batch, int64_t per_batch,
                         void* stream);

// One AdamW step over n float32 elements (worker/model/adamw.h's rule):
// g = grad * (*grad_scale) (grad_scale may be null: 1), then
// param *= decay; m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
// param += step * m / (sqrt(v) * inv_sqrt_bc2 + eps), with step = -lr / bc1.
// grad is only read.
// one_minus_beta* are 1 - beta rounded once from double: 1.0f - 0.999f is
// off by 5e-5 relative, which the second moment would carry.
struct AdamWScalars {
  float decay, beta1, one_minus_beta1, beta2, one_minus_beta2, eps,
      inv_sqrt_bc2, step;
};
int AdamWStep(float* param, float* exp_avg, float* exp_avg_sq,
              const float* grad, const float* grad_scale, int64_t n,
              const AdamWScalars& scalars, void* stream);

}  // namespace fused_kernels
}  // namespace lft

#endif  // LFT_WORKER_KERNELS_FUSED_KERNELS_H_
