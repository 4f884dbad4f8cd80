// CUDA flash attention kernels (engine/flash_attention.h) for bf16 / f16 with head_dim 64 or 128,
// on the tensor cores through mma.sync.m16n8k16 (sm_80 and later), f32 accumulation.
//
// Fragment layouts (PTX ISA, mma.m16n8k16 with 16-bit A/B, f32 C; lane = 4·group + tig):
//   A 16×16 row-major, 4 regs of 2 elements: {row g, cols 2t,2t+1}, {row g+8, same},
//     {row g, cols 2t+8, 2t+9}, {row g+8, same};
//   B 16×8 ("col"), 2 regs: {k 2t,2t+1; n g}, {k 2t+8, 2t+9; n g};
//   C 16×8 f32: c0,c1 at row g, cols 2t,2t+1; c2,c3 at row g+8.
// The C tile of S = Q·Kᵀ over 16 keys is, element for element, the A operand of P·V over those
// 16 keys (two 8-column C tiles make one 16-wide A tile), so P never leaves registers.
//
// Forward (one CTA = 64 query rows of one (batch, head), 4 warps × 16 rows): Q fragments stay in
// registers; per 64-key tile K and V go to shared memory, S = Q·Kᵀ, mask, online softmax in the
// log2 domain (running max m and sum l per row; O rescaled by 2^(m_old − m_new)), O += P·V with P
// rounded to the activation dtype. Writes O = acc / l and lse = (m + log2 l)·ln 2.
// Backward: D = rowsum(dO ⊙ O) (one warp per row); dK/dV (one CTA = 64 keys of one kv head, loops
// over the g query heads and their visible 32-row query tiles: Sᵀ = K·Qᵀ, Pᵀ = 2^(Sᵀ·c − lse),
// dV += Pᵀ·dO, dPᵀ = V·dOᵀ, dSᵀ = Pᵀ ⊙ (dPᵀ − D), dK += dSᵀ·Q); dQ (one CTA = 64 query rows:
// per 32-key tile S, P, dP = dO·Vᵀ, dS, dQ += dS·K). Two backward kernels instead of one with
// atomics: S and dP are computed twice, no f32 atomics, deterministic results.
// Tiles of keys / queries that causality or the window hide entirely are skipped; masking is
// applied per element only on tiles that straddle an edge.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "engine/flash_attention.h"
#include "kernels/cuda/cuda_device.cuh"

namespace arq::cuda {

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// ---- the tensor-core step ---------------------------------------------------------------------

template <class T> struct Mma;
template <> struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], const uint32_t b[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);   // .x (lo) in the low half
    return *reinterpret_cast<const uint32_t*>(&v);
  }
};
template <> struct Mma<__half> {
  static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], const uint32_t b[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
};

// ---- shared-memory fragments (ldmatrix) and asynchronous tile copies (cp.async) -------------
// Shared tiles are row-major [rows][LD], LD = HD + 8 elements: rows 16-byte aligned, and the 8 row
// addresses of one ldmatrix phase fall in distinct banks (a row is 4 banks further than the last).

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
#endif
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t r[4], const void* p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
#endif
}

// A fragment: rows [r0, r0+16), cols [c0, c0+16). Lanes 0-15 address rows r0.. at c0 (matrices 0
// and 1: rows g and g+8), lanes 16-31 the same rows at c0 + 8 (matrices 2 and 3).
template <int LD, class T>
__device__ __forceinline__ void frag_a(uint32_t a[4], const T* sm, int r0, int c0, int lane) {
  ldsm_x4(a, sm + (r0 + (lane & 15)) * LD + c0 + (lane >> 4) * 8);
}
// B fragments of two 8-wide n tiles (n0 and n0 + 8) with B(k, n) = M[n0 + n][k0 + k]: the tile's
// rows are the n dimension (Kᵀ from K). Matrices: rows n0.. at k0, at k0 + 8, rows n0+8.. at k0,
// at k0 + 8 -> b0 = {m0, m1}, b1 = {m2, m3}.
template <int LD, class T>
__device__ __forceinline__ void frag_b_rows2(uint32_t b0[2], uint32_t b1[2], const T* sm, int n0, int k0, int lane) {
  uint32_t r[4];
  ldsm_x4(r, sm + (n0 + (lane & 7) + ((lane >> 4) << 3)) * LD + k0 + ((lane >> 3) & 1) * 8);
  b0[0] = r[0];
  b0[1] = r[1];
  b1[0] = r[2];
  b1[1] = r[3];
}
// B fragments of two n tiles with B(k, n) = M[k0 + k][n0 + n]: the tile's rows are the k dimension
// (V in P·V), loaded transposed. Matrices: rows k0.. and k0+8.. at n0, the same at n0 + 8.
template <int LD, class T>
__device__ __forceinline__ void frag_b_cols2(uint32_t b0[2], uint32_t b1[2], const T* sm, int k0, int n0, int lane) {
  uint32_t r[4];
  ldsm_x4_trans(r, sm + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + n0 + (lane >> 4) * 8);
  b0[0] = r[0];
  b0[1] = r[1];
  b1[0] = r[2];
  b1[1] = r[3];
}
// The A operand (16 rows × 16 columns) made of two adjacent 8-column C tiles c0 | c1.
template <class T>
__device__ __forceinline__ void c_to_a(uint32_t a[4], const float c0[4], const float c1[4]) {
  a[0] = Mma<T>::pack(c0[0], c0[1]);
  a[1] = Mma<T>::pack(c0[2], c0[3]);
  a[2] = Mma<T>::pack(c1[0], c1[1]);
  a[3] = Mma<T>::pack(c1[2], c1[3]);
}

