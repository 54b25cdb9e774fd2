// deepseek_v3.cpp — see deepseek_v3.h.
//
// Numerics: fp32 activations and latent cache, weights as stored (bf16, or FP8 dequantised inside the matmul),
// fp32 accumulation — HF transformers' DeepseekV3ForCausalLM run with .float() on the checkpoint, which is how
// tools/make_tiny_models_moe.py makes the references. The rope dims are rotated in the checkpoint's interleaved
// layout (pairs 2i, 2i+1) where HF first de-interleaves and applies rotate_half: the same products, in another
// order of dims, so q·k is identical (model-spec §3.3).
#include "models/deepseek_v3.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "common.h"
#include "models/arch_config.h"
#include "models/dense.h"
#include "models/models.h"
#include "sampler.h"

namespace infer::models {
namespace {

struct DsState : ForwardState {
  using ForwardState::ForwardState;
  std::vector<void*> cache;      // per layer: (n_ctx, r + dr) latent ‖ rotated rope key
  std::vector<void*> mtp_cache;  // per MTP module, the same layout
  float *x, *xn, *qa, *q, *kva, *att, *tmp, *ffn_scratch, *logits;
  float *qabs, *olat;           // absorbed: (A, nh·(r+dr)), (A, nh·r)
  float *latblk, *kvbblk, *ml;  // naive: (KB, r+dr), (KB, nh·(dn+dv)), (2·n_batch·nh)
  int64_t key_block = 0, absorb_rows = 0;
  // MTP
  bool mtp_on = false;
  int64_t mtp_n_past = 0;             // MTP cache entries (position j holds MTP(h_j, mtp_tok[j]))
  std::vector<int32_t> tok, mtp_tok;  // (n_ctx) the token at each position; the next token each MTP entry used
  float* hid = nullptr;               // (n_batch, H) final-norm hidden states of the last forward's rows
  int64_t hid_pos0 = 0, hid_rows = 0;
  float *mtp_cat = nullptr, *mtp_z = nullptr;  // (n_batch, 2H) [enorm(e) ; hnorm(h)], (n_batch, H) block output
  int64_t mtp_z_rows = 0;
  bool replaying = false;
};

double yarn_get_mscale(double scale, double mscale) { return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }

}  // namespace

DeepseekV3::DeepseekV3(const ModelConfig& cfg) {
  config = cfg;
  const ArchConfig a(cfg);
  H_ = cfg.hidden_size;
  nh_ = cfg.num_attention_heads;
  V_ = cfg.vocab_size;
  I_ = cfg.intermediate_size;
  // HF DeepseekV3Config defaults where a key is absent; q_lora_rank: null means a plain q_proj (V2-Lite style).
  q_lora_ = a.is_null("q_lora_rank") ? 0 : a.positive("q_lora_rank", 1536);
  r_ = a.positive("kv_lora_rank", 512);
  dn_ = a.positive("qk_nope_head_dim", 128);
  dr_ = a.positive("qk_rope_head_dim", 64);
  dv_ = a.positive("v_head_dim", 128);
  if (dr_ % 2) a.bad("qk_rope_head_dim", "must be even (it is rotated in pairs), got " + std::to_string(dr_));
  if (cfg.attention_bias)
    fail(INFER_ERR_UNSUPPORTED, a.file() + ": deepseek_v3 with attention_bias=true is not supported (no released "
                                           "checkpoint has biases on q_a_proj / kv_a_proj_with_mqa / o_proj)");
  rope_interleave_ = a.get_bool("rope_interleave", true);

  router_.scoring = Router::Scoring::Sigmoid;
  router_.n_experts = a.positive("n_routed_experts", 256);
  router_.top_k = a.positive("num_experts_per_tok", 8);
  router_.norm_topk_prob = a.get_bool("norm_topk_prob", true);
  router_.n_group = a.positive("n_group", 8);
  router_.topk_group = a.positive("topk_group", 4);
  router_.routed_scaling_factor = float(a.get_double("routed_scaling_factor", 2.5));
  expert_width_ = a.positive("moe_intermediate_size", 2048);
  shared_width_ = expert_width_ * a.non_negative("n_shared_experts", 1);
  first_dense_ = a.non_negative("first_k_dense_replace", 3);
  n_mtp_config_ = a.non_negative("num_nextn_predict_layers", 0);
  const std::string scoring = a.get_string("scoring_func", "sigmoid");
  if (scoring != "sigmoid")
    fail(INFER_ERR_UNSUPPORTED, a.file() + ": deepseek_v3 scoring_func '" + scoring + "' is not supported (sigmoid)");
  const std::string method = a.get_string("topk_method", "noaux_tc");
  if (method != "noaux_tc")
    fail(INFER_ERR_UNSUPPORTED, a.file() + ": deepseek_v3 topk_method '" + method + "' is not supported (noaux_tc)");
  if (a.get_int("moe_layer_freq", 1) != 1)
    fail(INFER_ERR_UNSUPPORTED, a.file() + ": deepseek_v3 with moe_layer_freq != 1 is not supported");
  const int64_t E = router_.n_experts, G = router_.n_group;
  if (E % G) a.bad("n_group", "(" + std::to_string(G) + ") must divide n_routed_experts (" + std::to_string(E) + ")");
  if (G > 1 && E / G < 2)
    a.bad("n_group", "leaves groups of one expert; group scores need two experts per group (n_routed_experts=" +
                         std::to_string(E) + ")");
  if (router_.topk_group > G) a.bad("topk_group", "must not exceed n_group (" + std::to_string(G) + ")");
  if (router_.top_k > router_.topk_group * (E / G))
    a.bad("num_experts_per_tok", "(" + std::to_string(router_.top_k) + ") exceeds the experts of topk_group groups (" +
                                     std::to_string(router_.topk_group * (E / G)) + ")");

  // Softmax scale (HF DeepseekV3Attention): qk_head_dim^-0.5, times mscale² with
  // mscale = 0.1·mscale_all_dim·ln(factor) + 1 when rope_scaling sets mscale_all_dim.
  double scale = 1.0 / std::sqrt(double(dn_ + dr_));
  const RopeScaling& rs = cfg.rope_scaling;
  if (rs.type != "default" && rs.mscale_all_dim != 0) {
    const double m = yarn_get_mscale(rs.factor, rs.mscale_all_dim);
    scale *= m * m;
  }
  softmax_scale_ = float(scale);
}

int64_t DeepseekV3::kv_bytes_per_token() const {
  return (r_ + dr_) * config.num_hidden_layers * int64_t(sizeof(float));
}

int64_t DeepseekV3::mtp_kv_bytes_per_token() const { return (r_ + dr_) * int64_t(mtp_.size()) * int64_t(sizeof(float)); }

std::string DeepseekV3::describe() const {
  std::ostringstream os;
  const auto& c = config;
  const int64_t n_moe = std::max<int64_t>(0, c.num_hidden_layers - first_dense_);
  os << c.model_type << " " << c.num_hidden_layers << "L h" << H_ << " " << nh_ << " heads, MLA kv_lora " << r_
     << " + rope " << dr_ << (q_lora_ ? ", q_lora " + std::to_string(q_lora_) : std::string(", q_proj")) << ", nope "
     << dn_ << " v " << dv_ << "; MoE " << n_moe << " layers: " << router_.n_experts << " experts top-"
     << router_.top_k << " (" << router_.n_group << " groups, " << router_.topk_group << " used)";
  if (shared_width_) os << " + shared " << shared_width_;
  os << ", dense " << std::min(first_dense_, c.num_hidden_layers) << " layers ffn" << I_ << "; vocab" << V_
     << "; KV cache " << (r_ + dr_) << " values/token/layer = " << kv_bytes_per_token() << " B/token";
  if (!mtp_.empty()) os << "; MTP " << mtp_.size() << " layer (own cache " << mtp_kv_bytes_per_token() << " B/token)";
  os << " (" << (n_params() + 500000) / 1000000 << "M params, " << (weight_bytes() + (1 << 19)) / (1 << 20) << " MiB)";
  return os.str();
}

void DeepseekV3::bind_block(Block& b, const std::string& p, bool moe, const LoadOptions&) {
  const int64_t H = H_, nh = nh_, dq = dn_ + dr_;
  b.attn_norm = &vector(p + "input_layernorm.weight", H, "hidden_size");
  Attn& a = b.attn;
  if (q_lora_) {
    a.q_a = matrix(p + "self_attn.q_a_proj.weight", q_lora_, H, "q_lora_rank, hidden_size");
    a.q_a_norm = &vector(p + "self_attn.q_a_layernorm.weight", q_lora_, "q_lora_rank");
    a.q_b = matrix(p + "self_attn.q_b_proj.weight", nh * dq, q_lora_,
                   "num_attention_heads*(qk_nope_head_dim+qk_rope_head_dim), q_lora_rank");
  } else {
    a.q = matrix(p + "self_attn.q_proj.weight", nh * dq, H,
                 "num_attention_heads*(qk_nope_head_dim+qk_rope_head_dim), hidden_size (q_lora_rank=null)");
  }
  a.kv_a = matrix(p + "self_attn.kv_a_proj_with_mqa.weight", r_ + dr_, H,
                  "kv_lora_rank+qk_rope_head_dim, hidden_size");
  a.kv_a_norm = &vector(p + "self_attn.kv_a_layernorm.weight", r_, "kv_lora_rank");
  a.kv_b = matrix(p + "self_attn.kv_b_proj.weight", nh * (dn_ + dv_), r_,
                  "num_attention_heads*(qk_nope_head_dim+v_head_dim), kv_lora_rank");
  a.o = matrix(p + "self_attn.o_proj.weight", H, nh * dv_, "hidden_size, num_attention_heads*v_head_dim");
  b.ffn_norm = &vector(p + "post_attention_layernorm.weight", H, "hidden_size");
  b.moe = moe;
  if (!moe) {
    b.dense.gate = matrix(p + "mlp.gate_proj.weight", I_, H, "intermediate_size, hidden_size");
    b.dense.up = matrix(p + "mlp.up_proj.weight", I_, H, "intermediate_size, hidden_size");
    b.dense.down = matrix(p + "mlp.down_proj.weight", H, I_, "hidden_size, intermediate_size");
    return;
  }
  const int64_t E = router_.n_experts, Ie = expert_width_;
  MoeWeights& w = b.experts;
  w.router = matrix(p + "mlp.gate.weight", E, H, "n_routed_experts, hidden_size");
  w.router.exact = true;  // routing decisions in fp32 (cpu::Matrix::exact)
  const TensorInfo& bias = vector(p + "mlp.gate.e_score_correction_bias", E, "n_routed_experts");
  w.score_bias.resize(size_t(E));
  cpu::row_to_f32(bias.data, bias.dtype, w.score_bias.data(), E);
  w.expert_width = Ie;
  w.experts.resize(size_t(E));
  const std::string n_e = " (n_routed_experts=" + std::to_string(E) + ")";
  for (int64_t e = 0; e < E; ++e) {
    const std::string q = p + "mlp.experts." + std::to_string(e) + ".";
    ExpertWeights& x = w.experts[size_t(e)];
    x.gate = matrix(q + "gate_proj.weight", Ie, H, "moe_intermediate_size, hidden_size" + n_e);
    x.up = matrix(q + "up_proj.weight", Ie, H, "moe_intermediate_size, hidden_size" + n_e);
    x.down = matrix(q + "down_proj.weight", H, Ie, "hidden_size, moe_intermediate_size" + n_e);
  }
  check_no_extra_experts(*weights, p + "mlp.", E, "n_routed_experts");
  if (shared_width_ > 0) {
    const int64_t Is = shared_width_;
    w.has_shared = true;
    w.shared_width = Is;
    const std::string f = "moe_intermediate_size*n_shared_experts";
    w.shared.gate = matrix(p + "mlp.shared_experts.gate_proj.weight", Is, H, f + ", hidden_size");
    w.shared.up = matrix(p + "mlp.shared_experts.up_proj.weight", Is, H, f + ", hidden_size");
    w.shared.down = matrix(p + "mlp.shared_experts.down_proj.weight", H, Is, "hidden_size, " + f);
  }
}

void DeepseekV3::bind_weights(const LoadOptions& opts) {
  const auto& c = config;
  const int64_t L = c.num_hidden_layers;
  embed_ = &weights->get("model.embed_tokens.weight", {V_, H_}, "vocab_size, hidden_size");
  bound_.push_back("model.embed_tokens.weight");
  if (embed_->dtype != DType::BF16 && embed_->dtype != DType::F32 && embed_->dtype != DType::F16)
    fail(INFER_ERR_UNSUPPORTED, "tensor model.embed_tokens.weight in " + embed_->file + " has dtype " +
                                    dtype_name(embed_->dtype) + "; supported: BF16, F16, F32");
  final_norm_ = &vector("model.norm.weight", H_, "hidden_size");
  if (c.tie_word_embeddings) {
    lm_head_ = matrix("model.embed_tokens.weight", V_, H_, "vocab_size, hidden_size");
    if (weights->find("lm_head.weight")) bound_.push_back("lm_head.weight");
  } else {
    lm_head_ = matrix("lm_head.weight", V_, H_, "vocab_size, hidden_size (tie_word_embeddings=false)");
  }
  layers_.resize(size_t(L));
  for (int64_t l = 0; l < L; ++l) {
    bind_block(layers_[size_t(l)], "model.layers." + std::to_string(l) + ".", l >= first_dense_, opts);
    if (opts.progress && !opts.progress(0.9f * float(l + 1) / float(L))) fail(INFER_ERR_CANCELLED, "model load cancelled");
  }
  // MTP modules at layer indices L, L+1, … (num_nextn_predict_layers). A checkpoint without them (many conversions
  // drop layer 61) simply has no MTP.
  for (int64_t i = 0; i < n_mtp_config_; ++i) {
    const std::string p = "model.layers." + std::to_string(L + i) + ".";
    if (weights->tensors().lower_bound(p) == weights->tensors().end() ||
        weights->tensors().lower_bound(p)->first.compare(0, p.size(), p) != 0)
      break;
    Mtp m;
    m.enorm = &vector(p + "enorm.weight", H_, "hidden_size");
    m.hnorm = &vector(p + "hnorm.weight", H_, "hidden_size");
    m.eh_proj = matrix(p + "eh_proj.weight", H_, 2 * H_, "hidden_size, 2*hidden_size");
    m.head_norm = &vector(p + "shared_head.norm.weight", H_, "hidden_size");
    m.head = matrix(p + "shared_head.head.weight", V_, H_, "vocab_size, hidden_size");
    m.embed = &weights->get(p + "embed_tokens.weight", {V_, H_}, "vocab_size, hidden_size");
    bound_.push_back(p + "embed_tokens.weight");
    bind_block(m.block, p, L + i >= first_dense_, opts);
    mtp_.push_back(std::move(m));
  }
  rope_ = make_rope_table(dr_, c.rope_theta, c.rope_scaling, c.max_position_embeddings);
}

std::unique_ptr<ForwardState> DeepseekV3::new_state(Backend& backend, int64_t n_ctx, int64_t n_batch) const {
  auto st = std::make_unique<DsState>(backend);
  st->n_ctx = n_ctx;
  st->n_batch = n_batch;
  const int64_t w = r_ + dr_, qw = nh_ * (dn_ + dr_);
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) st->cache.push_back(st->kv_cache(n_ctx, w));
  for (size_t i = 0; i < mtp_.size(); ++i) st->mtp_cache.push_back(st->kv_cache(n_ctx, w));
  st->key_block = std::max<int64_t>(1, std::min(mla_key_block, n_ctx));
  st->absorb_rows = std::max<int64_t>(1, std::min(mla_absorb_rows, n_batch));
  st->x = st->buffer(n_batch * H_);
  st->xn = st->buffer(n_batch * std::max(H_, 2 * H_));
  st->qa = st->buffer(n_batch * std::max<int64_t>(1, q_lora_));
  st->q = st->buffer(n_batch * qw);
  st->kva = st->buffer(n_batch * w);
  st->att = st->buffer(n_batch * nh_ * dv_);
  st->tmp = st->buffer(n_batch * H_);
  int64_t ffn = 2 * n_batch * I_;
  for (const Block& b : layers_)
    if (b.moe) ffn = std::max(ffn, moe_scratch_floats(router_, b.experts, H_, n_batch));
  for (const Mtp& m : mtp_)
    if (m.block.moe) ffn = std::max(ffn, moe_scratch_floats(router_, m.block.experts, H_, n_batch));
  st->ffn_scratch = st->buffer(ffn);
  st->logits = st->buffer(n_batch * V_);
  st->qabs = st->buffer(st->absorb_rows * nh_ * w);
  st->olat = st->buffer(st->absorb_rows * nh_ * r_);
  st->latblk = st->buffer(st->key_block * w);
  st->kvbblk = st->buffer(st->key_block * nh_ * (dn_ + dv_));
  st->ml = st->buffer(2 * n_batch * nh_);
  st->tok.assign(size_t(n_ctx) + 1, 0);
  if (!mtp_.empty()) {
    st->mtp_on = true;
    st->mtp_tok.assign(size_t(n_ctx) + 1, -1);
    st->hid = st->buffer(n_batch * H_);
    st->mtp_cat = st->buffer(n_batch * 2 * H_);
    st->mtp_z = st->buffer(n_batch * H_);
  }
  return st;
}

