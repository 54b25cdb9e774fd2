#!/usr/bin/env python3
"""Generate tiny random-weight Qwen3 models and their Hugging Face reference outputs.

Nothing in this project can download real weights, so the numerical tests run against tiny models
with random weights, built and run here with Hugging Face transformers (the reference
implementation), and committed together with the outputs transformers gives for them.

Usage (from the repository root; see docs/fixtures.md):

  python3 tools/make_tiny_models.py                       # (re)write every committed fixture
  python3 tools/make_tiny_models.py --only qwen3_yarn     # one fixture (or: --only demo)
  python3 tools/make_tiny_models.py --verify              # rebuild everything in memory / a temp dir and
                                                          # check the committed files would be reproduced
  python3 tools/make_tiny_models.py --qwen3-0.6b-shape OUTDIR   # Qwen3-0.6B-shaped random model (not committed)

What it writes:

  tests/data/models/<name>/{config.json, generation_config.json, model.safetensors,
                            reference.safetensors, reference.json}
  models/qwen3-tiny-random/{config.json, generation_config.json, model.safetensors, README.md,
                            tokenizer.json -> ../tokenizers/qwen3/tokenizer.json,
                            tokenizer_config.json -> ../tokenizers/qwen3/tokenizer_config.json}

Weights are drawn with a seeded torch.Generator (float32 normal, then rounded to bf16) with a larger
spread than HF's default init (std 0.02), so that the logits are far from uniform and greedy decoding
has clear winners. For every test model the seed is searched upward from SEED_START until the greedy
continuation satisfies the acceptance rules in `acceptable()`; the search is deterministic, so a rerun
finds the same seed.

References are computed in float32 on the bf16 weights: the saved model is reloaded, cast with
.float(), put in eval mode, eager attention, no grad.
"""
from __future__ import annotations

import os

# At most 2 CPU threads (must be set before torch starts its pools).
for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "2")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no spinning when the 2 cores are shared
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import filecmp
import json
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy
import safetensors
import safetensors.torch
import tokenizers
import torch
import transformers
from transformers import Qwen3Config, Qwen3ForCausalLM

torch.set_num_threads(2)
transformers.logging.set_verbosity_error()

REPO = Path(__file__).resolve().parents[1]
TESTS_DIR = REPO / "tests" / "data" / "models"
DEMO_DIR = REPO / "models" / "qwen3-tiny-random"
TOKENIZER_DIR = REPO / "models" / "tokenizers" / "qwen3"
SHARED_VOCAB_DIR = Path("/work/shared/vocab/qwen3")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")

# ---------------------------------------------------------------------------------------------
# Fixture definitions
# ---------------------------------------------------------------------------------------------

T_PROMPT = 24  # positions in the full-forward reference ("prompt_ids", "logits", "hidden_L*")
P_GREEDY = 8  # greedy prompt length
N_GREEDY = 40  # greedy continuation length
PROMPT_SEED = 20240601  # seeds the prompt ids (independent of the weight seed)
FIRST_ID = 4  # prompt ids are drawn from [FIRST_ID, vocab); 0..3 are kept for bos/eos/specials
SPECIAL_IDS = (0, 1, 2, 3)  # greedy continuations must avoid these (bos 1, eos 2, extra eos 3)

SEED_START = 1  # first seed tried for every test model
SEED_TRIES = 1000
# The continuation must not settle into a short loop (it should exercise late positions too).
MIN_DISTINCT = 12  # distinct ids among the 40 greedy tokens
MIN_DISTINCT_TAIL = 5  # distinct ids among the last 20
MIN_MARGIN = 0.05  # every greedy step: top1 - top2 >= this, in float32 and in HF's bf16 run

# Init spread (see docs/fixtures.md, "why the weights are scaled").
STD_EMBED = 0.25  # model.embed_tokens.weight (also the lm_head when tied)
STD_LM_HEAD = 0.25  # lm_head.weight when untied
STD_LINEAR = 0.15  # q/k/v/o and gate/up/down projections
NORM_NOISE = 0.1  # every RMSNorm weight = 1 + NORM_NOISE * N(0, 1)

COMMON = dict(
    rms_norm_eps=1e-6,
    rope_theta=1_000_000.0,
    bos_token_id=1,
    eos_token_id=2,
    max_position_embeddings=256,
    hidden_act="silu",
    attention_bias=False,
    attention_dropout=0.0,
    use_sliding_window=False,
    rope_scaling=None,
)

