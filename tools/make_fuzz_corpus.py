#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets (tests/fuzz/corpus/<target>/) from the real files in
tests/data and models/. Seeds are kept small (a few KiB) so the fuzzers mutate them quickly. Dev only: the
corpora are committed; CI never runs this. Usage: python3 tools/make_fuzz_corpus.py"""
import json
import os
import random
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
MODELS = os.path.join(ROOT, "models")
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")
DTYPE_SIZE = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "I8": 1, "U8": 1, "I16": 2, "I32": 4, "I64": 8,
              "F8_E4M3": 1, "F8_E5M2": 1, "BOOL": 1}


def target(name):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def write(d, name, data):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def safetensors_image(entries, metadata=None):
    """entries: [(name, dtype, shape)] → a valid safetensors image with deterministic bytes."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    rnd = random.Random(len(entries))
    for name, dtype, shape in entries:
        n = DTYPE_SIZE[dtype]
        for s in shape:
            n *= s
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        blobs.append(bytes(rnd.randrange(256) for _ in range(n)))
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def small_tensors(header, limit=256):
    """The real (name, dtype, shape) of a checkpoint's tensors that are at most `limit` bytes."""
    out = []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        n = DTYPE_SIZE.get(e["dtype"], 0)
        for s in e["shape"]:
            n *= s
        if 0 < n <= limit:
            out.append((name, e["dtype"], e["shape"]))
    return out


def main():
    models = sorted(os.listdir(os.path.join(DATA, "models")))

    # ---- safetensors headers: small real tensors of each test checkpoint (real names, dtypes, shapes)
    d = target("fuzz_safetensors")
    for m in models:
        h = read_header(os.path.join(DATA, "models", m, "model.safetensors"))
        t = small_tensors(h)[:4]
        if t:
            write(d, m + ".safetensors", safetensors_image(t, h.get("__metadata__")))
    write(d, "empty_header.safetensors", safetensors_image([]))
    write(d, "mixed_dtypes.safetensors", safetensors_image(
        [("a", "F32", [2, 3]), ("b", "I64", [2]), ("c", "F8_E4M3", [4, 4]), ("d", "F16", []), ("e", "BF16", [0, 5])],
        {"format": "pt"}))

    # ---- shard index: the weight map of each test checkpoint split over two shards, as transformers writes it
    d = target("fuzz_shard_index")
    for m in models[:6]:
        h = read_header(os.path.join(DATA, "models", m, "model.safetensors"))
        names = sorted(k for k in h if k != "__metadata__")
        wm = {k: "model-%05d-of-00002.safetensors" % (1 + i * 2 // len(names)) for i, k in enumerate(names)}
        write(d, m + ".index.json", json.dumps({"metadata": {"total_size": 123456}, "weight_map": wm}, indent=2))

    # ---- config.json / generation_config.json of every test and demo model
    d = target("fuzz_hf_config")
    for m in models:
        for f in ("config.json", "generation_config.json"):
            p = os.path.join(DATA, "models", m, f)
            if os.path.exists(p):
                shutil.copy(p, os.path.join(d, m + "." + f))
    for f in ("config.json", "generation_config.json"):
        shutil.copy(os.path.join(MODELS, "qwen3-tiny-random", f), os.path.join(d, "qwen3-tiny-random." + f))

    # ---- tokenizer.json: the synthetic byte-level BPE tokenizers (about 20 KiB each)
    d = target("fuzz_tokenizer_json")
    syn = os.path.join(DATA, "tokenizer", "synthetic")
    for name in sorted(os.listdir(syn)):
        shutil.copy(os.path.join(syn, name, "tokenizer.json"), os.path.join(d, name + ".tokenizer.json"))

    # ---- texts to tokenize: the first lines of the tokenizer corpus and the special-token cases
    d = target("fuzz_tokenize")
    for fname, n in (("corpus.jsonl", 40), ("special.jsonl", 12)):
        with open(os.path.join(DATA, "tokenizer", fname), encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= n:
                    break
                text = json.loads(line)["text"]
                if len(text.encode()) <= 2048:
                    write(d, "%s.%03d.txt" % (fname.split(".")[0], i), text)
    write(d, "invalid_utf8.txt", b"caf\xc3 \xff\xfe \xed\xa0\x80 ok \xf0\x9f\x98")

    # ---- chat templates (source text)
    d = target("fuzz_jinja")
    for f in sorted(os.listdir(os.path.join(MODELS, "templates"))):
        if f.endswith(".jinja"):
            shutil.copy(os.path.join(MODELS, "templates", f), os.path.join(d, f))
    for tk in ("qwen3", "deepseek_v3"):
        with open(os.path.join(MODELS, "tokenizers", tk, "tokenizer_config.json"), encoding="utf-8") as f:
            write(d, tk + ".jinja", json.load(f)["chat_template"])

    # ---- chat requests: byte 0 picks the template (fuzz_chat.cpp), then messages JSON [+ "\n\x1e" tools JSON]
    d = target("fuzz_chat")
    for k, fname in ((0, "qwen3.jsonl"), (1, "deepseek_v3.jsonl"), (2, "extra.jsonl"), (4, "r1_distill.jsonl")):
        with open(os.path.join(DATA, "chat", fname), encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        for i, row in enumerate(rows[::max(1, len(rows) // 6)][:6]):
            body = json.dumps(row["messages"], ensure_ascii=False)
            if row.get("tools"):
                body += "\n\x1e" + json.dumps(row["tools"], ensure_ascii=False)
            write(d, "%s.%02d.json" % (fname.split(".")[0], i), bytes([k]) + body.encode())


if __name__ == "__main__":
    main()