// 16 bytes global -> shared without staging in registers; zeros when !valid (src-size 0).
__device__ __forceinline__ void cp_async16(void* sm, const void* gm, bool valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(sm));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(a), "l"(gm), "r"(valid ? 16 : 0));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
__device__ __forceinline__ void cp_async_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#endif
}

// Rows [r0, r0+R) of a [n, HD] matrix (row stride ld, unit column stride, 16-byte aligned rows)
// into shared [R][HD + 8] by cp.async (the caller commits and waits); rows at or past n are zero.
template <int R, int HD, class T>
__device__ __forceinline__ void load_tile_async(T* sm, const T* gm, int64_t ld, int r0, int n) {
  constexpr int kChunks = HD / 8;   // 16-byte chunks per row
  for (int c = threadIdx.x; c < R * kChunks; c += blockDim.x) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    const bool valid = r0 + r < n;
    cp_async16(sm + r * (HD + 8) + col, valid ? gm + static_cast<int64_t>(r0 + r) * ld + col : gm, valid);
  }
}

// Two values of adjacent columns to memory (4-byte aligned: even column, even row stride).
template <class T>
__device__ __forceinline__ void store2(T* p, float lo, float hi) {
  *reinterpret_cast<uint32_t*>(p) = Mma<T>::pack(lo, hi);
}

struct View4 {   // element (b, h, r, 0) = p + b·sb + h·sh + r·sr
  const void* p;
  int64_t sb, sh, sr;
};
struct OutView4 {
  void* p;
  int64_t sb, sh, sr;
};

struct FlashArgs {
  View4 q, k, v, o_in, dout;
  OutView4 o, dq, dk, dv;
  float* lse;          // [b, nh, s]
  float* dsum;         // [b, nh, s] D = rowsum(dO ⊙ O)
  const float* lse_in;
  int b, nh, nkv, g, s, skv;
  int64_t past, window;
  bool causal;
  float scale_log2;    // scaling·log2(e)
  float scaling;
};

template <class T>
__device__ __forceinline__ const T* rows_at(const View4& v, int b, int h) {
  return static_cast<const T*>(v.p) + b * v.sb + h * v.sh;
}
template <class T>
__device__ __forceinline__ T* rows_at(const OutView4& v, int b, int h) {
  return static_cast<T*>(v.p) + b * v.sb + h * v.sh;
}

// Is key j hidden from the query at absolute position pos?
__device__ __forceinline__ bool hidden(const FlashArgs& a, int64_t j, int64_t pos) {
  return j >= a.skv || (a.causal && (j > pos || (a.window > 0 && j <= pos - a.window)));
}

// The key tiles [kbeg, kend) that query rows [r0, r1) may see (kbeg rounded down to the tile).
template <int BN>
__device__ __forceinline__ void key_range(const FlashArgs& a, int r0, int r1, int& kbeg, int& kend) {
  const int64_t first = a.past + r0, last = a.past + r1 - 1;
  kend = a.causal ? static_cast<int>(min(static_cast<int64_t>(a.skv), last + 1)) : a.skv;
  kbeg = (a.causal && a.window > 0) ? static_cast<int>(max(int64_t{0}, first - a.window + 1)) : 0;
  kbeg = kbeg / BN * BN;
}