TINY_QWEN3 = {
    "qwen3_tied_gqa2": dict(
        vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, intermediate_size=128, tie_word_embeddings=True,
    ),
    "qwen3_untied_gqa1": dict(
        vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        head_dim=16, intermediate_size=160, tie_word_embeddings=False,
    ),
    "qwen3_gqa4_hd": dict(
        vocab_size=384, hidden_size=64, num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=2,
        head_dim=32, intermediate_size=96, tie_word_embeddings=False,
    ),
    # Like qwen3_tied_gqa2, with YaRN. transformers 4.57.1 uses rope_scaling["factor"] as given (it only
    # warns when max_position_embeddings / original_max_position_embeddings differs); 4.52.x replaced
    # factor by that ratio. Here both are 4.0 (128 / 32), so every version computes the same table.
    "qwen3_yarn": dict(
        vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, intermediate_size=128, tie_word_embeddings=True,
        rope_theta=10_000.0, max_position_embeddings=128,
        rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32},
    ),
}

TINY_GENERATION = dict(bos_token_id=1, eos_token_id=[2, 3], do_sample=True, temperature=0.6, top_k=20, top_p=0.95)

DEMO_SEED = 1
DEMO_SHAPE = dict(
    vocab_size=151936, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    head_dim=8, intermediate_size=64, tie_word_embeddings=True,
    rms_norm_eps=1e-6, rope_theta=1_000_000.0, max_position_embeddings=40960,
    bos_token_id=151643, eos_token_id=151645,
    hidden_act="silu", attention_bias=False, attention_dropout=0.0, use_sliding_window=False, rope_scaling=None,
)
QWEN3_GENERATION = dict(
    bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643,
    do_sample=True, temperature=0.6, top_k=20, top_p=0.95,
)

QWEN3_06B_SHAPE = dict(
    vocab_size=151936, hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
    head_dim=128, intermediate_size=3072, tie_word_embeddings=True,
    rms_norm_eps=1e-6, rope_theta=1_000_000.0, max_position_embeddings=40960,
    bos_token_id=151643, eos_token_id=151645,
    hidden_act="silu", attention_bias=False, attention_dropout=0.0, use_sliding_window=False, rope_scaling=None,
    max_window_layers=28,
)


def versions() -> dict:
    return {
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "safetensors_version": safetensors.__version__,
        "tokenizers_version": tokenizers.__version__,
        "numpy_version": numpy.__version__,
    }


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------------
# Building models
# ---------------------------------------------------------------------------------------------


def make_config(shape: dict) -> Qwen3Config:
    kw = dict(COMMON)
    kw.update(shape)
    return Qwen3Config(attn_implementation="eager", **kw)


@torch.no_grad()
def init_weights(model: Qwen3ForCausalLM, seed: int) -> None:
    """Overwrite every parameter from a seeded generator (float32), in sorted-name order.

    Tied lm_head shares its Parameter with embed_tokens, so named_parameters() lists it once.
    """
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    for name in sorted(params):
        p = params[name]
        noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
        if name.endswith("norm.weight"):  # input/post_attention layernorm, q_norm, k_norm, final norm
            val = 1.0 + NORM_NOISE * noise
        elif name == "model.embed_tokens.weight":
            val = STD_EMBED * noise
        elif name == "lm_head.weight":
            val = STD_LM_HEAD * noise
        elif name.endswith("_proj.weight"):
            val = STD_LINEAR * noise
        else:
            raise RuntimeError(f"init_weights: unexpected parameter {name}")
        p.copy_(val)


def build_bf16_model(shape: dict, seed: int) -> Qwen3ForCausalLM:
    cfg = make_config(shape)
    torch.manual_seed(0)  # HF's own init is overwritten anyway; keep it deterministic
    model = Qwen3ForCausalLM(cfg)
    init_weights(model, seed)
    model = model.to(torch.bfloat16).eval()
    if cfg.tie_word_embeddings:
        assert model.lm_head.weight is model.model.embed_tokens.weight
    return model


