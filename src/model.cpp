// model.cpp — loading a model directory, weight binding with shape checks, the architecture registry.
#include "model.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>

#include "common.h"
#include "models/fp8_weights.h"
#include "models/models.h"

namespace infer {

const std::vector<ArchEntry>& architectures() {
  static const std::vector<ArchEntry> table = {
      {"qwen3", &models::create_qwen3},
      {"llama", &models::create_llama},
      {"qwen2", &models::create_qwen2},
      {"qwen3_moe", &models::create_qwen3_moe},
      {"deepseek_v3", &models::create_deepseek_v3},
  };
  return table;
}

std::unique_ptr<Transformer> Transformer::load(const std::string& dir, const LoadOptions& opts, bool load_tokenizer) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir)) fail(INFER_ERR_IO, "model directory '" + dir + "' does not exist or is not a directory");
  ModelConfig cfg = load_model_config(dir);
  const ArchEntry* arch = nullptr;
  for (const auto& a : architectures())
    if (cfg.model_type == a.model_type) arch = &a;
  if (!arch) {
    std::string names;
    for (const auto& a : architectures()) names += std::string(names.empty() ? "" : ", ") + a.model_type;
    fail(INFER_ERR_UNSUPPORTED, dir + "/config.json: model_type '" + cfg.model_type + "' is not supported; supported: " + names);
  }
  std::unique_ptr<Transformer> m = arch->create(cfg);
  m->dir = dir;
  m->generation = load_generation_config(dir);
  m->weights = SafeTensors::open_dir(dir);
  m->bind_weights(opts);

  // Every tensor in the checkpoint must be used: an unexpected one means config.json and the weights disagree.
  std::set<std::string> bound(m->bound_.begin(), m->bound_.end());
  for (const auto& [name, info] : m->weights->tensors()) {
    if (bound.count(name)) continue;
    if (name.size() > 20 && name.ends_with(".rotary_emb.inv_freq")) continue;  // old HF checkpoints
    fail(INFER_ERR_FORMAT, "unexpected tensor " + name + " " + info.shape_str() + " in " + info.file + ": " +
                               cfg.model_type + " with this config.json (num_hidden_layers=" +
                               std::to_string(cfg.num_hidden_layers) + ") does not use it");
  }
  if (load_tokenizer) {
    if (fs::exists(fs::path(dir) / "tokenizer.json")) m->tokenizer = Tokenizer::load(dir);
  }
  if (opts.progress && !opts.progress(1.0f)) fail(INFER_ERR_CANCELLED, "model load cancelled");
  return m;
}

std::unique_ptr<ForwardState> Transformer::new_paged_state(Backend&, int64_t, int64_t, int64_t, int64_t) const {
  fail(INFER_ERR_UNSUPPORTED, "the " + config.model_type +
                                  " architecture has no batched forward over a paged KV cache (continuous batching); "
                                  "it runs one sequence at a time only");
}

void Transformer::forward_batch(ForwardState&, const BatchSeq*, int64_t, float*) const {
  fail(INFER_ERR_UNSUPPORTED, "the " + config.model_type + " architecture has no batched forward (forward_batch)");
}

cpu::Matrix Transformer::matrix(const std::string& name, int64_t rows, int64_t cols, const std::string& fields) {
  const TensorInfo& t = weights->get(name, {rows, cols}, fields);
  bound_.push_back(name);
  cpu::Matrix m;
  m.rows = rows;
  m.cols = cols;
  switch (t.dtype) {
    case DType::BF16:
      m.dtype = t.dtype;
      m.data = t.data;
      // Mapped read-only from the file (SafeTensors::open_dir): the CPU backend may drop these pages once packed.
      m.pack = packs_.emplace_back(std::make_unique<cpu::PackCache>(true)).get();
      break;
    case DType::F32:
      m.dtype = t.dtype;
      m.data = t.data;
      break;
    case DType::F16: {
      // No f16 kernel: widen once at load (costs 2× memory for this tensor).
      converted_.emplace_back(size_t(rows * cols));
      cpu::row_to_f32(t.data, DType::F16, converted_.back().data(), rows * cols);
      m.dtype = DType::F32;
      m.data = converted_.back().data();
      break;
    }
    case DType::F8_E4M3: {  // with 128×128 block scales, dequantised inside the matmul (cpu/ops_fp8.h)
      if (fp8_block_ <= 0) fp8_block_ = models::fp8_block_size(config);
      std::string scale_name;
      m = models::bind_fp8(*weights, t, name, rows, cols, fp8_block_, &scale_name);
      bound_.push_back(scale_name);
      break;
    }
    default:
      fail(INFER_ERR_UNSUPPORTED, "tensor " + name + " in " + t.file + " has dtype " + dtype_name(t.dtype) +
                                      "; supported for weights: BF16, F16, F32, F8_E4M3 (with block scales)");
  }
  if (reinterpret_cast<uintptr_t>(m.data) % dtype_size(m.dtype) != 0)
    fail(INFER_ERR_FORMAT, "tensor " + name + " in " + t.file + " is not aligned to its element size");
  return m;
}

const TensorInfo& Transformer::vector(const std::string& name, int64_t n, const std::string& fields) {
  const TensorInfo& t = weights->get(name, {n}, fields);
  bound_.push_back(name);
  if (t.dtype != DType::BF16 && t.dtype != DType::F32)
    fail(INFER_ERR_UNSUPPORTED, "tensor " + name + " in " + t.file + " has dtype " + dtype_name(t.dtype) +
                                    "; supported for norm weights: BF16, F32");
  return t;
}

int64_t Transformer::n_params() const {
  int64_t n = 0;
  for (const auto& [name, t] : weights->tensors()) n += t.numel();
  return n;
}

int64_t Transformer::weight_bytes() const {
  int64_t n = 0;
  for (const auto& [name, t] : weights->tensors()) n += int64_t(t.nbytes);
  return n;
}

std::string Transformer::describe() const {
  std::ostringstream os;
  const auto& c = config;
  os << c.model_type << " " << c.num_hidden_layers << "L h" << c.hidden_size << " " << c.num_attention_heads << "/"
     << c.num_key_value_heads << " heads d" << c.head_dim << " ffn" << c.intermediate_size << " vocab"
     << c.vocab_size << " (" << (n_params() + 500000) / 1000000 << "M params, "
     << (weight_bytes() + (1 << 19)) / (1 << 20) << " MiB)";
  return os.str();
}

}  // namespace infer
