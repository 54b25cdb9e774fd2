"""Torch reference of DeepSeek-V3's MTP (multi-token prediction) module, which HF transformers does not implement.

It follows vLLM (vllm/model_executor/models/deepseek_mtp.py, DeepSeekMultiTokenPredictorLayer; model-spec §5):
for position i, with h_i the main model's hidden state after its final norm and t_{i+1} the next token,

    e      = embed(t_{i+1}), zeroed where position == 0 (vLLM: "masking inputs at position 0")
    z      = eh_proj( concat(enorm(e), hnorm(h_i)) )          # [embedding ; hidden]
    z      = DecoderBlock_L(z, position i)                     # HF's DeepseekV3DecoderLayer, causal, its own cache
    logits = shared_head.head( shared_head.norm(z) )           # the draft for t_{i+2}

The block is transformers' own DeepseekV3DecoderLayer (eager attention, MoE when L >= first_k_dense_replace), so
its numerics are HF's; everything runs in float32.

Used by tools/make_tiny_models_moe.py for the fixtures with an MTP layer (tensors mtp_logits / mtp_next_ids in
reference.safetensors), and runnable on its own:

    python3 tools/mtp_reference.py tests/data/models/dsv3_mtp      # prints the draft agreement on the prompt
"""
from __future__ import annotations

import sys

import torch
from torch import nn
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3DecoderLayer, DeepseekV3RMSNorm


class MtpModule(nn.Module):
    def __init__(self, config, tensors: dict[str, torch.Tensor]):
        """tensors: float32 weights of model.layers.{num_hidden_layers}.* with that prefix removed."""
        super().__init__()
        H, V, eps = config.hidden_size, config.vocab_size, config.rms_norm_eps
        self.layer_idx = config.num_hidden_layers
        self.embed = nn.Embedding(V, H)
        self.enorm = DeepseekV3RMSNorm(H, eps)
        self.hnorm = DeepseekV3RMSNorm(H, eps)
        self.eh_proj = nn.Linear(2 * H, H, bias=False)
        self.block = DeepseekV3DecoderLayer(config, self.layer_idx)
        self.head_norm = DeepseekV3RMSNorm(H, eps)
        self.head = nn.Linear(H, V, bias=False)
        sd = {
            "embed.weight": tensors["embed_tokens.weight"],
            "enorm.weight": tensors["enorm.weight"],
            "hnorm.weight": tensors["hnorm.weight"],
            "eh_proj.weight": tensors["eh_proj.weight"],
            "head_norm.weight": tensors["shared_head.norm.weight"],
            "head.weight": tensors["shared_head.head.weight"],
        }
        for k, v in tensors.items():
            if k.startswith(("self_attn.", "mlp.", "input_layernorm.", "post_attention_layernorm.")):
                sd["block." + k] = v
        missing, unexpected = self.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
        assert not missing and not unexpected
        self.float().eval()

    @torch.no_grad()
    def forward(self, next_ids: torch.Tensor, hidden: torch.Tensor, rotary_emb) -> tuple[torch.Tensor, torch.Tensor]:
        """next_ids [T] (t_{i+1}), hidden [T, H] (main final-norm h_i) for positions 0..T-1 → (logits [T, V], z [T, H])."""
        T = next_ids.shape[0]
        pos = torch.arange(T)
        e = self.embed(next_ids)
        e[pos == 0] = 0
        z = self.eh_proj(torch.cat([self.enorm(e), self.hnorm(hidden)], dim=-1))[None]
        cos, sin = rotary_emb(z, pos[None])
        mask = torch.full((T, T), float("-inf")).triu(1)[None, None]
        z = self.block(z, attention_mask=mask, position_ids=pos[None], position_embeddings=(cos, sin))
        if isinstance(z, tuple):
            z = z[0]
        z = z[0]
        return self.head(self.head_norm(z)), z


def mtp_tensors(true_sd: dict, layer: int) -> dict:
    p = f"model.layers.{layer}."
    return {k[len(p):]: v.float() for k, v in true_sd.items() if k.startswith(p)}


@torch.no_grad()
def reference(model, true_sd: dict, prompt_ids: torch.Tensor, main_logits: torch.Tensor) -> dict:
    """MTP draft logits over the prompt (next token of the last position: the main model's argmax there), and the
    draft agreement rate over a greedy continuation (how often argmax(MTP at i) == the main model's greedy token
    at i+2: the acceptance rate of one-token self-speculative decoding)."""
    cfg = model.config
    mtp = MtpModule(cfg, mtp_tensors(true_sd, cfg.num_hidden_layers))
    rot = model.model.rotary_emb
    hidden = model.model(prompt_ids[None]).last_hidden_state[0]  # after the final norm (vLLM)
    next_ids = torch.cat([prompt_ids[1:], torch.argmax(main_logits[-1]).reshape(1)])
    logits, _ = mtp(next_ids, hidden, rot)

    # Agreement along a 64-token greedy continuation of the prompt.
    seq = prompt_ids.clone()
    for _ in range(64):
        nxt = torch.argmax(model(seq[None]).logits[0, -1]).reshape(1)
        seq = torch.cat([seq, nxt])
    h = model.model(seq[None]).last_hidden_state[0]
    dl, _ = mtp(seq[1:], h[:-1], rot)  # positions 0..n-2 with next tokens seq[1..n-1]
    drafts = torch.argmax(dl, dim=-1)  # draft for seq[i + 2]
    P = prompt_ids.shape[0]
    idx = torch.arange(P - 1, seq.shape[0] - 2)
    agree = float((drafts[idx] == seq[idx + 2]).float().mean())
    return {
        "tensors": {"mtp_logits": logits.float().contiguous(), "mtp_next_ids": next_ids.to(torch.int32).contiguous()},
        "agree_rate": agree,
        "meta": (f"mtp_logits[i] = MTP(h_i after model.norm, mtp_next_ids[i]) at position i (tools/mtp_reference.py); "
                 f"greedy draft agreement over 64 tokens {agree:.4f}"),
    }


def main() -> int:
    from pathlib import Path

    import safetensors.torch
    from transformers import DeepseekV3ForCausalLM

    d = Path(sys.argv[1])
    model = DeepseekV3ForCausalLM.from_pretrained(d, dtype=torch.bfloat16, attn_implementation="eager").float().eval()
    sd = {k: v.float() for k, v in safetensors.torch.load_file(str(d / "model.safetensors")).items()}
    ref = safetensors.torch.load_file(str(d / "reference.safetensors"))
    out = reference(model, sd, ref["prompt_ids"].long(), ref["logits"])
    diff = (out["tensors"]["mtp_logits"] - ref["mtp_logits"]).abs().max() if "mtp_logits" in ref else float("nan")
    print(f"draft agreement {out['agree_rate']:.4f}; max |mtp_logits - committed| {float(diff):.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
