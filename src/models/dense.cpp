// dense.cpp — see dense.h.
//
// Numerics: fp32 activations, weights as stored (bf16), fp32 accumulation — what HF computes when the bf16
// checkpoint is run with .float(), which is how tools/make_tiny_models.py makes the references.
#include "models/dense.h"

#include <algorithm>
#include <cmath>

#include "common.h"

namespace infer::models {
namespace {

// Scratch of one forward step, carved from the state's buffers (all fp32, backend memory).
struct DenseState : ForwardState {
  using ForwardState::ForwardState;
  std::vector<void*> k_cache, v_cache;  // per layer: (n_ctx, nkv*d)
  float *x, *xn, *qkv, *att, *ffn_out, *ffn_scratch, *logits;  // qkv: rows of q ‖ k ‖ v
  int64_t n_seqs = 0;  // paged: sequences per step (rows of logits)
};

}  // namespace

std::unique_ptr<ForwardState> DenseDecoder::new_state(Backend& backend, int64_t n_ctx, int64_t n_batch) const {
  return make_state(backend, n_ctx, n_batch, n_batch);
}

std::unique_ptr<ForwardState> DenseDecoder::make_state(Backend& backend, int64_t n_ctx, int64_t n_batch,
                                                       int64_t n_logit_rows) const {
  const auto& c = config;
  const int64_t kvw = c.num_key_value_heads * c.head_dim, qw = c.num_attention_heads * c.head_dim;
  auto st = std::make_unique<DenseState>(backend);
  st->n_ctx = n_ctx;
  st->n_batch = n_batch;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    st->k_cache.push_back(st->kv_cache(n_ctx, kvw));
    st->v_cache.push_back(st->kv_cache(n_ctx, kvw));
  }
  st->x = st->buffer(n_batch * c.hidden_size);
  st->xn = st->buffer(n_batch * std::max(c.hidden_size, qw));
  st->qkv = st->buffer(n_batch * (qw + 2 * kvw));
  st->att = st->buffer(n_batch * qw);
  st->ffn_out = st->buffer(n_batch * c.hidden_size);
  st->ffn_scratch = st->buffer(std::max<int64_t>(1, ffn_scratch_floats(n_batch)));
  st->logits = st->buffer(n_logit_rows * c.vocab_size);
  // Weights in the groups forward() and forward_batch() use (the CPU backend packs them here, once per model).
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const Layer& L = layers_[size_t(l)];
    backend.prepare_matmul({&L.wq, &L.wk, &L.wv});
    backend.prepare_matmul({&L.wo});
    prepare_ffn(backend, l);
  }
  backend.prepare_matmul({&lm_head_});
  return st;
}

int64_t DenseDecoder::kv_bytes_per_token() const {
  return config.num_hidden_layers * 2 * config.num_key_value_heads * config.head_dim * int64_t(sizeof(float));
}

int64_t DenseDecoder::weight_bytes_per_token() const {
  // An untied embedding table is read one row per token; a tied one is read whole as the lm_head.
  return weight_bytes() - (config.tie_word_embeddings ? 0 : int64_t(embed_->nbytes));
}