MlaMode DeepseekV3::choose_mla(int64_t T, int64_t pos0) const {
  if (mla_mode != MlaMode::Auto) return mla_mode;
  // Multiply-adds of each form for T queries after pos0 cached keys (pairs: causal query-key pairs).
  const double N = double(pos0 + T), Tq = double(T), pairs = Tq * (double(pos0) + (Tq + 1) / 2);
  const double nh = double(nh_), r = double(r_), dn = double(dn_), dr = double(dr_), dv = double(dv_);
  const double naive = N * nh * (dn + dv) * r + pairs * nh * (dn + dr + dv);
  const double absorbed = Tq * nh * dn * r + pairs * nh * (2 * r + dr) + Tq * nh * r * dv;
  return naive < absorbed ? MlaMode::Naive : MlaMode::Absorbed;
}

void DeepseekV3::attention(ForwardState& base, const Attn& a, void* cache, int64_t pos0, int64_t T, const float* xn,
                           float* out, const std::string& pfx, const DumpFn* dump) const {
  auto& st = static_cast<DsState&>(base);
  Backend& be = st.backend;
  const float eps = float(config.rms_norm_eps);
  const int64_t dq = dn_ + dr_, qw = nh_ * dq, w = r_ + dr_, nh = nh_;
  if (q_lora_) {
    be.matmul(xn, H_, a.q_a, st.qa, q_lora_, T);
    be.rmsnorm(st.qa, q_lora_, *a.q_a_norm, st.qa, q_lora_, T, q_lora_, eps);
    be.matmul(st.qa, q_lora_, a.q_b, st.q, qw, T);
  } else {
    be.matmul(xn, H_, a.q, st.q, qw, T);
  }
  // Latent ‖ rope key: norm the first r values, rotate the last dr; that row is what the cache keeps.
  be.matmul(xn, H_, a.kv_a, st.kva, w, T);
  be.rmsnorm(st.kva, w, *a.kv_a_norm, st.kva, w, T, r_, eps);
  be.rope_strided(st.q + dn_, qw, T, nh, dq, dr_, rope_interleave_, pos0, rope_);
  be.rope_strided(st.kva + r_, w, T, 1, w, dr_, rope_interleave_, pos0, rope_);
  emit_dump(be, dump, pfx + "q", st.q, T, qw);
  emit_dump(be, dump, pfx + "kv_latent", st.kva, T, w);
  be.kv_write(cache, w, pos0, st.kva, w, T);

  const int64_t ldo = nh * dv_;
  if (choose_mla(T, pos0) == MlaMode::Naive) {
    // Decompress k_nope / v of keys [j0, j0 + nb) through kv_b_proj and attend, block by block.
    const int64_t N = pos0 + T, KB = st.key_block, dkv = nh * (dn_ + dv_);
    float* m = st.ml;
    float* l = st.ml + T * nh;
    for (int64_t j0 = 0; j0 < N; j0 += KB) {
      const int64_t nb = std::min(KB, N - j0);
      be.kv_read(cache, w, j0, nb, st.latblk, w);
      be.matmul(st.latblk, w, a.kv_b, st.kvbblk, dkv, nb);
      be.mla_attention_block(st.q, qw, st.kvbblk, dkv, st.latblk + r_, w, j0, nb, m, l, st.att, ldo, T, pos0, nh,
                             dn_, dr_, dv_, softmax_scale_, j0 == 0, j0 + nb >= N);
    }
  } else {
    // Absorbed: q through W_UK, MQA over the latent cache, output through W_UV; in sub-steps of A rows.
    const int64_t A = st.absorb_rows;
    for (int64_t t0 = 0; t0 < T; t0 += A) {
      const int64_t tn = std::min(A, T - t0);
      be.mla_absorb_q(st.q + t0 * qw, qw, a.kv_b, st.qabs, nh * w, tn, nh, dn_, dr_, dv_);
      be.mla_attention_absorbed(st.qabs, nh * w, cache, r_, dr_, st.olat, nh * r_, tn, pos0 + t0, nh, softmax_scale_);
      be.mla_absorb_out(st.olat, nh * r_, a.kv_b, st.att + t0 * ldo, ldo, tn, nh, dn_, dv_);
    }
  }
  emit_dump(be, dump, pfx + "attn", st.att, T, ldo);
  be.matmul(st.att, ldo, a.o, out, H_, T);
}

