// deepseek_v3.h — DeepSeek-V3 / R1 (model_type "deepseek_v3"): multi-head latent attention (MLA) with a cache of the
// compressed latent, DeepSeekMoE (sigmoid router with group-limited top-k, shared experts), YaRN, FP8 block-scaled
// weights, and the MTP module for self-speculative decoding (model-spec.md §1.3, §2.3, §3.3–§3.5, §4–§6).
//
// Attention has two exact forms, chosen per forward step by a flop count (mla_mode forces one, for tests):
//   naive    — decompress k_nope / v of every cached key through kv_b_proj (in blocks of mla_key_block keys, with a
//              running softmax) and attend per head: cheapest for long prefill chunks;
//   absorbed — fold W_UK into the query and W_UV into the output (model-spec §4) and attend over the latent
//              cache directly as MQA with one 576-wide key: cheapest for decode and short chunks.
// The KV cache holds per token and layer only kv_lora_rank + qk_rope_head_dim values (the normed latent and the
// rotated rope key); the MTP layer has its own cache of the same width.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model.h"
#include "models/moe.h"
#include "rope.h"

namespace infer::models {

enum class MlaMode { Auto, Naive, Absorbed };

class DeepseekV3 final : public Transformer {
 public:
  explicit DeepseekV3(const ModelConfig& cfg);

  std::unique_ptr<ForwardState> new_state(Backend& backend, int64_t n_ctx, int64_t n_batch) const override;
  void forward(ForwardState& st, const int32_t* ids, int64_t n, float* logits, bool all_logits,
               const DumpFn* dump) const override;
  // (kv_lora_rank + qk_rope_head_dim) × num_hidden_layers × 4 bytes (fp32 cache); the MTP layer's cache is
  // mtp_kv_bytes_per_token(), not included.
  int64_t kv_bytes_per_token() const override;
  std::string describe() const override;

  // MTP (model-spec §5, as vLLM runs it): for position i, MTP(h_i after the final norm, token i+1) → the draft for
  // token i+2. With the head on, every forward also feeds it the positions whose next token is known, so its own
  // cache (kv_lora_rank + qk_rope_head_dim values per token) keeps up; mtp_draft consumes the last position with the
  // sampled token and chains the head for further drafts. Entries built on unconfirmed tokens are rolled back
  // (truncate_state, and at the next forward).
  int64_t mtp_layers() const override { return int64_t(mtp_.size()); }
  int64_t mtp_kv_bytes_per_token() const override;
  void set_mtp(ForwardState& st, bool on) const override;
  int64_t mtp_draft(ForwardState& st, int32_t next, int64_t n_draft, int32_t* drafts, float* logits) const override;
  void truncate_state(ForwardState& st, int64_t n_keep) const override;

  // Test and benchmark knobs (set before creating a state).
  MlaMode mla_mode = MlaMode::Auto;
  int64_t mla_key_block = 256;  // keys decompressed per block by the naive path
  int64_t mla_absorb_rows = 64;  // query rows per absorbed sub-step (bounds its scratch)

  // Which attention form a step of T tokens after pos0 cached ones takes (Auto: the smaller multiply-add count).
  MlaMode choose_mla(int64_t T, int64_t pos0) const;

 protected:
  void bind_weights(const LoadOptions& opts) override;

 private:
  struct Attn {
    cpu::Matrix q_a;                       // (q_lora_rank, H)             when q_lora_rank is set
    const TensorInfo* q_a_norm = nullptr;  // (q_lora_rank,)
    cpu::Matrix q_b;                       // (nh·(dn+dr), q_lora_rank)
    cpu::Matrix q;                         // (nh·(dn+dr), H)              q_proj when q_lora_rank is null
    cpu::Matrix kv_a;                      // (r + dr, H)                  kv_a_proj_with_mqa
    const TensorInfo* kv_a_norm = nullptr; // (r,)
    cpu::Matrix kv_b;                      // (nh·(dn+dv), r)
    cpu::Matrix o;                         // (H, nh·dv)
  };
  struct Block {
    const TensorInfo* attn_norm = nullptr;  // (H,)
    Attn attn;
    const TensorInfo* ffn_norm = nullptr;   // (H,)
    bool moe = false;
    ExpertWeights dense;                    // gate/up (I, H), down (H, I)   layers < first_k_dense_replace
    MoeWeights experts;                     // router (E, H), E experts (Ie), shared (Is)
  };
  struct Mtp {
    const TensorInfo* enorm = nullptr;      // (H,)
    const TensorInfo* hnorm = nullptr;      // (H,)
    cpu::Matrix eh_proj;                    // (H, 2H): [enorm(embedding) ; hnorm(hidden)] → H
    Block block;
    const TensorInfo* head_norm = nullptr;  // (H,) shared_head.norm
    cpu::Matrix head;                       // (V, H) shared_head.head
    const TensorInfo* embed = nullptr;      // (V, H) its copy of the embedding
  };

  void bind_block(Block& b, const std::string& p, bool moe, const LoadOptions& opts);
  // One decoder block on x[T, H] at positions pos0.. with its latent cache; intermediates dumped under pfx.
  void run_block(ForwardState& st, const Block& b, void* cache, int64_t pos0, int64_t T, float* x,
                 const std::string& pfx, const DumpFn* dump) const;
  void attention(ForwardState& st, const Attn& a, void* cache, int64_t pos0, int64_t T, const float* xn, float* out,
                 const std::string& pfx, const DumpFn* dump) const;
  // The MTP module on n rows at positions pos.. with main hidden states h [n, H] (backend) and next tokens (host);
  // leaves its block output in the state's mtp_z and advances its cache to pos + n.
  void mtp_forward(ForwardState& st, int64_t pos, int64_t n, const float* h, const int32_t* next,
                   const DumpFn* dump) const;
  // Brings the MTP cache up to position pos0 - 1 (the tokens up to pos0 must be in the state's token record).
  void mtp_catch_up(ForwardState& st, int64_t pos0, const DumpFn* dump) const;
  void main_forward(ForwardState& st, const int32_t* ids, int64_t T, float* logits, bool all_logits,
                    const DumpFn* dump) const;

  // config.json
  int64_t H_ = 0, nh_ = 0, q_lora_ = 0, r_ = 0, dn_ = 0, dr_ = 0, dv_ = 0, V_ = 0, I_ = 0;
  int64_t first_dense_ = 0, expert_width_ = 0, shared_width_ = 0, n_mtp_config_ = 0;
  bool rope_interleave_ = true;
  float softmax_scale_ = 1.0f;
  Router router_;

  const TensorInfo* embed_ = nullptr;       // (V, H)
  const TensorInfo* final_norm_ = nullptr;  // (H,)
  cpu::Matrix lm_head_;                     // (V, H)
  std::vector<Block> layers_;
  std::vector<Mtp> mtp_;  // 0 or num_nextn_predict_layers MTP modules (model.layers.{L}…)
  RopeTable rope_;        // qk_rope_head_dim dims (YaRN when configured)
};

}  // namespace infer::models
