// arch_config.h — typed access to the config.json keys an architecture reads beyond ModelConfig
// (num_experts, kv_lora_rank, …), from ModelConfig::raw_json. Errors name config.json and the field, like
// hf_config.cpp: a wrong value fails at load, not later in a kernel.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "hf_config.h"

namespace infer::models {

class ArchConfig {
 public:
  explicit ArchConfig(const ModelConfig& c);
  ~ArchConfig();

  const std::string& file() const { return file_; }
  bool has(const char* key) const;      // present and not null
  bool is_null(const char* key) const;  // present and null
  int64_t get_int(const char* key, int64_t def) const;
  // A positive integer; absent/null → def (def <= 0 means the key is required).
  int64_t positive(const char* key, int64_t def) const;
  // A non-negative integer; absent/null → def.
  int64_t non_negative(const char* key, int64_t def) const;
  double get_double(const char* key, double def) const;
  bool get_bool(const char* key, bool def) const;
  std::string get_string(const char* key, const std::string& def) const;
  std::vector<int64_t> get_int_list(const char* key) const;  // absent/null → empty
  // A nested object's integer list (quantization_config.weight_block_size); found=false if absent.
  std::vector<int64_t> get_nested_int_list(const char* obj, const char* key, bool* found) const;
  std::string get_nested_string(const char* obj, const char* key, const std::string& def) const;

  [[noreturn]] void bad(const char* key, const std::string& what) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string file_;
};

}  // namespace infer::models
