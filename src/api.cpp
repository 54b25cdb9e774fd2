// api.cpp — the C API (include/infer/infer.h) over the C++ runtime. Every entry point catches exceptions
// at the boundary and turns them into a status code plus a per-thread last-error message.
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "api_internal.h"
#include "common.h"
#include "cpu/ops.h"
#include "session.h"
#include "generate.h"
#include "model.h"
#include "sampler.h"

#ifndef INFER_VERSION_STRING
#define INFER_VERSION_STRING "0.0.0"
#endif

struct infer_tokenizer {
  std::unique_ptr<infer::Tokenizer> owned;  // null for a model's borrowed tokenizer
  const infer::Tokenizer* t = nullptr;
};
struct infer_model {
  std::unique_ptr<infer::Transformer> m;
  std::string desc;
  infer_tokenizer tok;  // borrowed view of m->tokenizer
};
struct infer_context {
  infer_model* model;
  std::unique_ptr<infer::Session> c;
  std::string device;
};
struct infer_sampler {
  std::unique_ptr<infer::Sampler> s;
};

namespace {

thread_local std::string g_last_error;

template <typename F>
infer_status guarded(F&& f) {
  try {
    f();
    g_last_error.clear();
    return INFER_OK;
  } catch (const infer::Error& e) {
    g_last_error = e.what();
    return e.code();
  } catch (const std::bad_alloc&) {
    g_last_error = "out of memory";
    return INFER_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    g_last_error = std::string("internal error: ") + e.what();
    return INFER_ERR_INTERNAL;
  }
}

infer_status invalid(const char* what) {
  g_last_error = what;
  return INFER_ERR_INVALID_ARG;
}

}  // namespace

// Hooks for C entry points implemented in other files (api_internal.h).
const std::string& infer_model_dir_internal(const infer_model* model) { return model->m->dir; }
infer_status infer_guarded_internal(const std::function<void()>& f) { return guarded(f); }
const infer::Transformer& infer_model_internal(const infer_model* model) { return *model->m; }

infer::GenerateOptions infer_generate_options_internal(const infer_model* model, const infer_generate_params* params) {
  infer::GenerateOptions o;
  o.max_tokens = params->max_tokens;
  for (int32_t i = 0; i < params->n_stop; ++i)
    if (params->stop[i] && params->stop[i][0]) o.stop.emplace_back(params->stop[i]);
  o.n_logprobs = params->n_logprobs;
  o.ignore_eos = params->ignore_eos;
  o.logprob = !params->no_logprob;
  o.thinking_budget = params->thinking_budget;
  std::vector<int32_t> eos(16);
  eos.resize(size_t(std::min(16, infer_model_eos_ids(model, eos.data(), 16))));
  o.eos_ids = eos;
  return o;
}

