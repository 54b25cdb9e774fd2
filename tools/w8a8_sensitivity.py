#!/usr/bin/env python3
"""How far w8a8 (DeepSeek act_quant before every FP8 linear) moves a tiny FP8 fixture's logits in HF itself, and how
chaotic that is: the numbers behind the statistical w8a8 tolerances of tests/test_simt_fp8_backend.cpp.

For a fixture directory (tests/data/models/<name>, an FP8 checkpoint): loads the float32 HF model on the dequantised
weights exactly as tools/make_tiny_models_moe.py's reload check does, inserts DeepSeek's act_quant (per token per 128
channels: s = amax / 448, x -> e4m3_rn(x / s) · s) before every linear whose weight is FP8 in the checkpoint, runs
the 24-token prompt and prints mean / max |dlogit| and top-1 agreement against reference.safetensors' fp32 logits;
then the same with relative noise of 1e-6 added to each activation before its rounding (fp32-level differences, as
between two engines), against the unperturbed w8a8 run.

Usage: python3 tools/w8a8_sensitivity.py qwen3_moe_fp8 dsv3_fp8 qwen3_fp8 [--seeds 3]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_tiny_models_moe as moe  # noqa: E402  (2-thread torch, the fixtures' model builders)

import safetensors.torch  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def act_quant(x: torch.Tensor, noise: float, gen: torch.Generator | None) -> torch.Tensor:
    if noise:
        x = x * (1 + noise * torch.randn(x.shape, generator=gen, dtype=x.dtype))
    K = x.shape[-1]
    pad = (-K) % 128
    xp = torch.nn.functional.pad(x, (0, pad)).reshape(*x.shape[:-1], -1, 128)
    s = xp.abs().amax(-1, keepdim=True) / 448.0
    q = torch.where(s > 0, (xp / torch.where(s > 0, s, 1)).to(torch.float8_e4m3fn).float() * s, torch.zeros_like(xp))
    return q.reshape(*x.shape[:-1], -1)[..., :K]


def run(name: str, seeds: int) -> None:
    d = ROOT / "tests/data/models" / name
    loaded = safetensors.torch.load_file(str(d / "model.safetensors"))
    ref = safetensors.torch.load_file(str(d / "reference.safetensors"))
    spec = moe.FIXTURES[name]
    cfg = moe.make_config(spec)
    true_sd, fp8_names = {}, set()
    for k, v in loaded.items():
        if k.endswith("_scale_inv"):
            continue
        if v.dtype == torch.float8_e4m3fn:
            true_sd[k] = moe.dequantize_fp8(v, loaded[k + "_scale_inv"])
            fp8_names.add(k[: -len(".weight")])
        else:
            true_sd[k] = v.float()
    model = moe.fp32_model(cfg, spec, true_sd)
    ids = ref["prompt_ids"].long()[None]
    want = ref["logits"].float()
    state = {"noise": 0.0, "gen": None}
    hooks = []
    for mname, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and mname in fp8_names:
            hooks.append(mod.register_forward_pre_hook(
                lambda m, args: (act_quant(args[0], state["noise"], state["gen"]),)))
    with torch.no_grad():
        w8a8 = model(ids, use_cache=False).logits[0].float()
        d = (w8a8 - want).abs()
        agree = int((w8a8.argmax(-1) == want.argmax(-1)).sum())
        print(f"[{name}] HF w8a8 vs fp32: mean |dlogit| {d.mean():.3g}, max {d.max():.3g}, top-1 {agree}/{ids.shape[1]}"
              f" ({len(hooks)} FP8 linears; logit std {want.std():.3g})")
        for seed in range(seeds):
            state["noise"], state["gen"] = 1e-6, torch.Generator().manual_seed(seed)
            pert = model(ids, use_cache=False).logits[0].float()
            d = (pert - w8a8).abs()
            agree = int((pert.argmax(-1) == want.argmax(-1)).sum())
            print(f"[{name}]   + 1e-6 noise (seed {seed}) vs w8a8: mean |dlogit| {d.mean():.3g}, max {d.max():.3g}; "
                  f"vs fp32: mean {(pert - want).abs().mean():.3g}, max {(pert - want).abs().max():.3g}, top-1 {agree}")
    for h in hooks:
        h.remove()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("fixtures", nargs="+")
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()
    for name in a.fixtures:
        run(name, a.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
