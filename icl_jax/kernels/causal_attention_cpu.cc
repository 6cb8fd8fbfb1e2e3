// Causal softmax attention for XLA:CPU, forward and backward, one (prompt, head) at a time in
// cache: the FlashAttention recipe (Dao et al. 2022) at the sizes of in-context learning,
// where a head's whole T×T weight matrix fits in L1/L2 and needs no tiling over keys.
//
// Legend: B prompts, T tokens, H heads, F head width (a multiple of 16), s the query stride
// (query i sits at token s·i and sees keys j <= s·i; Tq = T / s queries), Tp = T rounded up
// to 16 (one row of weights is Tp/16 vectors).
// It reads q, k, v where the fused projection put them, qkv_BxTx3xHxF, and writes the output
// as out_BxTqxHxF and the gradient as dqkv_BxTx3xHxF: no heads-major copy is ever made.
//
// Forward saves each query's log-sum-exp alone; the backward pass recomputes the weights from
// it, so no B×H×Tq×T tensor ever reaches memory. Key blocks entirely above the causal
// diagonal are skipped. Work is spread over XLA's intra-op thread pool in chunks that
// whichever thread is free claims; the calling thread never waits for a helper that has not
// started (two such calls waiting on each other's queued helpers would deadlock a 2-thread
// pool).
//
// Built on first use by icl_jax/kernels/build.py with the host's C++ compiler
// (-O3 -march=native); GCC/Clang vector extensions give 16-float vectors on any x86/ARM
// target.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu_common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using icl_jax::exp_nonpositive;
using icl_jax::load;
using icl_jax::store;
using icl_jax::vec;
using icl_jax::W;
constexpr int64_t R = 8;  // rows per register block

inline float hsum(vec v) {
  float s = 0.0f;
  for (int64_t l = 0; l < W; ++l) s += v[l];
  return s;
}
inline float hmax(vec v) {
  float m = v[0];
  for (int64_t l = 1; l < W; ++l) m = std::max(m, v[l]);
  return m;
}

struct Shape {
  int64_t b, t, h, f, s, tq, tp;
  float scale;                                                          // of the logits q·k
  int64_t visible(int64_t i) const { return std::min(t, s * i + 1); }  // keys query i sees
  int64_t first_query(int64_t j) const { return (j + s - 1) / s; }    // first query seeing key j
  int64_t token_stride() const { return 3 * h * f; }                  // qkv rows, one per token
};

// out[i][0:Tp] = scale·a[i]·bT[:, 0:Tp] for rows i in [0, tq) (a's rows `as` floats apart),
// vectors only up to each row block's last visible key (the rest of the row is never read).
// Full blocks (ROWS == R) compile with no per-row test in the inner loop (the isolated core:
// 2.2 -> 2.0 ms at small's shapes).
template <int64_t ROWS>
inline void rows_times_transposed_block(const Shape& sh, const float* a, int64_t as, const float* bT,
                                        float scale, float* out, int64_t rows, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b) {
    vec acc[ROWS] = {};
    for (int64_t f = 0; f < sh.f; ++f) {
      const vec col = load(bT + f * sh.tp + b * W);
      for (int64_t r = 0; r < ROWS; ++r)
        if (ROWS == R || r < rows) acc[r] += a[r * as + f] * col;
    }
    for (int64_t r = 0; r < ROWS; ++r)
      if (ROWS == R || r < rows) store(out + r * sh.tp + b * W, acc[r] * scale);
  }
}

void rows_times_transposed(const Shape& sh, const float* a, int64_t as, const float* bT, float scale,
                           float* out) {
  for (int64_t i0 = 0; i0 < sh.tq; i0 += R) {
    const int64_t rows = std::min(R, sh.tq - i0);
    const int64_t blocks = (sh.visible(i0 + rows - 1) + W - 1) / W;
    if (rows == R)
      rows_times_transposed_block<R>(sh, a + i0 * as, as, bT, scale, out + i0 * sh.tp, rows, blocks);
    else
      rows_times_transposed_block<R - 1>(sh, a + i0 * as, as, bT, scale, out + i0 * sh.tp, rows, blocks);
  }
}

// out[i] = Σ_j w[i][j]·b[j] over the keys row i sees (w is zero beyond them within a block);
// b's rows bs floats apart, out's os.
void weights_times_rows(const Shape& sh, const float* w, const float* b, int64_t bs, float* out,
                        int64_t os) {
  for (int64_t i0 = 0; i0 < sh.tq; i0 += R) {
    const int64_t rows = std::min(R, sh.tq - i0);
    const int64_t keys = sh.visible(i0 + rows - 1);
    for (int64_t c = 0; c < sh.f; c += W) {
      vec acc[R] = {};
      for (int64_t j = 0; j < keys; ++j) {
        const vec bj = load(b + j * bs + c);
        for (int64_t r = 0; r < R; ++r)
          if (r < rows) acc[r] += w[(i0 + r) * sh.tp + j] * bj;
      }
      for (int64_t r = 0; r < rows; ++r) store(out + (i0 + r) * os + c, acc[r]);
    }
  }
}

