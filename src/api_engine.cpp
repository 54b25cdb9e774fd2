// api_engine.cpp — the continuous-batching engine in the C API (infer_engine_*, include/infer/infer.h) over
// server/engine.h. Like every entry point in api.cpp, exceptions stop here and become a status +
// infer_last_error().
#include <algorithm>
#include <memory>

#include "api_internal.h"
#include "common.h"
#include "server/engine.h"

struct infer_engine {
  const infer_model* model = nullptr;
  std::unique_ptr<infer::server::Engine> e;
  infer_engine_params params;
};

extern "C" {

INFER_API infer_engine_params infer_engine_default_params(void) {
  infer_engine_params p{};
  p.n_parallel = 4;
  p.n_ctx = 0;
  p.n_threads = 0;
  p.n_batch = 512;
  p.kv_block_size = 16;
  p.n_kv_blocks = 0;
  p.max_queue = 64;
  p.device = nullptr;
  return p;
}

INFER_API infer_status infer_engine_create(infer_model* model, const infer_engine_params* params, infer_engine** out) {
  return infer_guarded_internal([&] {
    if (!model || !out) infer::fail(INFER_ERR_INVALID_ARG, "infer_engine_create: model and out must not be NULL");
    *out = nullptr;
    const infer_engine_params p = params ? *params : infer_engine_default_params();
    const infer::Transformer& m = infer_model_internal(model);
    infer::server::EngineOptions o;
    const int64_t train = m.config.max_position_embeddings;
    o.n_ctx = p.n_ctx > 0 ? p.n_ctx : (train > 0 ? std::min<int64_t>(train, 4096) : 4096);
    o.n_parallel = p.n_parallel > 0 ? p.n_parallel : 4;
    o.n_batch = p.n_batch > 0 ? p.n_batch : 512;
    o.block_size = p.kv_block_size > 0 ? p.kv_block_size : 16;
    o.n_blocks = p.n_kv_blocks > 0 ? p.n_kv_blocks : 0;
    o.max_queue = p.max_queue >= 0 ? p.max_queue : 64;
    auto e = std::make_unique<infer_engine>();
    e->model = model;
    e->e = std::make_unique<infer::server::Engine>(
        m, infer::make_backend(p.device ? p.device : "auto", p.n_threads), o);
    const auto& r = e->e->options();
    e->params = p;
    e->params.n_parallel = int32_t(r.n_parallel);
    e->params.n_ctx = int32_t(r.n_ctx);
    e->params.n_batch = int32_t(r.n_batch);
    e->params.kv_block_size = int32_t(r.block_size);
    e->params.n_kv_blocks = int32_t(r.n_blocks);
    e->params.max_queue = int32_t(r.max_queue);
    e->params.device = nullptr;
    *out = e.release();
  });
}

INFER_API void infer_engine_free(infer_engine* engine) { delete engine; }

INFER_API infer_status infer_engine_submit(infer_engine* engine, const int32_t* prompt, int32_t n_prompt,
                                           const infer_generate_params* params, infer_token_callback on_token,
                                           infer_request_done_callback on_done, void* user_data, uint64_t* id) {
  return infer_guarded_internal([&] {
    if (!engine || !params || !on_token || !on_done || (!prompt && n_prompt > 0) || n_prompt < 0)
      infer::fail(INFER_ERR_INVALID_ARG, "infer_engine_submit: bad arguments");
    if (params->n_logprobs < 0 || params->n_logprobs > 20)
      infer::fail(INFER_ERR_INVALID_ARG, "infer_engine_submit: n_logprobs must be in 0..20");
    infer::server::Request r;
    r.prompt.assign(prompt, prompt + n_prompt);
    r.sampling = params->sampling;
    r.gen = infer_generate_options_internal(engine->model, params);
    r.on_token = [on_token, user_data](const infer_token_info& t) { return on_token(&t, user_data); };
    r.on_done = [on_done, user_data](const infer_generate_result& res, infer_status st, const std::string& msg) {
      on_done(&res, st, msg.c_str(), user_data);
    };
    const uint64_t i = engine->e->submit(std::move(r));
    if (id) *id = i;
  });
}

INFER_API void infer_engine_cancel(infer_engine* engine, uint64_t id) {
  if (engine) engine->e->cancel(id);
}

INFER_API void infer_engine_get_stats(const infer_engine* engine, infer_engine_stats* out) {
  if (!engine || !out) return;
  const auto s = engine->e->stats();
  *out = infer_engine_stats{};
  out->running = int32_t(s.running);
  out->queued = int32_t(s.queued);
  out->kv_blocks = int32_t(s.kv_blocks);
  out->kv_blocks_used = int32_t(s.kv_blocks_used);
  out->kv_blocks_cached = int32_t(s.kv_blocks_cached);
  out->kv_block_size = int32_t(s.block_size);
  out->steps = s.steps;
  out->max_step_requests = s.max_step_seqs;
  out->prompt_tokens = s.prompt_tokens;
  out->prompt_tokens_cached = s.prompt_tokens_cached;
  out->generated_tokens = s.generated_tokens;
  out->requests_done = s.requests_done;
}

INFER_API infer_engine_params infer_engine_get_params(const infer_engine* engine) {
  return engine ? engine->params : infer_engine_default_params();
}

}  // extern "C"
