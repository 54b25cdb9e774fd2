// simt_test_util.h — helpers shared by the SIMT kernel tests: run a check under two emulator schedules, random
// inputs, and "no emulator diagnostics".
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "simt/runtime.h"

// The emulator captured no diagnostics (races, out-of-bounds, unwritten outputs, ...).
#define EXPECT_CLEAN(cap) EXPECT_EQ((cap).total(), 0u) << (cap).summary()

namespace infer::testutil {

// Runs f under the in-order schedule and under the adversarial random schedule with the given seed.
template <class F>
void for_two_schedules(uint64_t random_seed, F&& f) {
  for (const simt::Schedule& s :
       {simt::Schedule{simt::ScheduleKind::kInOrder, 0}, simt::Schedule{simt::ScheduleKind::kRandom, random_seed}}) {
    SCOPED_TRACE("schedule " + s.to_string());
    simt::ScopedSchedule scoped(s);
    f();
  }
}

// n normal(0, scale) values from a seeded generator.
inline std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace infer::testutil