// K and V tiles of BN keys from key k0 into one buffer [K tile | V tile], as one cp.async group.
template <int BN, int HD, class T>
__device__ __forceinline__ void issue_kv(T* buf, const T* k, const T* v, const FlashArgs& a, int k0) {
  load_tile_async<BN, HD>(buf, k, a.k.sr, k0, a.skv);
  load_tile_async<BN, HD>(buf + BN * (HD + 8), v, a.v.sr, k0, a.skv);
  cp_async_commit();
}

// Whether the key tile [k0, k0 + BN) needs per-element masking for the query positions
// [first, last]: it runs past s_kv, or some pair is hidden by causality or the window.
template <int BN>
__device__ __forceinline__ bool key_tile_edge(const FlashArgs& a, int k0, int64_t first, int64_t last) {
  return k0 + BN > a.skv || (a.causal && (k0 + BN - 1 > first || (a.window > 0 && k0 <= last - a.window)));
}

// ---- forward --------------------------------------------------------------------------------

template <int HD, class T>
constexpr int fwd_smem_bytes() {   // K and V tiles, double-buffered
  return 2 * 2 * 64 * (HD + 8) * static_cast<int>(sizeof(T));
}

template <int HD, class T>
__global__ void __launch_bounds__(128) flash_fwd_kernel(FlashArgs a) {
  constexpr int BM = 64, BN = 64, LD = HD + 8, KT = HD / 16, NT = HD / 8, TILE = BN * LD;
  extern __shared__ __align__(16) unsigned char smem[];
  T* sbuf = reinterpret_cast<T*>(smem);   // [2 buffers][K tile | V tile]
  const int tile = gridDim.x - 1 - blockIdx.x;   // the longest (last, causal) query tiles first
  const int h = blockIdx.y, bi = blockIdx.z, hk = h / a.g;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, t = lane & 3;
  const int r0 = tile * BM;
  const T* k = rows_at<T>(a.k, bi, hk);
  const T* v = rows_at<T>(a.v, bi, hk);

  // The Q tile, through buffer 0, into registers.
  load_tile_async<BM, HD>(sbuf, rows_at<T>(a.q, bi, h), a.q.sr, r0, a.s);
  cp_async_commit();
  cp_async_wait_all();
  __syncthreads();
  uint32_t qf[KT][4];
#pragma unroll
  for (int kk = 0; kk < KT; ++kk) frag_a<LD>(qf[kk], sbuf, warp * 16, kk * 16, lane);
  __syncthreads();

  float acc[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  const int row_a = r0 + warp * 16 + (lane >> 2);        // this thread's rows: row_a, row_a + 8
  const int64_t pos[2] = {a.past + row_a, a.past + row_a + 8};
  const int r1 = min(r0 + BM, a.s);
  const int64_t first = a.past + r0, last = a.past + r1 - 1;
  int kbeg, kend;
  key_range<BN>(a, r0, r1, kbeg, kend);
  if (kbeg < kend) issue_kv<BN, HD>(sbuf, k, v, a, kbeg);
  for (int k0 = kbeg, buf = 0; k0 < kend; k0 += BN, buf ^= 1) {
    // This tile has landed, and every warp is done with the other buffer (the previous tile):
    // fetch the next tile into it while this one is computed.
    cp_async_wait_all();
    __syncthreads();
    if (k0 + BN < kend) issue_kv<BN, HD>(sbuf + (buf ^ 1) * 2 * TILE, k, v, a, k0 + BN);
    const T* sK = sbuf + buf * 2 * TILE;
    const T* sV = sK + TILE;
    float sc[BN / 8][4];
#pragma unroll
    for (int n = 0; n < BN / 8; ++n) sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KT; ++kk)
#pragma unroll
      for (int n = 0; n < BN / 8; n += 2) {
        uint32_t b0[2], b1[2];
        frag_b_rows2<LD>(b0, b1, sK, n * 8, kk * 16, lane);
        Mma<T>::run(sc[n], qf[kk], b0);
        Mma<T>::run(sc[n + 1], qf[kk], b1);
      }
    // Scale into the log2 domain, mask the tiles that straddle an edge, running row maxima.
    const bool edge = key_tile_edge<BN>(a, k0, first, last);
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int n = 0; n < BN / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = sc[n][e] * a.scale_log2;
        if (edge && hidden(a, k0 + n * 8 + 2 * t + (e & 1), pos[e >> 1])) x = -INFINITY;
        sc[n][e] = x;
        mx[e >> 1] = fmaxf(mx[e >> 1], x);
      }
    float base[2], alpha[2], rs[2] = {0.f, 0.f};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      base[r] = mx[r] == -INFINITY ? 0.f : mx[r];   // no visible key yet: every p is 0
      alpha[r] = exp2f(m[r] - base[r]);              // m = −inf: 0 (nothing accumulated)
      m[r] = mx[r];
    }
