// The layer norm of a block for XLA:CPU, without its scale and shift (the model folds those
// into the dense layer that follows, icl_jax/models/ops.py), forward and backward, one token
// row at a time in L1.
//
// Legend: N token rows of width E (a multiple of 16), row-major float32.
//   normalize:  x_NxE -> xhat_NxE = (x - mean) · rstd, rstd_N = 1/sqrt(var + eps)
//   its vjp:    (xhat, rstd, dxhat) -> dx = rstd · (dxhat - mean(dxhat) - xhat · mean(dxhat · xhat))
// XLA:CPU splits a layer norm into several loops over the whole array (the row statistics, the
// output; in the backward pass the two row sums, the output, the scale's and shift's
// gradients): passes over memory that the products between them have evicted from cache.
// Here each row is read and written once. Rows go to XLA's intra-op thread pool in chunks
// (cpu_common.h).

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cpu_common.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using icl_jax::hsum;
using icl_jax::load;
using icl_jax::store;
using icl_jax::vec;
using icl_jax::W;

constexpr int64_t ROWS_PER_CHUNK = 32;

// body(row) for every row of an N×E array, in chunks over the pool.
template <typename Body>
ffi::Future over_rows(ffi::ThreadPool& pool, int64_t n, Body body) {
  return icl_jax::parallel_over(pool, n, ROWS_PER_CHUNK, [=](int64_t first, int64_t last) {
    for (int64_t i = first; i < last; ++i) body(i);
  });
}

ffi::Error rows_of(ffi::Buffer<ffi::F32>& x, int64_t& n, int64_t& e) {
  const auto d = x.dimensions();
  if (d.size() != 2) return ffi::Error::InvalidArgument("layer_norm_cpu: arrays must be NxE");
  n = d[0], e = d[1];
  if (e % W != 0) return ffi::Error::InvalidArgument("layer_norm_cpu: the width must be a multiple of 16");
  return ffi::Error::Success();
}

ffi::Future Normalize(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::ResultBuffer<ffi::F32> xhat,
                      ffi::ResultBuffer<ffi::F32> rstd, float eps) {
  int64_t n, e;
  if (auto err = rows_of(x, n, e); err.failure()) return icl_jax::failed(err);
  const float* xp = x.typed_data();
  float *xhatp = xhat->typed_data(), *rstdp = rstd->typed_data();
  return over_rows(pool, n, [=](int64_t i) {
    const float* row = xp + i * e;
    vec sum = {};
    for (int64_t j = 0; j < e; j += W) sum += load(row + j);
    const float mean = hsum(sum) / e;
    vec squares = {};
    for (int64_t j = 0; j < e; j += W) {
      const vec centred = load(row + j) - mean;
      squares += centred * centred;
    }
    const float r = 1.0f / std::sqrt(hsum(squares) / e + eps);
    for (int64_t j = 0; j < e; j += W) store(xhatp + i * e + j, (load(row + j) - mean) * r);
    rstdp[i] = r;
  });
}

ffi::Future NormalizeVjp(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> xhat, ffi::Buffer<ffi::F32> rstd,
                         ffi::Buffer<ffi::F32> dxhat, ffi::ResultBuffer<ffi::F32> dx) {
  int64_t n, e;
  if (auto err = rows_of(xhat, n, e); err.failure()) return icl_jax::failed(err);
  const float *xhatp = xhat.typed_data(), *rstdp = rstd.typed_data(), *dxhatp = dxhat.typed_data();
  float* dxp = dx->typed_data();
  return over_rows(pool, n, [=](int64_t i) {
    const float *xr = xhatp + i * e, *dr = dxhatp + i * e;
    vec sum = {}, dot = {};
    for (int64_t j = 0; j < e; j += W) {
      const vec d = load(dr + j);
      sum += d;
      dot += d * load(xr + j);
    }
    const float mean_d = hsum(sum) / e, mean_dx = hsum(dot) / e, r = rstdp[i];
    for (int64_t j = 0; j < e; j += W)
      store(dxp + i * e + j, (load(dr + j) - mean_d - load(xr + j) * mean_dx) * r);
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(IclNormalize, Normalize,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x
                                  .Ret<ffi::Buffer<ffi::F32>>()  // xhat
                                  .Ret<ffi::Buffer<ffi::F32>>()  // rstd
                                  .Attr<float>("eps"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(IclNormalizeVjp, NormalizeVjp,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // xhat
                                  .Arg<ffi::Buffer<ffi::F32>>()  // rstd
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d xhat
                                  .Ret<ffi::Buffer<ffi::F32>>()); // dx