void DenseDecoder::bind_weights(const LoadOptions& opts) {
  const auto& c = config;
  const int64_t H = c.hidden_size, d = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int64_t V = c.vocab_size;
  embed_ = &weights->get("model.embed_tokens.weight", {V, H}, "vocab_size, hidden_size");
  bound_.push_back("model.embed_tokens.weight");
  if (embed_->dtype != DType::BF16 && embed_->dtype != DType::F32 && embed_->dtype != DType::F16)
    fail(INFER_ERR_UNSUPPORTED, "tensor model.embed_tokens.weight in " + embed_->file + " has dtype " +
                                    dtype_name(embed_->dtype) + "; supported: BF16, F16, F32");
  final_norm_ = &vector("model.norm.weight", H, "hidden_size");
  if (c.tie_word_embeddings) {
    lm_head_ = matrix("model.embed_tokens.weight", V, H, "vocab_size, hidden_size");
    if (weights->find("lm_head.weight")) bound_.push_back("lm_head.weight");  // saved anyway by some tools
  } else {
    lm_head_ = matrix("lm_head.weight", V, H, "vocab_size, hidden_size (tie_word_embeddings=false)");
  }
  layers_.resize(c.num_hidden_layers);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Layer& L = layers_[l];
    L.attn_norm = &vector(p + "input_layernorm.weight", H, "hidden_size");
    L.wq = matrix(p + "self_attn.q_proj.weight", nh * d, H, "num_attention_heads*head_dim, hidden_size");
    L.wk = matrix(p + "self_attn.k_proj.weight", nkv * d, H, "num_key_value_heads*head_dim, hidden_size");
    L.wv = matrix(p + "self_attn.v_proj.weight", nkv * d, H, "num_key_value_heads*head_dim, hidden_size");
    L.wo = matrix(p + "self_attn.o_proj.weight", H, nh * d, "hidden_size, num_attention_heads*head_dim");
    if (opts_.qkv_bias) {
      L.bq = &vector(p + "self_attn.q_proj.bias", nh * d, "num_attention_heads*head_dim");
      L.bk = &vector(p + "self_attn.k_proj.bias", nkv * d, "num_key_value_heads*head_dim");
      L.bv = &vector(p + "self_attn.v_proj.bias", nkv * d, "num_key_value_heads*head_dim");
    }
    if (opts_.qk_norm) {
      L.q_norm = &vector(p + "self_attn.q_norm.weight", d, "head_dim");
      L.k_norm = &vector(p + "self_attn.k_norm.weight", d, "head_dim");
    }
    L.ffn_norm = &vector(p + "post_attention_layernorm.weight", H, "hidden_size");
    bind_ffn(l, p);
    if (opts.progress && !opts.progress(0.9f * float(l + 1) / float(c.num_hidden_layers)))
      fail(INFER_ERR_CANCELLED, "model load cancelled");
  }
  rope_ = make_rope_table(d, c.rope_theta, c.rope_scaling, c.max_position_embeddings);
}

void emit_dump(Backend& be, const DumpFn* dump, const std::string& name, const float* data, int64_t rows,
               int64_t cols) {
  if (!dump) return;
  std::vector<float> host(size_t(rows * cols));
  be.to_host(data, host.data(), rows * cols);
  (*dump)(name, host.data(), rows, cols);
}

void DenseDecoder::bind_ffn(int64_t l, const std::string& p) {
  const int64_t H = config.hidden_size, I = config.intermediate_size;
  Layer& L = layers_[size_t(l)];
  L.w_gate = matrix(p + "mlp.gate_proj.weight", I, H, "intermediate_size, hidden_size");
  L.w_up = matrix(p + "mlp.up_proj.weight", I, H, "intermediate_size, hidden_size");
  L.w_down = matrix(p + "mlp.down_proj.weight", H, I, "hidden_size, intermediate_size");
}

void DenseDecoder::prepare_ffn(Backend& be, int64_t l) const {
  const Layer& L = layers_[size_t(l)];
  be.prepare_matmul({&L.w_gate, &L.w_up});
  be.prepare_matmul({&L.w_down});
}

int64_t DenseDecoder::ffn_scratch_floats(int64_t n_batch) const { return 2 * n_batch * config.intermediate_size; }

void DenseDecoder::ffn(Backend& be, int64_t l, const float* xn, float* out, int64_t T, float* scratch,
                       const std::string& pfx, const DumpFn* dump) const {
  const int64_t H = config.hidden_size, I = config.intermediate_size;
  const Layer& L = layers_[size_t(l)];
  // gate ‖ up side by side in one matmul (rows of 2I), then silu(gate)·up into the down projection.
  float* gu = scratch;
  be.matmul_concat(xn, H, {&L.w_gate, &L.w_up}, gu, 2 * I, T);
  be.swiglu_matmul(gu, 2 * I, I, L.w_down, out, H, T);
}

