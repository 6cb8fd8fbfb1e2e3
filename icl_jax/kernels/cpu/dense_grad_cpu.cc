// The parameter gradients of a dense layer y = x·w + b for XLA:CPU: dw = xᵀ·dy and db = Σ dy
// over the tokens, in one pass over x and dy.
//
// Legend: N tokens, E input width, O output width (a multiple of 64); x_NxE, dy_NxO, dw_ExO,
// db_O, all row-major float32.
//
// XLA:CPU hands xᵀ·dy (a product contracting both operands' leading axis) to Eigen, which
// packs the transposed operand first and reaches ~50% of the machine's matmul peak at the
// widths of in-context learning (E = 64..256); the bias gradient is a separate reduction over
// dy. Here the product is a sum of outer products, which needs no packing: row n of x and of
// dy are both contiguous. A register block of dw (6 rows × 64 columns, 24 vector
// accumulators) takes per token one 64-float row piece of dy and 6 broadcast floats of x:
// 24 FMAs for 4 vector loads. Tokens go in chunks of 128 whose x and dy rows stay in cache
// while every block of the chunk is accumulated; db rides along the pass over dy. Each thread
// takes a share of dw's 64-column stripes.

#include <algorithm>
#include <cstdint>

#include "cpu_common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using icl_jax::load;
using icl_jax::store;
using icl_jax::vec;
using icl_jax::W;

constexpr int64_t ROWS = 6;      // rows of dw per register block
constexpr int64_t VECS = 4;      // vectors of dw's columns per register block
constexpr int64_t STRIPE = VECS * W;
constexpr int64_t CHUNK = 128;   // tokens per pass over a stripe's blocks

// dw[r][0:STRIPE] (+)= Σ_i x[i][r]·dy[i][0:STRIPE] over `tokens` rows, for rows r < R.
template <int64_t R>
inline void accumulate_block(const float* x, int64_t e, const float* dy, int64_t o, int64_t tokens,
                             float* dw, bool first) {
  vec acc[R][VECS];
  for (int64_t r = 0; r < R; ++r)
    for (int64_t v = 0; v < VECS; ++v) acc[r][v] = first ? vec{} : load(dw + r * o + v * W);
  for (int64_t i = 0; i < tokens; ++i) {
    vec d[VECS];
    for (int64_t v = 0; v < VECS; ++v) d[v] = load(dy + i * o + v * W);
    const float* xi = x + i * e;
    for (int64_t r = 0; r < R; ++r)
      for (int64_t v = 0; v < VECS; ++v) acc[r][v] += xi[r] * d[v];
  }
  for (int64_t r = 0; r < R; ++r)
    for (int64_t v = 0; v < VECS; ++v) store(dw + r * o + v * W, acc[r][v]);
}

// The last e % ROWS rows of a chunk (a switch, so every block size is a compile-time one).
inline void accumulate_rest(int64_t rows, const float* x, int64_t e, const float* dy, int64_t o,
                            int64_t tokens, float* dw, bool first) {
  switch (rows) {
    case 5: return accumulate_block<5>(x, e, dy, o, tokens, dw, first);
    case 4: return accumulate_block<4>(x, e, dy, o, tokens, dw, first);
    case 3: return accumulate_block<3>(x, e, dy, o, tokens, dw, first);
    case 2: return accumulate_block<2>(x, e, dy, o, tokens, dw, first);
    case 1: return accumulate_block<1>(x, e, dy, o, tokens, dw, first);
    default: return;
  }
}
static_assert(ROWS <= 6, "accumulate_rest covers remainders up to 5 rows");

// Stripes [first, last) of dw's columns (and of db), over all n tokens: each chunk of tokens
// goes through every block of these stripes before the next, so x is read once and what is
// re-read chunk after chunk is these stripes of dw (E × 64 floats each, in L2 at these widths;
// x, N × E, would not be).
void stripes(const float* x, const float* dy, int64_t n, int64_t e, int64_t o, int64_t first, int64_t last,
             float* dw, float* db) {
  for (int64_t i0 = 0; i0 < n; i0 += CHUNK) {
    const int64_t tokens = std::min(CHUNK, n - i0);
    const float* xc = x + i0 * e;
    for (int64_t s = first; s < last; ++s) {
      const int64_t c = s * STRIPE;
      const float* dyc = dy + i0 * o + c;
      vec bias[VECS];
      for (int64_t v = 0; v < VECS; ++v) bias[v] = i0 == 0 ? vec{} : load(db + c + v * W);
      for (int64_t i = 0; i < tokens; ++i)
        for (int64_t v = 0; v < VECS; ++v) bias[v] += load(dyc + i * o + v * W);
      for (int64_t v = 0; v < VECS; ++v) store(db + c + v * W, bias[v]);
      int64_t r = 0;
      for (; r + ROWS <= e; r += ROWS) accumulate_block<ROWS>(xc + r, e, dyc, o, tokens, dw + r * o + c, i0 == 0);
      accumulate_rest(e - r, xc + r, e, dyc, o, tokens, dw + r * o + c, i0 == 0);
    }
  }
}

ffi::Future WeightGrad(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                       ffi::ResultBuffer<ffi::F32> dw, ffi::ResultBuffer<ffi::F32> db) {
  const auto xd = x.dimensions(), dyd = dy.dimensions();
  if (xd.size() != 2 || dyd.size() != 2 || xd[0] != dyd[0])
    return icl_jax::failed(ffi::Error::InvalidArgument("dense_grad_cpu: x and dy must be NxE and NxO"));
  const int64_t n = xd[0], e = xd[1], o = dyd[1];
  if (o % STRIPE != 0)
    return icl_jax::failed(ffi::Error::InvalidArgument("dense_grad_cpu: the output width must be a multiple of 64"));
  const float *xp = x.typed_data(), *dyp = dy.typed_data();
  float *dwp = dw->typed_data(), *dbp = db->typed_data();
  if (n == 0) {
    std::fill(dwp, dwp + e * o, 0.0f);
    std::fill(dbp, dbp + o, 0.0f);
  }
  const int64_t n_stripes = n == 0 ? 0 : o / STRIPE, threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t per_thread = (n_stripes + threads - 1) / threads;
  return icl_jax::parallel_over(pool, n_stripes, per_thread, [=](int64_t first, int64_t last) {
    stripes(xp, dyp, n, e, o, first, last, dwp, dbp);
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(IclDenseWeightGrad, WeightGrad,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dy
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dw
                                  .Ret<ffi::Buffer<ffi::F32>>()); // db