def save_model(model: Qwen3ForCausalLM, out: Path, generation: dict, extra_config: dict | None = None) -> None:
    """save_pretrained (bf16 safetensors with Hub tensor names), then patch config.json and
    write our generation_config.json."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    os.chmod(out / "model.safetensors", 0o644)  # save_pretrained leaves it 0600
    finish_config(out, generation, extra_config)
    # Tied models must not carry lm_head.weight.
    with safetensors.safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        for k in keys:
            assert f.get_slice(k).get_dtype() == "BF16", k
    if model.config.tie_word_embeddings:
        assert "lm_head.weight" not in keys, "tied model saved lm_head.weight"
    else:
        assert "lm_head.weight" in keys, "untied model lacks lm_head.weight"


def finish_config(out: Path, generation: dict, extra_config: dict | None = None) -> None:
    """Patch the config.json that transformers wrote and write our generation_config.json."""
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("initializer_range", None)  # describes HF's init, not what these weights came from
    # transformers 4.57 writes "dtype"; the Hub's Qwen3 configs (written by 4.51) carry "torch_dtype".
    # Keep both so readers of either form work.
    cfg["torch_dtype"] = cfg.get("dtype", "bfloat16")
    cfg["infer_random_weights"] = True
    if extra_config:
        cfg.update(extra_config)
    cfg_path.write_text(json.dumps(dict(sorted(cfg.items())), indent=2) + "\n")
    gen = dict(generation)
    gen["transformers_version"] = transformers.__version__
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")


def load_fp32(model_dir: Path) -> Qwen3ForCausalLM:
    model = Qwen3ForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation="eager")
    return model.float().eval()


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------


def prompt_ids(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(PROMPT_SEED)
    full = torch.randint(FIRST_ID, vocab, (T_PROMPT,), generator=g)
    greedy = torch.randint(FIRST_ID, vocab, (P_GREEDY,), generator=g)
    return full, greedy


def top2_margin(logits: torch.Tensor) -> float:
    top = torch.topk(logits.float(), 2).values
    return float(top[0] - top[1])


@torch.no_grad()
def greedy(model: Qwen3ForCausalLM, prompt: torch.Tensor, n: int) -> tuple[list[int], list[float]]:
    """Manual greedy loop with HF's KV cache. No eos handling: it records exactly what argmax gives."""
    out = model(prompt[None], use_cache=True)
    past = out.past_key_values
    last = out.logits[0, -1]
    toks, margins = [], []
    for i in range(n):
        t = int(torch.argmax(last))
        toks.append(t)
        margins.append(top2_margin(last))
        if i + 1 == n:
            break
        out = model(torch.tensor([[t]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        last = out.logits[0, -1]
    return toks, margins


@torch.no_grad()
def compute_reference(model: Qwen3ForCausalLM) -> dict:
    """model: float32, eval, eager. Returns tensors for reference.safetensors plus check values."""
    cfg = model.config
    ids, gprompt = prompt_ids(cfg.vocab_size)
    layer_out: dict[int, torch.Tensor] = {}
    hooks = [
        layer.register_forward_hook(lambda m, a, o, i=i: layer_out.__setitem__(i, o[0] if isinstance(o, tuple) else o))
        for i, layer in enumerate(model.model.layers)
    ]
    try:
        out = model(ids[None], use_cache=False, output_hidden_states=True)
    finally:
        for h in hooks:
            h.remove()
    ref = {
        "prompt_ids": ids.to(torch.int32),
        "logits": out.logits[0].float().contiguous(),
        "hidden_embed": out.hidden_states[0][0].float().contiguous(),
    }
    for i in range(cfg.num_hidden_layers):
        ref[f"hidden_L{i}"] = layer_out[i][0].float().contiguous()
        # output_hidden_states[i+1] is layer i's output, except the last entry, which HF 4.57 replaces by
        # the final-norm output; the hooks record the raw layer outputs.
        if i + 1 < cfg.num_hidden_layers:
            assert torch.equal(out.hidden_states[i + 1][0], layer_out[i][0])
    ref["hidden_norm"] = model.model.norm(layer_out[cfg.num_hidden_layers - 1])[0].float().contiguous()
    assert torch.equal(out.hidden_states[-1][0], ref["hidden_norm"])

    toks, margins = greedy(model, gprompt, N_GREEDY)
    ref["greedy_prompt"] = gprompt.to(torch.int32)
    ref["greedy_tokens"] = torch.tensor(toks, dtype=torch.int32)
    ref["greedy_margins"] = torch.tensor(margins, dtype=torch.float32)

    # Cross-check the cached loop against one full (no-cache) forward of prompt + continuation.
    seq = torch.cat([gprompt, torch.tensor(toks)])
    full = model(seq[None], use_cache=False).logits[0]
    nocache = torch.argmax(full[P_GREEDY - 1 : P_GREEDY - 1 + N_GREEDY], dim=-1).tolist()

    rot = model.model.rotary_emb
    ref["rope_inv_freq"] = rot.inv_freq.float().contiguous()
    return {"tensors": ref, "nocache_tokens": nocache, "attention_scaling": float(rot.attention_scaling)}


@torch.no_grad()
def bf16_check(bf16_model: Qwen3ForCausalLM) -> dict:
    """HF eager in bf16 (the engine's own dtype): logits of the prompt and the greedy continuation."""
    ids, gprompt = prompt_ids(bf16_model.config.vocab_size)
    logits = bf16_model(ids[None], use_cache=False).logits[0].float().contiguous()
    toks, margins = greedy(bf16_model, gprompt, N_GREEDY)
    return {"logits_bf16": logits, "tokens": toks, "margins": margins}


def acceptable(ref: dict, b16: dict) -> tuple[bool, str]:
    t = ref["tensors"]
    toks = t["greedy_tokens"].tolist()
    mmin = float(t["greedy_margins"].min())
    if mmin < MIN_MARGIN:
        return False, f"min greedy margin {mmin:.4f} < {MIN_MARGIN}"
    if any(x in SPECIAL_IDS for x in toks):
        return False, "greedy continuation hits a special id (0..3)"
    if ref["nocache_tokens"] != toks:
        return False, "cached and uncached greedy disagree"
    if b16["tokens"] != toks:
        return False, "bf16 greedy differs from float32 greedy"
    if min(b16["margins"]) < MIN_MARGIN:
        return False, f"min bf16 greedy margin {min(b16['margins']):.4f} < {MIN_MARGIN}"
    if len(set(toks)) < MIN_DISTINCT or len(set(toks[-20:])) < MIN_DISTINCT_TAIL:
        return False, "greedy continuation is too repetitive"
    return True, f"min margin {mmin:.4f}"


def save_safetensors_canonical(tensors: dict, path: Path, metadata: dict) -> None:
    """safetensors.torch.save_file, but with a reproducible header: safetensors 0.8 writes the
    __metadata__ map in hash order, so the same content gives different bytes on every run. Re-emit the
    header JSON with sorted keys (the data section and its offsets are unchanged)."""
    blob = safetensors.torch.save(tensors, metadata=metadata)
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    canon = {"__metadata__": dict(sorted(meta.items()))}
    canon.update(sorted(header.items()))
    hb = json.dumps(canon, separators=(",", ":"), ensure_ascii=True).encode()
    hb += b" " * (-len(hb) % 8)
    path.write_bytes(struct.pack("<Q", len(hb)) + hb + blob[8 + n :])
    back = safetensors.torch.load_file(str(path))  # round-trip check
    assert set(back) == set(tensors) and all(torch.equal(back[k], tensors[k]) for k in tensors)


def reference_metadata(name: str, seed: int, ref: dict) -> dict:
    t = ref["tensors"]
    meta = versions()
    meta.update(
        {
            "model": name,
            "seed": str(seed),
            "prompt_seed": str(PROMPT_SEED),
            "generator": "tools/make_tiny_models.py",
            "compute": "float32 eager on the bf16 weights (from_pretrained(bf16).float(), eval, no grad)",
            "logits_bf16": "HF eager with the model in bf16 (logits upcast to float32)",
            "hidden_L": "hidden_L{i} = output of decoder layer i (before the final norm); "
            "hidden_embed = embeddings; hidden_norm = model.norm(last layer)",
            "greedy": "argmax with KV cache, no eos stop, greedy_margins = top1 - top2 logit",
            "greedy_margin_min": f"{float(t['greedy_margins'].min()):.6f}",
            "rope_attention_scaling": repr(ref["attention_scaling"]),
            "init": f"embed N(0,{STD_EMBED}) lm_head N(0,{STD_LM_HEAD}) proj N(0,{STD_LINEAR}) "
            f"norm 1+{NORM_NOISE}*N(0,1), float32 then bf16",
        }
    )
    return meta


def reference_json(name: str, seed: int, ref: dict, meta: dict) -> str:
    t = ref["tensors"]
    doc = {
        "model": name,
        "seed": seed,
        "note": "Human-readable copy of the ids in reference.safetensors (which holds the float tensors).",
        "prompt_ids": t["prompt_ids"].tolist(),
        "greedy_prompt": t["greedy_prompt"].tolist(),
        "greedy_tokens": t["greedy_tokens"].tolist(),
        "greedy_margin_min": round(float(t["greedy_margins"].min()), 6),
        "greedy_margins": [round(float(x), 6) for x in t["greedy_margins"]],
        "logits_argmax": torch.argmax(t["logits"], dim=-1).tolist(),
        "rope_attention_scaling": ref["attention_scaling"],
        "versions": {k: v for k, v in meta.items() if k.endswith("_version")},
    }
    # One key per line, lists on one line.
    lines = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


# ---------------------------------------------------------------------------------------------
# Writing fixtures
# ---------------------------------------------------------------------------------------------


def find_seed(name: str, shape: dict) -> int:
    for seed in range(SEED_START, SEED_START + SEED_TRIES):
        m16 = build_bf16_model(shape, seed)
        ref = compute_reference(_fp32_copy(m16))
        ok, why = acceptable(ref, bf16_check(m16))
        log(f"  {name}: seed {seed}: {'ok' if ok else 'rejected'} ({why})")
        if ok:
            return seed
    raise RuntimeError(f"{name}: no acceptable seed in {SEED_TRIES} tries")


def _fp32_copy(m16: Qwen3ForCausalLM) -> Qwen3ForCausalLM:
    m = Qwen3ForCausalLM(m16.config)
    m.load_state_dict({k: v.float() for k, v in m16.state_dict().items()}, strict=True)
    if m16.config.tie_word_embeddings:
        m.tie_weights()
    return m.float().eval()


def write_tiny(name: str, out_root: Path) -> dict:
    shape = TINY_QWEN3[name]
    log(f"[{name}] searching seed from {SEED_START}")
    seed = find_seed(name, shape)
    out = out_root / name
    if out.exists():
        shutil.rmtree(out)
    m16 = build_bf16_model(shape, seed)
    save_model(m16, out, TINY_GENERATION)

    # References from the saved files, as the C++ tests see them.
    m32 = load_fp32(out)
    ref = compute_reference(m32)
    # model.generate agrees with the manual loop (the continuation holds no eos, so min_new_tokens,
    # which masks eos, changes nothing).
    with torch.no_grad():
        gen = m32.generate(
            ref["tensors"]["greedy_prompt"].long()[None], do_sample=False, max_new_tokens=N_GREEDY,
            min_new_tokens=N_GREEDY, temperature=None, top_k=None, top_p=None,
        )[0, P_GREEDY:]
    assert gen.tolist() == ref["tensors"]["greedy_tokens"].tolist(), f"{name}: generate() disagrees"
    ok, why = acceptable(ref, bf16_check(m16))
    assert ok, why
    # The in-memory search model and the reloaded model must agree exactly.
    ref_mem = compute_reference(_fp32_copy(m16))
    for k, v in ref["tensors"].items():
        assert torch.equal(v, ref_mem["tensors"][k]), f"{name}: reloaded model differs from in-memory ({k})"
    tensors = dict(ref["tensors"])
    tensors["logits_bf16"] = bf16_check(load_bf16(out))["logits_bf16"]
    meta = reference_metadata(name, seed, ref)
    save_safetensors_canonical(tensors, out / "reference.safetensors", meta)
    (out / "reference.json").write_text(reference_json(name, seed, ref, meta))
    mmin = float(ref["tensors"]["greedy_margins"].min())
    log(f"[{name}] seed {seed}, min greedy margin {mmin:.4f}, attention_scaling {ref['attention_scaling']}")
    return {"name": name, "seed": seed, "min_margin": mmin, "dir": out}


def load_bf16(model_dir: Path) -> Qwen3ForCausalLM:
    return Qwen3ForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation="eager").eval()


def ensure_tokenizer_files() -> None:
    """models/tokenizers/qwen3/ is owned by another task; copy the files there only if absent."""
    TOKENIZER_DIR.mkdir(parents=True, exist_ok=True)
    for f in TOKENIZER_FILES:
        dst = TOKENIZER_DIR / f
        if not dst.exists():
            log(f"  copying {SHARED_VOCAB_DIR / f} -> {dst}")
            shutil.copyfile(SHARED_VOCAB_DIR / f, dst)


def link_or_copy_tokenizer(out: Path, link_as: Path | None = None) -> None:
    """Relative symlinks when OUT (or LINK_AS, where OUT will end up) is inside the repo's models/,
    copies elsewhere."""
    out = out.resolve()
    where = (link_as or out).resolve()
    models_root = (REPO / "models").resolve()
    inside = models_root in where.parents
    if inside:
        ensure_tokenizer_files()
    for f in TOKENIZER_FILES:
        dst = out / f
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        if inside:
            dst.symlink_to(os.path.relpath(TOKENIZER_DIR / f, where))
        else:
            src = TOKENIZER_DIR / f if (TOKENIZER_DIR / f).exists() else SHARED_VOCAB_DIR / f
            shutil.copyfile(src, dst)


DEMO_README = """\
# qwen3-tiny-random — RANDOM WEIGHTS, NOT A TRAINED MODEL

This is a demo/smoke-test model for libinfer. Its weights are **random** (seeded normal noise), so
its output is meaningless text. It exists so that the CLI, the loader, the real Qwen3 tokenizer and
the chat template can be exercised end to end without downloading anything.

- Architecture: `Qwen3ForCausalLM` with the real Qwen3 vocabulary (151936 tokens) but a toy body:
  hidden 32, 2 layers, 4 query heads / 2 KV heads, head_dim 8, intermediate 64, tied embeddings,
  bf16 weights ({size_mb:.1f} MB, almost all of it the embedding table).
- `config.json` carries `"infer_random_weights": true`, which the engine reports.
- `generation_config.json` follows Qwen3's: bos 151643, eos [151645, 151643], sampling on with
  temperature 0.6, top_k 20, top_p 0.95.
- `tokenizer.json` and `tokenizer_config.json` are relative symlinks to `../tokenizers/qwen3/`
  (the real Qwen3 tokenizer files).
- Generated by `python3 tools/make_tiny_models.py --only demo` (seed {seed}, transformers
  {tf}, torch {torch}); see `docs/fixtures.md`.
"""


def write_demo(out: Path = DEMO_DIR) -> dict:
    log(f"[demo] writing {out}")
    if out.exists():
        shutil.rmtree(out)
    cfg = Qwen3Config(attn_implementation="eager", **DEMO_SHAPE)
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(cfg)
    init_weights(model, DEMO_SEED)
    model = model.to(torch.bfloat16).eval()
    save_model(model, out, QWEN3_GENERATION)
    link_or_copy_tokenizer(out, link_as=DEMO_DIR)
    size = (out / "model.safetensors").stat().st_size
    (out / "README.md").write_text(
        DEMO_README.format(size_mb=size / 1e6, seed=DEMO_SEED, tf=transformers.__version__, torch=torch.__version__)
    )
    # Smoke test: reload, tokenize a chat prompt with the linked tokenizer, decode a few greedy tokens.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out if (out / "tokenizer.json").exists() else TOKENIZER_DIR)
    text = tok.apply_chat_template([{"role": "user", "content": "Hello"}], tokenize=False, add_generation_prompt=True)
    ids = tok(text, return_tensors="pt").input_ids
    m = load_bf16(out)
    toks, _ = greedy(m, ids[0], 8)
    log(f"[demo] {size / 1e6:.2f} MB; chat prompt {ids.shape[1]} tokens; greedy: {toks} {tok.decode(toks)!r}")
    return {"name": "qwen3-tiny-random", "seed": DEMO_SEED, "size": size, "dir": out}


# ---------------------------------------------------------------------------------------------
# Qwen3-0.6B-shaped benchmark model (not committed)
# ---------------------------------------------------------------------------------------------


def qwen3_06b_tensors(cfg: Qwen3Config) -> list[tuple[str, tuple[int, ...]]]:
    H, nh, nkv, d, I, V = (cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim,
                           cfg.intermediate_size, cfg.vocab_size)
    names = [("model.embed_tokens.weight", (V, H))]
    for L in range(cfg.num_hidden_layers):
        p = f"model.layers.{L}."
        names += [
            (p + "input_layernorm.weight", (H,)),
            (p + "self_attn.q_proj.weight", (nh * d, H)),
            (p + "self_attn.k_proj.weight", (nkv * d, H)),
            (p + "self_attn.v_proj.weight", (nkv * d, H)),
            (p + "self_attn.o_proj.weight", (H, nh * d)),
            (p + "self_attn.q_norm.weight", (d,)),
            (p + "self_attn.k_norm.weight", (d,)),
            (p + "post_attention_layernorm.weight", (H,)),
            (p + "mlp.gate_proj.weight", (I, H)),
            (p + "mlp.up_proj.weight", (I, H)),
            (p + "mlp.down_proj.weight", (H, I)),
        ]
    names.append(("model.norm.weight", (H,)))
    if not cfg.tie_word_embeddings:
        names.append(("lm_head.weight", (V, H)))
    return names


def write_qwen3_06b_shape(out: Path, seed: int = 0, check: bool = True) -> None:
    """Builds the bf16 state dict tensor by tensor (float32 only in 16M-element chunks), so peak memory
    is about the bf16 model (~1.2 GB) and no float32 copy of the model ever exists."""
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    cfg = Qwen3Config(attn_implementation="eager", **QWEN3_06B_SHAPE)
    g = torch.Generator().manual_seed(seed)
    sd = {}
    chunk = 1 << 24
    for name, shape in qwen3_06b_tensors(cfg):
        t = torch.empty(shape, dtype=torch.bfloat16)
        flat = t.view(-1)
        for s in range(0, flat.numel(), chunk):
            n = min(chunk, flat.numel() - s)
            x = torch.randn(n, generator=g, dtype=torch.float32)
            if name.endswith("norm.weight"):
                x.mul_(0.02).add_(1.0)
            else:
                x.mul_(0.02)
            flat[s : s + n] = x.to(torch.bfloat16)
        sd[name] = t
    n_params = sum(t.numel() for t in sd.values())
    safetensors.torch.save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(out / "model.safetensors", 0o644)
    probe = sd["model.layers.27.mlp.down_proj.weight"][:4, :4].clone()
    del sd
    cfg.architectures = ["Qwen3ForCausalLM"]
    cfg.dtype = torch.bfloat16
    cfg.save_pretrained(out)
    finish_config(out, QWEN3_GENERATION)
    link_or_copy_tokenizer(out)
    size = (out / "model.safetensors").stat().st_size
    log(f"[qwen3-0.6b-shape] {n_params / 1e6:.1f} M params, model.safetensors {size / 1e9:.3f} GB, "
        f"written in {time.time() - t0:.1f} s")
    if check:
        t1 = time.time()
        m = load_bf16(out)
        assert m.lm_head.weight is m.model.embed_tokens.weight
        assert torch.equal(m.model.layers[27].mlp.down_proj.weight[:4, :4], probe)
        with torch.no_grad():
            logits = m(torch.tensor([[151643, 9707, 11, 1879, 0]])).logits
        assert torch.isfinite(logits).all()
        log(f"[qwen3-0.6b-shape] reload + 5-token forward ok ({time.time() - t1:.1f} s), "
            f"logits {tuple(logits.shape)} {logits.dtype}")


# ---------------------------------------------------------------------------------------------
# Verify
# ---------------------------------------------------------------------------------------------


def compare_dirs(name: str, new: Path, old: Path, atol: float) -> list[str]:
    errs = []
    new_files = sorted(p.name for p in new.iterdir())
    old_files = sorted(p.name for p in old.iterdir()) if old.exists() else []
    if new_files != old_files:
        errs.append(f"{name}: file list {old_files} != regenerated {new_files}")
    for f in new_files:
        a, b = new / f, old / f
        if not (b.exists() or b.is_symlink()):
            continue
        if a.is_symlink() or b.is_symlink():
            if not (a.is_symlink() and b.is_symlink() and os.readlink(a) == os.readlink(b)):
                errs.append(f"{name}/{f}: symlink differs")
            elif not b.exists():
                errs.append(f"{name}/{f}: dangling symlink -> {os.readlink(b)}")
            continue
        if f == "reference.safetensors":
            ta = safetensors.torch.load_file(str(a))
            tb = safetensors.torch.load_file(str(b))
            if set(ta) != set(tb):
                errs.append(f"{name}/{f}: tensor names differ")
                continue
            for k in sorted(ta):
                if ta[k].dtype != tb[k].dtype or ta[k].shape != tb[k].shape:
                    errs.append(f"{name}/{f}:{k}: dtype/shape differ")
                elif ta[k].is_floating_point():
                    # float32 CPU kernels may round differently on another CPU; bf16 ones much more so.
                    tol = BF16_ATOL if k.endswith("_bf16") else atol + atol * tb[k].abs()
                    diff = (ta[k] - tb[k]).abs()
                    d = float(diff.max()) if ta[k].numel() else 0.0
                    if bool((diff > tol).any()):
                        errs.append(f"{name}/{f}:{k}: max |diff| {d:.3g} beyond tolerance")
                    elif d > 0:
                        log(f"  note: {name}/{f}:{k}: max |diff| {d:.3g} (within tolerance)")
                elif not torch.equal(ta[k], tb[k]):
                    errs.append(f"{name}/{f}:{k}: ids differ")
            with safetensors.safe_open(str(a), "pt") as fa, safetensors.safe_open(str(b), "pt") as fb:
                ma, mb = fa.metadata(), fb.metadata()
            for k in sorted(set(ma) | set(mb)):
                if ma.get(k) != mb.get(k):
                    errs.append(f"{name}/{f}: metadata {k}: {mb.get(k)!r} != regenerated {ma.get(k)!r}")
        elif f == "reference.json":
            ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
            for k in sorted(set(ja) | set(jb)):
                va, vb = ja.get(k), jb.get(k)
                if k == "greedy_margins":
                    if len(va) != len(vb) or max(abs(x - y) for x, y in zip(va, vb)) > atol:
                        errs.append(f"{name}/{f}: {k} differ")
                elif k in ("greedy_margin_min", "rope_attention_scaling"):
                    if abs(va - vb) > atol:
                        errs.append(f"{name}/{f}: {k} {vb} != regenerated {va}")
                elif va != vb:
                    errs.append(f"{name}/{f}: {k} differs")
        elif not filecmp.cmp(a, b, shallow=False):
            errs.append(f"{name}/{f}: bytes differ")
    return errs


BF16_ATOL = 0.25  # --verify tolerance for logits_bf16 (a few bf16 ulps at |logit| ~ 8)


def verify(atol: float) -> int:
    errs = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in TINY_QWEN3:
            info = write_tiny(name, tmp / "tests")
            errs += compare_dirs(name, info["dir"], TESTS_DIR / name, atol)
        # The demo model: weights, configs, README and the symlinks (their targets are written as seen
        # from models/qwen3-tiny-random, so they dangle in the temp dir; compare_dirs compares the link
        # text and checks the committed links resolve).
        write_demo(tmp / "qwen3-tiny-random")
        errs += compare_dirs("qwen3-tiny-random", tmp / "qwen3-tiny-random", DEMO_DIR, atol)
    # Anything in tests/data/models that this script does not produce?
    extra = sorted(p.name for p in TESTS_DIR.iterdir() if p.name not in TINY_QWEN3) if TESTS_DIR.exists() else []
    if extra:
        log(f"note: tests/data/models also holds {extra} (not produced by this script)")
    if errs:
        log("VERIFY FAILED:")
        for e in errs:
            log("  " + e)
        return 1
    log("VERIFY OK: every committed fixture is reproduced.")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", choices=list(TINY_QWEN3) + ["demo"],
                    help="write only these fixtures (repeatable)")
    ap.add_argument("--verify", action="store_true", help="check the committed fixtures would be reproduced")
    ap.add_argument("--atol", type=float, default=1e-5,
                    help="--verify: float32 reference tensors must agree within atol + atol*|x| "
                    "(on the machine that made them they agree exactly)")
    ap.add_argument("--qwen3-0.6b-shape", dest="qwen3_06b", metavar="OUTDIR",
                    help="write a random bf16 model with Qwen3-0.6B's shape to OUTDIR (not committed)")
    ap.add_argument("--no-check", action="store_true", help="--qwen3-0.6b-shape: skip the reload check")
    args = ap.parse_args()

    if args.qwen3_06b:
        write_qwen3_06b_shape(Path(args.qwen3_06b), check=not args.no_check)
        return 0
    if args.verify:
        return verify(args.atol)

    todo = args.only or list(TINY_QWEN3) + ["demo"]
    results = []
    for name in todo:
        if name == "demo":
            results.append(write_demo())
        else:
            results.append(write_tiny(name, TESTS_DIR))
    log("\nsummary:")
    for r in results:
        size = sum(p.stat().st_size for p in r["dir"].iterdir() if p.is_file() and not p.is_symlink())
        extra = f", min greedy margin {r['min_margin']:.4f}" if "min_margin" in r else ""
        log(f"  {r['name']}: seed {r['seed']}{extra}, {size / 1e3:.1f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