// out[j] = Σ_i w[i][j]·a[i] over the queries that see key j; a's rows as floats apart, out's os.
void transposed_weights_times_rows(const Shape& sh, const float* w, const float* a, int64_t as,
                                   float* out, int64_t os) {
  for (int64_t j0 = 0; j0 < sh.t; j0 += R) {
    const int64_t keys = std::min(R, sh.t - j0);
    for (int64_t c = 0; c < sh.f; c += W) {
      vec acc[R] = {};
      for (int64_t i = sh.first_query(j0); i < sh.tq; ++i) {
        const vec ai = load(a + i * as + c);
        const float* wi = w + i * sh.tp + j0;
        for (int64_t r = 0; r < R; ++r)
          if (r < keys) acc[r] += wi[r] * ai;
      }
      for (int64_t r = 0; r < keys; ++r) store(out + (j0 + r) * os + c, acc[r]);
    }
  }
}

// xT[f][j] = x[j][f] (x's rows xs floats apart), zero-padded to Tp keys.
void transpose_padded(const Shape& sh, const float* x, int64_t xs, float* xT) {
  for (int64_t f = 0; f < sh.f; ++f) {
    float* row = xT + f * sh.tp;
    for (int64_t j = 0; j < sh.t; ++j) row[j] = x[j * xs + f];
    for (int64_t j = sh.t; j < sh.tp; ++j) row[j] = 0.0f;
  }
}

// Zeroes row i's entries past its visible keys, up to the end of their last vector.
inline int64_t mask_tail(const Shape& sh, float* row, int64_t i) {
  const int64_t keys = sh.visible(i);
  const int64_t end = (keys + W - 1) / W * W;
  for (int64_t j = keys; j < end; ++j) row[j] = 0.0f;
  return end;
}

struct Scratch {
  std::vector<float> kT, vT, p, ds;
  explicit Scratch(const Shape& sh)
      : kT(sh.f * sh.tp), vT(sh.f * sh.tp), p(sh.tq * sh.tp), ds(sh.tq * sh.tp) {}
};

// One prompt and head. qkv points at its q row of token 0 (k and v follow, h·f floats apart);
// out at its row of query 0 (rows h·f apart); lse at its Tq log-sum-exps.
void forward_one(const Shape& sh, Scratch& sc, const float* qkv, float* out, float* lse) {
  const int64_t ts = sh.token_stride(), hf = sh.h * sh.f;
  transpose_padded(sh, qkv + hf, ts, sc.kT.data());
  float* p = sc.p.data();
  rows_times_transposed(sh, qkv, ts * sh.s, sc.kT.data(), sh.scale, p);
  for (int64_t i = 0; i < sh.tq; ++i) {
    float* row = p + i * sh.tp;
    const int64_t keys = sh.visible(i);
    float m = -INFINITY;
    for (int64_t j = 0; j < keys; ++j) m = std::max(m, row[j]);
    const int64_t end = mask_tail(sh, row, i);
    vec sum = {};
    for (int64_t j = 0; j < end; j += W) {
      vec e = exp_nonpositive(load(row + j) - m);
      if (j + W > keys) {
        for (int64_t l = keys - j; l < W; ++l) e[l] = 0.0f;
      }
      store(row + j, e);
      sum += e;
    }
    const float total = hsum(sum);
    const float inv = 1.0f / total;
    for (int64_t j = 0; j < end; j += W) store(row + j, load(row + j) * inv);
    lse[i] = m + std::log(total);
  }
  weights_times_rows(sh, p, qkv + 2 * hf, ts, out, hf);
}

// One prompt and head, pointers as in forward_one; dqkv as qkv. The rows of dq at tokens that
// are not queries (s > 1) are zero.
void backward_one(const Shape& sh, Scratch& sc, const float* qkv, const float* out,
                  const float* lse, const float* dout, float* dqkv) {
  const int64_t ts = sh.token_stride(), hf = sh.h * sh.f;
  transpose_padded(sh, qkv + hf, ts, sc.kT.data());
  transpose_padded(sh, qkv + 2 * hf, ts, sc.vT.data());
  float* p = sc.p.data();
  float* ds = sc.ds.data();
  rows_times_transposed(sh, qkv, ts * sh.s, sc.kT.data(), sh.scale, p);  // logits
  rows_times_transposed(sh, dout, hf, sc.vT.data(), 1.0f, ds);           // dp
  for (int64_t i = 0; i < sh.tq; ++i) {
    float* prow = p + i * sh.tp;
    float* drow = ds + i * sh.tp;
    const int64_t keys = sh.visible(i);
    const int64_t end = mask_tail(sh, prow, i);
    mask_tail(sh, drow, i);
    vec od = {};
    for (int64_t c = 0; c < sh.f; c += W) od += load(out + i * hf + c) * load(dout + i * hf + c);
    const float delta = hsum(od);  // Σ_j p_ij·dp_ij = o_i·do_i
    for (int64_t j = 0; j < end; j += W) {
      vec e = exp_nonpositive(load(prow + j) - lse[i]);
      if (j + W > keys) {
        for (int64_t l = keys - j; l < W; ++l) e[l] = 0.0f;
      }
      store(prow + j, e);
      store(drow + j, e * (load(drow + j) - delta) * sh.scale);  // d(q·k), scale included
    }
  }
  weights_times_rows(sh, ds, qkv + hf, ts, dqkv, ts * sh.s);
  for (int64_t t = 0; t < sh.t; ++t)
    if (t % sh.s) std::memset(dqkv + t * ts, 0, sh.f * sizeof(float));
  transposed_weights_times_rows(sh, ds, qkv, ts * sh.s, dqkv + hf, ts);
  transposed_weights_times_rows(sh, p, dout, hf, dqkv + 2 * hf, ts);
}

