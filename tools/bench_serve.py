#!/usr/bin/env python3
"""Aggregate decode throughput of `infer serve` with N concurrent requests (stdlib only).

Starts N requests at once (the same short prompt, greedy, ignore_eos, max_tokens M), R times per N (interleaved
over the Ns), and reports two
measures of the aggregate decode rate:

  server: every request's own decode time as the engine measured it (the response's `timings.predicted_ms`, from the
          end of its prompt to its last token; `predicted_n` - 1 forward steps). Requests that start together are
          decoded in the same steps, so aggregate = sum over requests of (predicted_n - 1) / max(predicted_ms).
  client: the same requests streamed (SSE), every token timestamped on arrival; the window in which all N streams are
          decoding runs from the moment the last stream received its first token to the moment the first stream
          received its last one, and the rate counts every token received inside it (client overhead included).

With N = 1 both are the plain single-stream decode rate; the summary gives the ratio of N streams to one.

    infer serve -m /tmp/qwen3-0.6b-random -t 2 --parallel 8 --ctx-size 512 --port 8080 &
    python3 tools/bench_serve.py --url http://127.0.0.1:8080 --streams 1,8 --tokens 64 --reps 3
"""
import argparse
import http.client
import json
import os
import statistics
import threading
import time
import urllib.parse


def request(url, prompt, tokens, stream, out, i, barrier):
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=900)
    body = json.dumps({"prompt": prompt, "max_tokens": tokens, "temperature": 0, "ignore_eos": True, "stream": stream,
                       "stream_options": {"include_usage": True}})
    barrier.wait()
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    if not stream:
        out[i] = json.loads(resp.read())["timings"]
    else:
        stamps = []
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            c = json.loads(line[6:])
            if c["choices"] and c["choices"][0].get("text"):
                stamps.append(time.perf_counter())
        out[i] = stamps
    conn.close()


def run(url, n, prompt, tokens, stream):
    out = [None] * n
    barrier = threading.Barrier(n)
    ts = [threading.Thread(target=request, args=(url, prompt, tokens, stream, out, i, barrier)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if any(o is None for o in out):
        raise RuntimeError("a request failed")
    if not stream:
        steps = sum(o["predicted_n"] - 1 for o in out)
        return 1000.0 * steps / max(o["predicted_ms"] for o in out)
    t0 = max(o[0] for o in out)   # every stream is decoding from here …
    t1 = min(o[-1] for o in out)  # … to here
    if t1 <= t0:
        raise RuntimeError("the streams did not overlap; use more --tokens")
    return sum(sum(1 for t in o if t0 < t <= t1) for o in out) / (t1 - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--streams", default="1,8", help="comma-separated request counts")
    ap.add_argument("--tokens", type=int, default=64, help="tokens generated per request")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--prompt", default="The history of the city begins")
    a = ap.parse_args()
    run(a.url, 1, a.prompt, 8, False)  # warm-up
    res = {}
    # Repetitions are interleaved (1, 8, 1, 8, …) so that every count sees the same background load.
    for r in range(a.reps):
        for n in [int(x) for x in a.streams.split(",")]:
            for mode in ("server", "client"):
                rate = run(a.url, n, a.prompt, a.tokens, mode == "client")
                res.setdefault((mode, n), []).append(rate)
                print(f"{mode} streams={n} rep={r} aggregate_decode={rate:.2f} tok/s  (load {os.getloadavg()[0]:.1f})",
                      flush=True)
    print("\nmeasure  streams  mean tok/s  stdev  ratio")
    for (mode, n), rates in res.items():
        base = statistics.mean(res[(mode, min(k[1] for k in res if k[0] == mode))])
        sd = statistics.stdev(rates) if len(rates) > 1 else 0.0
        print(f"{mode:7s}  {n:7d}  {statistics.mean(rates):10.2f}  {sd:5.2f}  {statistics.mean(rates) / base:5.2f}x")


if __name__ == "__main__":
    main()
