// simt_backend_util.h — what the CUDA-backend-on-the-emulator tests share: a fixture model with its HF reference,
// the largest elementwise difference, and a scope that fakes the device's compute capability.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>

#include "cuda/cuda_shim.h"
#include "fixtures.h"
#include "model.h"
#include "safetensors.h"

namespace infer::testutil {

// A tiny fixture model (tests/fixtures/NAME) and its reference logits.
struct SimtFixture {
  std::unique_ptr<Transformer> model;
  std::unique_ptr<SafeTensors> ref;
};
inline SimtFixture load_fixture(const std::string& name) {
  SimtFixture f;
  f.model = Transformer::load(model_dir(name), LoadOptions{}, false);
  f.ref = SafeTensors::open_file(model_dir(name) + "/reference.safetensors");
  return f;
}

// max |a - b| over n values; a NaN anywhere counts as infinite.
inline float max_diff(const float* a, const float* b, size_t n) {
  float w = 0;
  for (size_t i = 0; i < n; ++i) w = std::max(w, std::isnan(a[i] - b[i]) ? INFINITY : std::fabs(a[i] - b[i]));
  return w;
}

// The emulated device for the scope's lifetime: a whole FakeDevice, or the current one with another compute
// capability.
struct FakeDeviceScope {
  cuda_shim::FakeDevice saved = cuda_shim::fake_device();
  explicit FakeDeviceScope(const cuda_shim::FakeDevice& d) { cuda_shim::set_fake_device(d); }
  FakeDeviceScope(int major, int minor) {
    cuda_shim::FakeDevice d = saved;
    d.major = major;
    d.minor = minor;
    cuda_shim::set_fake_device(d);
  }
  FakeDeviceScope(const FakeDeviceScope&) = delete;
  FakeDeviceScope& operator=(const FakeDeviceScope&) = delete;
  ~FakeDeviceScope() { cuda_shim::set_fake_device(saved); }
};

}  // namespace infer::testutil
