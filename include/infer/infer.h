/* infer.h — the public C API of libinfer.
 *
 * Opaque handles, `*_default_params()` for every params struct, a free for every create, an
 * `infer_status` from every call that can fail, and `infer_last_error()` for the message.
 *
 * Lifetimes:
 *   - an infer_model outlives every infer_context created from it;
 *   - pointers returned by getters (`infer_model_arch`, `infer_context_logits`, …) stay valid until the
 *     owning handle is freed or, for logits, until the next eval on that context;
 *   - `infer_last_error()` is per thread and valid until the next failing call on that thread.
 * Thread safety: one context per thread; a model may be shared read-only by several contexts.
 * Params structs: new fields are only ever added at the end; booleans stay last.
 */
#ifndef INFER_INFER_H
#define INFER_INFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define INFER_API __declspec(dllexport)
#else
#define INFER_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum infer_status {
  INFER_OK = 0,
  INFER_ERR_INVALID_ARG = 1,  /* a bad argument from the caller (null pointer, out-of-range value) */
  INFER_ERR_IO = 2,           /* a file could not be opened, read or written */
  INFER_ERR_FORMAT = 3,       /* a file is malformed or disagrees with another (names file/tensor/field) */
  INFER_ERR_UNSUPPORTED = 4,  /* a valid input that this build does not support (arch, dtype, feature) */
  INFER_ERR_OUT_OF_MEMORY = 5,
  INFER_ERR_CONTEXT_FULL = 6, /* the tokens do not fit in the context window */
  INFER_ERR_CANCELLED = 7,    /* a callback asked to stop */
  INFER_ERR_INTERNAL = 8,
  INFER_ERR_BUSY = 9          /* no room right now (a full request queue); retry later */
} infer_status;

/* The message of the last failed call on this thread ("" if none). */
INFER_API const char* infer_last_error(void);
/* A short constant name for a status ("INFER_ERR_FORMAT"). */
INFER_API const char* infer_status_name(infer_status status);
/* Library version, "MAJOR.MINOR.PATCH". */
INFER_API const char* infer_version(void);
/* The compute paths in use, e.g. "avx512" (CPU kernels chosen at run time; INFER_CPU_ISA overrides). */
INFER_API const char* infer_system_info(void);

typedef struct infer_model infer_model;
typedef struct infer_context infer_context;
typedef struct infer_sampler infer_sampler;

/* ------------------------------------------------------------------------------------------------ */
/* Model                                                                                              */

/* Called during load with a fraction in [0, 1]; return false to cancel the load. */
typedef bool (*infer_progress_callback)(float progress, void* user_data);

typedef struct infer_model_params {
  int32_t n_threads;                       /* threads used for load-time work; <= 0: all cores */
  infer_progress_callback progress;        /* may be NULL */
  void* progress_user_data;
  bool load_tokenizer;                     /* default true; false skips tokenizer.json */
} infer_model_params;

INFER_API infer_model_params infer_model_default_params(void);

/* Loads a Hugging Face model directory (config.json, generation_config.json, tokenizer.json,
 * *.safetensors [+ model.safetensors.index.json]). Weights are memory-mapped. */
INFER_API infer_status infer_model_load(const char* dir, const infer_model_params* params, infer_model** out);
INFER_API void infer_model_free(infer_model* model);

INFER_API const char* infer_model_arch(const infer_model* model);   /* config.json model_type */
INFER_API int32_t infer_model_vocab_size(const infer_model* model);  /* rows of the logits */
INFER_API int32_t infer_model_n_ctx_train(const infer_model* model); /* max_position_embeddings */
INFER_API int64_t infer_model_n_params(const infer_model* model);
INFER_API int64_t infer_model_weight_bytes(const infer_model* model);
/* Weight bytes one decode step reads: all of them, less an untied embedding table (one row is read) and, in MoE
   layers, the experts not routed to (top-k of them are read). The bandwidth roofline of decode is
   (memory bandwidth) / this. */
