#!/usr/bin/env python3
"""Tiny random-weight Llama, Qwen2, Qwen3-MoE and DeepSeek-V3 models (bf16, FP8 and MTP variants) with
Hugging Face references, for the parity tests of the architectures beyond Qwen3 dense.

The companion of tools/make_tiny_models.py (Qwen3 dense; see docs/fixtures.md): the same prompt ids, the same
reference layout (reference.safetensors + reference.json) and the same seed-search rules, with:

  - other model classes (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3MoeForCausalLM, DeepseekV3ForCausalLM);
  - routing margins: every top-k decision of every router (and every group choice of DeepSeek's group-limited
    routing) in every reference forward must have a gap >= ROUTE_MARGIN between the last chosen and the first
    rejected score, so that an fp32 engine (whose sums differ from torch's by ~1e-6) routes identically;
  - FP8 variants: bf16 weights quantised to float8_e4m3fn per 128x128 block (scale = amax / 448, stored as
    weight_scale_inv, the DeepSeek layout), the reference run in float32 on the *dequantised* weights;
  - an MTP variant (DeepSeek): model.layers.{L}.* holds one MTP module (enorm, hnorm, eh_proj, a decoder block,
    shared_head) built so that drafts are often right; its reference comes from tools/mtp_reference.py.

Usage (from the repository root; docs/fixtures.md):

  python3 tools/make_tiny_models_moe.py                     # (re)write every fixture below
  python3 tools/make_tiny_models_moe.py --only llama_rope3  # one fixture
  python3 tools/make_tiny_models_moe.py --verify            # rebuild in a temp dir and compare
  python3 tools/make_tiny_models_moe.py --qwen3-moe-shape OUTDIR [--layers 4]
      # benchmark model (not committed): Qwen3-30B-A3B's real dims (hidden 2048, 32/4 heads, head_dim 128,
      # 128 experts of width 768, top-8, untied vocab 151936) cut to a few layers to fit in memory

Checkpoints keep the Hub's per-expert tensor names (mlp.experts.{e}.gate_proj.weight, …): transformers 4.57.1
stores Qwen3-MoE and DeepSeek-V3 experts as nn.ModuleList, and the script asserts the layout after saving.
DeepSeek's e_score_correction_bias: transformers 4.57.1 registers it as a plain buffer (no
_keep_in_fp32_modules), so a bf16 load holds it in bf16. The script draws it, rounds it to bf16 and stores that
value as F32 (the Hub's dtype): HF's bf16 load then holds the same value, and the float32 reference uses it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_tiny_models as base  # noqa: E402  (sets the 2-thread environment before torch starts)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import safetensors  # noqa: E402
import safetensors.torch  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    DeepseekV3Config,
    DeepseekV3ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

import mtp_reference  # noqa: E402

log = base.log
TESTS_DIR = base.TESTS_DIR

ARCHS = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
    "qwen3_moe": (Qwen3MoeConfig, Qwen3MoeForCausalLM),
    "deepseek_v3": (DeepseekV3Config, DeepseekV3ForCausalLM),
}

# Init spread. Linear weights get std LINEAR_GAIN / sqrt(in_features): 0.15 at in = 64, as the Qwen3 fixtures.
LINEAR_GAIN = 1.2
BIAS_STD = 0.5  # Qwen2 q/k/v biases: large enough that a missing bias changes the logits by O(1)
ROUTER_GAIN = 1.5  # router weights std ROUTER_GAIN / sqrt(H): logits of O(1), clear routing decisions
SCORE_BIAS_STD = 0.05  # DeepSeek e_score_correction_bias (sigmoid scores are ~0.5 ± 0.2)
ROUTE_MARGIN = 2e-4  # every routing decision: last chosen − first rejected score >= this (float32)
MIN_MARGIN = base.MIN_MARGIN

COMMON = dict(rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, hidden_act="silu", attention_dropout=0.0)

FIXTURES = {
    # Llama 3.1-style rope scaling with a tiny original context so all three llama3 cases occur within
    # head_dim 16 (base 5e5): wavelength 6.3 < 64/4 kept, 32.3 in [16, 64] smoothed, the rest divided by 8.
    "llama_rope3": dict(
        arch="llama", bf16_check=True,
        shape=dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, intermediate_size=128, tie_word_embeddings=False,
                   max_position_embeddings=256, rope_theta=500000.0, attention_bias=False, mlp_bias=False,
                   rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
    ),
    # Qwen2 (R1-Distill-Qwen): q/k/v biases, tied embeddings, head_dim = hidden / heads.
    "qwen2_bias": dict(
        arch="qwen2", bf16_check=True,
        shape=dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, intermediate_size=128, tie_word_embeddings=True,
                   max_position_embeddings=256, rope_theta=10000.0, use_sliding_window=False),
    ),
    # Qwen3-MoE: every layer MoE, 8 experts, top-2, renormalised (the released configs' norm_topk_prob=true).
    "qwen3_moe_top2": dict(
        arch="qwen3_moe",
        shape=dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=16, intermediate_size=128, moe_intermediate_size=32,
                   num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1,
                   mlp_only_layers=[], tie_word_embeddings=False, max_position_embeddings=256,
                   rope_theta=1_000_000.0, use_sliding_window=False),
    ),
    # Qwen3-MoE with dense layers: decoder_sparse_step 2 makes layers 1, 3, 5 MoE candidates, mlp_only_layers
    # [3] forces layer 3 dense, so layers 1 and 5 are MoE (8 experts, top-4) and 0, 2, 3, 4 use the dense MLP of
    # intermediate_size 96.
    "qwen3_moe_sparse": dict(
        arch="qwen3_moe",
        shape=dict(vocab_size=384, hidden_size=64, num_hidden_layers=6, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=16, intermediate_size=96, moe_intermediate_size=32,
                   num_experts=8, num_experts_per_tok=4, norm_topk_prob=True, decoder_sparse_step=2,
                   mlp_only_layers=[3], tie_word_embeddings=True, max_position_embeddings=256,
                   rope_theta=1_000_000.0, use_sliding_window=False),
    ),
    # DeepSeek-V3 with q_lora, YaRN (mscale 1.0 / mscale_all_dim 0.8: cos/sin scaled by 1.0251, softmax scale by
    # 1.2341; max_position_embeddings / original = 8 differs from factor 4, which pins transformers 4.57's reading:
    # factor as given) and group-limited routing that really excludes groups (16 experts in 4 groups, 2 groups
    # allowed, top-4; the script checks that for some tokens the unrestricted top-4 reaches into an excluded group).
    # Layer 0 dense, layers 1-2 MoE with one shared expert.
    "dsv3_qlora_yarn": dict(
        arch="deepseek_v3", need_excluded_group_wins=5,
        shape=dict(vocab_size=512, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                   num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1,
                   n_routed_experts=16, routed_scaling_factor=2.5, kv_lora_rank=32, q_lora_rank=32,
                   qk_rope_head_dim=8, v_head_dim=16, qk_nope_head_dim=16, n_group=4, topk_group=2,
                   num_experts_per_tok=4, first_k_dense_replace=1, norm_topk_prob=True,
                   max_position_embeddings=256, rope_theta=10000.0, tie_word_embeddings=False,
                   rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32,
                                 "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 0.8},
                   scoring_func="sigmoid", topk_method="noaux_tc", moe_layer_freq=1),
    ),
    # DeepSeek-V2-Lite-style attention: q_lora_rank null (plain q_proj), qk_rope_head_dim 16 = qk_nope_head_dim,
    # v_head_dim 8 (≠ nope, so k and v widths cannot be mixed up); no rope scaling; 8 experts in one group, top-2,
    # norm_topk_prob false, routed_scaling_factor 1, two shared experts (shared width 2 × 24).
    "dsv3_v2lite": dict(
        arch="deepseek_v3",
        shape=dict(vocab_size=384, hidden_size=64, intermediate_size=96, moe_intermediate_size=24,
                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, n_shared_experts=2,
                   n_routed_experts=8, routed_scaling_factor=1.0, kv_lora_rank=32, q_lora_rank=None,
                   qk_rope_head_dim=16, v_head_dim=8, qk_nope_head_dim=16, n_group=1, topk_group=1,
                   num_experts_per_tok=2, first_k_dense_replace=1, norm_topk_prob=False,
                   max_position_embeddings=256, rope_theta=10000.0, tie_word_embeddings=False, rope_scaling=None),
    ),
    # FP8 DeepSeek: every projection of every layer float8_e4m3fn with F32 128x128 block scales (the V3/R1 Hub
    # layout); hidden 128 (one full column block); q_lora 64, kv_lora 64 and 192 / 80-row projections give partial
    # edge blocks; kv_b_proj's per-head W_UV rows start inside a block (views keep the parent's scale rows).
    "dsv3_fp8": dict(
        arch="deepseek_v3", fp8={"scale_dtype": "float32"},
        shape=dict(vocab_size=256, hidden_size=128, intermediate_size=256, moe_intermediate_size=64,
                   num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1,
                   n_routed_experts=8, routed_scaling_factor=2.5, kv_lora_rank=64, q_lora_rank=64,
                   qk_rope_head_dim=16, v_head_dim=32, qk_nope_head_dim=32, n_group=2, topk_group=1,
                   num_experts_per_tok=2, first_k_dense_replace=1, norm_topk_prob=True,
                   max_position_embeddings=256, rope_theta=10000.0, tie_word_embeddings=False, rope_scaling=None,
                   scoring_func="sigmoid", topk_method="noaux_tc"),
    ),
    # FP8 Qwen3-MoE with BF16 scales (the Qwen3-*-FP8 layout): q/k/v/o and every expert quantised; the router,
    # norms, embedding and lm_head stay bf16.
    "qwen3_moe_fp8": dict(
        arch="qwen3_moe", fp8={"scale_dtype": "bfloat16"},
        shape=dict(vocab_size=256, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=32, intermediate_size=256, moe_intermediate_size=32,
                   num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1,
                   mlp_only_layers=[], tie_word_embeddings=False, max_position_embeddings=256,
                   rope_theta=1_000_000.0, use_sliding_window=False),
    ),
    # FP8 dense Qwen3 (the Qwen3-8B/14B-FP8 layout: BF16 scales, every projection quantised; embedding, lm_head
    # and norms bf16), for the CUDA w8a8 GEMM end to end. hidden 192 = 1.5 column blocks, k/v 64 rows (a partial
    # row block), intermediate 320 = 2.5 blocks: every matmul has partial edge blocks in N or K.
    "qwen3_fp8": dict(
        arch="qwen3", fp8={"scale_dtype": "bfloat16"},
        shape=dict(vocab_size=256, hidden_size=192, num_hidden_layers=2, num_attention_heads=6,
                   num_key_value_heads=2, head_dim=32, intermediate_size=320, tie_word_embeddings=False,
                   max_position_embeddings=256, rope_theta=1_000_000.0, attention_bias=False,
                   use_sliding_window=False),
    ),
    # DeepSeek-V3 with an MTP module (num_nextn_predict_layers 1, tensors model.layers.1.*) whose block is a copy of
    # the only main layer, so its drafts are often the main model's next choice (make_mtp_tensors). The seed search
    # keeps a model whose greedy draft agreement over 64 tokens lies in [0.5, 0.95]: drafts often accepted, some
    # rejected, so both paths of speculative decoding run. Layer 0 is MoE (first_k_dense_replace 0), as is the MTP
    # block.
    "dsv3_mtp": dict(
        arch="deepseek_v3", mtp={"hidden_std": 0.001, "accept_range": [0.5, 0.95]},
        shape=dict(vocab_size=512, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
                   num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1,
                   n_routed_experts=8, routed_scaling_factor=2.5, kv_lora_rank=32, q_lora_rank=32,
                   qk_rope_head_dim=8, v_head_dim=16, qk_nope_head_dim=16, n_group=2, topk_group=1,
                   num_experts_per_tok=2, first_k_dense_replace=0, norm_topk_prob=True,
                   max_position_embeddings=256, rope_theta=10000.0, tie_word_embeddings=False, rope_scaling=None,
                   scoring_func="sigmoid", topk_method="noaux_tc"),
    ),
}


def arch_classes(spec: dict):
    return ARCHS[spec["arch"]]


def make_config(spec: dict):
    cfg_cls, _ = arch_classes(spec)
    kw = dict(COMMON)
    kw.update(spec["shape"])
    return cfg_cls(attn_implementation="eager", **kw)


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------


def init_std(name: str, p: torch.Tensor, hidden: int) -> tuple[str, float]:
    """(kind, std) for a parameter; kind 'norm' means 1 + 0.1 N(0, 1)."""
    if name.endswith("norm.weight"):
        return "norm", base.NORM_NOISE
    if name == "model.embed_tokens.weight":
        return "normal", base.STD_EMBED
    if name == "lm_head.weight":
        return "normal", base.STD_LM_HEAD
    if name.endswith(".bias"):
        return "normal", BIAS_STD
    if name.endswith("mlp.gate.weight"):  # the router
        return "normal", ROUTER_GAIN / math.sqrt(hidden)
    if name.endswith(".weight") and p.dim() == 2:
        return "normal", LINEAR_GAIN / math.sqrt(p.shape[1])
    raise RuntimeError(f"init: unexpected parameter {name} {tuple(p.shape)}")


@torch.no_grad()
def init_weights(model, seed: int) -> torch.Generator:
    """Every parameter from a seeded generator in sorted-name order, then the DeepSeek score biases (buffers).
    Returns the generator (MTP weights continue from it)."""
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    hidden = model.config.hidden_size
    for name in sorted(params):
        p = params[name]
        kind, std = init_std(name, p, hidden)
        noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
        p.copy_(1.0 + std * noise if kind == "norm" else std * noise)
    buffers = dict(model.named_buffers())
    for name in sorted(buffers):
        if name.endswith("e_score_correction_bias"):
            b = buffers[name]
            b.copy_(SCORE_BIAS_STD * torch.randn(b.shape, generator=g, dtype=torch.float32))
    return g


def bf16_round(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.bfloat16).float()


class Built:
    """One candidate model: the HF config, the checkpoint tensors (as written), the float32 weights the
    reference runs on (dequantised for FP8), and the float32 HF model."""

    def __init__(self, spec: dict, seed: int):
        self.spec = spec
        self.seed = seed
        self.cfg = make_config(spec)
        _, model_cls = arch_classes(spec)
        torch.manual_seed(0)  # HF's own init is overwritten anyway; keep it deterministic
        model = model_cls(self.cfg)
        g = init_weights(model, seed)
        model = model.to(torch.bfloat16)  # round every weight (and buffer) to bf16
        sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if self.cfg.tie_word_embeddings:
            sd.pop("lm_head.weight", None)
        for k in list(sd):
            if k.endswith("rotary_emb.inv_freq"):
                sd.pop(k)
        ckpt = {}
        for k, v in sd.items():
            # DeepSeek's score bias is F32 on the Hub; its value here is bf16-representable (see the docstring).
            ckpt[k] = v.float().contiguous() if k.endswith("e_score_correction_bias") else v.contiguous()
        self.mtp = None
        if spec.get("mtp"):
            self.mtp = make_mtp_tensors(self.cfg, ckpt, g, spec["mtp"])
            ckpt.update(self.mtp)
        self.fp8 = spec.get("fp8")
        self.true_sd = {k: v.float() for k, v in ckpt.items()}
        if self.fp8:
            q_ckpt = {}
            for k, v in ckpt.items():
                if fp8_eligible(k, self.cfg):
                    q, s = quantize_fp8(v.float(), self.fp8["scale_dtype"])
                    q_ckpt[k] = q
                    q_ckpt[k + "_scale_inv"] = s
                    self.true_sd[k] = dequantize_fp8(q, s)
                else:
                    q_ckpt[k] = v
            ckpt = q_ckpt
        self.ckpt = ckpt
        self.model = fp32_model(self.cfg, spec, self.true_sd)


def fp32_model(cfg, spec: dict, true_sd: dict):
    _, model_cls = arch_classes(spec)
    m = model_cls(cfg)
    L = cfg.num_hidden_layers
    sd = {k: v for k, v in true_sd.items() if not is_mtp_key(k, L)}
    if cfg.tie_word_embeddings:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    missing, unexpected = m.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("rotary_emb.inv_freq")]
    assert not missing and not unexpected, (missing, unexpected)
    if cfg.tie_word_embeddings:
        m.tie_weights()
    return m.float().eval()


def is_mtp_key(k: str, L: int) -> bool:
    return k.startswith(f"model.layers.{L}.")


# ---------------------------------------------------------------------------------------------
# FP8 (DeepSeek-V3 block quantisation, model-spec §6)
# ---------------------------------------------------------------------------------------------

FP8_MAX = 448.0
BLOCK = 128


def fp8_eligible(name: str, cfg) -> bool:
    """What the DeepSeek-V3 FP8 checkpoint quantises: every projection of every decoder layer (attention, dense
    MLP, experts, shared experts), not embeddings, lm_head, norms, the router, the score bias or MTP's
    eh_proj / shared_head."""
    if not name.startswith("model.layers.") or not name.endswith(("_proj.weight", "_proj_with_mqa.weight")):
        return False
    if name.endswith("eh_proj.weight"):
        return False
    return True


def _scale_round_up(s: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """s (positive float32) rounded to `dtype`, upwards, so |w / scale| <= 448 still holds with the stored scale."""
    r = s.to(dtype)
    if dtype == torch.float32:
        return r
    up = (r.view(torch.int16) + 1).view(dtype)  # the next representable value (positive, finite)
    return torch.where(r.float() < s, up, r)


def quantize_fp8(w: torch.Tensor, scale_dtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    """w [out, in] float32 → (e4m3 [out, in], scale [ceil(out/128), ceil(in/128)]) with w ≈ e4m3 · scale per
    block; scale = amax / 448 (1 for an all-zero block), rounded up to the stored dtype."""
    out_f, in_f = w.shape
    rb, cb = -(-out_f // BLOCK), -(-in_f // BLOCK)
    padded = torch.zeros(rb * BLOCK, cb * BLOCK)
    padded[:out_f, :in_f] = w
    blocks = padded.view(rb, BLOCK, cb, BLOCK)
    amax = blocks.abs().amax(dim=(1, 3))
    s = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    dt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[scale_dtype]
    s_stored = _scale_round_up(s, dt)
    sf = s_stored.float()
    q = (blocks / sf[:, None, :, None]).view(rb * BLOCK, cb * BLOCK)[:out_f, :in_f]
    assert q.abs().max() <= FP8_MAX * (1 + 1e-6)  # amax / (amax / 448) may round a hair above 448
    q = q.clamp(-FP8_MAX, FP8_MAX)
    return q.to(torch.float8_e4m3fn).contiguous(), s_stored.contiguous()


def dequantize_fp8(q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """float(e4m3) · scale in float32 (DS-REF weight_dequant, without the final bf16 rounding)."""
    out_f, in_f = q.shape
    sf = s.float().repeat_interleave(BLOCK, 0)[:out_f].repeat_interleave(BLOCK, 1)[:, :in_f]
    return q.float() * sf


# ---------------------------------------------------------------------------------------------
# MTP (DeepSeek)
# ---------------------------------------------------------------------------------------------


def make_mtp_tensors(cfg, ckpt: dict, g: torch.Generator, how: dict) -> dict:
    """model.layers.{L}.*: enorm, hnorm, eh_proj, a decoder block copied from the last main layer, shared_head.

    With a one-layer main model the MTP module at position i, given the embedding of t_{i+1}, reproduces the
    main model's computation at position i+1 (the block is the same layer, its cache holds the same inputs one
    position earlier, RoPE only sees relative positions): so its draft for t_{i+2} is often the main model's
    own prediction. eh_proj = [I · c | small noise]: the embedding half passes enorm(emb) through (enorm's
    weight is the embedding rows' typical rms, so enorm(emb) ≈ emb), the hidden half adds a little of hnorm(h)."""
    L = cfg.num_hidden_layers
    H = cfg.hidden_size
    src = f"model.layers.{L - 1}."
    dst = f"model.layers.{L}."
    out = {}
    for k, v in ckpt.items():
        if k.startswith(src):
            out[dst + k[len(src):]] = v.clone()
    emb = ckpt["model.embed_tokens.weight"].float()
    rms = float(emb.pow(2).mean(dim=1).sqrt().mean())
    out[dst + "enorm.weight"] = torch.full((H,), rms).to(torch.bfloat16)
    out[dst + "hnorm.weight"] = (1.0 + base.NORM_NOISE * torch.randn(H, generator=g)).to(torch.bfloat16)
    eh = torch.zeros(H, 2 * H)
    eh[:, :H] = torch.eye(H)
    eh[:, H:] = how["hidden_std"] * torch.randn(H, H, generator=g)
    out[dst + "eh_proj.weight"] = eh.to(torch.bfloat16)
    out[dst + "shared_head.norm.weight"] = ckpt["model.norm.weight"].clone()
    out[dst + "shared_head.head.weight"] = ckpt["lm_head.weight"].clone()
    out[dst + "embed_tokens.weight"] = ckpt["model.embed_tokens.weight"].clone()
    return out


# ---------------------------------------------------------------------------------------------
# Routing records (margins, choices) — replicas of HF's routers, run from forward hooks
# ---------------------------------------------------------------------------------------------


class RouteRecorder:
    def __init__(self, model):
        self.model = model
        self.cfg = model.config
        self.min_margin = float("inf")
        self.where = ""
        self.choices: dict[int, list[torch.Tensor]] = {}
        self.excluded_group_wins = 0  # tokens whose unrestricted top-k reaches into a group the rule excluded
        self.min_score = float("inf")
        self.hooks = []
        for i, layer in enumerate(model.model.layers):
            mlp = layer.mlp
            if hasattr(mlp, "gate") and hasattr(mlp, "experts"):
                self.hooks.append(mlp.gate.register_forward_hook(lambda m, a, o, i=i: self.on_gate(i, m, a[0], o)))

    def remove(self):
        for h in self.hooks:
            h.remove()

    def note(self, margin: float, what: str):
        if margin < self.min_margin:
            self.min_margin = margin
            self.where = what

    def on_gate(self, layer: int, module, x: torch.Tensor, out):
        cfg = self.cfg
        k = cfg.num_experts_per_tok
        x = x.reshape(-1, x.shape[-1])
        if cfg.model_type == "qwen3_moe":
            p = F.softmax(out.reshape(-1, out.shape[-1]).float(), dim=-1)
            top = torch.sort(p, dim=-1, descending=True)
            idx = top.indices[:, :k]
            if k < p.shape[1]:
                self.note(float((top.values[:, k - 1] - top.values[:, k]).min()), f"layer {layer} top-{k}")
        else:  # deepseek_v3: sigmoid, score bias for selection, group-limited top-k (HF DeepseekV3TopkRouter)
            logits = F.linear(x.float(), module.weight.float())
            s = logits.sigmoid()
            sc = s + module.e_score_correction_bias.float()
            E, G, TG = cfg.n_routed_experts, cfg.n_group, cfg.topk_group
            grouped = sc.view(-1, G, E // G)
            gs = grouped.topk(2, dim=-1).values.sum(-1)  # [T, G]
            gsort = torch.sort(gs, dim=-1, descending=True)
            keep = gsort.indices[:, :TG]
            if TG < G:
                self.note(float((gsort.values[:, TG - 1] - gsort.values[:, TG]).min()), f"layer {layer} group top-{TG}")
            mask = torch.zeros_like(gs, dtype=torch.bool).scatter_(1, keep, True)
            emask = mask[:, :, None].expand(-1, G, E // G).reshape(-1, E)
            masked = sc.masked_fill(~emask, float("-inf"))
            top = torch.sort(masked, dim=-1, descending=True)
            idx = top.indices[:, :k]
            nk = int(emask[0].sum())
            # HF masks excluded groups with 0.0 (DS-REF and the engine: -inf): the same choice as long as the k-th
            # best allowed score is > 0.
            self.min_score = min(self.min_score, float(top.values[:, k - 1].min()))
            if k < nk:
                self.note(float((top.values[:, k - 1] - top.values[:, k]).min()), f"layer {layer} top-{k}")
            free = torch.topk(sc, k, dim=-1).indices
            self.excluded_group_wins += int((~torch.gather(emask, 1, free)).any(dim=1).sum())
            # HF's own choice (masked to 0.0, sorted=False) must pick the same set.
            hf_idx = module.get_topk_indices(s)
            assert torch.equal(torch.sort(hf_idx, dim=-1).values, torch.sort(idx, dim=-1).values)
        self.choices.setdefault(layer, []).append(idx.to(torch.int32))


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def compute_reference(b: Built) -> dict:
    rec = RouteRecorder(b.model)
    try:
        ref = base.compute_reference(b.model)
        n_prompt_calls = {l: 1 for l in rec.choices}  # the first gate call of each layer is the prompt forward
        prompt_choices = {l: c[0] for l, c in rec.choices.items()}
    finally:
        rec.remove()
    ref["route_margin"] = rec.min_margin
    ref["route_where"] = rec.where
    ref["excluded_group_wins"] = rec.excluded_group_wins
    ref["min_score"] = rec.min_score
    for l, c in sorted(prompt_choices.items()):
        ref["tensors"][f"router_topk_L{l}"] = c.contiguous()
    del n_prompt_calls
    if b.mtp is not None:
        ref["mtp"] = mtp_reference.reference(b.model, b.true_sd, ref["tensors"]["prompt_ids"].long(),
                                             ref["tensors"]["logits"])
        for k, v in ref["mtp"]["tensors"].items():
            ref["tensors"][k] = v
    return ref


def acceptable(b: Built, ref: dict, b16: dict | None) -> tuple[bool, str]:
    ok, why = base.acceptable(ref, b16) if b16 is not None else _acceptable_fp32(ref)
    if not ok:
        return ok, why
    if ref["route_margin"] < ROUTE_MARGIN:
        return False, f"routing margin {ref['route_margin']:.2e} < {ROUTE_MARGIN} ({ref['route_where']})"
    if ref["min_score"] != float("inf") and ref["min_score"] <= 0:
        return False, "a chosen biased score <= 0 (HF masks excluded groups with 0.0, the engine with -inf)"
    need = b.spec.get("need_excluded_group_wins", 0)
    if ref["excluded_group_wins"] < need:
        return False, f"group routing excluded a would-be winner for only {ref['excluded_group_wins']} tokens"
    mtp = ref.get("mtp")
    if mtp is not None:
        lo, hi = b.spec["mtp"]["accept_range"]
        if not (lo <= mtp["agree_rate"] <= hi):
            return False, f"MTP draft agreement {mtp['agree_rate']:.2f} outside [{lo}, {hi}]"
    return True, why


def _acceptable_fp32(ref: dict) -> tuple[bool, str]:
    """base.acceptable without HF's bf16 run (MoE routing in bf16 flips on near-ties; the engine is fp32)."""
    t = ref["tensors"]
    toks = t["greedy_tokens"].tolist()
    mmin = float(t["greedy_margins"].min())
    if mmin < MIN_MARGIN:
        return False, f"min greedy margin {mmin:.4f} < {MIN_MARGIN}"
    if any(x in base.SPECIAL_IDS for x in toks):
        return False, "greedy continuation hits a special id (0..3)"
    if ref["nocache_tokens"] != toks:
        return False, "cached and uncached greedy disagree"
    if len(set(toks)) < base.MIN_DISTINCT or len(set(toks[-20:])) < base.MIN_DISTINCT_TAIL:
        return False, "greedy continuation is too repetitive"
    return True, f"min margin {mmin:.4f}"


@torch.no_grad()
def bf16_check(b: Built) -> dict | None:
    if not b.spec.get("bf16_check"):
        return None
    _, model_cls = arch_classes(b.spec)
    m = model_cls(b.cfg)
    sd = {k: v for k, v in b.true_sd.items() if not is_mtp_key(k, b.cfg.num_hidden_layers)}
    if b.cfg.tie_word_embeddings:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    m.load_state_dict(sd, strict=False)
    if b.cfg.tie_word_embeddings:
        m.tie_weights()
    return base.bf16_check(m.to(torch.bfloat16).eval())


def find_seed(name: str, spec: dict) -> int:
    start = spec.get("seed_start", base.SEED_START)
    for seed in range(start, start + base.SEED_TRIES):
        b = Built(spec, seed)
        ref = compute_reference(b)
        ok, why = acceptable(b, ref, bf16_check(b))
        log(f"  {name}: seed {seed}: {'ok' if ok else 'rejected'} ({why})")
        if ok:
            return seed
    raise RuntimeError(f"{name}: no acceptable seed in {base.SEED_TRIES} tries")


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def write_checkpoint(b: Built, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(b.ckpt, str(out / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(out / "model.safetensors", 0o644)
    cfg = b.cfg
    _, model_cls = arch_classes(b.spec)
    cfg.architectures = [model_cls.__name__]
    cfg.dtype = torch.bfloat16
    cfg.save_pretrained(out)
    extra = dict(b.spec.get("extra_config", {}))
    if b.fp8:
        extra["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                        "weight_block_size": [BLOCK, BLOCK]}
    if b.mtp is not None:
        extra["num_nextn_predict_layers"] = 1
    base.finish_config(out, base.TINY_GENERATION, extra)
    # The layout HF writes for MoE models must be per-expert (not fused 3-D tensors).
    with safetensors.safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    if b.spec["arch"] in ("qwen3_moe", "deepseek_v3"):
        assert any(".mlp.experts.0.gate_proj.weight" in k for k in keys), "experts are not stored per expert"
        assert not any(k.endswith("experts.gate_up_proj") or k.endswith("experts.down_proj") for k in keys)


@torch.no_grad()
def reload_check(b: Built, out: Path, ref: dict) -> None:
    """The written directory gives the same references: through HF's own loader for bf16 checkpoints, through
    the dequantising loader otherwise."""
    if b.fp8:
        loaded = safetensors.torch.load_file(str(out / "model.safetensors"))
        true_sd = {}
        for k, v in loaded.items():
            if k.endswith("_scale_inv"):
                continue
            true_sd[k] = dequantize_fp8(v, loaded[k + "_scale_inv"]) if v.dtype == torch.float8_e4m3fn else v.float()
        m = fp32_model(b.cfg, b.spec, true_sd)
    else:
        _, model_cls = arch_classes(b.spec)
        m = model_cls.from_pretrained(out, dtype=torch.bfloat16, attn_implementation="eager").float().eval()
    b2 = Built.__new__(Built)
    b2.__dict__.update(b.__dict__)
    b2.model = m
    ref2 = compute_reference(b2)
    for k, v in ref["tensors"].items():
        assert torch.equal(v, ref2["tensors"][k]), f"reloaded model differs ({k})"
    gen = m.generate(ref["tensors"]["greedy_prompt"].long()[None], do_sample=False, max_new_tokens=base.N_GREEDY,
                     min_new_tokens=base.N_GREEDY, temperature=None, top_k=None, top_p=None)[0, base.P_GREEDY:]
    assert gen.tolist() == ref["tensors"]["greedy_tokens"].tolist(), "generate() disagrees with the greedy loop"


def reference_metadata(name: str, b: Built, ref: dict) -> dict:
    meta = base.reference_metadata(name, b.seed, ref)
    meta["generator"] = "tools/make_tiny_models_moe.py"
    meta["init"] = (f"embed N(0,{base.STD_EMBED}) lm_head N(0,{base.STD_LM_HEAD}) proj N(0,{LINEAR_GAIN}/sqrt(in)) "
                    f"bias N(0,{BIAS_STD}) router N(0,{ROUTER_GAIN}/sqrt(H)) score_bias N(0,{SCORE_BIAS_STD}) "
                    f"norm 1+{base.NORM_NOISE}*N(0,1), float32 then bf16")
    meta["route_margin_min"] = f"{ref['route_margin']:.6g}" if ref["route_margin"] != float("inf") else "none"
    meta["router_topk"] = "router_topk_L{l}: experts chosen for prompt_ids, best score first (prompt forward)"
    if b.fp8:
        meta["compute"] = ("float32 eager on the dequantised weights (float(e4m3) * weight_scale_inv per 128x128 "
                           "block, no bf16 rounding)")
        meta["fp8_scale_dtype"] = b.fp8["scale_dtype"]
    if "mtp" in ref:
        meta["mtp"] = ref["mtp"]["meta"]
    if b.spec["arch"] == "deepseek_v3":
        meta["excluded_group_wins"] = str(ref["excluded_group_wins"])
    return meta


def write_fixture(name: str, out_root: Path) -> dict:
    spec = FIXTURES[name]
    log(f"[{name}] searching seed")
    seed = find_seed(name, spec)
    out = out_root / name
    if out.exists():
        shutil.rmtree(out)
    b = Built(spec, seed)
    write_checkpoint(b, out)
    ref = compute_reference(b)
    ok, why = acceptable(b, ref, bf16_check(b))
    assert ok, why
    reload_check(b, out, ref)
    tensors = dict(ref["tensors"])
    b16 = bf16_check(b)
    if b16 is not None:
        tensors["logits_bf16"] = b16["logits_bf16"]
    meta = reference_metadata(name, b, ref)
    base.save_safetensors_canonical(tensors, out / "reference.safetensors", meta)
    (out / "reference.json").write_text(base.reference_json(name, seed, ref, meta))
    mmin = float(ref["tensors"]["greedy_margins"].min())
    extra = ""
    if ref["route_margin"] != float("inf"):
        extra += f", min routing margin {ref['route_margin']:.2e}"
    if spec["arch"] == "deepseek_v3":
        extra += f", excluded-group wins {ref['excluded_group_wins']}"
    if "mtp" in ref:
        extra += f", MTP draft agreement {ref['mtp']['agree_rate']:.3f}"
    log(f"[{name}] seed {seed}, min greedy margin {mmin:.4f}{extra}")
    return {"name": name, "seed": seed, "min_margin": mmin, "dir": out}


def verify(atol: float) -> int:
    errs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in FIXTURES:
            info = write_fixture(name, tmp)
            errs += base.compare_dirs(name, info["dir"], TESTS_DIR / name, atol)
    if errs:
        log("VERIFY FAILED:")
        for e in errs:
            log("  " + e)
        return 1
    log("VERIFY OK: every committed fixture is reproduced.")
    return 0


QWEN3_30B_A3B_SHAPE = dict(
    vocab_size=151936, hidden_size=2048, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
    intermediate_size=6144, moe_intermediate_size=768, num_experts=128, num_experts_per_tok=8, norm_topk_prob=True,
    decoder_sparse_step=1, mlp_only_layers=[], tie_word_embeddings=False, rms_norm_eps=1e-6,
    rope_theta=1_000_000.0, max_position_embeddings=40960, bos_token_id=151643, eos_token_id=151645,
    hidden_act="silu", attention_bias=False, attention_dropout=0.0, use_sliding_window=False, rope_scaling=None,
    max_window_layers=48, output_router_logits=False, router_aux_loss_coef=0.001,
)


def write_qwen3_moe_shape(out: Path, layers: int, seed: int = 0) -> None:
    """A Qwen3-30B-A3B-shaped random bf16 checkpoint with `layers` layers, written tensor by tensor (float32 only in
    16M-element chunks) so that peak memory is about the bf16 model. Weights ~ N(0, 0.02), norms ~ 1 + N(0, 0.02)."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = Qwen3MoeConfig(num_hidden_layers=layers, **QWEN3_30B_A3B_SHAPE)
    H, nh, nkv, d, V = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.vocab_size
    E, Ie = cfg.num_experts, cfg.moe_intermediate_size
    names = [("model.embed_tokens.weight", (V, H))]
    for L in range(layers):
        p = f"model.layers.{L}."
        names += [(p + "input_layernorm.weight", (H,)), (p + "self_attn.q_proj.weight", (nh * d, H)),
                  (p + "self_attn.k_proj.weight", (nkv * d, H)), (p + "self_attn.v_proj.weight", (nkv * d, H)),
                  (p + "self_attn.o_proj.weight", (H, nh * d)), (p + "self_attn.q_norm.weight", (d,)),
                  (p + "self_attn.k_norm.weight", (d,)), (p + "post_attention_layernorm.weight", (H,)),
                  (p + "mlp.gate.weight", (E, H))]
        for e in range(E):
            q = f"{p}mlp.experts.{e}."
            names += [(q + "gate_proj.weight", (Ie, H)), (q + "up_proj.weight", (Ie, H)),
                      (q + "down_proj.weight", (H, Ie))]
    names += [("model.norm.weight", (H,)), ("lm_head.weight", (V, H))]
    g = torch.Generator().manual_seed(seed)
    sd = {}
    chunk = 1 << 24
    for name, shape in names:
        t = torch.empty(shape, dtype=torch.bfloat16)
        flat = t.view(-1)
        for s0 in range(0, flat.numel(), chunk):
            n = min(chunk, flat.numel() - s0)
            x = torch.randn(n, generator=g, dtype=torch.float32).mul_(0.02)
            if name.endswith("norm.weight"):
                x.add_(1.0)
            flat[s0 : s0 + n] = x.to(torch.bfloat16)
        sd[name] = t
    safetensors.torch.save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    n_params = sum(t.numel() for t in sd.values())
    del sd
    cfg.architectures = ["Qwen3MoeForCausalLM"]
    cfg.dtype = torch.bfloat16
    cfg.save_pretrained(out)
    base.finish_config(out, base.QWEN3_GENERATION)
    base.link_or_copy_tokenizer(out)
    size = (out / "model.safetensors").stat().st_size
    base.log(f"[qwen3-moe-shape] {layers} layers, {n_params / 1e9:.2f} B params, model.safetensors {size / 1e9:.2f} GB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qwen3-moe-shape", dest="moe_shape", metavar="OUTDIR",
                    help="write a Qwen3-30B-A3B-shaped random bf16 model (few layers) for benchmarks, then exit")
    ap.add_argument("--layers", type=int, default=4, help="--qwen3-moe-shape: number of layers (default 4)")
    ap.add_argument("--only", action="append", choices=list(FIXTURES), help="write only these fixtures (repeatable)")
    ap.add_argument("--verify", action="store_true", help="check the committed fixtures would be reproduced")
    ap.add_argument("--atol", type=float, default=1e-5)
    args = ap.parse_args()
    transformers.logging.set_verbosity_error()
    if args.moe_shape:
        write_qwen3_moe_shape(Path(args.moe_shape), args.layers)
        return 0
    if args.verify:
        return verify(args.atol)
    results = [write_fixture(name, TESTS_DIR) for name in (args.only or list(FIXTURES))]
    log("\nsummary:")
    for r in results:
        size = sum(p.stat().st_size for p in r["dir"].iterdir() if p.is_file())
        log(f"  {r['name']}: seed {r['seed']}, min greedy margin {r['min_margin']:.4f}, {size / 1e3:.1f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