extern "C" {

const char* infer_last_error(void) { return g_last_error.c_str(); }

const char* infer_status_name(infer_status s) {
  switch (s) {
    case INFER_OK: return "INFER_OK";
    case INFER_ERR_INVALID_ARG: return "INFER_ERR_INVALID_ARG";
    case INFER_ERR_IO: return "INFER_ERR_IO";
    case INFER_ERR_FORMAT: return "INFER_ERR_FORMAT";
    case INFER_ERR_BUSY: return "INFER_ERR_BUSY";
    case INFER_ERR_UNSUPPORTED: return "INFER_ERR_UNSUPPORTED";
    case INFER_ERR_OUT_OF_MEMORY: return "INFER_ERR_OUT_OF_MEMORY";
    case INFER_ERR_CONTEXT_FULL: return "INFER_ERR_CONTEXT_FULL";
    case INFER_ERR_CANCELLED: return "INFER_ERR_CANCELLED";
    case INFER_ERR_INTERNAL: return "INFER_ERR_INTERNAL";
  }
  return "INFER_ERR_UNKNOWN";
}

const char* infer_version(void) { return INFER_VERSION_STRING; }

const char* infer_system_info(void) { return infer::cpu::isa_name(infer::cpu::active_isa()); }

// ---- model

infer_model_params infer_model_default_params(void) {
  infer_model_params p{};
  p.n_threads = 0;
  p.progress = nullptr;
  p.progress_user_data = nullptr;
  p.load_tokenizer = true;
  return p;
}

infer_status infer_model_load(const char* dir, const infer_model_params* params, infer_model** out) {
  if (!dir || !out) return invalid("infer_model_load: dir and out must not be NULL");
  *out = nullptr;
  const infer_model_params p = params ? *params : infer_model_default_params();
  return guarded([&] {
    infer::LoadOptions opts;
    opts.n_threads = p.n_threads;
    if (p.progress) opts.progress = [&p](float f) { return p.progress(f, p.progress_user_data); };
    auto m = std::make_unique<infer_model>();
    m->m = infer::Transformer::load(dir, opts, p.load_tokenizer);
    m->desc = m->m->describe();
    m->tok.t = m->m->tokenizer.get();
    *out = m.release();
  });
}

void infer_model_free(infer_model* model) { delete model; }

const char* infer_model_arch(const infer_model* m) { return m ? m->m->config.model_type.c_str() : ""; }
int32_t infer_model_vocab_size(const infer_model* m) { return m ? int32_t(m->m->vocab_size()) : 0; }
int32_t infer_model_n_ctx_train(const infer_model* m) { return m ? int32_t(m->m->config.max_position_embeddings) : 0; }
int64_t infer_model_n_params(const infer_model* m) { return m ? m->m->n_params() : 0; }
int64_t infer_model_weight_bytes(const infer_model* m) { return m ? m->m->weight_bytes() : 0; }
int64_t infer_model_weight_bytes_per_token(const infer_model* m) { return m ? m->m->weight_bytes_per_token() : 0; }
const char* infer_model_desc(const infer_model* m) { return m ? m->desc.c_str() : ""; }
bool infer_model_is_random(const infer_model* m) { return m && m->m->config.random_weights; }
bool infer_model_has_tokenizer(const infer_model* m) { return m && m->m->tokenizer != nullptr; }

int32_t infer_model_eos_ids(const infer_model* m, int32_t* out, int32_t cap) {
  if (!m) return 0;
  const auto& g = m->m->generation;
  const auto& ids = !g.eos_token_ids.empty() ? g.eos_token_ids : m->m->config.eos_token_ids;
  for (int32_t i = 0; i < int32_t(ids.size()) && i < cap; ++i) out[i] = int32_t(ids[i]);
  return int32_t(ids.size());
}

// ---- tokenizer

static const infer::Tokenizer* need_tokenizer(const infer_model* m) {
  if (!m->m->tokenizer)
    infer::fail(INFER_ERR_UNSUPPORTED, "the model directory " + m->m->dir + " has no tokenizer.json; pass token ids instead");
  return m->m->tokenizer.get();
}

infer_status infer_tokenizer_load(const char* dir, infer_tokenizer** out) {
  if (!dir || !out) return invalid("infer_tokenizer_load: dir and out must not be NULL");
  *out = nullptr;
  return guarded([&] {
    auto t = std::make_unique<infer_tokenizer>();
    t->owned = infer::Tokenizer::load(dir);
    t->t = t->owned.get();
    *out = t.release();
  });
}

void infer_tokenizer_free(infer_tokenizer* tok) { delete tok; }

const infer_tokenizer* infer_model_tokenizer(const infer_model* m) { return m && m->tok.t ? &m->tok : nullptr; }

int32_t infer_tokenizer_vocab_size(const infer_tokenizer* tok) { return tok ? tok->t->vocab_size() : 0; }

infer_status infer_tokenizer_encode(const infer_tokenizer* tok, const char* text, size_t len, bool add_special,
                                    int32_t* out, int32_t cap, int32_t* n_out) {
  if (!tok || (!text && len) || !n_out || (cap > 0 && !out)) return invalid("infer_tokenizer_encode: bad arguments");
  return guarded([&] {
    const auto ids = tok->t->encode(std::string_view(text ? text : "", len), add_special);
    *n_out = int32_t(ids.size());
    if (int32_t(ids.size()) > cap)
      infer::fail(INFER_ERR_INVALID_ARG, "infer_tokenize: " + std::to_string(ids.size()) + " tokens do not fit in " +
                                             std::to_string(cap));
    std::copy(ids.begin(), ids.end(), out);
  });
}

infer_status infer_tokenizer_decode(const infer_tokenizer* tok, const int32_t* ids, int32_t n, bool skip_special,
                                    char* out, size_t cap, size_t* n_out) {
  if (!tok || (n > 0 && !ids) || !n_out || (cap > 0 && !out)) return invalid("infer_tokenizer_decode: bad arguments");
  return guarded([&] {
    for (int32_t i = 0; i < n; ++i)
      if (ids[i] < 0 || ids[i] >= tok->t->vocab_size())
        infer::fail(INFER_ERR_INVALID_ARG, "token id " + std::to_string(ids[i]) + " is outside the tokenizer's vocabulary");
    const std::string s = tok->t->decode(std::vector<int32_t>(ids, ids + n), skip_special);
    *n_out = s.size();
    if (s.size() > cap) infer::fail(INFER_ERR_INVALID_ARG, "infer_detokenize: output does not fit");
    std::memcpy(out, s.data(), s.size());
  });
}

infer_status infer_tokenize(const infer_model* m, const char* text, size_t len, bool add_special, int32_t* out,
                            int32_t cap, int32_t* n_out) {
  if (!m) return invalid("infer_tokenize: NULL model");
  if (!m->tok.t) return guarded([&] { need_tokenizer(m); });
  return infer_tokenizer_encode(&m->tok, text, len, add_special, out, cap, n_out);
}

infer_status infer_detokenize(const infer_model* m, const int32_t* ids, int32_t n, bool skip_special, char* out,
                              size_t cap, size_t* n_out) {
  if (!m) return invalid("infer_detokenize: NULL model");
  if (!m->tok.t) return guarded([&] { need_tokenizer(m); });
  return infer_tokenizer_decode(&m->tok, ids, n, skip_special, out, cap, n_out);
}

int32_t infer_token_lookup(const infer_model* m, const char* text) {
  if (!m || !text || !m->m->tokenizer) return -1;
  return m->m->tokenizer->token_id(text);
}

// ---- context

infer_context_params infer_context_default_params(void) {
  infer_context_params p{};
  p.n_ctx = 0;
  p.n_threads = 0;
  p.n_batch = 0;
  p.device = nullptr;
  p.mtp = true;
  return p;
}

infer_status infer_context_create(infer_model* m, const infer_context_params* params, infer_context** out) {
  if (!m || !out) return invalid("infer_context_create: model and out must not be NULL");
  *out = nullptr;
  const infer_context_params p = params ? *params : infer_context_default_params();
  return guarded([&] {
    int64_t n_ctx = p.n_ctx;
    const int64_t train = m->m->config.max_position_embeddings;
    if (n_ctx <= 0) n_ctx = train > 0 ? std::min<int64_t>(train, 4096) : 4096;
    const int64_t n_batch = p.n_batch > 0 ? p.n_batch : 512;
    auto c = std::make_unique<infer_context>();
    c->model = m;
    c->c = std::make_unique<infer::Session>(*m->m, n_ctx, infer::make_backend(p.device ? p.device : "auto", p.n_threads),
                                            n_batch);
    c->device = c->c->backend().name();
    c->c->set_mtp(p.mtp);
    *out = c.release();
  });
}

void infer_context_free(infer_context* ctx) { delete ctx; }
const char* infer_context_device(const infer_context* c) { return c ? c->device.c_str() : ""; }
int32_t infer_context_n_ctx(const infer_context* c) { return c ? int32_t(c->c->n_ctx()) : 0; }
int32_t infer_context_n_past(const infer_context* c) { return c ? int32_t(c->c->n_past()) : 0; }
int64_t infer_context_kv_bytes_per_token(const infer_context* c) { return c ? c->c->model().kv_bytes_per_token() : 0; }
int64_t infer_context_mtp_kv_bytes_per_token(const infer_context* c) {
  return c && c->c->mtp() ? c->c->model().mtp_kv_bytes_per_token() : 0;
}

infer_status infer_context_truncate(infer_context* c, int32_t n_keep) {
  if (!c) return invalid("infer_context_truncate: NULL context");
  return guarded([&] { c->c->truncate(n_keep); });
}

infer_status infer_context_eval(infer_context* c, const int32_t* ids, int32_t n, bool all_logits) {
  if (!c || !ids || n <= 0) return invalid("infer_context_eval: bad arguments");
  return guarded([&] { c->c->eval(ids, n, all_logits); });
}

const float* infer_context_logits(const infer_context* c, int32_t* n_rows) {
  if (!c) return nullptr;
  if (n_rows) *n_rows = int32_t(c->c->logits_rows());
  return c->c->logits_rows() ? c->c->logits() : nullptr;
}

infer_status infer_context_dump(infer_context* c, const int32_t* ids, int32_t n, const char* path) {
  if (!c || !ids || n <= 0 || !path) return invalid("infer_context_dump: bad arguments");
  return guarded([&] {
    // Keep copies of every named intermediate, then write them in one go (temp file + rename).
    std::vector<std::pair<std::string, std::vector<float>>> saved;
    std::vector<std::vector<int64_t>> shapes;
    infer::DumpFn fn = [&](const std::string& name, const float* data, int64_t rows, int64_t cols) {
      saved.emplace_back(name, std::vector<float>(data, data + rows * cols));
      shapes.push_back({rows, cols});
    };
    c->c->truncate(0);
    c->c->eval(ids, n, true, &fn);
    const int64_t V = c->c->model().vocab_size();
    std::vector<infer::WriteTensor> ts;
    ts.push_back({"logits", infer::DType::F32, {n, V}, c->c->logits()});
    std::vector<int32_t> idv(ids, ids + n);
    ts.push_back({"ids", infer::DType::I32, {n}, idv.data()});
    for (size_t i = 0; i < saved.size(); ++i) ts.push_back({saved[i].first, infer::DType::F32, shapes[i], saved[i].second.data()});
    infer::write_safetensors(path, ts, {{"model_type", c->model->m->config.model_type}});
  });
}

// ---- sampling

infer_sampler_params infer_sampler_default_params(void) {
  infer_sampler_params p{};
  p.temperature = 0.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.presence_penalty = 0.0f;
  p.frequency_penalty = 0.0f;
  p.repetition_penalty = 1.0f;
  p.seed = 0;
  return p;
}

infer_sampler_params infer_model_sampler_defaults(const infer_model* m) {
  infer_sampler_params p = infer_sampler_default_params();
  if (!m) return p;
  const auto& g = m->m->generation;
  if (!g.present) return p;
  // HF: do_sample=false means greedy whatever the temperature says.
  p.temperature = g.do_sample ? float(g.temperature) : 0.0f;
  p.top_k = int32_t(g.top_k);
  p.top_p = float(g.top_p);
  p.min_p = float(g.min_p);
  p.repetition_penalty = float(g.repetition_penalty);
  return p;
}

infer_status infer_sampler_create(const infer_sampler_params* params, infer_sampler** out) {
  if (!params || !out) return invalid("infer_sampler_create: bad arguments");
  return guarded([&] {
    auto s = std::make_unique<infer_sampler>();
    s->s = std::make_unique<infer::Sampler>(*params);
    *out = s.release();
  });
}

void infer_sampler_free(infer_sampler* s) { delete s; }
void infer_sampler_accept(infer_sampler* s, int32_t token, bool is_prompt) {
  if (s) s->s->accept(token, is_prompt);
}
void infer_sampler_reset(infer_sampler* s) {
  if (s) s->s->reset();
}
int32_t infer_sampler_sample(infer_sampler* s, const float* logits, int32_t n) {
  if (!s || !logits || n <= 0) return -1;
  return s->s->sample(logits, n);
}

// ---- generation

infer_generate_params infer_generate_default_params(void) {
  infer_generate_params p{};
  p.max_tokens = 0;
  p.stop = nullptr;
  p.n_stop = 0;
  p.n_logprobs = 0;
  p.sampling = infer_sampler_default_params();
  p.thinking_budget = -1;
  p.ignore_eos = false;
  p.no_logprob = false;
  return p;
}

infer_status infer_generate(infer_context* c, const int32_t* prompt, int32_t n_prompt, const infer_generate_params* params,
                            infer_token_callback callback, void* user_data, infer_generate_result* result) {
  if (!c || !prompt || !params || !callback) return invalid("infer_generate: bad arguments");
  if (params->n_logprobs < 0 || params->n_logprobs > 20) return invalid("infer_generate: n_logprobs must be in 0..20");
  return guarded([&] {
    const infer::GenerateOptions o = infer_generate_options_internal(c->model, params);
    infer::Sampler sampler(params->sampling);
    auto r = infer::generate(*c->c, prompt, n_prompt, sampler, o,
                             [&](const infer_token_info& t) { return callback(&t, user_data); });
    if (result) *result = r;
  });
}

}  // extern "C"