INFER_API int64_t infer_model_weight_bytes_per_token(const infer_model* model);
/* A one-line description, e.g. "qwen3 28L h1024 16/8 heads d128 bf16 (596M params)". */
INFER_API const char* infer_model_desc(const infer_model* model);
/* True when config.json carries the "infer_random_weights" marker (test and demo models). */
INFER_API bool infer_model_is_random(const infer_model* model);
/* End-of-sequence ids from generation_config.json (falling back to config.json). Returns how many
 * there are; writes up to `cap` of them. */
INFER_API int32_t infer_model_eos_ids(const infer_model* model, int32_t* out, int32_t cap);
INFER_API bool infer_model_has_tokenizer(const infer_model* model);

/* ------------------------------------------------------------------------------------------------ */
/* Tokenizer (the model's tokenizer.json)                                                             */

/* Encodes UTF-8 text. Writes up to `cap` ids and sets *n_out to the full count; if the count exceeds
 * `cap` the call returns INFER_ERR_INVALID_ARG and *n_out says how much room is needed.
 * add_special: add the BOS the tokenizer's config asks for (false for raw prompts). */
INFER_API infer_status infer_tokenize(const infer_model* model, const char* text, size_t len, bool add_special,
                                      int32_t* out, int32_t cap, int32_t* n_out);
/* Decodes ids to UTF-8 bytes (special tokens included unless skip_special). Writes up to `cap` bytes
 * and sets *n_out to the full length (same overflow rule as infer_tokenize). No NUL is appended. */
INFER_API infer_status infer_detokenize(const infer_model* model, const int32_t* ids, int32_t n, bool skip_special,
                                        char* out, size_t cap, size_t* n_out);
/* The id of a token given by its exact text (added tokens included), or -1. */
INFER_API int32_t infer_token_lookup(const infer_model* model, const char* text);

/* A tokenizer on its own, for directories that hold only tokenizer.json (+ tokenizer_config.json).
 * infer_model_tokenizer returns the model's own (borrowed: valid while the model lives; NULL if it has none). */
typedef struct infer_tokenizer infer_tokenizer;
INFER_API infer_status infer_tokenizer_load(const char* dir, infer_tokenizer** out);
INFER_API void infer_tokenizer_free(infer_tokenizer* tok);
INFER_API const infer_tokenizer* infer_model_tokenizer(const infer_model* model);
INFER_API infer_status infer_tokenizer_encode(const infer_tokenizer* tok, const char* text, size_t len, bool add_special,
                                              int32_t* out, int32_t cap, int32_t* n_out);
INFER_API infer_status infer_tokenizer_decode(const infer_tokenizer* tok, const int32_t* ids, int32_t n,
                                              bool skip_special, char* out, size_t cap, size_t* n_out);
INFER_API int32_t infer_tokenizer_vocab_size(const infer_tokenizer* tok);

/* ------------------------------------------------------------------------------------------------ */
/* Context: KV cache and scratch for one sequence                                                     */

typedef struct infer_context_params {
  int32_t n_ctx;     /* tokens in the KV cache; <= 0: min(max_position_embeddings, 4096) */
  int32_t n_threads; /* compute threads; <= 0: all cores */
  int32_t n_batch;   /* max tokens per forward step in prefill; <= 0: 512 */
  const char* device; /* "cpu", "cuda" (or "cuda:N"); NULL or "auto": CUDA when a usable GPU is present, else CPU */
  bool mtp;           /* default true: when the model has an MTP draft head (DeepSeek-V3/R1), infer_generate decodes
                         self-speculatively with it (same output, fewer forward passes); false skips it entirely */
} infer_context_params;

INFER_API infer_context_params infer_context_default_params(void);
INFER_API infer_status infer_context_create(infer_model* model, const infer_context_params* params, infer_context** out);
INFER_API void infer_context_free(infer_context* ctx);
/* The backend the context runs on ("cpu", "cuda"). */
INFER_API const char* infer_context_device(const infer_context* ctx);

