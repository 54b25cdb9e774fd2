// qwen3_moe.cpp — Qwen3-MoE (model_type "qwen3_moe"; Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's attention (the dense
// decoder with QK-Norm) with a sparse MoE block in place of the MLP (model-spec.md §1.2, §2.2, §3.4):
// softmax router over all num_experts, top num_experts_per_tok, renormalised when norm_topk_prob, no shared expert.
// Layer l is MoE iff l ∉ mlp_only_layers and num_experts > 0 and (l + 1) % decoder_sparse_step == 0; other layers
// use the dense MLP of intermediate_size. Experts run only for the tokens routed to them (models/moe.h).
#include <algorithm>
#include <sstream>

#include "common.h"
#include "models/arch_config.h"
#include "models/dense.h"
#include "models/models.h"
#include "models/moe.h"

namespace infer::models {
namespace {

DenseOptions qwen3_options() {
  DenseOptions o;
  o.qk_norm = true;
  return o;
}

class Qwen3Moe final : public DenseDecoder {
 public:
  explicit Qwen3Moe(const ModelConfig& cfg) : DenseDecoder(cfg, qwen3_options()) {
    const ArchConfig a(cfg);
    router_.scoring = Router::Scoring::Softmax;
    router_.n_experts = a.non_negative("num_experts", 128);
    router_.top_k = a.positive("num_experts_per_tok", 8);
    router_.norm_topk_prob = a.get_bool("norm_topk_prob", false);
    expert_width_ = a.positive("moe_intermediate_size", 768);
    const int64_t step = a.positive("decoder_sparse_step", 1);
    const std::vector<int64_t> dense_only = a.get_int_list("mlp_only_layers");
    if (router_.n_experts > 0 && router_.top_k > router_.n_experts)
      a.bad("num_experts_per_tok", "(" + std::to_string(router_.top_k) + ") must not exceed num_experts (" +
                                       std::to_string(router_.n_experts) + ")");
    if (a.get_bool("use_sliding_window", false))
      fail(INFER_ERR_UNSUPPORTED, a.file() + ": qwen3_moe with use_sliding_window=true is not supported");
    is_moe_.resize(size_t(cfg.num_hidden_layers));
    for (int64_t l = 0; l < cfg.num_hidden_layers; ++l)
      is_moe_[size_t(l)] = std::find(dense_only.begin(), dense_only.end(), l) == dense_only.end() &&
                           router_.n_experts > 0 && (l + 1) % step == 0;
    moe_.resize(size_t(cfg.num_hidden_layers));
  }

  std::string describe() const override {
    std::ostringstream os;
    const int64_t n_moe = std::count(is_moe_.begin(), is_moe_.end(), true);
    os << DenseDecoder::describe() << ", MoE " << n_moe << "/" << is_moe_.size() << " layers: " << router_.n_experts
       << " experts top-" << router_.top_k << " width " << expert_width_;
    return os.str();
  }

 protected:
  void bind_ffn(int64_t l, const std::string& p) override {
    if (!is_moe_[size_t(l)]) return DenseDecoder::bind_ffn(l, p);
    const int64_t H = config.hidden_size, E = router_.n_experts, Ie = expert_width_;
    MoeWeights& w = moe_[size_t(l)];
    w.router = matrix(p + "mlp.gate.weight", E, H, "num_experts, hidden_size");
    w.router.exact = true;  // routing decisions in fp32 (cpu::Matrix::exact)
    w.expert_width = Ie;
    w.experts.resize(size_t(E));
    const std::string n_e = " (num_experts=" + std::to_string(E) + ")";
    for (int64_t e = 0; e < E; ++e) {
      const std::string q = p + "mlp.experts." + std::to_string(e) + ".";
      ExpertWeights& x = w.experts[size_t(e)];
      x.gate = matrix(q + "gate_proj.weight", Ie, H, "moe_intermediate_size, hidden_size" + n_e);
      x.up = matrix(q + "up_proj.weight", Ie, H, "moe_intermediate_size, hidden_size" + n_e);
      x.down = matrix(q + "down_proj.weight", H, Ie, "hidden_size, moe_intermediate_size" + n_e);
    }
    check_no_extra_experts(*weights, p + "mlp.", E, "num_experts");
  }

  void prepare_ffn(Backend& be, int64_t l) const override {
    if (!is_moe_[size_t(l)]) return DenseDecoder::prepare_ffn(be, l);
    const MoeWeights& w = moe_[size_t(l)];
    be.prepare_matmul({&w.router});
    for (const ExpertWeights& x : w.experts) {
      be.prepare_matmul({&x.gate, &x.up});
      be.prepare_matmul({&x.down});
    }
  }

  int64_t weight_bytes_per_token() const override {
    int64_t n = DenseDecoder::weight_bytes_per_token();
    for (size_t l = 0; l < moe_.size(); ++l) {
      if (!is_moe_[l]) continue;
      const ExpertWeights& x = moe_[l].experts[0];
      const int64_t expert = (x.gate.rows * x.gate.cols + x.up.rows * x.up.cols + x.down.rows * x.down.cols) *
                             int64_t(dtype_size(x.gate.dtype));
      n -= (router_.n_experts - router_.top_k) * expert;  // only top_k experts are read
    }
    return n;
  }

  int64_t ffn_scratch_floats(int64_t n_batch) const override {
    int64_t n = DenseDecoder::ffn_scratch_floats(n_batch);
    for (size_t l = 0; l < moe_.size(); ++l)
      if (is_moe_[l]) n = std::max(n, moe_scratch_floats(router_, moe_[l], config.hidden_size, n_batch));
    return n;
  }

  void ffn(Backend& be, int64_t l, const float* xn, float* out, int64_t T, float* scratch, const std::string& pfx,
           const DumpFn* dump) const override {
    if (!is_moe_[size_t(l)]) return DenseDecoder::ffn(be, l, xn, out, T, scratch, pfx, dump);
    moe_forward(be, router_, moe_[size_t(l)], xn, config.hidden_size, out, config.hidden_size, T, config.hidden_size,
                scratch, pfx, dump);
  }

 private:
  Router router_;
  int64_t expert_width_ = 0;
  std::vector<bool> is_moe_;      // per layer
  std::vector<MoeWeights> moe_;   // per layer (empty for dense layers)
};

}  // namespace

std::unique_ptr<Transformer> create_qwen3_moe(const ModelConfig& cfg) { return std::make_unique<Qwen3Moe>(cfg); }

}  // namespace infer::models