void DeepseekV3::run_block(ForwardState& base, const Block& b, void* cache, int64_t pos0, int64_t T, float* x,
                           const std::string& pfx, const DumpFn* dump) const {
  auto& st = static_cast<DsState&>(base);
  Backend& be = st.backend;
  const float eps = float(config.rms_norm_eps);
  const int64_t H = H_;
  be.rmsnorm(x, H, *b.attn_norm, st.xn, H, T, H, eps);
  emit_dump(be, dump, pfx + "attn_norm", st.xn, T, H);
  attention(st, b.attn, cache, pos0, T, st.xn, st.tmp, pfx, dump);
  emit_dump(be, dump, pfx + "attn_out", st.tmp, T, H);
  be.add(x, H, st.tmp, H, T, H);
  be.rmsnorm(x, H, *b.ffn_norm, st.xn, H, T, H, eps);
  emit_dump(be, dump, pfx + "ffn_norm", st.xn, T, H);
  if (b.moe) {
    moe_forward(be, router_, b.experts, st.xn, H, st.tmp, H, T, H, st.ffn_scratch, pfx, dump);
  } else {
    float* g = st.ffn_scratch;
    float* u = g + T * I_;
    be.matmul(st.xn, H, b.dense.gate, g, I_, T);
    be.matmul(st.xn, H, b.dense.up, u, I_, T);
    be.swiglu(g, I_, u, I_, g, I_, T, I_);
    be.matmul(g, I_, b.dense.down, st.tmp, H, T);
  }
  emit_dump(be, dump, pfx + "ffn_out", st.tmp, T, H);
  be.add(x, H, st.tmp, H, T, H);
  emit_dump(be, dump, pfx + "out", x, T, H);
}

