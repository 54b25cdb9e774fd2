// hf_config.cpp — config.json / generation_config.json → ModelConfig / GenerationConfig.
// Defaults follow the transformers config classes of each supported model_type (kArchs below); every
// field read is type-checked so a wrong value fails here, naming the file and field, not later in a kernel.
#include "hf_config.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common.h"

namespace infer {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The registry of supported architectures and the transformers class defaults that differ between them.
// Adding an architecture = one line here (plus its model code elsewhere).
struct ArchDefaults {
  const char* model_type;
  int64_t head_dim;  // used when "head_dim" is absent; 0 = hidden_size / num_attention_heads
  int64_t max_position_embeddings;
  double rope_theta;
  double rms_norm_eps;
};

constexpr ArchDefaults kArchs[] = {
    // transformers Qwen3Config: head_dim=128, max_position_embeddings=32768, rope_theta=10000, eps=1e-6.
    {"qwen3", 128, 32768, 10000.0, 1e-6},
    // LlamaConfig: head_dim=None (hidden/heads), max_position_embeddings=2048, rope_theta=10000, eps=1e-6.
    {"llama", 0, 2048, 10000.0, 1e-6},
    // Qwen2Config: no head_dim (hidden/heads), max_position_embeddings=32768, rope_theta=10000, eps=1e-6.
    {"qwen2", 0, 32768, 10000.0, 1e-6},
    // Qwen3MoeConfig: no head_dim attribute (hidden/heads), max_position_embeddings=32768, rope_theta=10000.
    {"qwen3_moe", 0, 32768, 10000.0, 1e-6},
    // DeepseekV3Config: head_dim = qk_rope_head_dim (64; MLA reads its own head sizes), max_position_embeddings=4096.
    {"deepseek_v3", 64, 4096, 10000.0, 1e-6},
};

const ArchDefaults* find_arch(const std::string& model_type) {
  for (const auto& a : kArchs)
    if (model_type == a.model_type) return &a;
  return nullptr;
}

constexpr const char* kRopeTypes[] = {"default", "linear", "dynamic", "yarn", "llama3"};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s;
}

std::string excerpt(const json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// Typed, checked access to the keys of one JSON object. `prefix` ("rope_scaling.") qualifies field names
// in messages. A key that is absent or null yields the default.
class Fields {
 public:
  Fields(const json& obj, const std::string& file, std::string prefix = "")
      : obj_(obj), file_(file), prefix_(std::move(prefix)) {}

  // nullptr when absent or null.
  const json* find(const char* key) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool has(const char* key) const { return find(key) != nullptr; }

  [[noreturn]] void type_error(const char* key, const char* expected, const json& got) const {
    fail_format(file_ + ": field '" + prefix_ + key + "' must be " + expected + ", got " + excerpt(got));
  }

  int64_t to_int(const char* key, const json& v) const {
    if (v.is_number_unsigned()) {
      if (v.get<uint64_t>() > uint64_t(INT64_MAX)) type_error(key, "an integer in int64 range", v);
      return int64_t(v.get<uint64_t>());
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    // 4096.0 is accepted (Python writes some ints as floats); 1.5 is not.
    if (v.is_number_float()) {
      double d = v.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return int64_t(d);
    }
    type_error(key, "an integer", v);
  }

  int64_t get_int(const char* key, int64_t def) const {
    const json* v = find(key);
    return v ? to_int(key, *v) : def;
  }

  int64_t required_positive(const char* key) const {
    const json* v = find(key);
    if (!v) fail_format(file_ + ": missing required field '" + prefix_ + key + "'");
    int64_t n = to_int(key, *v);
    if (n <= 0) fail_format(file_ + ": field '" + prefix_ + key + "' must be a positive integer, got " + excerpt(*v));
    return n;
  }

  int64_t optional_positive(const char* key, int64_t def) const {
    const json* v = find(key);
    if (!v) return def;
    int64_t n = to_int(key, *v);
    if (n <= 0) fail_format(file_ + ": field '" + prefix_ + key + "' must be a positive integer, got " + excerpt(*v));
    return n;
  }

  double get_double(const char* key, double def) const {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_number()) type_error(key, "a number", *v);
    double d = v->get<double>();
    if (!std::isfinite(d)) type_error(key, "a finite number", *v);
    return d;
  }

  bool get_bool(const char* key, bool def) const {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_boolean()) type_error(key, "a boolean", *v);
    return v->get<bool>();
  }

  std::string get_string(const char* key, const std::string& def) const {
    const json* v = find(key);
    if (!v) return def;
    if (!v->is_string()) type_error(key, "a string", *v);
    return v->get<std::string>();
  }

  // An integer or a list of integers (eos_token_id); absent/null → empty.
  std::vector<int64_t> get_int_list(const char* key) const {
    std::vector<int64_t> out;
    const json* v = find(key);
    if (!v) return out;
    if (v->is_array()) {
      for (const auto& e : *v) {
        if (!e.is_number()) type_error(key, "an integer or a list of integers", *v);
        out.push_back(to_int(key, e));
      }
    } else if (v->is_number()) {
      out.push_back(to_int(key, *v));
    } else {
      type_error(key, "an integer or a list of integers", *v);
    }
    return out;
  }

 private:
  const json& obj_;
  const std::string& file_;
  std::string prefix_;
};

