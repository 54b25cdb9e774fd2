// qwen3.cpp — Qwen3 dense (model_type "qwen3"): GQA attention with per-head QK-Norm before NeoX RoPE,
// SwiGLU MLP, pre-norm residual blocks, tied or untied lm_head. model-spec.md §1.1, §2.1, §3.1–3.2.
//
// Numerics: fp32 activations and KV cache, bf16 (or f32) weights, fp32 accumulation — what HF computes
// when the bf16 checkpoint is run with .float(), which is how tools/make_tiny_models.py makes references.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "common.h"
#include "models/models.h"
#include "rope.h"

namespace infer::models {
namespace {

using cpu::Matrix;

struct Layer {
  const TensorInfo* attn_norm;  // (H,)
  Matrix wq;                    // (nh*d, H)
  Matrix wk;                    // (nkv*d, H)
  Matrix wv;                    // (nkv*d, H)
  Matrix wo;                    // (H, nh*d)
  const TensorInfo* q_norm;     // (d,)
  const TensorInfo* k_norm;     // (d,)
  const TensorInfo* ffn_norm;   // (H,)
  Matrix w_gate;                // (I, H)
  Matrix w_up;                  // (I, H)
  Matrix w_down;                // (H, I)
};

struct Qwen3State : ForwardState {
  int64_t n_batch = 0;
  std::vector<std::vector<float>> k_cache, v_cache;  // per layer: (n_ctx, nkv*d)
  std::vector<float> x, xn, q, k, v, att, gate, up, scores, rope_cs;
};

class Qwen3 final : public Transformer {
 public:
  explicit Qwen3(const ModelConfig& cfg) { config = cfg; }

  std::unique_ptr<ForwardState> new_state(int64_t n_ctx, int64_t n_batch) const override {
    const auto& c = config;
    auto st = std::make_unique<Qwen3State>();
    st->n_ctx = n_ctx;
    st->n_batch = n_batch;
    const int64_t kvw = c.num_key_value_heads * c.head_dim, qw = c.num_attention_heads * c.head_dim;
    st->k_cache.assign(c.num_hidden_layers, std::vector<float>(size_t(n_ctx * kvw)));
    st->v_cache.assign(c.num_hidden_layers, std::vector<float>(size_t(n_ctx * kvw)));
    st->x.resize(n_batch * c.hidden_size);
    st->xn.resize(n_batch * std::max(c.hidden_size, qw));
    st->q.resize(n_batch * qw);
    st->k.resize(n_batch * kvw);
    st->v.resize(n_batch * kvw);
    st->att.resize(n_batch * qw);
    st->gate.resize(n_batch * c.intermediate_size);
    st->up.resize(n_batch * c.intermediate_size);
    st->rope_cs.resize(n_batch * c.head_dim);
    return st;
  }

  int64_t kv_bytes_per_token() const override {
    return config.num_hidden_layers * 2 * config.num_key_value_heads * config.head_dim * int64_t(sizeof(float));
  }

  void forward(ForwardState& base, ThreadPool& pool, const int32_t* ids, int64_t n, float* logits, bool all_logits,
               const DumpFn* dump) const override;

 protected:
  void bind_weights(const LoadOptions& opts) override;

 private:
  const TensorInfo* embed_ = nullptr;  // (V, H)
  const TensorInfo* final_norm_ = nullptr;
  Matrix lm_head_;  // (V, H); the embedding when tied
  std::vector<Layer> layers_;
  RopeTable rope_;
};

void Qwen3::bind_weights(const LoadOptions& opts) {
  const auto& c = config;
  const int64_t H = c.hidden_size, d = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int64_t I = c.intermediate_size, V = c.vocab_size;
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
    L.q_norm = &vector(p + "self_attn.q_norm.weight", d, "head_dim");
    L.k_norm = &vector(p + "self_attn.k_norm.weight", d, "head_dim");
    L.ffn_norm = &vector(p + "post_attention_layernorm.weight", H, "hidden_size");
    L.w_gate = matrix(p + "mlp.gate_proj.weight", I, H, "intermediate_size, hidden_size");
    L.w_up = matrix(p + "mlp.up_proj.weight", I, H, "intermediate_size, hidden_size");
    L.w_down = matrix(p + "mlp.down_proj.weight", H, I, "hidden_size, intermediate_size");
    if (opts.progress && !opts.progress(0.9f * float(l + 1) / float(c.num_hidden_layers)))
      fail(INFER_ERR_CANCELLED, "model load cancelled");
  }
  rope_ = make_rope_table(d, c.rope_theta, c.rope_scaling, c.max_position_embeddings);
}

void Qwen3::forward(ForwardState& base, ThreadPool& pool, const int32_t* ids, int64_t T, float* logits,
                    bool all_logits, const DumpFn* dump) const {
  auto& st = static_cast<Qwen3State&>(base);
  const auto& c = config;
  const int64_t H = c.hidden_size, d = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
  const int64_t I = c.intermediate_size, V = c.vocab_size, qw = nh * d, kvw = nkv * d, rep = nh / nkv;
  const int64_t pos0 = st.n_past;
  const float eps = float(c.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(float(d));
  float* x = st.x.data();
  float* xn = st.xn.data();
  auto emit = [&](const std::string& name, const float* data, int64_t cols) {
    if (dump) (*dump)(name, data, T, cols);
  };

  // Embedding gather.
  const size_t esz = dtype_size(embed_->dtype);
  for (int64_t t = 0; t < T; ++t) cpu::row_to_f32(embed_->data + size_t(ids[t]) * H * esz, embed_->dtype, x + t * H, H);
  emit("embed", x, H);

  // RoPE angles for the T positions: (T, d/2) cos then (T, d/2) sin.
  float* cosv = st.rope_cs.data();
  float* sinv = cosv + T * (d / 2);
  for (int64_t t = 0; t < T; ++t) rope_.angles(pos0 + t, cosv + t * (d / 2), sinv + t * (d / 2));

  const int64_t n_kv = pos0 + T;  // keys visible to the last query
  if (int64_t(st.scores.size()) < pool.size() * n_kv) st.scores.resize(size_t(pool.size() * std::max(n_kv, st.n_ctx)));

  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const Layer& L = layers_[l];
    const std::string pfx = "layers." + std::to_string(l) + ".";
    for (int64_t t = 0; t < T; ++t) cpu::rmsnorm(x + t * H, L.attn_norm->data, L.attn_norm->dtype, xn + t * H, H, eps);
    emit(pfx + "attn_norm", xn, H);
    cpu::matmul(pool, xn, H, L.wq, st.q.data(), qw, T);
    cpu::matmul(pool, xn, H, L.wk, st.k.data(), kvw, T);
    cpu::matmul(pool, xn, H, L.wv, st.v.data(), kvw, T);
    // QK-Norm per head, then RoPE; K and V go into the cache at their positions.
    float* kc = st.k_cache[l].data();
    float* vc = st.v_cache[l].data();
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < nh; ++h) {
        float* qh = st.q.data() + t * qw + h * d;
        cpu::rmsnorm(qh, L.q_norm->data, L.q_norm->dtype, qh, d, eps);
        cpu::rope_neox(qh, cosv + t * (d / 2), sinv + t * (d / 2), d);
      }
      for (int64_t h = 0; h < nkv; ++h) {
        float* kh = st.k.data() + t * kvw + h * d;
        cpu::rmsnorm(kh, L.k_norm->data, L.k_norm->dtype, kh, d, eps);
        cpu::rope_neox(kh, cosv + t * (d / 2), sinv + t * (d / 2), d);
      }
      std::memcpy(kc + (pos0 + t) * kvw, st.k.data() + t * kvw, size_t(kvw) * 4);
      std::memcpy(vc + (pos0 + t) * kvw, st.v.data() + t * kvw, size_t(kvw) * 4);
    }
    emit(pfx + "q", st.q.data(), qw);
    emit(pfx + "k", st.k.data(), kvw);
    emit(pfx + "v", st.v.data(), kvw);