void DeepseekV3::forward(ForwardState& base, const int32_t* ids, int64_t T, float* logits, bool all_logits,
                         const DumpFn* dump) const {
  auto& st = static_cast<DsState&>(base);
  const int64_t pos0 = st.n_past;
  std::copy(ids, ids + T, st.tok.begin() + pos0);
  // MTP: first the positions before this step (their hidden rows are about to be overwritten), then after the main
  // model every new position but the last, whose next token is not known yet.
  if (st.mtp_on) mtp_catch_up(st, pos0, dump);
  main_forward(st, ids, T, logits, all_logits, dump);
  if (st.mtp_on && T > 1) mtp_forward(st, pos0, T - 1, st.hid, ids + 1, dump);
}

void DeepseekV3::main_forward(ForwardState& base, const int32_t* ids, int64_t T, float* logits, bool all_logits,
                              const DumpFn* dump) const {
  auto& st = static_cast<DsState&>(base);
  Backend& be = st.backend;
  const int64_t H = H_, pos0 = st.n_past;
  be.embed(*embed_, ids, T, st.x, H);
  emit_dump(be, dump, "embed", st.x, T, H);
  for (int64_t l = 0; l < config.num_hidden_layers; ++l)
    run_block(st, layers_[size_t(l)], st.cache[size_t(l)], pos0, T, st.x, "layers." + std::to_string(l) + ".", dump);
  const int64_t r0 = all_logits ? 0 : T - 1, rows = T - r0;
  float* normed = st.xn;
  if (st.mtp_on) {  // the MTP needs the final-norm hidden state of every row (vLLM feeds it model.norm's output)
    be.rmsnorm(st.x, H, *final_norm_, st.hid, H, T, H, float(config.rms_norm_eps));
    st.hid_pos0 = pos0;
    st.hid_rows = T;
    normed = st.hid + r0 * H;
  } else {
    be.rmsnorm(st.x + r0 * H, H, *final_norm_, st.xn, H, rows, H, float(config.rms_norm_eps));
  }
  emit_dump(be, dump, "final_norm", normed, rows, H);
  be.matmul(normed, H, lm_head_, st.logits, V_, rows);
  st.last_logits = st.logits + (rows - 1) * V_;
  if (logits) be.to_host(st.logits, logits, rows * V_);
  st.n_past = pos0 + T;
}