json parse_json_object(const std::string& text, const std::string& file) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail_format(file + ": malformed JSON: " + e.what());
  }
  if (!j.is_object()) fail_format(file + ": expected a JSON object at the top level, got " + excerpt(j));
  return j;
}

bool read_file(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(INFER_ERR_IO, "cannot read " + path);
  *out = ss.str();
  return true;
}

// rope_scaling (4.x) or rope_parameters (v5) → RopeScaling. `key` names the object for messages.
RopeScaling parse_rope(const json& obj, const std::string& file, const std::string& key, bool type_required) {
  if (!obj.is_object()) fail_format(file + ": field '" + key + "' must be an object or null, got " + excerpt(obj));
  Fields f(obj, file, key + ".");
  RopeScaling r;
  if (f.has("rope_type"))
    r.type = f.get_string("rope_type", "default");
  else if (f.has("type"))
    r.type = f.get_string("type", "default");
  else if (type_required)
    fail_format(file + ": field '" + key + "' has neither 'rope_type' nor 'type'");
  bool known = false;
  for (const char* t : kRopeTypes) known = known || r.type == t;
  if (!known) {
    std::vector<std::string> names(std::begin(kRopeTypes), std::end(kRopeTypes));
    fail(INFER_ERR_UNSUPPORTED,
         file + ": " + key + " rope_type '" + r.type + "' is not supported; supported: " + join(names));
  }
  if (r.type == "default") return r;  // HF reads nothing else for the default rope

  // transformers' rope_config_validation: these keys are required per type.
  auto require = [&](const char* k) {
    if (!f.has(k)) fail_format(file + ": field '" + key + "." + k + "' is required for rope_type '" + r.type + "'");
  };
  require("factor");
  if (r.type == "llama3") {
    require("original_max_position_embeddings");
    require("low_freq_factor");
    require("high_freq_factor");
  }
  r.factor = f.get_double("factor", r.factor);
  if (r.factor <= 0) fail_format(file + ": field '" + key + ".factor' must be positive");
  r.original_max_position_embeddings = f.optional_positive("original_max_position_embeddings", 0);
  r.beta_fast = f.get_double("beta_fast", r.beta_fast);
  r.beta_slow = f.get_double("beta_slow", r.beta_slow);
  r.mscale = f.get_double("mscale", r.mscale);
  r.mscale_all_dim = f.get_double("mscale_all_dim", r.mscale_all_dim);
  r.attention_factor = f.get_double("attention_factor", r.attention_factor);
  r.truncate = f.get_bool("truncate", r.truncate);
  r.low_freq_factor = f.get_double("low_freq_factor", r.low_freq_factor);
  r.high_freq_factor = f.get_double("high_freq_factor", r.high_freq_factor);
  return r;
}

}  // namespace

const std::vector<std::string>& supported_model_types() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& a : kArchs) v.emplace_back(a.model_type);
    return v;
  }();
  return names;
}

