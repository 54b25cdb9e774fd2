#!/usr/bin/env python3
"""Writes the chat-template test corpus: conversations and the prompt transformers renders for them.

    python3 tools/gen_chat_corpus.py [--out tests/data/chat] [--check]

Outputs (JSON Lines, committed; tests/test_chat_template.cpp reads them without Python). One object per
line:

    {"messages": [...], "tools": [...] or null, "kwargs": {...}, "add_generation_prompt": bool,
     "expected": "<the prompt>"}                      (or "error": "<jinja2's message>" instead of
                                                       "expected" when transformers raises)

  qwen3.jsonl        models/tokenizers/qwen3 (its tokenizer_config.json chat_template)
  deepseek_v3.jsonl  models/tokenizers/deepseek_v3
  r1_distill.jsonl   models/templates/deepseek-r1-distill-llama.jinja with the DeepSeek special tokens
                     of R1-Distill-Llama's tokenizer_config.json (R1_TOKENIZER_CONFIG below; the
                     tokenizer.json is Llama-3.1's, whose vocabulary R1-Distill-Llama reuses)
  extra.jsonl        the other templates in models/templates/, each line also carrying
                     "template": file name and "tokenizer": the models/tokenizers/ directory whose
                     tokenizer_config.json supplies the special tokens

"expected" is exactly tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=…,
tokenize=False, **kwargs) of transformers' AutoTokenizer loaded from a directory holding those files
(a template file is saved there as chat_template.jinja, which transformers reads before
tokenizer_config.json's chat_template). Nothing here is random. --check regenerates in memory and
exits 1 if a committed file differs.

Versions used: transformers 4.57.1, jinja2 3.1.6 (tools/requirements.txt).
"""
import argparse
import copy
import json
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# R1-Distill-Llama-8B's tokenizer_config.json, without its added_tokens_decoder and chat_template
# (the template is models/templates/deepseek-r1-distill-llama.jinja). tests/test_chat_template.cpp
# writes the same object.
R1_TOKENIZER_CONFIG = {
    "add_bos_token": True,
    "add_eos_token": False,
    "bos_token": {"__type": "AddedToken", "content": "<｜begin▁of▁sentence｜>", "lstrip": False,
                  "normalized": True, "rstrip": False, "single_word": False},
    "clean_up_tokenization_spaces": False,
    "eos_token": {"__type": "AddedToken", "content": "<｜end▁of▁sentence｜>", "lstrip": False,
                  "normalized": True, "rstrip": False, "single_word": False},
    "legacy": True,
    "model_max_length": 16384,
    "pad_token": {"__type": "AddedToken", "content": "<｜end▁of▁sentence｜>", "lstrip": False,
                  "normalized": True, "rstrip": False, "single_word": False},
    "sp_model_kwargs": {},
    "unk_token": None,
    "tokenizer_class": "LlamaTokenizerFast",
}

# ------------------------------------------------------------------------------------------------
# Building blocks

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city. Returns \"sunny\", \"rain\" or \"snow\".",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Zürich or 東京"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web.\nReturns up to `k` results (default 3).",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "k": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
                "filters": {"type": "object", "properties": {"lang": {"type": "string"}, "safe": {"type": "boolean"}}},
                "weights": {"type": "array", "items": {"type": "number"}, "default": [0.5, 1.25e-7, 3.0]},
            },
            "required": ["query"],
        },
    },
}
CALC_TOOL = {  # a bare function schema (no "type"/"function" wrapper), as some clients send
    "name": "calc",
    "description": "Evaluate an arithmetic expression: 'a+b' \\ escapes and <tags> stay as they are.",
    "parameters": {"type": "object", "properties": {"expr": {"type": "string"}}, "required": ["expr"]},
}