INFER_API int32_t infer_context_n_ctx(const infer_context* ctx);
/* Tokens currently in the KV cache. */
INFER_API int32_t infer_context_n_past(const infer_context* ctx);
/* Drops cached tokens from position n_keep on (0 clears the cache). */
INFER_API infer_status infer_context_truncate(infer_context* ctx, int32_t n_keep);
/* Bytes the KV cache holds per token (all layers). */
INFER_API int64_t infer_context_kv_bytes_per_token(const infer_context* ctx);
/* Bytes the MTP draft head's own cache holds per token (not in the number above); 0 when the context runs none. */
INFER_API int64_t infer_context_mtp_kv_bytes_per_token(const infer_context* ctx);

/* Runs the model on `n` tokens at positions n_past..n_past+n-1 and appends them to the KV cache.
 * all_logits: keep logits for every one of the n positions (else only the last).
 * INFER_ERR_CONTEXT_FULL if they do not fit; INFER_ERR_INVALID_ARG for an id outside the vocabulary. */
INFER_API infer_status infer_context_eval(infer_context* ctx, const int32_t* ids, int32_t n, bool all_logits);
/* Logits of the last infer_context_eval: rows × vocab floats, row-major; *n_rows is n (all_logits) or 1. After
 * infer_generate on a device that samples itself they may stay on the device: then NULL and *n_rows = 0. */
INFER_API const float* infer_context_logits(const infer_context* ctx, int32_t* n_rows);

/* Evaluates `ids` from an empty cache and writes float32 logits [n, vocab] ("logits") and named
 * per-layer intermediates ("layers.{L}.attn_norm", …, [n, width]) to a safetensors file at `path`.
 * The file is written to a temporary name and renamed, so a failure leaves no partial output. */
INFER_API infer_status infer_context_dump(infer_context* ctx, const int32_t* ids, int32_t n, const char* path);

/* ------------------------------------------------------------------------------------------------ */
/* Sampling                                                                                           */

typedef struct infer_sampler_params {
  float temperature;        /* <= 0: greedy (argmax) */
  int32_t top_k;            /* <= 0: off */
  float top_p;              /* >= 1: off */
  float min_p;              /* <= 0: off */
  float presence_penalty;   /* subtracted once from the logit of every token already generated */
  float frequency_penalty;  /* subtracted per occurrence */
  float repetition_penalty; /* 1: off; HF/CTRL style (logit / p if > 0, * p if < 0) over prompt + output */
  uint64_t seed;
} infer_sampler_params;

/* Neutral defaults (greedy). infer_model_sampler_defaults gives the model's generation_config.json. */
INFER_API infer_sampler_params infer_sampler_default_params(void);
INFER_API infer_sampler_params infer_model_sampler_defaults(const infer_model* model);

INFER_API infer_status infer_sampler_create(const infer_sampler_params* params, infer_sampler** out);
INFER_API void infer_sampler_free(infer_sampler* sampler);
/* Tell the sampler about tokens that count for penalties (prompt tokens: is_prompt = true). */
INFER_API void infer_sampler_accept(infer_sampler* sampler, int32_t token, bool is_prompt);
INFER_API void infer_sampler_reset(infer_sampler* sampler);
/* Picks a token from `n_vocab` logits (not modified). */
INFER_API int32_t infer_sampler_sample(infer_sampler* sampler, const float* logits, int32_t n_vocab);

/* ------------------------------------------------------------------------------------------------ */
/* Generation loop                                                                                    */

typedef enum infer_finish_reason {
  INFER_FINISH_NONE = 0,
  INFER_FINISH_STOP = 1,   /* an eos id or a stop string */
  INFER_FINISH_LENGTH = 2, /* max_tokens or a full context */
  INFER_FINISH_CANCELLED = 3
} infer_finish_reason;

