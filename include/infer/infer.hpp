// infer.hpp — a thin C++ RAII layer over the C API in infer.h. Header-only; failures throw
// infer::Exception carrying the status code and infer_last_error()'s message.
#pragma once
#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "infer/infer.h"

namespace infer {

class Exception : public std::runtime_error {
 public:
  Exception(infer_status status, const std::string& msg) : std::runtime_error(msg), status_(status) {}
  infer_status status() const { return status_; }

 private:
  infer_status status_;
};

inline void check(infer_status s) {
  if (s != INFER_OK) throw Exception(s, infer_last_error());
}

// Encode/decode through a tokenizer handle (a model's own, or one loaded on its own with Tokenizer).
class TokenizerRef {
 public:
  explicit TokenizerRef(const infer_tokenizer* t = nullptr) : t_(t) {}
  const infer_tokenizer* get() const { return t_; }
  explicit operator bool() const { return t_ != nullptr; }
  int32_t vocab_size() const { return infer_tokenizer_vocab_size(t_); }

  std::vector<int32_t> encode(const std::string& text, bool add_special = false) const {
    int32_t n = 0;
    std::vector<int32_t> ids(text.size() + 8);
    infer_status s = infer_tokenizer_encode(t_, text.data(), text.size(), add_special, ids.data(), int32_t(ids.size()), &n);
    if (s == INFER_ERR_INVALID_ARG && n > int32_t(ids.size())) {
      ids.resize(n);
      s = infer_tokenizer_encode(t_, text.data(), text.size(), add_special, ids.data(), n, &n);
    }
    check(s);
    ids.resize(n);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const {
    size_t n = 0;
    std::string out(ids.size() * 8 + 16, '\0');
    infer_status s = infer_tokenizer_decode(t_, ids.data(), int32_t(ids.size()), skip_special, out.data(), out.size(), &n);
    if (s == INFER_ERR_INVALID_ARG && n > out.size()) {
      out.resize(n);
      s = infer_tokenizer_decode(t_, ids.data(), int32_t(ids.size()), skip_special, out.data(), out.size(), &n);
    }
    check(s);
    out.resize(n);
    return out;
  }

 protected:
  const infer_tokenizer* t_;
};

// A tokenizer loaded from a directory holding tokenizer.json (no model needed).
class Tokenizer : public TokenizerRef {
 public:
  explicit Tokenizer(const std::string& dir) {
    infer_tokenizer* t = nullptr;
    check(infer_tokenizer_load(dir.c_str(), &t));
    t_ = t;
  }
  ~Tokenizer() { infer_tokenizer_free(const_cast<infer_tokenizer*>(t_)); }
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;
};

class Model {
 public:
  explicit Model(const std::string& dir, const infer_model_params& params = infer_model_default_params()) {
    const auto t0 = std::chrono::steady_clock::now();
    check(infer_model_load(dir.c_str(), &params, &m_));
    load_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }
  ~Model() { infer_model_free(m_); }
  Model(Model&& o) noexcept : m_(std::exchange(o.m_, nullptr)), load_ms_(o.load_ms_) {}
  Model& operator=(Model&& o) noexcept {
    std::swap(m_, o.m_);
    load_ms_ = o.load_ms_;
    return *this;
  }
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  infer_model* get() const { return m_; }
  std::string arch() const { return infer_model_arch(m_); }
  std::string desc() const { return infer_model_desc(m_); }
  int32_t vocab_size() const { return infer_model_vocab_size(m_); }
  bool is_random() const { return infer_model_is_random(m_); }
  int64_t n_params() const { return infer_model_n_params(m_); }
  int64_t weight_bytes() const { return infer_model_weight_bytes(m_); }
  int64_t weight_bytes_per_token() const { return infer_model_weight_bytes_per_token(m_); }
  bool has_tokenizer() const { return infer_model_has_tokenizer(m_); }
  double load_ms() const { return load_ms_; }
  infer_sampler_params sampler_defaults() const { return infer_model_sampler_defaults(m_); }
  std::vector<int32_t> eos_ids() const {
    std::vector<int32_t> v(16);
    v.resize(std::min<int32_t>(16, infer_model_eos_ids(m_, v.data(), 16)));
    return v;
  }

