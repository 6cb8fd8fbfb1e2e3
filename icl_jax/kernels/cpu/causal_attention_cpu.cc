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
// diagonal are skipped. Work is spread over XLA's intra-op thread pool in chunks, and the
// call returns a future at once (cpu_common.h): no thread ever waits on another.
//
// Built by icl_jax/kernels/cpu/build.py, when a model selects it (models/ops.py), with the
// host's C++ compiler (-O3 -march=native); GCC/Clang vector extensions give 16-float vectors
// on any x86/ARM target.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cpu_common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using icl_jax::hsum;
using icl_jax::load;
using icl_jax::splat;
using icl_jax::store;
using icl_jax::vec;
using icl_jax::W;
constexpr int64_t R = 8;  // rows per register block

// exp for x <= 0 (arguments here are logits minus their row maximum): Cody–Waite reduction
// x = n·ln2 + r, |r| <= ln2/2, and a degree-6 polynomial; relative error ~2 ulp.
inline vec exp_nonpositive(vec x) {
  x = x < -87.0f ? splat(-87.0f) : x;  // below this exp is 0 to float32 anyway
  vec n = x * 1.44269504088896341f;
  // round to nearest via the 1.5·2^23 trick
  n = (n + 12582912.0f) - 12582912.0f;
  vec r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vec p = splat(1.9875691500E-4f);
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r * r + r + 1.0f;
  typedef int32_t ivec __attribute__((vector_size(64)));
  ivec bits = __builtin_convertvector(n, ivec) + 127;
  bits = bits << 23;
  vec scale;
  std::memcpy(&scale, &bits, sizeof(vec));
  vec out = p * scale;
  return x <= -87.0f ? splat(0.0f) : out;
}

struct Shape {
  int64_t b, t, h, f, s, tq, tp;
  float scale;                                                          // of the logits q·k
  int64_t visible(int64_t i) const { return std::min(t, s * i + 1); }  // keys query i sees
  int64_t first_query(int64_t j) const { return (j + s - 1) / s; }    // first query seeing key j
  int64_t token_stride() const { return 3 * h * f; }                  // qkv rows, one per token
};

// The three products below are register-blocked as R rows × V vectors of accumulators; each
// step loads V vectors and broadcasts R scalars into R·V FMAs. V = 2 (16 accumulators) keeps
// the FMAs, not the loads, the limit (V = 1 issued 9 loads per 8 FMAs: 1.4x slower). Blocks
// of R rows are templates, so full ones compile with no per-row test in the inner loop.
constexpr int64_t V = 2;

// out[i][0:Tp] = scale·a[i]·bT[:, 0:Tp] for rows i in [0, tq) (a's rows `as` floats apart),
// vectors only up to each row block's last visible key (the rest of the row is never read).
template <int64_t ROWS, int64_t VECS>
inline void rows_times_transposed_vecs(const Shape& sh, const float* a, int64_t as, const float* bT, float scale,
                                       float* out, int64_t rows) {
  vec acc[ROWS][VECS] = {};
  for (int64_t f = 0; f < sh.f; ++f) {
    vec col[VECS];
    for (int64_t v = 0; v < VECS; ++v) col[v] = load(bT + f * sh.tp + v * W);
    for (int64_t r = 0; r < ROWS; ++r)
      if (ROWS == R || r < rows)
        for (int64_t v = 0; v < VECS; ++v) acc[r][v] += a[r * as + f] * col[v];
  }
  for (int64_t r = 0; r < ROWS; ++r)
    if (ROWS == R || r < rows)
      for (int64_t v = 0; v < VECS; ++v) store(out + r * sh.tp + v * W, acc[r][v] * scale);
}

