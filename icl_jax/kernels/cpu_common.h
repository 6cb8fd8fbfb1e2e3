// What the CPU kernels of this package share: 16-float vectors and a chunked parallel loop
// over XLA's intra-op thread pool. GCC/Clang vector extensions give the vectors on any
// x86/ARM target; -O3 -march=native turns them into AVX-512 (or AVX2, NEON) instructions.

#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>

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

// Runs body(first, last, local) over the items [0, n) in chunks of `chunk`, on the pool's
// threads and the calling one; `local` is a Local made by make_local() for each thread once
// it has claimed a chunk (a helper that starts after the work is gone makes none). Chunks go
// to whichever thread is free, and the calling thread never waits for a helper that has not
// started: two such loops side by side on a 2-thread pool, each waiting on a helper queued
// behind the other, would deadlock.
template <typename MakeLocal, typename Body>
void parallel_over(xla::ffi::ThreadPool& pool, int64_t n, int64_t chunk, MakeLocal make_local, Body body) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  chunk = std::max<int64_t>(1, chunk);
  auto state = std::make_shared<State>();
  auto work = [state, n, chunk, make_local, body]() {
    std::unique_ptr<decltype(make_local())> local;
    for (;;) {
      const int64_t first = state->next.fetch_add(chunk);
      if (first >= n) return;
      const int64_t last = std::min(n, first + chunk);
      if (!local) local = std::make_unique<decltype(make_local())>(make_local());
      body(first, last, *local);
      state->done.fetch_add(last - first, std::memory_order_release);
    }
  };
  for (int64_t helper = 1; helper < threads && helper * chunk < n; ++helper) pool.Schedule(decltype(work)(work));
  work();
  // Only chunks already claimed by running helpers remain; they finish without us.
  while (state->done.load(std::memory_order_acquire) < n) std::this_thread::yield();
}

}  // namespace icl_jax