// ---- MTP

void DeepseekV3::mtp_forward(ForwardState& base, int64_t pos, int64_t n, const float* h, const int32_t* next,
                             const DumpFn* dump) const {
  auto& st = static_cast<DsState&>(base);
  Backend& be = st.backend;
  const Mtp& m = mtp_.front();  // one module in every release; further ones are bound but not run
  const int64_t H = H_;
  const float eps = float(config.rms_norm_eps);
  be.embed(*m.embed, next, n, st.mtp_cat, 2 * H);
  if (pos == 0) {  // vLLM masks the embedding at position 0 ("not needed by MTP"); enorm(0) = 0
    const std::vector<float> zeros(static_cast<size_t>(H), 0.f);
    be.from_host(zeros.data(), st.mtp_cat, H);
  }
  be.rmsnorm(st.mtp_cat, 2 * H, *m.enorm, st.mtp_cat, 2 * H, n, H, eps);
  be.rmsnorm(h, H, *m.hnorm, st.mtp_cat + H, 2 * H, n, H, eps);
  be.matmul(st.mtp_cat, 2 * H, m.eh_proj, st.mtp_z, H, n);  // [enorm(embedding) ; hnorm(hidden)] order
  emit_dump(be, dump, "mtp.eh_proj", st.mtp_z, n, H);
  run_block(st, m.block, st.mtp_cache.front(), pos, n, st.mtp_z, "mtp.", dump);
  std::copy(next, next + n, st.mtp_tok.begin() + pos);
  st.mtp_n_past = pos + n;
  st.mtp_z_rows = n;
}