template <int64_t ROWS>
inline void rows_times_transposed_block(const Shape& sh, const float* a, int64_t as, const float* bT,
                                        float scale, float* out, int64_t rows, int64_t blocks) {
  int64_t b = 0;
  for (; b + V <= blocks; b += V) rows_times_transposed_vecs<ROWS, V>(sh, a, as, bT + b * W, scale, out + b * W, rows);
  for (; b < blocks; ++b) rows_times_transposed_vecs<ROWS, 1>(sh, a, as, bT + b * W, scale, out + b * W, rows);
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

// out[r][c:c+VECS·W] = Σ_j w[r][j]·b[j][c:c+VECS·W] over j < keys, for the rows r < rows of a block
// (w's rows Tp floats apart, b's bs, out's os).
template <int64_t ROWS, int64_t VECS>
inline void weights_times_rows_vecs(const Shape& sh, const float* w, const float* b, int64_t bs, float* out,
                                    int64_t os, int64_t rows, int64_t keys) {
  vec acc[ROWS][VECS] = {};
  for (int64_t j = 0; j < keys; ++j) {
    vec bj[VECS];
    for (int64_t v = 0; v < VECS; ++v) bj[v] = load(b + j * bs + v * W);
    for (int64_t r = 0; r < ROWS; ++r)
      if (ROWS == R || r < rows)
        for (int64_t v = 0; v < VECS; ++v) acc[r][v] += w[r * sh.tp + j] * bj[v];
  }
  for (int64_t r = 0; r < ROWS; ++r)
    if (ROWS == R || r < rows)
      for (int64_t v = 0; v < VECS; ++v) store(out + r * os + v * W, acc[r][v]);
}

template <int64_t ROWS>
inline void weights_times_rows_block(const Shape& sh, const float* w, const float* b, int64_t bs, float* out,
                                     int64_t os, int64_t rows, int64_t keys) {
  int64_t c = 0;
  for (; c + V * W <= sh.f; c += V * W) weights_times_rows_vecs<ROWS, V>(sh, w, b + c, bs, out + c, os, rows, keys);
  for (; c < sh.f; c += W) weights_times_rows_vecs<ROWS, 1>(sh, w, b + c, bs, out + c, os, rows, keys);
}

// out[i] = Σ_j w[i][j]·b[j] over the keys row i sees (w is zero beyond them within a block);
// b's rows bs floats apart, out's os.
void weights_times_rows(const Shape& sh, const float* w, const float* b, int64_t bs, float* out,
                        int64_t os) {
  for (int64_t i0 = 0; i0 < sh.tq; i0 += R) {
    const int64_t rows = std::min(R, sh.tq - i0);
    const int64_t keys = sh.visible(i0 + rows - 1);
    if (rows == R)
      weights_times_rows_block<R>(sh, w + i0 * sh.tp, b, bs, out + i0 * os, os, rows, keys);
    else
      weights_times_rows_block<R - 1>(sh, w + i0 * sh.tp, b, bs, out + i0 * os, os, rows, keys);
  }
}

// out[k][c:c+VECS·W] = Σ_i w[i][k]·a[i][c:c+VECS·W] over the queries i in [first, tq), for the
// keys k < keys of a block (w points at the block's first key; a's rows as floats apart, out's os).
template <int64_t KEYS, int64_t VECS>
inline void transposed_weights_times_rows_vecs(const Shape& sh, const float* w, const float* a, int64_t as,
                                               float* out, int64_t os, int64_t keys, int64_t first) {
  vec acc[KEYS][VECS] = {};
  for (int64_t i = first; i < sh.tq; ++i) {
    vec ai[VECS];
    for (int64_t v = 0; v < VECS; ++v) ai[v] = load(a + i * as + v * W);
    const float* wi = w + i * sh.tp;
    for (int64_t k = 0; k < KEYS; ++k)
      if (KEYS == R || k < keys)
        for (int64_t v = 0; v < VECS; ++v) acc[k][v] += wi[k] * ai[v];
  }
  for (int64_t k = 0; k < KEYS; ++k)
    if (KEYS == R || k < keys)
      for (int64_t v = 0; v < VECS; ++v) store(out + k * os + v * W, acc[k][v]);
}

template <int64_t KEYS>
inline void transposed_weights_times_rows_block(const Shape& sh, const float* w, const float* a, int64_t as,
                                                float* out, int64_t os, int64_t keys, int64_t first) {
  int64_t c = 0;
  for (; c + V * W <= sh.f; c += V * W)
    transposed_weights_times_rows_vecs<KEYS, V>(sh, w, a + c, as, out + c, os, keys, first);
  for (; c < sh.f; c += W) transposed_weights_times_rows_vecs<KEYS, 1>(sh, w, a + c, as, out + c, os, keys, first);
}

// out[j] = Σ_i w[i][j]·a[i] over the queries that see key j; a's rows as floats apart, out's os.
void transposed_weights_times_rows(const Shape& sh, const float* w, const float* a, int64_t as,
                                   float* out, int64_t os) {
  for (int64_t j0 = 0; j0 < sh.t; j0 += R) {
    const int64_t keys = std::min(R, sh.t - j0), first = sh.first_query(j0);
    if (keys == R)
      transposed_weights_times_rows_block<R>(sh, w + j0, a, as, out + j0 * os, os, keys, first);
    else
      transposed_weights_times_rows_block<R - 1>(sh, w + j0, a, as, out + j0 * os, os, keys, first);
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

// Row i's vector at j with the lanes past its visible keys set to `fill`.
inline vec visible_lanes(const Shape& sh, vec v, int64_t i, int64_t j, float fill) {
  typedef int32_t ivec __attribute__((vector_size(64)));
  const ivec lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  return lane + static_cast<int32_t>(j) < static_cast<int32_t>(sh.visible(i)) ? v : splat(fill);
}

// Where row i's vectors end (its last visible key's), and where those of its block of R rows
// end: the products read a block's rows as far as its last row sees, so the entries of row i
// between the two must be zero (they differ for query strides above 2).
inline int64_t row_end(const Shape& sh, int64_t i) { return (sh.visible(i) + W - 1) / W * W; }
inline int64_t block_end(const Shape& sh, int64_t i) { return row_end(sh, std::min(i / R * R + R, sh.tq) - 1); }

inline void zero_past_row_end(const Shape& sh, float* row, int64_t i) {
  for (int64_t j = row_end(sh, i); j < block_end(sh, i); j += W) store(row + j, vec{});
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
    const int64_t end = row_end(sh, i);
    vec maxima = splat(-INFINITY);
    for (int64_t j = 0; j < end; j += W) {
      const vec v = visible_lanes(sh, load(row + j), i, j, -INFINITY);
      maxima = v > maxima ? v : maxima;
    }
    float m = maxima[0];
    for (int64_t l = 1; l < W; ++l) m = std::max(m, maxima[l]);
    vec sum = {};
    for (int64_t j = 0; j < end; j += W) {
      const vec e = visible_lanes(sh, exp_nonpositive(load(row + j) - m), i, j, 0.0f);
      store(row + j, e);
      sum += e;
    }
    zero_past_row_end(sh, row, i);
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
    const int64_t end = row_end(sh, i);
    vec od = {};
    for (int64_t c = 0; c < sh.f; c += W) od += load(out + i * hf + c) * load(dout + i * hf + c);
    const float delta = hsum(od);  // Σ_j p_ij·dp_ij = o_i·do_i
    for (int64_t j = 0; j < end; j += W) {
      const vec e = visible_lanes(sh, exp_nonpositive(load(prow + j) - lse[i]), i, j, 0.0f);
      store(prow + j, e);
      // d(q·k), scale included; a select, not e·(...), so that no lane past the keys survives
      store(drow + j, visible_lanes(sh, e * (load(drow + j) - delta) * sh.scale, i, j, 0.0f));
    }
    zero_past_row_end(sh, prow, i);
    zero_past_row_end(sh, drow, i);
  }
  weights_times_rows(sh, ds, qkv + hf, ts, dqkv, ts * sh.s);
  for (int64_t t = 0; t < sh.t; ++t)
    if (t % sh.s) std::memset(dqkv + t * ts, 0, sh.f * sizeof(float));
  transposed_weights_times_rows(sh, ds, qkv, ts * sh.s, dqkv + hf, ts);
  transposed_weights_times_rows(sh, p, dout, hf, dqkv + 2 * hf, ts);
}

// (prompt, head) items in chunks, eight per thread, each thread with its own Scratch.
template <typename Body>
ffi::Future over_items(ffi::ThreadPool& pool, const Shape& sh, Body body) {
  const int64_t n = sh.b * sh.h, threads = std::max<int64_t>(1, pool.num_threads());
  return icl_jax::parallel_over(pool, n, n / (threads * 8), [sh] { return Scratch(sh); },
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

ffi::Future Forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> qkv, ffi::ResultBuffer<ffi::F32> out,
                    ffi::ResultBuffer<ffi::F32> lse, int64_t stride, float scale) {
  Shape sh;
  if (auto e = shape_of(qkv, stride, scale, sh); e.failure()) return icl_jax::failed(e);
  const float* qkvp = qkv.typed_data();
  float *outp = out->typed_data(), *lsep = lse->typed_data();
  return over_items(pool, sh, [=](int64_t first, int64_t last, Scratch& sc) {
    for (int64_t x = first; x < last; ++x) {
      const Item at(sh, x);
      forward_one(sh, sc, qkvp + at.qkv, outp + at.out, lsep + at.lse);
    }
  });
}

ffi::Future Backward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> qkv, ffi::Buffer<ffi::F32> out,
                     ffi::Buffer<ffi::F32> lse, ffi::Buffer<ffi::F32> dout,
                     ffi::ResultBuffer<ffi::F32> dqkv, int64_t stride, float scale) {
  Shape sh;
  if (auto e = shape_of(qkv, stride, scale, sh); e.failure()) return icl_jax::failed(e);
  const float *qkvp = qkv.typed_data(), *outp = out.typed_data(), *lsep = lse.typed_data();
  const float* doutp = dout.typed_data();
  float* dqkvp = dqkv->typed_data();
  return over_items(pool, sh, [=](int64_t first, int64_t last, Scratch& sc) {
    for (int64_t x = first; x < last; ++x) {
      const Item at(sh, x);
      backward_one(sh, sc, qkvp + at.qkv, outp + at.out, lsep + at.lse, doutp + at.out, dqkvp + at.qkv);
    }
  });
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
