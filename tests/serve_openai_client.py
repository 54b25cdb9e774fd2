#!/usr/bin/env python3
"""`infer serve` driven by the official OpenAI Python client (pinned in tools/requirements-serve.txt).

Run by ctest (label `python`) with the interpreter of the venv that .ci/run makes:
    serve_openai_client.py INFER_BIN MODEL_DIR
Starts the server on a free loopback port, then checks what a client written for the OpenAI API sees: models.list,
chat completions (plain, streamed, with reasoning_content and a thinking budget through extra_body), completions,
and the client's exception types for 400 / 401 / 404. Exits non-zero on any failure -- also when the `openai`
package is missing (that is a broken test environment, not a reason to skip).
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

try:
    import openai
except ImportError as e:  # fail, never skip
    sys.exit(f"FAIL: the openai package is not installed ({e}); pip install -r tools/requirements-serve.txt")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, model, extra):
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([binary, "serve", "-m", model, "--port", str(port), "--ctx-size", "512", "-t", "2"] + extra,
                            stdout=log, stderr=log)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            return proc, port, log
        except Exception:
            if proc.poll() is not None:
                log.seek(0)
                sys.exit("FAIL: the server exited: " + log.read().decode(errors="replace"))
            time.sleep(0.1)
    proc.kill()
    sys.exit("FAIL: the server did not start")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=20) == 0, f"server exit status {proc.returncode}"
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    binary, model = sys.argv[1], sys.argv[2]
    print("openai", openai.__version__)
    proc, port, _ = start(binary, model, ["--api-key", "k"])
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0, timeout=120)
        models = client.models.list()
        check(models.data[0].id == "qwen3-tiny-random", f"models: {models}")

        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
        r = client.chat.completions.create(model="m", messages=msgs, temperature=0, max_tokens=12, seed=1)
        check(r.object == "chat.completion", r)
        check(r.choices[0].message.role == "assistant", r)
        check(isinstance(r.choices[0].message.content, str), r)
        check(r.usage.completion_tokens == 12 and r.choices[0].finish_reason == "length", r.usage)

        chunks = list(client.chat.completions.create(model="m", messages=msgs, temperature=0, max_tokens=12,
                                                     stream=True, stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        check(text == r.choices[0].message.content, f"stream {text!r} != {r.choices[0].message.content!r}")
        check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12, chunks[-1])

        # Reasoning (R1 style: the assistant turn opened with <think>) with a thinking budget, through extra_body.
        think = [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "<think>\n"}]
        extra = {"continue_final_message": True, "thinking_budget": 4, "ignore_eos": True}
        r = client.chat.completions.create(model="m", messages=think, temperature=0, max_tokens=50, extra_body=extra)
        m = r.choices[0].message
        reasoning = getattr(m, "reasoning_content", None) or (m.model_extra or {}).get("reasoning_content")
        check(reasoning and "Considering the limited time by the user" in reasoning, f"reasoning: {reasoning!r}")
        check(m.content and "Considering" not in m.content and "think>" not in m.content, f"content: {m.content!r}")
        streamed_r, streamed_c = "", ""
        for c in client.chat.completions.create(model="m", messages=think, temperature=0, max_tokens=50,
                                                extra_body=extra, stream=True):
            d = c.choices[0].delta
            streamed_r += (d.model_extra or {}).get("reasoning_content") or ""
            streamed_c += d.content or ""
        check(streamed_r == reasoning and streamed_c == m.content, f"stream: {streamed_r!r} / {streamed_c!r}")

        c = client.completions.create(model="m", prompt="Once upon a time", temperature=0, max_tokens=8)
        check(c.object == "text_completion" and isinstance(c.choices[0].text, str), c)

        try:
            client.chat.completions.create(model="m", messages=[], max_tokens=4)
            raise AssertionError("empty messages accepted")
        except openai.BadRequestError as e:
            check(e.status_code == 400 and "messages" in str(e), e)
        try:
            client.chat.completions.create(model="m", messages=msgs, temperature=5)
            raise AssertionError("temperature 5 accepted")
        except openai.BadRequestError as e:
            check("temperature" in str(e), e)
        bad = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong", max_retries=0)
        try:
            bad.models.list()
            raise AssertionError("a wrong API key was accepted")
        except openai.AuthenticationError as e:
            check(e.status_code == 401, e)
        try:
            client.embeddings.create(model="m", input="x")
            raise AssertionError("embeddings answered")
        except openai.NotFoundError as e:
            check(e.status_code == 404, e)
    finally:
        stop(proc)
    print("PASS")


if __name__ == "__main__":
    main()