/* One generated token, as handed to the callback. */
typedef struct infer_token_info {
  int32_t id;
  const char* text;   /* the newly complete UTF-8 text this token releases (may be empty; not NUL-terminated) */
  size_t text_len;
  float logprob;      /* log-softmax of the raw logits at the chosen id */
  int32_t n_top;      /* entries in top_ids/top_logprobs (= n_logprobs) */
  const int32_t* top_ids;
  const float* top_logprobs;
  int32_t phase;      /* INFER_PHASE_*: where this token belongs (answer, reasoning, or a <think>/</think> tag) */
  bool forced;        /* inserted by the engine (the thinking-budget cut), not sampled */
} infer_token_info;

/* Phases of generated text for reasoning models (Qwen3, DeepSeek-R1): text between <think> and </think> is
 * reasoning, the tags themselves are INFER_PHASE_THINK_TAG, everything else is the answer. */
enum { INFER_PHASE_ANSWER = 0, INFER_PHASE_REASONING = 1, INFER_PHASE_THINK_TAG = 2 };

/* Return false to stop generating (finish reason CANCELLED). */
typedef bool (*infer_token_callback)(const infer_token_info* token, void* user_data);

typedef struct infer_generate_params {
  int32_t max_tokens;           /* <= 0: until eos or a full context */
  const char* const* stop;      /* stop strings (not included in the output) */
  int32_t n_stop;
  int32_t n_logprobs;           /* top-N logprobs per token, 0..20 */
  infer_sampler_params sampling;
  int32_t thinking_budget;      /* < 0: unlimited. Else after this many reasoning tokens without </think>, the engine
                                   inserts "\n\nConsidering the limited time by the user, I have to give the solution
                                   based on the thinking directly now.\n</think>\n\n" and the model goes on to answer */
  bool ignore_eos;
  bool no_logprob;              /* skip infer_token_info.logprob (a log-softmax over the vocabulary per token) when
                                   n_logprobs is 0: the server sets it for requests that do not ask for logprobs */
} infer_generate_params;

INFER_API infer_generate_params infer_generate_default_params(void);

typedef struct infer_generate_result {
  infer_finish_reason finish_reason;
  int32_t prompt_tokens;  /* tokens evaluated for the prompt (those not already cached) */
  int32_t gen_tokens;
  double prompt_ms;
  double gen_ms;
  int32_t reasoning_tokens; /* tokens generated inside <think> … </think> (the forced text included) */
  bool thinking_cut;        /* the thinking budget ran out and the stop-thinking text was inserted */
  int32_t draft_tokens;     /* MTP self-speculative decoding: drafted tokens checked against the sampled one (0
                               without a draft head) */
  int32_t draft_accepted;   /* of those, accepted; the acceptance rate is draft_accepted / draft_tokens */
  int32_t prompt_cached_tokens; /* prompt tokens already in the cache (the context's, or the engine's prefix cache),
                                   not evaluated again */
} infer_generate_result;

/* Evaluates the prompt (reusing the cached prefix it shares with the context) and generates. */
INFER_API infer_status infer_generate(infer_context* ctx, const int32_t* prompt, int32_t n_prompt,
                                      const infer_generate_params* params, infer_token_callback callback,
                                      void* user_data, infer_generate_result* result);

/* ------------------------------------------------------------------------------------------------ */
/* Engine: continuous batching of many requests over one paged KV cache (what `infer serve` runs)       */
/*
 * Requests are queued and decoded together: each forward step runs the next token of every running request
 * (and chunks of new prompts) as one batch, so each weight read serves them all. The KV cache is a pool of
 * fixed-size blocks; prompts that start alike share the blocks of their common prefix. A request gives the
 * same tokens as infer_generate would (greedy: identical). Callbacks run on the engine's own thread and must
 * return quickly. Architectures without a batched forward (deepseek_v3) are refused with INFER_ERR_UNSUPPORTED.
 */
typedef struct infer_engine infer_engine;