void DeepseekV3::mtp_catch_up(ForwardState& base, int64_t pos0, const DumpFn* dump) const {
  auto& st = static_cast<DsState&>(base);
  int64_t m = std::min(st.mtp_n_past, pos0);
  // An entry for pos0 - 1 built with another next token (a draft that was not taken) is redone.
  if (m == pos0 && pos0 > 0 && st.mtp_tok[size_t(pos0 - 1)] != st.tok[size_t(pos0)]) m = pos0 - 1;
  st.mtp_n_past = m;
  if (m >= pos0) return;
  if (m < st.hid_pos0 || pos0 > st.hid_pos0 + st.hid_rows) {
    // The main model's hidden states of [m, pos0) are gone (the cache was cut back behind the last forward):
    // evaluate those tokens again (same KV values), which also feeds the MTP all of them but the last.
    if (st.replaying) fail(INFER_ERR_INTERNAL, "MTP: hidden states missing while replaying");
    st.replaying = true;
    std::vector<float> scratch(static_cast<size_t>(V_));
    for (int64_t p = m; p < pos0; p += st.n_batch) {
      const int64_t n = std::min(st.n_batch, pos0 - p);
      st.n_past = p;
      std::vector<int32_t> ids(st.tok.begin() + p, st.tok.begin() + p + n);
      forward(st, ids.data(), n, scratch.data(), false, nullptr);
    }
    st.replaying = false;
    st.n_past = pos0;
    m = st.mtp_n_past;
  }
  mtp_forward(st, m, pos0 - m, st.hid + (m - st.hid_pos0) * H_, st.tok.data() + m + 1, dump);
}