// (prompt, head) items in chunks, eight per thread, each thread with its own Scratch.
template <typename Body>
void over_items(ffi::ThreadPool& pool, const Shape& sh, Body body) {
  const int64_t n = sh.b * sh.h, threads = std::max<int64_t>(1, pool.num_threads());
  icl_jax::parallel_over(pool, n, n / (threads * 8), [sh] { return Scratch(sh); },
                         [sh, body](int64_t first, int64_t last, Scratch& sc) { body(first, last, sc); });
}

// qkv_BxTx3xHxF's shape, the query stride and the logits' scale; an error names what is wrong.
ffi::Error shape_of(ffi::Buffer<ffi::F32> qkv, int64_t stride, float scale, Shape& sh) {
  auto d = qkv.dimensions();
  if (d.size() != 5 || d[2] != 3)
    return ffi::Error::InvalidArgument("causal_attention_cpu: qkv must be BxTx3xHxF");
  sh.b = d[0], sh.t = d[1], sh.h = d[3], sh.f = d[4], sh.s = stride, sh.scale = scale;
  if (sh.f % W != 0)
    return ffi::Error::InvalidArgument("causal_attention_cpu: head width must be a multiple of 16");
  if (sh.s < 1 || sh.t % sh.s != 0)
    return ffi::Error::InvalidArgument("causal_attention_cpu: the stride must divide the tokens");
  sh.tq = sh.t / sh.s;
  sh.tp = (sh.t + W - 1) / W * W;
  return ffi::Error::Success();
}

// Offsets of item x = (prompt, head) in qkv (its q at token 0), out (query 0) and lse.
struct Item {
  int64_t qkv, out, lse;
  Item(const Shape& sh, int64_t x) {
    const int64_t b = x / sh.h, h = x % sh.h;
    qkv = b * sh.t * sh.token_stride() + h * sh.f;
    out = b * sh.tq * sh.h * sh.f + h * sh.f;
    lse = x * sh.tq;
  }
};

ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> qkv, ffi::ResultBuffer<ffi::F32> out,
                   ffi::ResultBuffer<ffi::F32> lse, int64_t stride, float scale) {
  Shape sh;
  if (auto e = shape_of(qkv, stride, scale, sh); e.failure()) return e;
  const float* qkvp = qkv.typed_data();
  float *outp = out->typed_data(), *lsep = lse->typed_data();
  over_items(pool, sh, [=](int64_t first, int64_t last, Scratch& sc) {
    for (int64_t x = first; x < last; ++x) {
      const Item at(sh, x);
      forward_one(sh, sc, qkvp + at.qkv, outp + at.out, lsep + at.lse);
    }
  });
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> qkv, ffi::Buffer<ffi::F32> out,
                    ffi::Buffer<ffi::F32> lse, ffi::Buffer<ffi::F32> dout,
                    ffi::ResultBuffer<ffi::F32> dqkv, int64_t stride, float scale) {
  Shape sh;
  if (auto e = shape_of(qkv, stride, scale, sh); e.failure()) return e;
  const float *qkvp = qkv.typed_data(), *outp = out.typed_data(), *lsep = lse.typed_data();
  const float* doutp = dout.typed_data();
  float* dqkvp = dqkv->typed_data();
  over_items(pool, sh, [=](int64_t first, int64_t last, Scratch& sc) {
    for (int64_t x = first; x < last; ++x) {
      const Item at(sh, x);
      backward_one(sh, sc, qkvp + at.qkv, outp + at.out, lsep + at.lse, doutp + at.out, dqkvp + at.qkv);
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(IclCausalAttentionForward, Forward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // qkv
                                  .Ret<ffi::Buffer<ffi::F32>>()  // out
                                  .Ret<ffi::Buffer<ffi::F32>>()  // lse
                                  .Attr<int64_t>("stride")
                                  .Attr<float>("scale"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(IclCausalAttentionBackward, Backward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // qkv
                                  .Arg<ffi::Buffer<ffi::F32>>()  // out
                                  .Arg<ffi::Buffer<ffi::F32>>()  // lse
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d out
                                  .Ret<ffi::Buffer<ffi::F32>>()  // d qkv
                                  .Attr<int64_t>("stride")
                                  .Attr<float>("scale"));