    // Causal attention: one (token, head) pair per work item; query t sees keys 0..pos0+t.
    const int64_t att_grain = std::max<int64_t>(1, cpu::min_parallel_work() / (n_kv * d * 2));
    pool.parallel_for(T * nh, att_grain, [&](int tid, int64_t b, int64_t e) {
      float* sc = st.scores.data() + size_t(tid) * st.n_ctx;
      for (int64_t i = b; i < e; ++i) {
        const int64_t t = i / nh, h = i % nh, g = h / rep, nk = pos0 + t + 1;
        const float* qh = st.q.data() + t * qw + h * d;
        float mx = -INFINITY;
        for (int64_t j = 0; j < nk; ++j) {
          const float* kj = kc + j * kvw + g * d;
          float s = 0.f;
          for (int64_t u = 0; u < d; ++u) s += qh[u] * kj[u];
          sc[j] = s * scale;
          mx = std::max(mx, sc[j]);
        }
        float sum = 0.f;
        for (int64_t j = 0; j < nk; ++j) {
          sc[j] = std::exp(sc[j] - mx);
          sum += sc[j];
        }
        const float inv = 1.0f / sum;
        float* out = st.att.data() + t * qw + h * d;
        std::fill(out, out + d, 0.f);
        for (int64_t j = 0; j < nk; ++j) {
          const float p = sc[j] * inv;
          const float* vj = vc + j * kvw + g * d;
          for (int64_t u = 0; u < d; ++u) out[u] += p * vj[u];
        }
      }
    });
    emit(pfx + "attn", st.att.data(), qw);
    cpu::matmul(pool, st.att.data(), qw, L.wo, xn, H, T);
    emit(pfx + "attn_out", xn, H);
    for (int64_t i = 0; i < T * H; ++i) x[i] += xn[i];

    for (int64_t t = 0; t < T; ++t) cpu::rmsnorm(x + t * H, L.ffn_norm->data, L.ffn_norm->dtype, xn + t * H, H, eps);
    emit(pfx + "ffn_norm", xn, H);
    cpu::matmul(pool, xn, H, L.w_gate, st.gate.data(), I, T);
    cpu::matmul(pool, xn, H, L.w_up, st.up.data(), I, T);
    cpu::silu_mul(st.gate.data(), st.up.data(), st.gate.data(), T * I);
    cpu::matmul(pool, st.gate.data(), I, L.w_down, xn, H, T);
    emit(pfx + "ffn_out", xn, H);
    for (int64_t i = 0; i < T * H; ++i) x[i] += xn[i];
    emit(pfx + "out", x, H);
  }

  // Final norm and lm_head on the rows whose logits are wanted.
  const int64_t r0 = all_logits ? 0 : T - 1;
  for (int64_t t = r0; t < T; ++t) cpu::rmsnorm(x + t * H, final_norm_->data, final_norm_->dtype, xn + t * H, H, eps);
  if (dump) (*dump)("final_norm", xn + r0 * H, T - r0, H);
  cpu::matmul(pool, xn + r0 * H, H, lm_head_, logits, V, T - r0);
  st.n_past = pos0 + T;
}

}  // namespace

std::unique_ptr<Transformer> create_qwen3(const ModelConfig& cfg) { return std::make_unique<Qwen3>(cfg); }

}  // namespace infer::models