def call(name, args, as_string=False, with_id=True):
    c = {"type": "function", "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False) if as_string else args}}
    if with_id:
        c = {"id": "call_" + name, **c}
    return c


def sys_msg(t):
    return {"role": "system", "content": t}


def user(t):
    return {"role": "user", "content": t}


def asst(t, **kw):
    return {"role": "assistant", "content": t, **kw}


def tool(t, name=None):
    m = {"role": "tool", "content": t}
    if name:
        m["name"] = name
    return m


UNICODE = "Grüße, 你好, こんにちは, مرحبا, 🙂👍🏽, e\u0301, tab\tand \"quotes\" 'single' \\backslash\\ {braces} {{ not jinja }} {% raw %}"

# ------------------------------------------------------------------------------------------------
# Scenarios shared by every family (all use string arguments where a template concatenates them).


def common_scenarios(args_as_string, tool_content):
    """tool_content: the assistant content next to tool_calls (None breaks the Qwen templates)."""
    s = {}
    s["single_user"] = [user("Hello!")]
    s["system_user"] = [sys_msg("You are a helpful assistant."), user("What is 2+2?")]
    s["multi_turn"] = [
        sys_msg("Be brief."),
        user("Name a colour."),
        asst("Blue."),
        user("Another one?"),
        asst("Green."),
        user("Thanks. One more?"),
    ]
    s["earlier_think_dropped"] = [
        user("What is 3*7?"),
        asst("<think>\n3 times 7 is 21.\n</think>\n\n21"),
        user("And 4*5?"),
    ]
    s["think_in_last_assistant"] = [
        user("Capital of France?"),
        asst("<think>\nEasy: Paris.\n</think>\n\nParis."),
    ]
    s["think_variants"] = [
        user("q1"),
        asst("<think>a</think>b"),
        user("q2"),
        asst("\n\n<think>\n\nx\n\n</think>\n\n\n\ny\n\n"),
        user("q3"),
        asst("no think here but a stray </think> tag"),
        user("q4"),
    ]
    s["soft_switches"] = [
        sys_msg("You are terse. /no_think"),
        user("Explain gravity. /think"),
        asst("<think>\nThink about mass.\n</think>\n\nMass attracts mass."),
        user("Now briefly. /no_think"),
    ]
    s["unicode"] = [sys_msg(UNICODE), user(UNICODE), asst(UNICODE), user("¿" + UNICODE[::-1] + "?")]
    s["empty_contents"] = [sys_msg(""), user(""), asst(""), user("")]
    s["whitespace_contents"] = [user("  leading and trailing  \n"), asst("\n\nanswer\n\n"), user("\n")]
    s["long_chat"] = []
    for i in range(8):
        s["long_chat"] += [user(f"Question {i}: what is {i} squared?"), asst(f"{i * i}")]
    s["long_chat"].append(user("Sum them."))
    s["multiple_systems"] = [sys_msg("First system."), user("hi"), sys_msg("Second system."), user("again")]
    s["tool_chain"] = [
        sys_msg("You can call tools."),
        user("Weather in Paris and Tokyo?"),
        asst(tool_content, tool_calls=[call("get_weather", {"city": "Paris"}, args_as_string),
                               call("get_weather", {"city": "東京", "unit": "celsius"}, args_as_string)]),
        tool('{"weather": "sunny", "temp": 21.5}', "get_weather"),
        tool('{"weather": "rain", "temp": 12}', "get_weather"),
        asst("Paris is sunny (21.5°C); Tokyo is rainy (12°C)."),
        user("Thanks!"),
    ]
    s["tool_call_pending"] = [
        user("Search for jinja2 docs"),
        asst(tool_content, tool_calls=[call("search", {"query": "jinja2 \"templates\"", "k": 2,
                                              "filters": {"lang": "en", "safe": True}, "weights": [1.5, 1e-07, 100]},
                                    args_as_string)]),
        tool("1. https://jinja.palletsprojects.com\n2. https://pypi.org/project/Jinja2/", "search"),
    ]
    s["two_tool_rounds"] = [
        user("Compute (2+3)*4 then look it up."),
        asst(tool_content, tool_calls=[call("calc", {"expr": "(2+3)*4"}, args_as_string)]),
        tool("20"),
        asst(tool_content, tool_calls=[call("search", {"query": "20", "k": 1}, args_as_string)]),
        tool("Twenty is a number."),
        asst("It is 20, and twenty is a number."),
    ]
    return s


# ------------------------------------------------------------------------------------------------
# Family-specific scenarios


def qwen3_scenarios():
    s = common_scenarios(False, "")
    # Qwen3 handles both dict and string arguments, content alongside tool calls, reasoning_content.
    s["tool_call_string_args"] = [
        user("Weather in Oslo?"),
        asst("", tool_calls=[call("get_weather", {"city": "Oslo"}, True)]),
        tool("snow"),
    ]
    s["tool_call_with_content"] = [
        user("Weather in Rome?"),
        asst("Let me check.", tool_calls=[call("get_weather", {"city": "Rome"}), call("search", {"query": "Rome"}, True)]),
        tool("sunny"),
        tool("Rome is a city."),
        asst("It is sunny in Rome."),
    ]
    s["tool_call_without_function_key"] = [
        user("Add 1 and 2"),
        asst("", tool_calls=[{"name": "calc", "arguments": {"expr": "1+2"}}]),
        tool("3"),
    ]
    s["reasoning_content_field"] = [
        user("Why is the sky blue?"),
        asst("Rayleigh scattering.", reasoning_content="Short wavelengths scatter more."),
        user("And sunsets?"),
        asst("Longer path, blue scattered away.", reasoning_content="\nPath length.\n"),
    ]
    s["reasoning_content_in_tool_chain"] = [
        user("Weather in Lima?"),
        asst("", reasoning_content="I should call the tool.", tool_calls=[call("get_weather", {"city": "Lima"})]),
        tool("sunny"),
        asst("<think>\nThe tool says sunny.\n</think>\n\nSunny in Lima."),
    ]
    s["reasoning_content_none"] = [
        user("hi"),
        asst("<think>\ngreet\n</think>\n\nHello!", reasoning_content=None),
        user("bye"),
    ]
    s["tool_response_as_user"] = [
        user("Do it."),
        asst("<think>\ncall\n</think>\n\n", tool_calls=[call("calc", {"expr": "6*7"})]),
        user("<tool_response>\n42\n</tool_response>"),
        asst("<think>\nGot 42.\n</think>\n\nThe answer is 42."),
    ]
    s["system_not_first"] = [user("hello"), sys_msg("Late system message."), user("ok")]
    s["assistant_last_no_think"] = [user("Say hi"), asst("Hi!")]
    return s


def deepseek_scenarios():
    s = common_scenarios(True, None)
    s["tool_calls_second_message"] = [  # ns.is_first is never reset: later tool-call turns render differently
        user("Two lookups please."),
        asst(None, tool_calls=[call("search", {"query": "a"}, True)]),
        tool("A"),
        asst("First done."),
        user("Now the second."),
        asst(None, tool_calls=[call("search", {"query": "b"}, True), call("search", {"query": "c"}, True)]),
        tool("B"),
        tool("C"),
        asst("All done."),
    ]
    s["content_with_tool_calls"] = [  # content not None: rendered as a plain assistant turn
        user("Weather?"),
        asst("Checking.", tool_calls=[call("get_weather", {"city": "Oslo"}, True)]),
        user("ok"),
    ]
    s["tool_first"] = [tool("orphan tool output"), user("what was that?")]
    return s


ERROR_CASES = {
    # transformers raises for these: the C++ renderer must fail too.
    "qwen3": [
        ("missing_content", [user("hi"), {"role": "assistant"}, user("x")]),
        ("content_not_string", [{"role": "user", "content": 42}]),
        ("null_content_tool_call", [user("x"), asst(None, tool_calls=[call("calc", {"expr": "1"})]), tool("1")]),
    ],
    "deepseek_v3": [
        ("dict_arguments", [user("x"), asst(None, tool_calls=[call("calc", {"expr": "1"})])]),
        ("none_user_content", [user(None)]),
    ],
    "r1_distill": [
        ("dict_arguments", [user("x"), asst(None, tool_calls=[call("calc", {"expr": "1"})])]),
        ("none_user_content", [user(None)]),
    ],
}

TOOLS = [WEATHER_TOOL, SEARCH_TOOL, CALC_TOOL]


def variants(name, messages, uses_tools):
    """The (tools, kwargs, add_generation_prompt) combinations a scenario is rendered with."""
    out = []
    ends_with_assistant = messages and messages[-1]["role"] == "assistant"
    for agp in ([False] if ends_with_assistant else [True, False]):
        for think in ([None, True, False] if agp else [None, False]):
            kwargs = {} if think is None else {"enable_thinking": think}
            out.append((TOOLS if uses_tools else None, kwargs, agp))
    if not uses_tools:
        out.append((TOOLS[:1], {}, not ends_with_assistant))  # the same chat with a tool available
    return out


# ------------------------------------------------------------------------------------------------


def load_tokenizer(files, config=None, template_file=None):
    """AutoTokenizer from a temp dir holding `files` (+ a config and a chat_template.jinja)."""
    from transformers import AutoTokenizer
    d = tempfile.mkdtemp(prefix="chatcorpus_")
    for f in files:
        shutil.copy(f, d)
    if config is not None:
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as fh:
            json.dump(config, fh, ensure_ascii=False, indent=2)
    if template_file is not None:
        shutil.copy(template_file, os.path.join(d, "chat_template.jinja"))
    tok = AutoTokenizer.from_pretrained(d)
    shutil.rmtree(d)
    return tok


def render(tok, messages, tools, kwargs, agp):
    try:
        text = tok.apply_chat_template(copy.deepcopy(messages), tools=copy.deepcopy(tools), add_generation_prompt=agp,
                                       tokenize=False, **kwargs)
        return {"expected": text}
    except Exception as e:  # jinja2 errors: the C++ side must fail as well
        return {"error": f"{type(e).__name__}: {e}"}


def family_lines(tok, scenarios, errors, extra=None):
    lines = []
    for name, msgs in scenarios.items():
        uses_tools = any("tool_calls" in m or m["role"] == "tool" for m in msgs)
        for tools, kwargs, agp in variants(name, msgs, uses_tools):
            rec = {"name": name, **(extra or {}), "messages": msgs, "tools": tools, "kwargs": kwargs,
                   "add_generation_prompt": agp}
            rec.update(render(tok, msgs, tools, kwargs, agp))
            lines.append(rec)
    for name, msgs in errors:
        rec = {"name": name, **(extra or {}), "messages": msgs, "tools": None, "kwargs": {}, "add_generation_prompt": True}
        r = render(tok, msgs, None, {}, True)
        if "error" not in r:
            raise SystemExit(f"error case {name} rendered without error")
        rec.update(r)
        lines.append(rec)
    return lines


def build():
    tk = os.path.join(ROOT, "models", "tokenizers")
    tpl = os.path.join(ROOT, "models", "templates")
    out = {}
    qwen = load_tokenizer([os.path.join(tk, "qwen3", f) for f in ("tokenizer.json", "tokenizer_config.json")])
    out["qwen3"] = family_lines(qwen, qwen3_scenarios(), ERROR_CASES["qwen3"])
    ds = load_tokenizer([os.path.join(tk, "deepseek_v3", f) for f in ("tokenizer.json", "tokenizer_config.json")])
    out["deepseek_v3"] = family_lines(ds, deepseek_scenarios(), ERROR_CASES["deepseek_v3"])
    r1 = load_tokenizer([os.path.join(tk, "llama3_1", "tokenizer.json")], R1_TOKENIZER_CONFIG,
                        os.path.join(tpl, "deepseek-r1-distill-llama.jinja"))
    out["r1_distill"] = family_lines(r1, deepseek_scenarios(), ERROR_CASES["r1_distill"])

    # Extra coverage: other official templates, a few scenarios each.
    extra = []
    picks = ["single_user", "system_user", "multi_turn", "earlier_think_dropped", "unicode", "tool_chain",
             "tool_call_pending", "empty_contents", "multiple_systems"]
    for template, tokdir, args_as_string, tool_content in [("qwen2.5-instruct.jinja", "qwen3", False, ""),
                                                           ("qwq-32b.jinja", "qwen3", False, ""),
                                                           ("deepseek-v3.1.jinja", "deepseek_v3", True, None),
                                                           ("llama-3.1-instruct.jinja", "llama3_1", False, None)]:
        tok = load_tokenizer([os.path.join(tk, tokdir, f) for f in ("tokenizer.json", "tokenizer_config.json")],
                             None, os.path.join(tpl, template))
        scen = {k: v for k, v in common_scenarios(args_as_string, tool_content).items() if k in picks}
        if template.startswith("llama"):
            # Llama-3.1 accepts one tool call per message and puts tools in the first user turn.
            scen["tool_chain"] = [user("Weather in Paris?"), asst(None, tool_calls=[call("get_weather", {"city": "Paris"})]),
                                  tool('{"weather": "sunny"}'), asst("Sunny.")]
            scen["tool_call_pending"] = [user("Weather in Rome?"), asst(None, tool_calls=[call("get_weather", {"city": "Rome"})]),
                                         tool({"weather": "rain"})]
            scen.pop("multiple_systems")
        for line in family_lines(tok, scen, [], {"template": template, "tokenizer": tokdir}):
            extra.append(line)
    out["extra"] = extra
    return out


def dump(lines):
    return "".join(json.dumps(l, ensure_ascii=False) + "\n" for l in lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "chat"))
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    a = ap.parse_args()
    data = build()
    bad = False
    for name, lines in data.items():
        path = os.path.join(a.out, name + ".jsonl")
        text = dump(lines)
        n_err = sum("error" in l for l in lines)
        if a.check:
            with open(path, encoding="utf-8") as fh:
                same = fh.read() == text
            print(f"{path}: {'same' if same else 'DIFFERS'}")
            bad |= not same
        else:
            os.makedirs(a.out, exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
            print(f"{path}: {len(lines)} conversations ({n_err} expected errors), {len(text.encode())} bytes")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
