// CUDA kernels behind fused_ops.h; launch contract in fused_kernels.h.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "worker/kernels/fused_kernels.h"

namespace lft {
namespace fused_kernels {
namespace {

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <typename T>
__device__ __forceinline__ T FromFloat(float v);
template <>
__device__ __forceinline__ float FromFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
// v rounded to T and back: the rounding LibTorch applies after each op.
template <typename T>
__device__ __forceinline__ float RoundTo(float v) {
  return ToFloat(FromFloat<T>(v));
}

// 16 bytes of T, loaded and stored as one vector.
template <typename T>
struct alignas(16) Pack {
  static constexpr int kN = 16 / sizeof(T);
  T v[kN];
};

template <typename T>
__global__ void ScaleShiftForwardKernel(const T* __restrict__ a,
                                        const T* __restrict__ scale,
                                        const T* __restrict__ shift,
                                        const T* __restrict__ base,
                                        T* __restrict__ y, float offset,
                                        int64_t seq, int64_t hidden,
                                        int64_t row_stride, int64_t packs) {
  constexpr int kN = Pack<T>::kN;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < packs; i += step) {
    const int64_t e = i * kN;
    const int64_t col = e % hidden;
    const int64_t vec = (e / (seq * hidden)) * row_stride + col;  // [b, col]
    const Pack<T> av = reinterpret_cast<const Pack<T>*>(a)[i];
    const Pack<T> sv = *reinterpret_cast<const Pack<T>*>(scale + vec);
    Pack<T> cv{}, rv{}, out;
    if (shift != nullptr) cv = *reinterpret_cast<const Pack<T>*>(shift + vec);
    if (base != nullptr) rv = reinterpret_cast<const Pack<T>*>(base)[i];
#pragma unroll
    for (int k = 0; k < kN; ++k) {
      float v = ToFloat(av.v[k]) * (offset + ToFloat(sv.v[k]));
      if (shift != nullptr) v += ToFloat(cv.v[k]);
      if (base != nullptr) v += ToFloat(rv.v[k]);
      out.v[k] = FromFloat<T>(v);
    }
    reinterpret_cast<Pack<T>*>(y)[i] = out;
  }
}

// One block per (chunk of rows, batch row b); threadIdx.x owns a vector of
// columns, threadIdx.y (blockDim.y lanes) every blockDim.y-th row of the
// chunk, so the sums over T stay in registers; lane 0 adds the other
// lanes' sums in lane order (shared memory) and writes one fp32 partial
// per column and chunk. One lane per block left the GPU with too few loads
// in flight: the backward ran at about 2 TB/s.
template <typename T>
__global__ void ScaleShiftBackwardKernel(
    const T* __restrict__ dy, const T* __restrict__ a,
    const T* __restrict__ scale, T* __restrict__ da,
    float* __restrict__ scale_partial, float* __restrict__ shift_partial,
    float offset, int64_t seq, int64_t hidden, int64_t row_stride,
    int64_t rows_per_chunk) {
  constexpr int kN = Pack<T>::kN;
  extern __shared__ float lane_sums[];  // [2][blockDim.y - 1][hidden]
  const int64_t col = static_cast<int64_t>(threadIdx.x) * kN;
  const int64_t chunk = blockIdx.x, chunks = gridDim.x, b = blockIdx.y;
  const int lanes = static_cast<int>(blockDim.y), lane = threadIdx.y;
  const int64_t t0 = chunk * rows_per_chunk;
  const int64_t t1 = t0 + rows_per_chunk < seq ? t0 + rows_per_chunk : seq;
  const Pack<T> sv =
      *reinterpret_cast<const Pack<T>*>(scale + b * row_stride + col);
  float s[kN], acc_scale[kN], acc_shift[kN];
#pragma unroll
  for (int k = 0; k < kN; ++k) {
    s[k] = offset + ToFloat(sv.v[k]);
    acc_scale[k] = 0.0f;
    acc_shift[k] = 0.0f;
  }
  // Unrolled so that several rows' loads are in flight per thread.
#pragma unroll 4
  for (int64_t t = t0 + lane; t < t1; t += lanes) {
    const int64_t off = (b * seq + t) * hidden + col;
    const Pack<T> g = *reinterpret_cast<const Pack<T>*>(dy + off);
    const Pack<T> av = *reinterpret_cast<const Pack<T>*>(a + off);
    Pack<T> out;
#pragma unroll
    for (int k = 0; k < kN; ++k) {
      const float gk = ToFloat(g.v[k]);
      acc_scale[k] += gk * ToFloat(av.v[k]);
      acc_shift[k] += gk;
      out.v[k] = FromFloat<T>(gk * s[k]);
    }
    *reinterpret_cast<Pack<T>*>(da + off) = out;
  }
  const int64_t lane_stride = static_cast<int64_t>(lanes - 1) * hidden;
  if (lane > 0) {
    float* mine = lane_sums + static_cast<int64_t>(lane - 1) * hidden + col;
#pragma unroll
    for (int k = 0; k < kN; ++k) {
      mine[k] = acc_scale[k];
      mine[lane_stride + k] = acc_shift[k];
    }
  }
  __syncthreads();
  if (lane > 0) return;
  for (int l = 1; l < lanes; ++l) {
    const float* theirs =
        lane_sums + static_cast<int64_t>(l - 1) * hidden + col;
#pragma unroll
    for (int k = 0; k < kN; ++k) {
      acc_scale[k] += theirs[k];
      acc_shift[k] += theirs[lane_stride + k];
    }
  }
  const int64_t p = (b * chunks + chunk) * hidden + col;
#pragma unroll
  for (int k = 0; k < kN; ++k) scale_partial[p + k] = acc_scale[k];
  if (shift_partial != nullptr) {
#pragma unroll
    for (int k = 0; k < kN; ++k) shift_partial[p + k] = acc_shift[k];
  }
}

// The q, k and v pointers, passed to a kernel by value.
template <typename P>
struct QkvParts {
  P p[3];
};

// n values of T (1 or one 16-byte vector), loaded and stored as one. Pack
// is not an alias of it: nvcc warns (#177) of a kN member that the kN = 1
// instantiations never read.
template <typename T, int kN>
struct alignas(sizeof(T) * kN) Values {
  T v[kN];
};

// q, k, v of qkv [B, T, heads, 3, hd] to their own [B, T, heads, hd]
// tensors (kJoin false), or their gradients back into one of qkv's shape
// (kJoin true: the transpose), with the rotary embedding on the first rot
// dims of q and k. One block per token, one thread per kN values of its
// heads; kN = 1 where the strides or rot / 2 do not allow whole vectors.
// The rounding follows LibTorch's x * cos + cat(-x2, x1) * sin in T: each
// product rounded to T, then their sum; __fmul_rn / __fadd_rn keep nvcc
// from contracting them into an FMA, which would change fp32 results.
template <typename T, int kN, bool kJoin>
__global__ void QkvHeadsKernel(const T* __restrict__ qkv_in,
                               QkvParts<const T*> parts_in, QkvLayout l,
                               const T* __restrict__ cos,
                               const T* __restrict__ sin,
                               T* __restrict__ qkv_out,
                               QkvParts<T*> parts_out) {
  using V = Values<T, kN>;
  const int row_values = static_cast<int>(l.head_dim / kN);
  const int token_values = static_cast<int>(l.heads) * 3 * row_values;
  const int rot = static_cast<int>(l.rot), half = rot / 2;
  const int64_t tokens = l.batch * l.seq;
  for (int64_t token = blockIdx.x; token < tokens; token += gridDim.x) {
    const int64_t b = token / l.seq, t = token % l.seq;
    for (int p = threadIdx.x; p < token_values; p += blockDim.x) {
      const int row = p / row_values, h = row / 3, j = row % 3;
      const int d0 = (p % row_values) * kN;
      const int64_t packed = b * l.qkv_stride[0] + t * l.qkv_stride[1] +
                             h * l.qkv_stride[2] + j * l.qkv_stride[3];
      const int64_t part = b * l.part_stride[j][0] + t * l.part_stride[j][1] +
                           h * l.part_stride[j][2];
      const T* x = kJoin ? parts_in.p[j] + part : qkv_in + packed;
      T* y = kJoin ? qkv_out + packed : parts_out.p[j] + part;
      const V xv = *reinterpret_cast<const V*>(x + d0);
      if (j == 2 || d0 >= rot) {
        *reinterpret_cast<V*>(y + d0) = xv;
        continue;
      }
      const bool first = d0 < half;
      const int partner = first ? d0 + half : d0 - half;
      const V pv = *reinterpret_cast<const V*>(x + partner);
      const V cv = *reinterpret_cast<const V*>(cos + t * rot + d0);
      const V sv = *reinterpret_cast<const V*>(sin + t * rot + partner);
      // Forward: the partner enters negated in the first half. The
      // transpose swaps the sign (cos and sin are equal at d and partner).
      const bool negate = first != kJoin;
      V o;
#pragma unroll
      for (int k = 0; k < kN; ++k) {
        const float main =
            RoundTo<T>(__fmul_rn(ToFloat(xv.v[k]), ToFloat(cv.v[k])));
        const float other =
            RoundTo<T>(__fmul_rn(ToFloat(pv.v[k]), ToFloat(sv.v[k])));
        o.v[k] = FromFloat<T>(__fadd_rn(main, negate ? -other : other));
      }
      *reinterpret_cast<V*>(y + d0) = o;
    }
  }
}

// One element of AdamWStep; the operations of adamw.cc's unfused update in
// its order.
__device__ __forceinline__ void AdamWElement(float& p, float& m, float& v,
                                             float g, const AdamWScalars& s) {
  p *= s.decay;
  m = m * s.beta1 + s.one_minus_beta1 * g;
  v = v * s.beta2 + s.one_minus_beta2 * g * g;
  p += s.step * (m / (sqrtf(v) * s.inv_sqrt_bc2 + s.eps));
}

// vec4: the buffers are 16-byte aligned and read as float4 for the first
// n / 4 * 4 elements; the rest (and everything when !vec4) one by one.
__global__ void AdamWStepKernel(float* __restrict__ param,
                                float* __restrict__ exp_avg,
                                float* __restrict__ exp_avg_sq,
                                const float* __restrict__ grad,
                                const float* __restrict__ grad_scale, int64_t n,
                                AdamWScalars s, bool vec4) {
  const float scale = grad_scale != nullptr ? *grad_scale : 1.0f;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first =
      static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t packs = vec4 ? n / 4 : 0;
  for (int64_t i = first; i < packs; i += stride) {
    float4 p = reinterpret_cast<float4*>(param)[i];
    float4 m = reinterpret_cast<float4*>(exp_avg)[i];
    float4 v = reinterpret_cast<float4*>(exp_avg_sq)[i];
    const float4 g = reinterpret_cast<const float4*>(grad)[i];
    AdamWElement(p.x, m.x, v.x, g.x * scale, s);
    AdamWElement(p.y, m.y, v.y, g.y * scale, s);
    AdamWElement(p.z, m.z, v.z, g.z * scale, s);
    AdamWElement(p.w, m.w, v.w, g.w * scale, s);
    reinterpret_cast<float4*>(param)[i] = p;
    reinterpret_cast<float4*>(exp_avg)[i] = m;
    reinterpret_cast<float4*>(exp_avg_sq)[i] = v;
  }
  for (int64_t i = packs * 4 + first; i < n; i += stride) {
    AdamWElement(param[i], exp_avg[i], exp_avg_sq[i], grad[i] * scale, s);
  }
}

// Four values of T: one 16-byte (fp32) or 8-byte (bf16) access.
template <typename T>
struct alignas(4 * sizeof(T)) Quad {
  T v[4];
};

template <typename T>
__global__ void SolverUpdateForwardKernel(const float* __restrict__ x,
                                          const float* __restrict__ d,
                                          const T* __restrict__ u,
                                          float* __restrict__ y,
                                          int64_t per_batch, int64_t quads) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < quads; i += stride) {
    const float db = d[i * 4 / per_batch];
    const float4 xv = reinterpret_cast<const float4*>(x)[i];
    const Quad<T> uv = reinterpret_cast<const Quad<T>*>(u)[i];
    float4 out;
    out.x = xv.x + db * ToFloat(uv.v[0]);
    out.y = xv.y + db * ToFloat(uv.v[1]);
    out.z = xv.z + db * ToFloat(uv.v[2]);
    out.w = xv.w + db * ToFloat(uv.v[3]);
    reinterpret_cast<float4*>(y)[i] = out;
  }
}

