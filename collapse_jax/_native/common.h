// What the simulator kernels (gmm_network.cc, multinomial_risk.cc, gaussian.cc) share: the per-replicate random
// stream, the Stirling tails of the exact binomial samplers, and the split of a range of work across threads. All in
// an anonymous namespace: internal to each kernel's translation unit. The loader hashes this file with the sources,
// so a change here rebuilds them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

// SplitMix64 (Steele, Lea and Flood 2014): a replicate's stream, seeded from its JAX key.
struct SplitMix64 {
  uint64_t s;
  inline uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  static inline double to_uniform(uint64_t r) { return (double)(r >> 11) * 0x1.0p-53; }  // top 53 bits: [0, 1)
  inline double uniform() { return to_uniform(next()); }
  // On (0, 1): the top 53 bits plus half a step, so never 0 (a log); the top one, (2^53 - 1/2) 2^-53, rounds to 1 and
  // is held at 1 - 2^-53, the largest double below 1 (the other 2^53 - 1 values are as they were).
  inline double open_uniform() { return std::min(((double)(next() >> 11) + 0.5) * 0x1.0p-53, kBelowOne); }
  static constexpr double kBelowOne = 0x1.fffffffffffffp-1;
};

// log k! - [(k + 1/2) log(k + 1) - (k + 1) + log(2 pi)/2]: table for k <= 9, series beyond (as in multinomial.py).
inline double stirling_tail(double k) {
  static const double table[10] = {0.0810614667953272,  0.0413406959554092,  0.0276779256849983,
                                   0.02079067210376509, 0.0166446911898211,  0.0138761288230707,
                                   0.0118967099458917,  0.0104112652619720,  0.00925546218271273,
                                   0.00833056343336287};
  if (k <= 9) return table[(int)k];
  const double kp1 = k + 1, kp1sq = kp1 * kp1;
  return (1.0 / 12 - (1.0 / 360 - 1.0 / 1260 / kp1sq) / kp1sq) / kp1;
}

// work(begin, end) over [0, count) split into contiguous ranges, one per thread.
template <typename F>
void parallel_for(int64_t count, int64_t num_threads, F&& work) {
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(num_threads, count));
  if (threads == 1) {
    work(int64_t(0), count);
    return;
  }
  std::vector<std::thread> pool;
  const int64_t chunk = (count + threads - 1) / threads;
  for (int64_t t = 0; t < threads; ++t) {
    const int64_t b = t * chunk, e = std::min(count, b + chunk);
    if (b < e) pool.emplace_back(work, b, e);
  }
  for (auto& th : pool) th.join();
}

}  // namespace