#pragma unroll
    for (int n = 0; n < BN / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(sc[n][e] - base[e >> 1]);
        sc[n][e] = p;
        rs[e >> 1] += p;
      }
    // l is kept per thread (the quad's partial sums share alpha) and summed over the quad at the end.
    l[0] = l[0] * alpha[0] + rs[0];
    l[1] = l[1] * alpha[1] + rs[1];
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      acc[n][0] *= alpha[0];
      acc[n][1] *= alpha[0];
      acc[n][2] *= alpha[1];
      acc[n][3] *= alpha[1];
    }
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      uint32_t pa[4];
      c_to_a<T>(pa, sc[2 * kk], sc[2 * kk + 1]);
#pragma unroll
      for (int n = 0; n < NT; n += 2) {
        uint32_t b0[2], b1[2];
        frag_b_cols2<LD>(b0, b1, sV, kk * 16, n * 8, lane);
        Mma<T>::run(acc[n], pa, b0);
        Mma<T>::run(acc[n + 1], pa, b1);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
  }
  T* o = rows_at<T>(a.o, bi, h);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row_a + 8 * r;
    if (row >= a.s) continue;
    const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
#pragma unroll
    for (int n = 0; n < NT; ++n) store2(o + row * a.o.sr + n * 8 + 2 * t, acc[n][2 * r] * inv, acc[n][2 * r + 1] * inv);
    if (t == 0) a.lse[(static_cast<int64_t>(bi) * a.nh + h) * a.s + row] = (m[r] + log2f(l[r])) * kLn2;
  }
}

// ---- backward: D = rowsum(dO ⊙ O) -------------------------------------------------------------

template <int HD, class T>
__global__ void __launch_bounds__(256) flash_dsum_kernel(FlashArgs a) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * 8 + threadIdx.x / 32;   // (b, h, i), i fastest
  const int lane = threadIdx.x & 31;
  if (row >= static_cast<int64_t>(a.b) * a.nh * a.s) return;
  const int i = static_cast<int>(row % a.s), h = static_cast<int>(row / a.s % a.nh), bi = static_cast<int>(row / a.s / a.nh);
  const T* o = rows_at<T>(a.o_in, bi, h) + i * a.o_in.sr;
  const T* d = rows_at<T>(a.dout, bi, h) + i * a.dout.sr;
  float s = 0.f;
#pragma unroll
  for (int c = lane; c < HD; c += 32) s += load(o[c]) * load(d[c]);
  s = warp_sum(s);
  if (lane == 0) a.dsum[row] = s;
}

// ---- backward: dK, dV -----------------------------------------------------------------------

template <int HD, class T>
constexpr int dkdv_smem_bytes() {   // K, V tiles; Q, dO tiles double-buffered; lse, D double-buffered
  return (2 * 64 + 2 * 2 * 32) * (HD + 8) * static_cast<int>(sizeof(T)) + 2 * 2 * 32 * static_cast<int>(sizeof(float));
}

