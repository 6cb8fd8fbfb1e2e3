// What the CPU kernels of this package share: 16-float vectors and a chunked parallel loop
// over XLA's intra-op thread pool. GCC/Clang vector extensions give the vectors on any
// x86/ARM target; -O3 -march=native turns them into AVX-512 (or AVX2, NEON) instructions.

#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>

#include "xla/ffi/api/ffi.h"

namespace icl_jax {

typedef float vec __attribute__((vector_size(64)));
constexpr int64_t W = 16;  // floats per vec

inline vec load(const float* p) {
  vec v;
  std::memcpy(&v, p, sizeof(vec));
  return v;
}
inline void store(float* p, vec v) { std::memcpy(p, &v, sizeof(vec)); }
inline vec splat(float x) { return vec{} + x; }
inline float hsum(vec v) {
  float s = 0.0f;
  for (int64_t l = 0; l < W; ++l) s += v[l];
  return s;
}

// Runs body(first, last, local) over the items [0, n) in chunks of `chunk` on the pool's
// threads, and returns at once a future that completes when every item is done: the handler
// returns it to XLA, whose calling thread goes on to other ready work (the other batch half's
// products) instead of waiting. `local` is a Local made by make_local() for each task once it
// has claimed a chunk. Chunks go to whichever task is running; nothing ever waits for a task
// that has not started, so two kernels side by side on a 2-thread pool cannot deadlock, and a
// task that starts after the last chunk is gone finds nothing and ends.
template <typename MakeLocal, typename Body>
xla::ffi::Future parallel_over(xla::ffi::ThreadPool& pool, int64_t n, int64_t chunk, MakeLocal make_local,
                               Body body) {
  if (n <= 0) {
    xla::ffi::Promise promise;
    xla::ffi::Future future(promise);
    promise.SetAvailable();
    return future;
  }
  struct State {
    explicit State(int64_t n) : items_left(n) {}
    std::atomic<int64_t> next{0};
    xla::ffi::CountDownPromise items_left;
  };
  chunk = std::max<int64_t>(1, chunk);
  auto state = std::make_shared<State>(n);
  xla::ffi::Future future(state->items_left);
  auto work = [state, n, chunk, make_local, body]() {
    std::unique_ptr<decltype(make_local())> local;
    for (;;) {
      const int64_t first = state->next.fetch_add(chunk);
      if (first >= n) return;
      const int64_t last = std::min(n, first + chunk);
      if (!local) local = std::make_unique<decltype(make_local())>(make_local());
      body(first, last, *local);
      state->items_left.CountDown(last - first);
    }
  };
  const int64_t tasks = std::min<int64_t>(std::max<int64_t>(1, pool.num_threads()), (n + chunk - 1) / chunk);
  for (int64_t t = 0; t < tasks; ++t) pool.Schedule(decltype(work)(work));
  return future;
}

// parallel_over for a body(first, last) that needs no per-task state.
template <typename Body>
xla::ffi::Future parallel_over(xla::ffi::ThreadPool& pool, int64_t n, int64_t chunk, Body body) {
  struct None {};
  return parallel_over(pool, n, chunk, [] { return None{}; },
                       [body](int64_t first, int64_t last, None&) { body(first, last); });
}

// A future that has failed with `error`, for a handler that returns futures.
inline xla::ffi::Future failed(xla::ffi::Error error) {
  xla::ffi::Promise promise;
  xla::ffi::Future future(promise);
  promise.SetError(std::move(error));
  return future;
}

}  // namespace icl_jax