template <typename T>
__global__ void SolverUpdateBackwardKernel(const float* __restrict__ dy,
                                           const float* __restrict__ d,
                                           T* __restrict__ du,
                                           int64_t per_batch, int64_t quads) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < quads; i += stride) {
    const float db = d[i * 4 / per_batch];
    const float4 g = reinterpret_cast<const float4*>(dy)[i];
    Quad<T> out;
    out.v[0] = FromFloat<T>(db * g.x);
    out.v[1] = FromFloat<T>(db * g.y);
    out.v[2] = FromFloat<T>(db * g.z);
    out.v[3] = FromFloat<T>(db * g.w);
    reinterpret_cast<Quad<T>*>(du)[i] = out;
  }
}

// out[0, kN) = v (accumulate: += v) in whole float4s (kN a multiple of 4,
// out 16-byte aligned), every old value loaded before any store: one
// scalar read-modify-write after another waited on memory in turn (the
// LayerNorm partials took twice as long).
template <int kN>
__device__ __forceinline__ void StorePartials(float* __restrict__ out,
                                              const float (&v)[kN],
                                              bool accumulate) {
  float4* o = reinterpret_cast<float4*>(out);
  float4 old[kN / 4];
#pragma unroll
  for (int i = 0; i < kN / 4; ++i) {
    old[i] = accumulate ? o[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
#pragma unroll
  for (int i = 0; i < kN / 4; ++i) {
    o[i] = make_float4(old[i].x + v[4 * i], old[i].y + v[4 * i + 1],
                       old[i].z + v[4 * i + 2], old[i].w + v[4 * i + 3]);
  }
}

constexpr int kColumnSumLanes = 8;  // row lanes per block (threadIdx.y)
constexpr int kColumnSumRows = 32;  // rows per chunk (block)

// Block (32, kColumnSumLanes): threadIdx.x owns a 16-byte vector of
// columns, threadIdx.y every kColumnSumLanes-th row of the chunk; the lanes'
// sums are added in lane order through shared memory, and the chunk's sums
// go to partial[i, chunk] (accumulate: are added there). One sum, of in,
// or with kLayerNorm LayerNormAffineGrad's two, with in = dy:
// partial[0] of dy * (x - mean) * rstd, partial[1] of dy.
template <typename T, bool kLayerNorm>
__global__ void ColumnSumPartialKernel(
    const T* __restrict__ in, const T* __restrict__ x,
    const float* __restrict__ mean, const float* __restrict__ rstd,
    int64_t rows, int64_t cols, bool accumulate, float* __restrict__ partial) {
  constexpr int kN = Pack<T>::kN;
  constexpr int kSums = kLayerNorm ? 2 : 1;
  constexpr int kUnroll = kLayerNorm ? 2 : 4;
  __shared__ float lanes[kSums][kColumnSumLanes][32 * kN];
  const int64_t col =
      (static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x) * kN;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kColumnSumRows;
  const int64_t r1 = r0 + kColumnSumRows < rows ? r0 + kColumnSumRows : rows;
  float acc[kSums][kN];
#pragma unroll
  for (int i = 0; i < kSums; ++i) {
#pragma unroll
    for (int k = 0; k < kN; ++k) acc[i][k] = 0.0f;
  }
  if (col < cols) {
#pragma unroll(kUnroll)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kColumnSumLanes) {
      const Pack<T> d = *reinterpret_cast<const Pack<T>*>(in + r * cols + col);
      if constexpr (kLayerNorm) {
        const Pack<T> v = *reinterpret_cast<const Pack<T>*>(x + r * cols + col);
        const float m = mean[r], s = rstd[r];
#pragma unroll
        for (int k = 0; k < kN; ++k) {
          const float g = ToFloat(d.v[k]);
          acc[0][k] += g * ((ToFloat(v.v[k]) - m) * s);
          acc[1][k] += g;
        }
      } else {
#pragma unroll
        for (int k = 0; k < kN; ++k) acc[0][k] += ToFloat(d.v[k]);
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kSums; ++i) {
#pragma unroll
    for (int k = 0; k < kN; ++k)
      lanes[i][threadIdx.y][threadIdx.x * kN + k] = acc[i][k];
  }
  __syncthreads();
  if (threadIdx.y != 0 || col >= cols) return;
#pragma unroll
  for (int i = 0; i < kSums; ++i) {
    float sum[kN];
#pragma unroll
    for (int k = 0; k < kN; ++k) {
      sum[k] = 0.0f;
#pragma unroll
      for (int l = 0; l < kColumnSumLanes; ++l)
        sum[k] += lanes[i][l][threadIdx.x * kN + k];
    }
    StorePartials<kN>(
        partial + (i * static_cast<int64_t>(gridDim.y) + blockIdx.y) * cols +
            col,
        sum, accumulate);
  }
}

// Block (32, kColumnSumLanes): threadIdx.x a column of one b (32 adjacent
// columns per block), threadIdx.y every kColumnSumLanes-th chunk; the
// lanes' sums are added in lane order. A thread per column walking all
// chunks left most of the GPU idle on a chain of dependent loads.
template <typename T>
__global__ void SumChunksKernel(const float* __restrict__ partial,
                                int64_t batch, int64_t chunks, int64_t cols,
                                bool accumulate, T* __restrict__ out) {
  __shared__ float lanes[kColumnSumLanes][32];
  const int64_t i =
      static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;  // b * cols + c
  const bool valid = i < batch * cols;
  float sum = 0.0f;
  if (valid) {
    const int64_t b = i / cols, c = i % cols;
    const float* p = partial + b * chunks * cols + c;
#pragma unroll 4
    for (int64_t k = threadIdx.y; k < chunks; k += kColumnSumLanes)
      sum += p[k * cols];
  }
  lanes[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y != 0 || !valid) return;
  float total = 0.0f;
#pragma unroll
  for (int l = 0; l < kColumnSumLanes; ++l) total += lanes[l][threadIdx.x];
  out[i] = FromFloat<T>(accumulate ? ToFloat(out[i]) + total : total);
}

bool Aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

int64_t GridFor(int64_t n, int threads) {
  return std::max<int64_t>(
      1, std::min<int64_t>((n + threads - 1) / threads, int64_t{1} << 20));
}

int64_t RowsPerChunk(int64_t batch, int64_t seq) {
  // About 1024 blocks over the whole tensor where that gives a block 16 rows
  // or more; at least 16 (fewer rows per block when seq is shorter). With 4
  // rows per block (8 x 512 before) a thread had little in flight and the
  // fp32 partials [B, chunks, H] were as large as the bf16 input; the
  // backward ran at about half the memory bandwidth.
  return std::max<int64_t>(
      1, std::min<int64_t>(
             seq, std::max<int64_t>(
                      16, std::min<int64_t>(64, (batch * seq + 1023) / 1024))));
}

template <typename T>
int LaunchScaleShiftForward(const void* a, const void* scale, const void* shift,
                            const void* base, void* y, float offset,
                            int64_t batch, int64_t seq, int64_t hidden,
                            int64_t row_stride, cudaStream_t stream) {
  const int64_t packs = batch * seq * hidden / Pack<T>::kN;
  if (packs == 0) return 0;
  constexpr int kThreads = 256;
  ScaleShiftForwardKernel<T><<<GridFor(packs, kThreads), kThreads, 0, stream>>>(
      static_cast<const T*>(a), static_cast<const T*>(scale),
      static_cast<const T*>(shift), static_cast<const T*>(base),
      static_cast<T*>(y), offset, seq, hidden, row_stride, packs);
  return static_cast<int>(cudaGetLastError());
}

template <typename T>
int LaunchScaleShiftBackward(const void* dy, const void* a, const void* scale,
                             void* da, float* scale_partial,
                             float* shift_partial, float offset, int64_t batch,
                             int64_t seq, int64_t hidden, int64_t row_stride,
                             cudaStream_t stream) {
  if (batch * seq * hidden == 0) return 0;
  const int64_t rows = RowsPerChunk(batch, seq);
  const dim3 grid(static_cast<unsigned>((seq + rows - 1) / rows),
                  static_cast<unsigned>(batch));
  const int64_t vectors = hidden / Pack<T>::kN;
  // Row lanes: up to 4, within 1024 threads and 48 KiB of lane sums.
  int64_t lanes = std::min<int64_t>(4, std::max<int64_t>(1, 1024 / vectors));
  while (lanes > 1 &&
         (lanes - 1) * hidden * 2 * static_cast<int64_t>(sizeof(float)) >
             48 * 1024) {
    --lanes;
  }
  const size_t shared =
      static_cast<size_t>((lanes - 1) * hidden * 2) * sizeof(float);
  const dim3 threads(static_cast<unsigned>(vectors),
                     static_cast<unsigned>(lanes));
  ScaleShiftBackwardKernel<T><<<grid, threads, shared, stream>>>(
      static_cast<const T*>(dy), static_cast<const T*>(a),
      static_cast<const T*>(scale), static_cast<T*>(da), scale_partial,
      shift_partial, offset, seq, hidden, row_stride, rows);
  return static_cast<int>(cudaGetLastError());
}

// Whole 16-byte vectors where every stride, head_dim and rot / 2 are
// multiples of one and the pointers are aligned; single values otherwise.
template <typename T>
bool VectorsFit(const QkvLayout& l, const void* qkv, const void* const* parts,
                const void* cos, const void* sin) {
  constexpr int64_t kN = Pack<T>::kN;
  bool fit = l.head_dim % kN == 0 && (l.rot / 2) % kN == 0 && Aligned16(qkv) &&
             (l.rot == 0 || (Aligned16(cos) && Aligned16(sin)));
  for (int i = 0; i < 4; ++i) fit = fit && l.qkv_stride[i] % kN == 0;
  for (int j = 0; j < 3; ++j) {
    fit = fit && Aligned16(parts[j]);
    for (int i = 0; i < 3; ++i) fit = fit && l.part_stride[j][i] % kN == 0;
  }
  return fit;
}

template <typename T, bool kJoin>
int LaunchQkvHeads(const void* qkv, const void* const* parts,
                   const QkvLayout& l, const void* cos, const void* sin,
                   cudaStream_t stream) {
  const int64_t tokens = l.batch * l.seq;
  if (tokens == 0 || l.heads == 0 || l.head_dim == 0) return 0;
  constexpr int kN = Pack<T>::kN;
  const bool vectors = VectorsFit<T>(l, qkv, parts, cos, sin);
  const int64_t token_values = l.heads * 3 * l.head_dim / (vectors ? kN : 1);
  const int threads =
      static_cast<int>(std::min<int64_t>(512, (token_values + 31) / 32 * 32));
  const auto blocks =
      static_cast<unsigned>(std::min<int64_t>(tokens, int64_t{1} << 20));
  QkvParts<const T*> in{};
  QkvParts<T*> out{};
  for (int j = 0; j < 3; ++j) {
    in.p[j] = static_cast<const T*>(parts[j]);
    out.p[j] = static_cast<T*>(const_cast<void*>(parts[j]));
  }
  const T* qkv_in = static_cast<const T*>(qkv);
  T* qkv_out = static_cast<T*>(const_cast<void*>(qkv));
  const T* c = static_cast<const T*>(cos);
  const T* s = static_cast<const T*>(sin);
  if (vectors) {
    QkvHeadsKernel<T, kN, kJoin>
        <<<blocks, threads, 0, stream>>>(qkv_in, in, l, c, s, qkv_out, out);
  } else {
    QkvHeadsKernel<T, 1, kJoin>
        <<<blocks, threads, 0, stream>>>(qkv_in, in, l, c, s, qkv_out, out);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int ScaleShiftForward(ElementType type, const void* a, const void* scale,
                      const void* shift, const void* base, void* y,
                      float offset, int64_t batch, int64_t seq, int64_t hidden,
                      int64_t row_stride, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  return type == ElementType::kBFloat16
             ? LaunchScaleShiftForward<__nv_bfloat16>(a, scale, shift, base, y,
                                                      offset, batch, seq,
                                                      hidden, row_stride, s)
             : LaunchScaleShiftForward<float>(a, scale, shift, base, y, offset,
                                              batch, seq, hidden, row_stride,
                                              s);
}

int64_t ScaleShiftChunks(int64_t batch, int64_t seq) {
  const int64_t rows = RowsPerChunk(batch, seq);
  return (seq + rows - 1) / rows;
}

int ScaleShiftBackward(ElementType type, const void* dy, const void* a,
                       const void* scale, void* da, float* scale_partial,
                       float* shift_partial, float offset, int64_t batch,
                       int64_t seq, int64_t hidden, int64_t row_stride,
                       void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  return type == ElementType::kBFloat16
             ? LaunchScaleShiftBackward<__nv_bfloat16>(
                   dy, a, scale, da, scale_partial, shift_partial, offset,
                   batch, seq, hidden, row_stride, s)
             : LaunchScaleShiftBackward<float>(dy, a, scale, da, scale_partial,
                                               shift_partial, offset, batch,
                                               seq, hidden, row_stride, s);
}

int SplitQkvHeads(ElementType type, const void* qkv, const QkvLayout& layout,
                  const void* cos, const void* sin, void* const parts[3],
                  void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  const void* const* p = const_cast<const void* const*>(parts);
  return type == ElementType::kBFloat16
             ? LaunchQkvHeads<__nv_bfloat16, false>(qkv, p, layout, cos, sin, s)
             : LaunchQkvHeads<float, false>(qkv, p, layout, cos, sin, s);
}

int JoinQkvHeadsGrad(ElementType type, const void* const grads[3],
                     const QkvLayout& layout, const void* cos, const void* sin,
                     void* qkv_grad, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  return type == ElementType::kBFloat16
             ? LaunchQkvHeads<__nv_bfloat16, true>(qkv_grad, grads, layout, cos,
                                                   sin, s)
             : LaunchQkvHeads<float, true>(qkv_grad, grads, layout, cos, sin,
                                           s);
}

int SolverUpdateForward(ElementType u_type, const float* x, const float* d,
                        const void* u, float* y, int64_t batch,
                        int64_t per_batch, void* stream) {
  const int64_t quads = batch * per_batch / 4;
  if (quads == 0) return 0;
  constexpr int kThreads = 256;
  auto s = static_cast<cudaStream_t>(stream);
  if (u_type == ElementType::kBFloat16) {
    SolverUpdateForwardKernel<__nv_bfloat16>
        <<<GridFor(quads, kThreads), kThreads, 0, s>>>(
            x, d, static_cast<const __nv_bfloat16*>(u), y, per_batch, quads);
  } else {
    SolverUpdateForwardKernel<float>
        <<<GridFor(quads, kThreads), kThreads, 0, s>>>(
            x, d, static_cast<const float*>(u), y, per_batch, quads);
  }
  return static_cast<int>(cudaGetLastError());
}

int SolverUpdateBackward(ElementType u_type, const float* dy, const float* d,
                         void* du, int64_t batch, int64_t per_batch,
                         void* stream) {
  const int64_t quads = batch * per_batch / 4;
  if (quads == 0) return 0;
  constexpr int kThreads = 256;
  auto s = static_cast<cudaStream_t>(stream);
  if (u_type == ElementType::kBFloat16) {
    SolverUpdateBackwardKernel<__nv_bfloat16>
        <<<GridFor(quads, kThreads), kThreads, 0, s>>>(
            dy, d, static_cast<__nv_bfloat16*>(du), per_batch, quads);
  } else {
    SolverUpdateBackwardKernel<float>
        <<<GridFor(quads, kThreads), kThreads, 0, s>>>(
            dy, d, static_cast<float*>(du), per_batch, quads);
  }
  return static_cast<int>(cudaGetLastError());
}

int64_t ColumnSumChunks(int64_t rows) {
  return (rows + kColumnSumRows - 1) / kColumnSumRows;
}

int SumChunks(ElementType out_type, const float* partial, int64_t batch,
              int64_t chunks, int64_t cols, void* out, bool accumulate,
              void* stream) {
  const int64_t n = batch * cols;
  if (n == 0) return 0;
  const auto blocks = static_cast<unsigned>((n + 31) / 32);
  const dim3 threads(32, kColumnSumLanes);
  auto s = static_cast<cudaStream_t>(stream);
  if (out_type == ElementType::kBFloat16) {
    SumChunksKernel<__nv_bfloat16>
        <<<blocks, threads, 0, s>>>(partial, batch, chunks, cols, accumulate,
                                    static_cast<__nv_bfloat16*>(out));
  } else {
    SumChunksKernel<float><<<blocks, threads, 0, s>>>(
        partial, batch, chunks, cols, accumulate, static_cast<float*>(out));
  }
  return static_cast<int>(cudaGetLastError());
}

template <typename T, bool kLayerNorm>
void LaunchColumnSumPartials(const void* in, const void* x, const float* mean,
                             const float* rstd, int64_t rows, int64_t cols,
                             float* partial, bool accumulate,
                             cudaStream_t stream) {
  const int64_t col_blocks = (cols / Pack<T>::kN + 31) / 32;
  const dim3 grid(static_cast<unsigned>(col_blocks),
                  static_cast<unsigned>(ColumnSumChunks(rows)));
  ColumnSumPartialKernel<T, kLayerNorm>
      <<<grid, dim3(32, kColumnSumLanes), 0, stream>>>(
          static_cast<const T*>(in), static_cast<const T*>(x), mean, rstd, rows,
          cols, accumulate, partial);
}

// ColumnSumPartials and LayerNormAffinePartials: the type's launch.
template <bool kLayerNorm>
int ColumnPartials(ElementType type, const void* in, const void* x,
                   const float* mean, const float* rstd, int64_t rows,
                   int64_t cols, float* partial, bool accumulate,
                   void* stream) {
  if (rows == 0 || cols == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  if (type == ElementType::kBFloat16) {
    LaunchColumnSumPartials<__nv_bfloat16, kLayerNorm>(
        in, x, mean, rstd, rows, cols, partial, accumulate, s);
  } else {
    LaunchColumnSumPartials<float, kLayerNorm>(in, x, mean, rstd, rows, cols,
                                               partial, accumulate, s);
  }
  return static_cast<int>(cudaGetLastError());
}

int ColumnSumPartials(ElementType type, const void* in, int64_t rows,
                      int64_t cols, float* partial, bool accumulate,
                      void* stream) {
  return ColumnPartials<false>(type, in, nullptr, nullptr, nullptr, rows, cols,
                               partial, accumulate, stream);
}

int ColumnSum(ElementType type, const void* in, int64_t rows, int64_t cols,
              float* partial, void* out, bool accumulate, void* stream) {
  if (cols == 0) return 0;
  // No rows: SumChunks over no chunks writes zeros (or leaves out as is).
  const int code =
      ColumnSumPartials(type, in, rows, cols, partial, false, stream);
  if (code != 0) return code;
  return SumChunks(type, partial, 1, ColumnSumChunks(rows), cols, out,
                   accumulate, stream);
}

int LayerNormAffinePartials(ElementType type, const void* dy, const void* x,
                            const float* mean, const float* rstd, int64_t rows,
                            int64_t cols, float* partial, bool accumulate,
                            void* stream) {
  return ColumnPartials<true>(type, dy, x, mean, rstd, rows, cols, partial,
                              accumulate, stream);
}

int SumChunkPairs(ElementType type, const float* partial, int64_t chunks,
                  int64_t cols, void* first, void* second, bool accumulate,
                  void* stream) {
  const int64_t elem = type == ElementType::kBFloat16 ? 2 : 4;
  if (static_cast<char*>(second) == static_cast<char*>(first) + cols * elem) {
    return SumChunks(type, partial, 2, chunks, cols, first, accumulate, stream);
  }
  const int code =
      SumChunks(type, partial, 1, chunks, cols, first, accumulate, stream);
  if (code != 0) return code;
  return SumChunks(type, partial + chunks * cols, 1, chunks, cols, second,
                   accumulate, stream);
}

int LayerNormAffineGrad(ElementType type, const void* dy, const void* x,
                        const float* mean, const float* rstd, int64_t rows,
                        int64_t cols, float* partial, void* weight_grad,
                        void* bias_grad, bool accumulate, void* stream) {
  if (cols == 0) return 0;
  const int code = LayerNormAffinePartials(type, dy, x, mean, rstd, rows, cols,
                                           partial, false, stream);
  if (code != 0) return code;
  return SumChunkPairs(type, partial, ColumnSumChunks(rows), cols, weight_grad,
                       bias_grad, accumulate, stream);
}

int AdamWStep(float* param, float* exp_avg, float* exp_avg_sq,
              const float* grad, const float* grad_scale, int64_t n,
              const AdamWScalars& scalars, void* stream) {
  if (n == 0) return 0;
  const bool vec4 = Aligned16(param) && Aligned16(exp_avg) &&
                    Aligned16(exp_avg_sq) && Aligned16(grad);
  constexpr int kThreads = 256;
  AdamWStepKernel<<<GridFor(vec4 ? (n + 3) / 4 : n, kThreads), kThreads, 0,
                    static_cast<cudaStream_t>(stream)>>>(
      param, exp_avg, exp_avg_sq, grad, grad_scale, n, scalars, vec4);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace fused_kernels
}  // namespace lft