template <int HD, class T>
__global__ void __launch_bounds__(128) flash_bwd_dkdv_kernel(FlashArgs a) {
  constexpr int BN = 64, BQ = 32, LD = HD + 8, KT = HD / 16, NT = HD / 8, QTILE = BQ * LD;
  extern __shared__ __align__(16) unsigned char smem[];
  T* sK = reinterpret_cast<T*>(smem);
  T* sV = sK + BN * LD;
  T* sQO = sV + BN * LD;                                        // [2 buffers][Q tile | dO tile]
  float* sLD = reinterpret_cast<float*>(sQO + 2 * 2 * QTILE);   // [2 buffers][lse·log2(e) | D] of the queries
  const int k0 = blockIdx.x * BN;   // causal: the first key tiles see the most queries, run first
  const int hk = blockIdx.y, bi = blockIdx.z;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  load_tile_async<BN, HD>(sK, rows_at<T>(a.k, bi, hk), a.k.sr, k0, a.skv);
  load_tile_async<BN, HD>(sV, rows_at<T>(a.v, bi, hk), a.v.sr, k0, a.skv);
  cp_async_commit();
  float dk[NT][4], dv[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[n][e] = dv[n][e] = 0.f;
  const int key[2] = {k0 + warp * 16 + g, k0 + warp * 16 + g + 8};   // this thread's key rows of Sᵀ
  // Queries that see some key of the tile: [qbeg, qend).
  int qbeg = 0, qend = a.s;
  if (a.causal) {
    qbeg = static_cast<int>(max(int64_t{0}, k0 - a.past)) / BQ * BQ;
    if (a.window > 0) qend = static_cast<int>(min(static_cast<int64_t>(a.s), k0 + BN - 1 + a.window - a.past));
  }
  const int steps_per_head = qend > qbeg ? (qend - qbeg + BQ - 1) / BQ : 0;
  const int steps = steps_per_head * a.g;   // (head, query tile) pairs, head-major
  const bool keys_edge = k0 + BN > a.skv;
  // Issue step j's Q, dO, lse and D into buffer j % 2 (lse and D by plain stores, seen after the
  // __syncthreads that precedes their use).
  auto issue = [&](int j) {
    const int h = hk * a.g + j / steps_per_head, q0 = qbeg + (j % steps_per_head) * BQ;
    T* dst = sQO + (j & 1) * 2 * QTILE;
    load_tile_async<BQ, HD>(dst, rows_at<T>(a.q, bi, h), a.q.sr, q0, a.s);
    load_tile_async<BQ, HD>(dst + QTILE, rows_at<T>(a.dout, bi, h), a.dout.sr, q0, a.s);
    cp_async_commit();
    if (threadIdx.x < BQ) {
      const int i = q0 + threadIdx.x;
      const int64_t row0 = (static_cast<int64_t>(bi) * a.nh + h) * a.s;
      float* ld = sLD + (j & 1) * 2 * BQ;
      ld[threadIdx.x] = i < a.s ? a.lse_in[row0 + i] * kLog2e : INFINITY;
      ld[BQ + threadIdx.x] = i < a.s ? a.dsum[row0 + i] : 0.f;
    }
  };
  if (steps > 0) issue(0);
  for (int j = 0; j < steps; ++j) {
    cp_async_wait_all();   // step j's tiles (and, at j = 0, K and V) have landed
    __syncthreads();       // ... for every thread; and every warp is done with buffer (j + 1) % 2
    if (j + 1 < steps) issue(j + 1);
    const int q0 = qbeg + (j % steps_per_head) * BQ;
    const T* sQ = sQO + (j & 1) * 2 * QTILE;
    const T* sO = sQ + QTILE;   // dO
    const float* sL = sLD + (j & 1) * 2 * BQ;
    const float* sD = sL + BQ;
    // Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ: this warp's 16 keys × 32 queries.
    float st[BQ / 8][4], dp[BQ / 8][4];
#pragma unroll
    for (int n = 0; n < BQ / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) st[n][e] = dp[n][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KT; ++kk) {
      uint32_t af[4], av[4];
      frag_a<LD>(af, sK, warp * 16, kk * 16, lane);
      frag_a<LD>(av, sV, warp * 16, kk * 16, lane);
#pragma unroll
      for (int n = 0; n < BQ / 8; n += 2) {
        uint32_t q0f[2], q1f[2], o0f[2], o1f[2];
        frag_b_rows2<LD>(q0f, q1f, sQ, n * 8, kk * 16, lane);
        frag_b_rows2<LD>(o0f, o1f, sO, n * 8, kk * 16, lane);
        Mma<T>::run(st[n], af, q0f);
        Mma<T>::run(st[n + 1], af, q1f);
        Mma<T>::run(dp[n], av, o0f);
        Mma<T>::run(dp[n + 1], av, o1f);
      }
    }
    const bool edge = keys_edge || q0 + BQ > a.s ||
                      (a.causal && (k0 + BN - 1 > a.past + q0 || (a.window > 0 && k0 <= a.past + q0 + BQ - 1 - a.window)));
#pragma unroll
    for (int n = 0; n < BQ / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int qi = n * 8 + 2 * t + (e & 1);
        float p = exp2f(st[n][e] * a.scale_log2 - sL[qi]);
        if (edge && (q0 + qi >= a.s || hidden(a, key[e >> 1], a.past + q0 + qi))) p = 0.f;
        st[n][e] = p;                              // Pᵀ
        dp[n][e] = p * (dp[n][e] - sD[qi]);        // dSᵀ
      }
#pragma unroll
    for (int kk = 0; kk < BQ / 16; ++kk) {
      uint32_t pa[4], sa[4];
      c_to_a<T>(pa, st[2 * kk], st[2 * kk + 1]);
      c_to_a<T>(sa, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
      for (int n = 0; n < NT; n += 2) {
        uint32_t o0f[2], o1f[2], q0f[2], q1f[2];
        frag_b_cols2<LD>(o0f, o1f, sO, kk * 16, n * 8, lane);
        frag_b_cols2<LD>(q0f, q1f, sQ, kk * 16, n * 8, lane);
        Mma<T>::run(dv[n], pa, o0f);       // dV += Pᵀ·dO
        Mma<T>::run(dv[n + 1], pa, o1f);
        Mma<T>::run(dk[n], sa, q0f);       // dK += dSᵀ·Q
        Mma<T>::run(dk[n + 1], sa, q1f);
      }
    }
  }
  cp_async_wait_all();   // no step: K and V were still in flight
  T* dko = rows_at<T>(a.dk, bi, hk);
  T* dvo = rows_at<T>(a.dv, bi, hk);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (key[r] >= a.skv) continue;
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      store2(dko + key[r] * a.dk.sr + n * 8 + 2 * t, dk[n][2 * r] * a.scaling, dk[n][2 * r + 1] * a.scaling);
      store2(dvo + key[r] * a.dv.sr + n * 8 + 2 * t, dv[n][2 * r], dv[n][2 * r + 1]);
    }
  }
}