  // The model's tokenizer (empty if the directory has no tokenizer.json).
  TokenizerRef tokenizer() const { return TokenizerRef(infer_model_tokenizer(m_)); }
  std::vector<int32_t> tokenize(const std::string& text, bool add_special = false) const {
    return need_tokenizer().encode(text, add_special);
  }
  std::string detokenize(const std::vector<int32_t>& ids, bool skip_special = false) const {
    return need_tokenizer().decode(ids, skip_special);
  }

 private:
  TokenizerRef need_tokenizer() const {
    if (!has_tokenizer()) {
      int32_t n = 0;
      check(infer_tokenize(m_, "", 0, false, nullptr, 0, &n));  // fails with the library's message
    }
    return tokenizer();
  }
  infer_model* m_ = nullptr;
  double load_ms_ = 0;
};

class Context {
 public:
  Context(Model& model, const infer_context_params& params = infer_context_default_params()) {
    check(infer_context_create(model.get(), &params, &c_));
  }
  ~Context() { infer_context_free(c_); }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  infer_context* get() const { return c_; }
  int32_t n_ctx() const { return infer_context_n_ctx(c_); }
  int32_t n_past() const { return infer_context_n_past(c_); }
  std::string device() const { return infer_context_device(c_); }
  int64_t kv_bytes_per_token() const { return infer_context_kv_bytes_per_token(c_); }
  int64_t mtp_kv_bytes_per_token() const { return infer_context_mtp_kv_bytes_per_token(c_); }
  void truncate(int32_t n_keep) { check(infer_context_truncate(c_, n_keep)); }

  // Evaluates ids; returns the logits (rows × vocab).
  const float* eval(const std::vector<int32_t>& ids, bool all_logits = false, int32_t* n_rows = nullptr) {
    check(infer_context_eval(c_, ids.data(), int32_t(ids.size()), all_logits));
    return infer_context_logits(c_, n_rows);
  }
  void dump(const std::vector<int32_t>& ids, const std::string& path) {
    check(infer_context_dump(c_, ids.data(), int32_t(ids.size()), path.c_str()));
  }

  using TokenFn = std::function<bool(const infer_token_info&)>;
  infer_generate_result generate(const std::vector<int32_t>& prompt, const infer_generate_params& params,
                                 const TokenFn& on_token) {
    infer_generate_result r{};
    auto tramp = [](const infer_token_info* t, void* u) -> bool { return (*static_cast<const TokenFn*>(u))(*t); };
    check(infer_generate(c_, prompt.data(), int32_t(prompt.size()), &params, tramp,
                         const_cast<TokenFn*>(&on_token), &r));
    return r;
  }

 private:
  infer_context* c_ = nullptr;
};

namespace detail {
// Calls a C function that fills a text buffer (cap, *n_out = full length) and grows the buffer once.
template <typename F>
std::string fill_text(F&& call) {
  std::string out(4096, '\0');
  size_t n = 0;
  infer_status s = call(out.data(), out.size(), &n);
  if (s == INFER_ERR_INVALID_ARG && n > out.size()) {
    out.resize(n);
    s = call(out.data(), out.size(), &n);
  }
  check(s);
  out.resize(n);
  return out;
}
inline const char* or_null(const std::string& s) { return s.empty() ? nullptr : s.c_str(); }
}  // namespace detail

// Renders a conversation (JSON text) with the chat template of a model or tokenizer directory: the
// prompt transformers' apply_chat_template(…, tokenize=False) gives. Empty tools_json / kwargs_json
// mean none (e.g. kwargs_json = R"({"enable_thinking": false})").
inline std::string render_chat(const std::string& dir, const std::string& messages_json,
                               const std::string& tools_json = "", const std::string& kwargs_json = "",
                               bool add_generation_prompt = true) {
  return detail::fill_text([&](char* out, size_t cap, size_t* n) {
    return infer_chat_render_dir(dir.c_str(), messages_json.c_str(), detail::or_null(tools_json),
                                 detail::or_null(kwargs_json), add_generation_prompt, out, cap, n);
  });
}

// The same with a loaded model's chat template.
inline std::string render_chat(const Model& model, const std::string& messages_json, const std::string& tools_json = "",
                               const std::string& kwargs_json = "", bool add_generation_prompt = true) {
  return detail::fill_text([&](char* out, size_t cap, size_t* n) {
    return infer_chat_render(model.get(), messages_json.c_str(), detail::or_null(tools_json),
                             detail::or_null(kwargs_json), add_generation_prompt, out, cap, n);
  });
}

}  // namespace infer
