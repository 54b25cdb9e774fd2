#!/usr/bin/env python3
"""Single-threaded encoding speed of HF tokenizers, the reference for libinfer's tokenizer.

    RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false \\
        python3 tools/bench_tokenizer.py [--input mixed|natural] [--mb 4] [--dump chunks.jsonl]

Builds a few MB of text, cut into chunks of about 4 KB, and times tokenizers.Tokenizer.encode on one
chunk at a time (add_special_tokens=False), best of --runs, in process CPU time (steady on a shared
machine) and wall time, for each vocabulary in
models/tokenizers. --dump writes the chunks as JSON Lines ({"text": …}) so that a C++ program can
time libinfer on exactly the same input (docs/tokenizer.md, "Benchmark", shows one).

Inputs:
  mixed    the test corpus (tests/data/tokenizer/corpus.jsonl): multilingual text, emoji, code,
           numbers, whitespace runs, random Unicode — repeated up to --mb
  natural  English prose and code: the .py and .md files of the installed transformers package
"""
import argparse
import json
import os
import sys
import time

VOCABS = ["qwen3", "deepseek_v3", "llama3_1"]


def chunked(texts, size):
    """Joins texts with newlines into chunks of about `size` bytes."""
    chunks, cur, n = [], [], 0
    for t in texts:
        cur.append(t)
        n += len(t.encode("utf-8")) + 1
        if n >= size:
            chunks.append("\n".join(cur))
            cur, n = [], 0
    if cur:
        chunks.append("\n".join(cur))
    return chunks


def mixed_texts(root):
    with open(os.path.join(root, "tests", "data", "tokenizer", "corpus.jsonl"), encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def natural_texts():
    import transformers
    base = os.path.dirname(transformers.__file__)
    texts = []
    for dirpath, _, files in sorted(os.walk(base)):
        for name in sorted(files):
            if name.endswith((".py", ".md")):
                with open(os.path.join(dirpath, name), encoding="utf-8", errors="replace") as f:
                    texts.extend(f.read().split("\n\n"))
    return texts


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", choices=["mixed", "natural"], default="mixed")
    ap.add_argument("--mb", type=float, default=4.0, help="megabytes of text (1e6 bytes)")
    ap.add_argument("--chunk", type=int, default=4096, help="bytes per encode call")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--models", default=os.path.join(root, "models", "tokenizers"))
    ap.add_argument("--vocab", action="append", help="vocabularies to time (default: all three)")
    ap.add_argument("--dump", help="write the chunks here as JSON Lines and exit")
    ap.add_argument("--infer", help="path of the infer binary: also time `infer tokenize --jsonl` on the same chunks, "
                                    "side by side in this run (its JSON parsing and printing count against it; its "
                                    "tokenizer load time is measured on an empty input and subtracted)")
    args = ap.parse_args()

    if os.environ.get("RAYON_NUM_THREADS") != "1" or os.environ.get("TOKENIZERS_PARALLELISM") != "false":
        print("note: set RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false for a single-threaded run",
              file=sys.stderr)

    texts = mixed_texts(root) if args.input == "mixed" else natural_texts()
    chunks = chunked(texts, args.chunk)
    want = int(args.mb * 1e6)
    out, total = [], 0
    while total < want:
        for c in chunks:
            out.append(c)
            total += len(c.encode("utf-8"))
            if total >= want:
                break
    chunks = out

    if args.dump:
        with open(args.dump, "w", encoding="utf-8") as f:
            for c in chunks:
                f.write(json.dumps({"text": c}, ensure_ascii=False) + "\n")
        print(f"wrote {len(chunks)} chunks, {total / 1e6:.2f} MB, to {args.dump}")
        return

    from tokenizers import Tokenizer
    import tokenizers
    print(f"tokenizers {tokenizers.__version__}; input {args.input}: {len(chunks)} chunks, {total / 1e6:.2f} MB")
    for v in args.vocab or VOCABS:
        tok = Tokenizer.from_file(os.path.join(args.models, v, "tokenizer.json"))
        best_wall, best_cpu, n_ids = None, None, 0
        for _ in range(args.runs):
            t0, c0 = time.perf_counter(), time.process_time()
            n_ids = 0
            for c in chunks:
                n_ids += len(tok.encode(c, add_special_tokens=False).ids)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            best_wall = wall if best_wall is None else min(best_wall, wall)
            best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
        print(f"{v:12s} HF tokenizers {total / 1e6 / best_cpu:7.2f} MB/s CPU time, {total / 1e6 / best_wall:7.2f} MB/s "
              f"wall ({n_ids} ids, best of {args.runs})")
        if args.infer:
            time_infer(args.infer, os.path.join(args.models, v), chunks, total, args.runs, v, n_ids)


def time_infer(binary, model_dir, chunks, total, runs, v, hf_ids):
    """Times `infer tokenize --jsonl` (one JSON string per line in, one id array per line out), best of `runs`."""
    import resource
    import subprocess
    import tempfile

    def run(path):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        with open(path, "rb") as f:
            out = subprocess.run([binary, "tokenize", "-m", model_dir, "--jsonl"], stdin=f, capture_output=True,
                                 check=True).stdout
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return wall, cpu, out

    with tempfile.TemporaryDirectory() as d:
        data, empty = os.path.join(d, "in.jsonl"), os.path.join(d, "empty.jsonl")
        with open(data, "w", encoding="utf-8") as f:
            for c in chunks:
                f.write(json.dumps(c, ensure_ascii=False) + "\n")
        open(empty, "w").close()
        load_wall, load_cpu = min((run(empty)[:2] for _ in range(runs)), key=lambda x: x[1])
        best_wall = best_cpu = None
        n_ids = 0
        for _ in range(runs):
            wall, cpu, out = run(data)
            n_ids = sum(len(json.loads(line)) for line in out.decode().splitlines())
            best_wall = wall if best_wall is None else min(best_wall, wall)
            best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
    wall, cpu = best_wall - load_wall, best_cpu - load_cpu
    same = "same ids count" if n_ids == hf_ids else f"ID COUNT DIFFERS ({n_ids} vs {hf_ids})"
    print(f"{v:12s} libinfer      {total / 1e6 / cpu:7.2f} MB/s CPU time, {total / 1e6 / wall:7.2f} MB/s wall "
          f"({same}; load {load_wall * 1000:.0f} ms subtracted)")


if __name__ == "__main__":
    main()