// ---- backward: dQ ---------------------------------------------------------------------------

template <int HD, class T>
constexpr int dq_smem_bytes() {   // K and V tiles of 32 keys, double-buffered (= one 64-row tile ×2)
  return 2 * 2 * 32 * (HD + 8) * static_cast<int>(sizeof(T));
}

template <int HD, class T>
__global__ void __launch_bounds__(128) flash_bwd_dq_kernel(FlashArgs a) {
  constexpr int BM = 64, BN = 32, LD = HD + 8, KT = HD / 16, NT = HD / 8, TILE = BN * LD;
  extern __shared__ __align__(16) unsigned char smem[];
  T* sbuf = reinterpret_cast<T*>(smem);   // [2 buffers][K tile | V tile]; stages Q and dO first
  const int tile = gridDim.x - 1 - blockIdx.x;
  const int h = blockIdx.y, bi = blockIdx.z, hk = h / a.g;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, t = lane & 3;
  const int r0 = tile * BM;
  uint32_t qf[KT][4], of[KT][4];
  // Q and dO tiles (64 rows each: one buffer each) into registers.
  load_tile_async<BM, HD>(sbuf, rows_at<T>(a.q, bi, h), a.q.sr, r0, a.s);
  load_tile_async<BM, HD>(sbuf + 2 * TILE, rows_at<T>(a.dout, bi, h), a.dout.sr, r0, a.s);
  cp_async_commit();
  cp_async_wait_all();
  __syncthreads();
#pragma unroll
  for (int kk = 0; kk < KT; ++kk) {
    frag_a<LD>(qf[kk], sbuf, warp * 16, kk * 16, lane);
    frag_a<LD>(of[kk], sbuf + 2 * TILE, warp * 16, kk * 16, lane);
  }
  __syncthreads();
  const int row_a = r0 + warp * 16 + (lane >> 2);
  const int64_t row0 = (static_cast<int64_t>(bi) * a.nh + h) * a.s;
  float lse2[2], dr[2];
  int64_t pos[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row_a + 8 * r;
    lse2[r] = row < a.s ? a.lse_in[row0 + row] * kLog2e : INFINITY;   // rows past s: P = 0
    dr[r] = row < a.s ? a.dsum[row0 + row] : 0.f;
    pos[r] = a.past + row;
  }
  float dq[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.f;
  const int r1 = min(r0 + BM, a.s);
  const int64_t first = a.past + r0, last = a.past + r1 - 1;
  int kbeg, kend;
  key_range<BN>(a, r0, r1, kbeg, kend);
  const T* k = rows_at<T>(a.k, bi, hk);
  const T* v = rows_at<T>(a.v, bi, hk);
  if (kbeg < kend) issue_kv<BN, HD>(sbuf, k, v, a, kbeg);
  for (int k0 = kbeg, buf = 0; k0 < kend; k0 += BN, buf ^= 1) {
    cp_async_wait_all();
    __syncthreads();
    if (k0 + BN < kend) issue_kv<BN, HD>(sbuf + (buf ^ 1) * 2 * TILE, k, v, a, k0 + BN);
    const T* sK = sbuf + buf * 2 * TILE;
    const T* sV = sK + TILE;
    float sc[BN / 8][4], dp[BN / 8][4];
#pragma unroll
    for (int n = 0; n < BN / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) sc[n][e] = dp[n][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < KT; ++kk)
#pragma unroll
      for (int n = 0; n < BN / 8; n += 2) {
        uint32_t k0f[2], k1f[2], v0f[2], v1f[2];
        frag_b_rows2<LD>(k0f, k1f, sK, n * 8, kk * 16, lane);
        frag_b_rows2<LD>(v0f, v1f, sV, n * 8, kk * 16, lane);
        Mma<T>::run(sc[n], qf[kk], k0f);       // S = Q·Kᵀ
        Mma<T>::run(sc[n + 1], qf[kk], k1f);
        Mma<T>::run(dp[n], of[kk], v0f);       // dP = dO·Vᵀ
        Mma<T>::run(dp[n + 1], of[kk], v1f);
      }
    const bool edge = key_tile_edge<BN>(a, k0, first, last);
#pragma unroll
    for (int n = 0; n < BN / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float p = exp2f(sc[n][e] * a.scale_log2 - lse2[e >> 1]);
        if (edge && hidden(a, k0 + n * 8 + 2 * t + (e & 1), pos[e >> 1])) p = 0.f;
        sc[n][e] = p * (dp[n][e] - dr[e >> 1]);   // dS
      }
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      uint32_t sa[4];
      c_to_a<T>(sa, sc[2 * kk], sc[2 * kk + 1]);
#pragma unroll
      for (int n = 0; n < NT; n += 2) {
        uint32_t k0f[2], k1f[2];
        frag_b_cols2<LD>(k0f, k1f, sK, kk * 16, n * 8, lane);
        Mma<T>::run(dq[n], sa, k0f);       // dQ += dS·K
        Mma<T>::run(dq[n + 1], sa, k1f);
      }
    }
  }
  T* dqo = rows_at<T>(a.dq, bi, h);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row_a + 8 * r;
    if (row >= a.s) continue;
#pragma unroll
    for (int n = 0; n < NT; ++n)
      store2(dqo + row * a.dq.sr + n * 8 + 2 * t, dq[n][2 * r] * a.scaling, dq[n][2 * r + 1] * a.scaling);
  }
}