ModelConfig parse_model_config(const std::string& json_text, const std::string& file) {
  const json j = parse_json_object(json_text, file);
  Fields f(j, file);
  ModelConfig c;
  c.raw_json = json_text;

  if (!f.has("model_type")) fail_format(file + ": missing required field 'model_type'");
  c.model_type = f.get_string("model_type", "");
  const ArchDefaults* arch = find_arch(c.model_type);
  if (!arch)
    fail(INFER_ERR_UNSUPPORTED, file + ": model_type '" + c.model_type + "' is not supported; supported: " +
                                    join(supported_model_types()));

  c.vocab_size = f.required_positive("vocab_size");
  c.hidden_size = f.required_positive("hidden_size");
  c.intermediate_size = f.required_positive("intermediate_size");
  c.num_hidden_layers = f.required_positive("num_hidden_layers");
  c.num_attention_heads = f.required_positive("num_attention_heads");
  c.num_key_value_heads = f.optional_positive("num_key_value_heads", c.num_attention_heads);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    fail_format(file + ": num_attention_heads (" + std::to_string(c.num_attention_heads) +
                ") is not divisible by num_key_value_heads (" + std::to_string(c.num_key_value_heads) + ")");

  // head_dim: explicit; absent → the class default; null (or a class without one) → hidden / heads.
  if (f.has("head_dim")) {
    c.head_dim = f.optional_positive("head_dim", 0);
  } else if (j.contains("head_dim") || arch->head_dim == 0) {
    if (c.hidden_size % c.num_attention_heads != 0)
      fail_format(file + ": head_dim is not given and hidden_size (" + std::to_string(c.hidden_size) +
                  ") is not divisible by num_attention_heads (" + std::to_string(c.num_attention_heads) + ")");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  } else {
    c.head_dim = arch->head_dim;
  }

  c.max_position_embeddings = f.optional_positive("max_position_embeddings", arch->max_position_embeddings);
  c.rms_norm_eps = f.get_double("rms_norm_eps", arch->rms_norm_eps);
  if (!(c.rms_norm_eps > 0) || !std::isfinite(c.rms_norm_eps))  // 1e999 parses as inf
    fail_format(file + ": field 'rms_norm_eps' must be positive and finite");

  // RoPE: 4.x keeps rope_theta / rope_scaling at the top level; v5 nests both in rope_parameters.
  const json* rope_params = f.find("rope_parameters");
  if (rope_params && !rope_params->is_object())
    fail_format(file + ": field 'rope_parameters' must be an object or null, got " + excerpt(*rope_params));
  c.rope_theta = arch->rope_theta;
  if (f.has("rope_theta")) {
    c.rope_theta = f.get_double("rope_theta", c.rope_theta);
  } else if (rope_params) {
    c.rope_theta = Fields(*rope_params, file, "rope_parameters.").get_double("rope_theta", c.rope_theta);
  }
  if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta)) fail_format(file + ": rope_theta must be positive and finite");
  if (const json* rs = f.find("rope_scaling")) {
    c.rope_scaling = parse_rope(*rs, file, "rope_scaling", /*type_required=*/true);
  } else if (rope_params) {
    c.rope_scaling = parse_rope(*rope_params, file, "rope_parameters", /*type_required=*/false);
  }

  c.tie_word_embeddings = f.get_bool("tie_word_embeddings", false);
  c.attention_bias = f.get_bool("attention_bias", false);
  c.hidden_act = f.get_string("hidden_act", c.hidden_act);
  // v5 writes "dtype"; 4.x wrote "torch_dtype".
  c.torch_dtype = f.has("torch_dtype") ? f.get_string("torch_dtype", c.torch_dtype) : f.get_string("dtype", c.torch_dtype);
  c.bos_token_id = f.get_int("bos_token_id", -1);
  c.eos_token_ids = f.get_int_list("eos_token_id");
  c.random_weights = f.get_bool("infer_random_weights", false);
  return c;
}

ModelConfig load_model_config(const std::string& dir) {
  const std::string path = (fs::path(dir) / "config.json").string();
  std::string text;
  if (!read_file(path, &text)) fail(INFER_ERR_IO, "cannot open " + path + ": " + std::strerror(errno));
  ModelConfig c = parse_model_config(text, path);
  c.dir = dir;
  return c;
}

GenerationConfig load_generation_config(const std::string& dir) {
  GenerationConfig g;
  const std::string path = (fs::path(dir) / "generation_config.json").string();
  std::error_code ec;
  if (!fs::exists(path, ec)) return g;
  std::string text;
  if (!read_file(path, &text)) fail(INFER_ERR_IO, "cannot open " + path + ": " + std::strerror(errno));
  return parse_generation_config(text, path);
}

GenerationConfig parse_generation_config(const std::string& text, const std::string& path) {
  GenerationConfig g;
  const json j = parse_json_object(text, path);
  Fields f(j, path);
  g.present = true;
  g.do_sample = f.get_bool("do_sample", g.do_sample);
  g.temperature = f.get_double("temperature", g.temperature);
  // An explicit null top_k disables top-k in transformers; absent keeps the GenerationConfig default (50).
  g.top_k = (j.contains("top_k") && j["top_k"].is_null()) ? 0 : f.get_int("top_k", g.top_k);
  g.top_p = f.get_double("top_p", g.top_p);
  g.min_p = f.get_double("min_p", g.min_p);
  g.repetition_penalty = f.get_double("repetition_penalty", g.repetition_penalty);
  g.eos_token_ids = f.get_int_list("eos_token_id");
  g.bos_token_id = f.get_int("bos_token_id", -1);
  if (g.temperature < 0) fail_format(path + ": field 'temperature' must be >= 0");
  if (g.top_k < 0) fail_format(path + ": field 'top_k' must be >= 0");
  if (g.top_p < 0 || g.top_p > 1) fail_format(path + ": field 'top_p' must be in [0, 1]");
  if (g.min_p < 0 || g.min_p > 1) fail_format(path + ": field 'min_p' must be in [0, 1]");
  if (g.repetition_penalty <= 0) fail_format(path + ": field 'repetition_penalty' must be positive");
  return g;
}

}  // namespace infer
