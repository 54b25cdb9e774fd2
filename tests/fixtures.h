// fixtures.h — shared helpers of the tests that read the tiny-model fixtures in tests/data/models/
// (made by tools/make_tiny_models*.py): their paths, reference tensors, editable copies and load errors.
#pragma once
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.h"
#include "model.h"
#include "safetensors.h"

namespace infer::testutil {

inline std::string model_dir(const std::string& name) { return std::string(INFER_TEST_DATA) + "/models/" + name; }

// A reference tensor as a vector of T (throws if its byte size does not fit T, i.e. an unexpected dtype).
template <typename T>
std::vector<T> read_vec(const SafeTensors& st, const std::string& name) {
  const TensorInfo& t = st.get(name);
  std::vector<T> v(static_cast<size_t>(t.numel()));
  if (t.nbytes != v.size() * sizeof(T)) throw std::runtime_error("reference tensor " + name + " has an unexpected dtype");
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}

// A copy of a fixture directory (config, generation config, weights) whose config.json a test may edit.
struct FixtureCopy {
  std::filesystem::path dir;
  FixtureCopy(const std::string& name, const std::string& tag) {
    dir = std::filesystem::temp_directory_path() / ("infer_fixture_" + tag + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    for (const char* f : {"config.json", "generation_config.json", "model.safetensors"})
      std::filesystem::copy(std::filesystem::path(model_dir(name)) / f, dir / f);
  }
  ~FixtureCopy() { std::filesystem::remove_all(dir); }
  FixtureCopy(const FixtureCopy&) = delete;
  FixtureCopy& operator=(const FixtureCopy&) = delete;
  void edit(const std::function<void(nlohmann::json&)>& f) {
    nlohmann::json j = nlohmann::json::parse(std::ifstream(dir / "config.json"));
    f(j);
    std::ofstream(dir / "config.json") << j.dump(2);
  }
};

// The message of the error loading `dir` throws ("" if it loads); its code in *code when given.
inline std::string load_error(const std::filesystem::path& dir, infer_status* code = nullptr) {
  try {
    Transformer::load(dir.string(), LoadOptions{}, false);
  } catch (const Error& e) {
    if (code) *code = e.code();
    return e.what();
  }
  return "";
}

}  // namespace infer::testutil