// ---- launchers ------------------------------------------------------------------------------

View4 view_of(const Tensor& t) { return {t.data_ptr(), t.stride(0), t.stride(1), t.stride(2)}; }
OutView4 out_view_of(Tensor& t) { return {t.data_ptr(), t.stride(0), t.stride(1), t.stride(2)}; }

FlashArgs args_of(const Tensor& q, const Tensor& k, const FlashAttentionParams& p) {
  FlashArgs a{};
  a.b = static_cast<int>(q.size(0));
  a.nh = static_cast<int>(q.size(1));
  a.s = static_cast<int>(q.size(2));
  a.nkv = static_cast<int>(k.size(1));
  a.skv = static_cast<int>(k.size(2));
  a.g = a.nh / a.nkv;
  a.past = k.size(2) - q.size(2);
  a.causal = p.causal;
  a.window = p.window;
  a.scaling = static_cast<float>(p.scaling);
  a.scale_log2 = static_cast<float>(p.scaling * 1.4426950408889634);
  ARQ_CHECK(q.size(0) <= 65535 && q.size(1) <= 65535 && q.size(2) < (int64_t{1} << 30) && k.size(2) < (int64_t{1} << 30),
            ShapeError, "[flash_attention] q ", q.str(), ", k ", k.str(), " exceed one launch's grid");
  return a;
}

int tiles(int n, int t) { return (n + t - 1) / t; }

// Dynamic shared memory beyond the default 48 KiB needs an opt-in per kernel; each launcher
// keeps the answer in a static of its own (once per process: ar-quant uses one device).
bool allow_smem(const void* kernel, int bytes) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  return true;
}

template <int HD, class T>
void forward_typed(const Tensor& q, const Tensor& k, const Tensor& v, const FlashAttentionParams& p, Tensor& o,
                   Tensor& lse) {
  FlashArgs a = args_of(q, k, p);
  a.q = view_of(q);
  a.k = view_of(k);
  a.v = view_of(v);
  a.o = out_view_of(o);
  a.lse = static_cast<float*>(lse.data_ptr());
  constexpr int kSmem = fwd_smem_bytes<HD, T>();
  static const bool smem_ok = allow_smem(reinterpret_cast<const void*>(flash_fwd_kernel<HD, T>), kSmem);
  (void)smem_ok;
  const dim3 grid(static_cast<unsigned>(tiles(a.s, 64)), static_cast<unsigned>(a.nh), static_cast<unsigned>(a.b));
  flash_fwd_kernel<HD, T><<<grid, 128, kSmem, stream_for(q.device())>>>(a);
  CUDA_CHECK_LAUNCH();
}