void DenseDecoder::forward(ForwardState& base, const int32_t* ids, int64_t T, float* logits, bool all_logits,
                           const DumpFn* dump) const {
  auto& st = static_cast<DenseState&>(base);
  Backend& be = st.backend;
  const auto& c = config;
  const int64_t H = c.hidden_size, d = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int64_t V = c.vocab_size, qw = nh * d, kvw = nkv * d;
  const int64_t pos0 = st.n_past;
  const float eps = float(c.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(float(d));
  const int64_t ldqkv = qw + 2 * kvw;
  float* q = st.qkv;
  float* k = q + qw;
  float* v = k + kvw;
  std::vector<float> host;
  auto emit = [&](const std::string& name, const float* data, int64_t rows, int64_t cols, int64_t ld) {
    if (!dump) return;
    host.resize(size_t(rows * cols));
    for (int64_t r = 0; r < rows; ++r) be.to_host(data + r * ld, host.data() + r * cols, cols);
    (*dump)(name, host.data(), rows, cols);
  };

  be.embed(*embed_, ids, T, st.x, H);
  emit("embed", st.x, T, H, H);
  be.rmsnorm(st.x, H, *layers_[0].attn_norm, st.xn, H, T, H, eps);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const Layer& L = layers_[l];
    const std::string pfx = "layers." + std::to_string(l) + ".";
    emit(pfx + "attn_norm", st.xn, T, H, H);
    be.matmul_concat(st.xn, H, {&L.wq, &L.wk, &L.wv}, st.qkv, ldqkv, T);
    if (L.bq) {
      be.add_bias(q, ldqkv, *L.bq, T);
      be.add_bias(k, ldqkv, *L.bk, T);
      be.add_bias(v, ldqkv, *L.bv, T);
    }
    be.head_norm_rope(q, ldqkv, T, nh, d, L.q_norm, eps, pos0, rope_);
    be.head_norm_rope(k, ldqkv, T, nkv, d, L.k_norm, eps, pos0, rope_);
    emit(pfx + "q", q, T, qw, ldqkv);
    emit(pfx + "k", k, T, kvw, ldqkv);
    emit(pfx + "v", v, T, kvw, ldqkv);
    be.kv_write(st.k_cache[l], kvw, pos0, k, ldqkv, T);
    be.kv_write(st.v_cache[l], kvw, pos0, v, ldqkv, T);
    be.attention(q, ldqkv, st.k_cache[l], st.v_cache[l], st.att, qw, T, pos0, nh, nkv, d, scale);
    emit(pfx + "attn", st.att, T, qw, qw);
    be.matmul(st.att, qw, L.wo, st.xn, H, T);
    emit(pfx + "attn_out", st.xn, T, H, H);
    be.add_rmsnorm(st.x, H, st.xn, H, *L.ffn_norm, st.xn, H, T, H, eps);  // residual, then the FFN's norm
    emit(pfx + "ffn_norm", st.xn, T, H, H);
    ffn(be, l, st.xn, st.ffn_out, T, st.ffn_scratch, pfx, dump);
    emit(pfx + "ffn_out", st.ffn_out, T, H, H);
    if (l + 1 < c.num_hidden_layers)  // residual, then the next layer's attention norm
      be.add_rmsnorm(st.x, H, st.ffn_out, H, *layers_[l + 1].attn_norm, st.xn, H, T, H, eps);
    else
      be.add(st.x, H, st.ffn_out, H, T, H);
    emit(pfx + "out", st.x, T, H, H);
  }

  // Final norm and lm_head on the rows whose logits are wanted.
  const int64_t r0 = all_logits ? 0 : T - 1, rows = T - r0;
  be.rmsnorm(st.x + r0 * H, H, *final_norm_, st.xn, H, rows, H, eps);
  emit("final_norm", st.xn, rows, H, H);
  be.matmul(st.xn, H, lm_head_, st.logits, V, rows);
  st.last_logits = st.logits + (rows - 1) * V;
  if (logits) be.to_host(st.logits, logits, rows * V);
  st.n_past = pos0 + T;
}

}  // namespace infer::models