void DeepseekV3::set_mtp(ForwardState& base, bool on) const {
  auto& st = static_cast<DsState&>(base);
  st.mtp_on = on && !mtp_.empty();
}

void DeepseekV3::truncate_state(ForwardState& base, int64_t n_keep) const {
  auto& st = static_cast<DsState&>(base);
  // Entry j used token j + 1: only entries before n_keep - 1 stay valid.
  st.mtp_n_past = std::min(st.mtp_n_past, std::max<int64_t>(0, n_keep - 1));
}

int64_t DeepseekV3::mtp_draft(ForwardState& base, int32_t next, int64_t n_draft, int32_t* drafts,
                              float* logits) const {
  auto& st = static_cast<DsState&>(base);
  const int64_t pos = st.n_past;
  if (!st.mtp_on || pos == 0 || pos >= st.n_ctx || n_draft <= 0) return 0;
  if (next < 0 || next >= V_) fail(INFER_ERR_INVALID_ARG, "mtp_draft: token id " + std::to_string(next) + " out of range");
  n_draft = std::min(n_draft, st.n_ctx - pos);  // chained entries go to positions pos .. pos + n_draft - 2
  Backend& be = st.backend;
  const Mtp& m = mtp_.front();
  const int64_t H = H_;
  st.tok[size_t(pos)] = next;
  st.mtp_n_past = std::min(st.mtp_n_past, pos - 1);  // position pos - 1 with `next`: its output is the first draft
  mtp_catch_up(st, pos, nullptr);
  const float* z = st.mtp_z + (st.mtp_z_rows - 1) * H;
  std::vector<float> row(static_cast<size_t>(V_));
  for (int64_t k = 0; k < n_draft; ++k) {
    be.rmsnorm(z, H, *m.head_norm, st.xn, H, 1, H, float(config.rms_norm_eps));
    be.matmul(st.xn, H, m.head, st.logits, V_, 1);
    be.to_host(st.logits, row.data(), V_);
    if (logits) std::copy(row.begin(), row.end(), logits + k * V_);
    drafts[k] = argmax(row.data(), int32_t(V_));
    // Chain: the head again on its own output hidden state and its draft (an unconfirmed entry at pos + k).
    if (k + 1 < n_draft) {
      mtp_forward(st, pos + k, 1, z, &drafts[k], nullptr);
      z = st.mtp_z;
    }
  }
  return n_draft;
}

std::unique_ptr<Transformer> create_deepseek_v3(const ModelConfig& cfg) { return std::make_unique<DeepseekV3>(cfg); }

}  // namespace infer::models