template <int HD, class T>
void backward_typed(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                    const Tensor& dout, const FlashAttentionParams& p, Tensor& dq, Tensor& dk, Tensor& dv) {
  FlashArgs a = args_of(q, k, p);
  a.q = view_of(q);
  a.k = view_of(k);
  a.v = view_of(v);
  a.o_in = view_of(o);
  a.dout = view_of(dout);
  a.dq = out_view_of(dq);
  a.dk = out_view_of(dk);
  a.dv = out_view_of(dv);
  a.lse_in = static_cast<const float*>(lse.data_ptr());
  Tensor dsum = Tensor::empty({q.size(0), q.size(1), q.size(2)}, DType::f32, q.device());
  a.dsum = static_cast<float*>(dsum.data_ptr());
  const cudaStream_t st = stream_for(q.device());
  const int64_t rows = static_cast<int64_t>(a.b) * a.nh * a.s;
  flash_dsum_kernel<HD, T><<<static_cast<unsigned>((rows + 7) / 8), 256, 0, st>>>(a);
  CUDA_CHECK_LAUNCH();
  constexpr int kSmemKV = dkdv_smem_bytes<HD, T>(), kSmemQ = dq_smem_bytes<HD, T>();
  static const bool smem_ok = allow_smem(reinterpret_cast<const void*>(flash_bwd_dkdv_kernel<HD, T>), kSmemKV) &&
                               allow_smem(reinterpret_cast<const void*>(flash_bwd_dq_kernel<HD, T>), kSmemQ);
  (void)smem_ok;
  const dim3 gkv(static_cast<unsigned>(tiles(a.skv, 64)), static_cast<unsigned>(a.nkv), static_cast<unsigned>(a.b));
  flash_bwd_dkdv_kernel<HD, T><<<gkv, 128, kSmemKV, st>>>(a);
  CUDA_CHECK_LAUNCH();
  const dim3 gq(static_cast<unsigned>(tiles(a.s, 64)), static_cast<unsigned>(a.nh), static_cast<unsigned>(a.b));
  flash_bwd_dq_kernel<HD, T><<<gq, 128, kSmemQ, st>>>(a);
  CUDA_CHECK_LAUNCH();
}

// fn(std::integral_constant<int, HD>, T{}) for the supported head_dim and dtype.
template <class F>
void dispatch_flash(const Tensor& q, const char* op, F&& fn) {
  const int64_t hd = q.size(3);
  auto by_type = [&](auto hd_tag) {
    if (q.dtype() == DType::bf16) fn(hd_tag, __nv_bfloat16{});
    else if (q.dtype() == DType::f16) fn(hd_tag, __half{});
    else throw UnsupportedError(cat("[", op, "] no CUDA kernel for ", q.str(), " (bf16 or f16)"));
  };
  if (hd == 64) by_type(std::integral_constant<int, 64>{});
  else if (hd == 128) by_type(std::integral_constant<int, 128>{});
  else throw UnsupportedError(cat("[", op, "] no CUDA kernel for head_dim ", hd, " (64 or 128): ", q.str()));
}

// The tensor-core instructions need sm_80 or later.
bool device_has_mma() {
  static const bool ok = [] {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return major >= 8;
  }();
  return ok;
}

class CudaFlashAttention final : public FlashAttentionKernels {
 public:
  bool supports(DType dt, int64_t head_dim) const override {
    return (dt == DType::bf16 || dt == DType::f16) && (head_dim == 64 || head_dim == 128) && device_has_mma();
  }
  void forward(const Tensor& q, const Tensor& k, const Tensor& v, const FlashAttentionParams& p, Tensor& o,
               Tensor& lse) override {
    dispatch_flash(q, "flash_attention_forward", [&](auto hd, auto tag) {
      forward_typed<decltype(hd)::value, decltype(tag)>(q, k, v, p, o, lse);
    });
  }
  void backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                const Tensor& dout, const FlashAttentionParams& p, Tensor& dq, Tensor& dk, Tensor& dv) override {
    dispatch_flash(q, "flash_attention_backward", [&](auto hd, auto tag) {
      backward_typed<decltype(hd)::value, decltype(tag)>(q, k, v, o, lse, dout, p, dq, dk, dv);
    });
  }
};

}  // namespace

}  // namespace arq::cuda

namespace arq {

FlashAttentionKernels& cuda_flash_attention_kernels() {
  static cuda::CudaFlashAttention k;
  return k;
}

}  // namespace arq