namespace infer::models {

std::unique_ptr<ForwardState> DenseDecoder::new_paged_state(Backend& backend, int64_t n_blocks, int64_t block_size,
                                                            int64_t n_tokens, int64_t n_seqs) const {
  if (n_blocks <= 0 || block_size <= 0 || n_tokens <= 0 || n_seqs <= 0 || n_seqs > n_tokens)
    fail(INFER_ERR_INVALID_ARG, "paged state: n_blocks, block_size, n_tokens and n_seqs (<= n_tokens) must be positive");
  // The same buffers as a contiguous state whose n_ctx rows are the pool's blocks, back to back; logits for the last
  // token of each sequence only.
  auto st = make_state(backend, n_blocks * block_size, n_tokens, n_seqs);
  st->block_size = block_size;
  static_cast<DenseState&>(*st).n_seqs = n_seqs;
  return st;
}

void DenseDecoder::forward_batch(ForwardState& base, const BatchSeq* seqs, int64_t S, float* logits) const {
  auto& st = static_cast<DenseState&>(base);
  Backend& be = st.backend;
  const auto& c = config;
  const int64_t H = c.hidden_size, d = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int64_t V = c.vocab_size, qw = nh * d, kvw = nkv * d, bs = st.block_size;
  const float eps = float(c.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(float(d));
  if (bs <= 0) fail(INFER_ERR_INVALID_ARG, "forward_batch needs a paged state (new_paged_state)");
  if (S <= 0) fail(INFER_ERR_INVALID_ARG, "forward_batch: no sequences");

  // Flatten: all tokens of all sequences are the rows of one step; rows[t] is token t's cache row.
  std::vector<int32_t> ids, rows, last(static_cast<size_t>(S));
  std::vector<PagedSeq> ps(static_cast<size_t>(S));
  for (int64_t s = 0; s < S; ++s) {
    const BatchSeq& q = seqs[s];
    if (q.n <= 0 || q.pos0 < 0) fail(INFER_ERR_INVALID_ARG, "forward_batch: a sequence has no tokens");
    ps[size_t(s)] = {int64_t(ids.size()), q.n, q.pos0, q.blocks};
    for (int64_t i = 0; i < q.n; ++i) {
      const int64_t p = q.pos0 + i;
      ids.push_back(q.ids[i]);
      rows.push_back(int32_t(int64_t(q.blocks[p / bs]) * bs + p % bs));
    }
    last[size_t(s)] = int32_t(ids.size() - 1);
  }
  const int64_t T = int64_t(ids.size());
  if (T > st.n_batch || S > st.n_seqs)
    fail(INFER_ERR_INVALID_ARG, "forward_batch: " + std::to_string(T) + " tokens of " + std::to_string(S) +
                                    " sequences exceed the state's " + std::to_string(st.n_batch) + " tokens of " +
                                    std::to_string(st.n_seqs) + " sequences per step");

  // The same steps as forward() (fused q/k/v and residual+norm kernels), with RoPE, the cache writes and attention
  // per sequence.
  const int64_t ldqkv = qw + 2 * kvw;
  float* q = st.qkv;
  float* k = q + qw;
  float* v = k + kvw;
  be.embed(*embed_, ids.data(), T, st.x, H);
  be.rmsnorm(st.x, H, *layers_[0].attn_norm, st.xn, H, T, H, eps);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const Layer& L = layers_[size_t(l)];
    // The projections run on every token of every sequence at once: each weight is read once per step.
    be.matmul_concat(st.xn, H, {&L.wq, &L.wk, &L.wv}, st.qkv, ldqkv, T);
    if (L.bq) {
      be.add_bias(q, ldqkv, *L.bq, T);
      be.add_bias(k, ldqkv, *L.bk, T);
      be.add_bias(v, ldqkv, *L.bv, T);
    }
    for (const PagedSeq& p : ps) {  // RoPE at each sequence's own positions
      be.head_norm_rope(q + p.row0 * ldqkv, ldqkv, p.n, nh, d, L.q_norm, eps, p.pos0, rope_);
      be.head_norm_rope(k + p.row0 * ldqkv, ldqkv, p.n, nkv, d, L.k_norm, eps, p.pos0, rope_);
    }
    be.kv_write_rows(st.k_cache[size_t(l)], kvw, rows.data(), k, ldqkv, T);
    be.kv_write_rows(st.v_cache[size_t(l)], kvw, rows.data(), v, ldqkv, T);
    be.paged_attention(q, ldqkv, st.k_cache[size_t(l)], st.v_cache[size_t(l)], st.att, qw, ps.data(), S, bs, nh,
                       nkv, d, scale);
    be.matmul(st.att, qw, L.wo, st.xn, H, T);
    be.add_rmsnorm(st.x, H, st.xn, H, *L.ffn_norm, st.xn, H, T, H, eps);  // residual, then the FFN's norm
    ffn(be, l, st.xn, st.ffn_out, T, st.ffn_scratch, "layers." + std::to_string(l) + ".", nullptr);
    if (l + 1 < c.num_hidden_layers)  // residual, then the next layer's attention norm
      be.add_rmsnorm(st.x, H, st.ffn_out, H, *layers_[size_t(l) + 1].attn_norm, st.xn, H, T, H, eps);
    else
      be.add(st.x, H, st.ffn_out, H, T, H);
  }
  // Final norm and lm_head on each sequence's last row only.
  be.gather_rows(st.x, H, last.data(), S, st.ffn_out, H, H);
  be.rmsnorm(st.ffn_out, H, *final_norm_, st.xn, H, S, H, eps);
  be.matmul(st.xn, H, lm_head_, st.logits, V, S);
  st.last_logits = st.logits + (S - 1) * V;  // the last sequence's row (row s of st.logits is sequence s's)
  if (logits) be.to_host(st.logits, logits, S * V);
}

}  // namespace infer::models