typedef struct infer_engine_params {
  int32_t n_parallel;     /* requests decoded together; <= 0: 4 */
  int32_t n_ctx;          /* tokens per request (prompt + output); <= 0: min(max_position_embeddings, 4096) */
  int32_t n_threads;      /* compute threads; <= 0: all cores */
  int32_t n_batch;        /* tokens per forward step, all requests together; <= 0: 512 */
  int32_t kv_block_size;  /* tokens per KV block; <= 0: 16 */
  int32_t n_kv_blocks;    /* blocks in the pool; <= 0: enough for n_parallel full contexts */
  int32_t max_queue;      /* requests waiting to start; more are refused with INFER_ERR_BUSY; < 0: 64 */
  const char* device;     /* as infer_context_params.device (the engine needs the backend's paged ops) */
} infer_engine_params;

typedef struct infer_engine_stats {
  int32_t running, queued;
  int32_t kv_blocks, kv_blocks_used, kv_blocks_cached, kv_block_size;
  int64_t steps, max_step_requests, prompt_tokens, prompt_tokens_cached, generated_tokens, requests_done;
} infer_engine_stats;

/* Called once per accepted request, on the engine's thread, when it ends: status INFER_OK with the result
 * (finish_reason STOP, LENGTH or CANCELLED) or an error with its message. */
typedef void (*infer_request_done_callback)(const infer_generate_result* result, infer_status status,
                                            const char* message, void* user_data);

INFER_API infer_engine_params infer_engine_default_params(void);
INFER_API infer_status infer_engine_create(infer_model* model, const infer_engine_params* params, infer_engine** out);
/* Ends every request (on_done reports them cancelled) and stops the engine's thread. */
INFER_API void infer_engine_free(infer_engine* engine);
/* Queues a request; *id identifies it for infer_engine_cancel. The prompt is checked first: INFER_ERR_INVALID_ARG,
 * INFER_ERR_CONTEXT_FULL (longer than n_ctx), INFER_ERR_UNSUPPORTED, or INFER_ERR_BUSY when the queue is full — then
 * no callback is ever called. on_token returning false cancels the request. */
INFER_API infer_status infer_engine_submit(infer_engine* engine, const int32_t* prompt, int32_t n_prompt,
                                           const infer_generate_params* params, infer_token_callback on_token,
                                           infer_request_done_callback on_done, void* user_data, uint64_t* id);
INFER_API void infer_engine_cancel(infer_engine* engine, uint64_t id);
INFER_API void infer_engine_get_stats(const infer_engine* engine, infer_engine_stats* out);
/* The n_ctx, n_parallel, … the engine runs with (defaults resolved). */
INFER_API infer_engine_params infer_engine_get_params(const infer_engine* engine);

/* ------------------------------------------------------------------------------------------------ */
/* Chat templates                                                                                     */

/* Renders a conversation with the model's chat template, byte for byte what transformers'
 * tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=…, tokenize=False,
 * **kwargs) gives. messages_json: a JSON array of messages ({"role": …, "content": …, "tool_calls": …});
 * tools_json: a JSON array of tool schemas or NULL; kwargs_json: a JSON object of extra template
 * variables (e.g. {"enable_thinking": false}) or NULL. The template is chat_template.jinja in the
 * model directory if present, else tokenizer_config.json's chat_template. Writes up to `cap` bytes
 * (no NUL) and sets *n_out to the full length (same overflow rule as infer_tokenize). Errors raised by
 * the template (raise_exception, a message it cannot handle) are INFER_ERR_INVALID_ARG; a directory
 * without a chat template is INFER_ERR_UNSUPPORTED. */
INFER_API infer_status infer_chat_render(const infer_model* model, const char* messages_json, const char* tools_json,
                                         const char* kwargs_json, bool add_generation_prompt, char* out, size_t cap,
                                         size_t* n_out);
/* The same for a directory holding only tokenizer_config.json and/or chat_template.jinja (no weights). */
INFER_API infer_status infer_chat_render_dir(const char* dir, const char* messages_json, const char* tools_json,
                                             const char* kwargs_json, bool add_generation_prompt, char* out,
                                             size_t cap, size_t* n_out);

#ifdef __cplusplus
}
#endif

#endif /* INFER_INFER_H */
