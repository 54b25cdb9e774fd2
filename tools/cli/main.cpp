// main.cpp — the `infer` command line. Uses only the public API (include/infer/infer.hpp).
//
//   infer -m DIR -p TEXT [-n N] [--temp T] …   generate (streams text to stdout, timings to stderr)
//   infer dump -m DIR --ids 1,2,3 -o out.safetensors
//   infer tokenize -m DIR TEXT
#include <CLI/CLI.hpp>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <unistd.h>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"
#include "infer/infer.hpp"

using json = nlohmann::json;

namespace {

// Parses "1,2,3" into ids; throws CLI::ValidationError on junk.
std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    size_t pos = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &pos);
    } catch (...) {
      pos = 0;
    }
    if (pos != item.size() || v < 0 || v > INT32_MAX) throw CLI::ValidationError("--ids", "'" + item + "' is not a token id");
    ids.push_back(int32_t(v));
  }
  if (ids.empty()) throw CLI::ValidationError("--ids", "no token ids given");
  return ids;
}

// Offset of the first byte of s that is not part of well-formed UTF-8 (RFC 3629: no overlongs, surrogates or
// code points above U+10FFFF), or npos. Text prompts must be UTF-8: a chat template sees them as Python strings.
size_t invalid_utf8_at(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c < 0x80) n = 1;
    else if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return i;
    if (i + n > s.size()) return i;
    for (size_t k = 1; k < n; ++k) {
      const unsigned char b = static_cast<unsigned char>(s[i + k]);
      if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return i;
    }
    i += n;
  }
  return std::string::npos;
}

// Throws a clear error when `text` (named by `what`: "the prompt", "the system prompt") is not UTF-8.
void require_utf8(const std::string& text, const std::string& what) {
  const size_t at = invalid_utf8_at(text);
  if (at == std::string::npos) return;
  char byte[8];
  std::snprintf(byte, sizeof byte, "0x%02X", static_cast<unsigned char>(text[at]));
  throw infer::Exception(INFER_ERR_INVALID_ARG, what + " is not valid UTF-8: byte " + byte + " at offset " +
                                                    std::to_string(at) + " (text prompts must be UTF-8; use --ids for raw token ids)");
}

std::string read_file_or_stdin(const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::ifstream f(path, std::ios::binary);
  if (!f) throw infer::Exception(INFER_ERR_IO, "cannot open prompt file '" + path + "'");
  return std::string(std::istreambuf_iterator<char>(f), {});
}

bool load_progress(float f, void*) {
  static int last = -1;
  const int pct = int(f * 100);
  if (pct / 10 != last / 10 || pct == 100) {
    std::fprintf(stderr, "\rloading model: %3d%%", pct);
    if (pct == 100) std::fprintf(stderr, "\n");
    last = pct;
  }
  return true;
}

infer::Model load_model(const std::string& dir, bool quiet, bool need_tokenizer = true) {
  infer_model_params mp = infer_model_default_params();
  if (!quiet) mp.progress = load_progress;
  infer::Model model(dir, mp);
  if (!quiet) {
    std::fprintf(stderr, "model: %s\n", model.desc().c_str());
    if (model.is_random())
      std::fprintf(stderr,
                   "note: this model's weights are RANDOM (config.json marks it infer_random_weights): its output is "
                   "meaningless text, by design\n");
  }
  if (need_tokenizer && !model.has_tokenizer())
    throw infer::Exception(INFER_ERR_UNSUPPORTED, "the model directory " + dir +
                                                      " has no tokenizer.json: pass token ids with --ids");
  return model;
}

volatile std::sig_atomic_t g_interrupted = 0;
void on_sigint(int) { g_interrupted = 1; }

struct RunOptions {
  std::string model_dir;
  std::string prompt;
  std::string prompt_file;
  std::string ids;
  int n_predict = -1;
  std::optional<float> temp, top_p, min_p, presence, frequency, repeat;
  std::optional<int> top_k;
  uint64_t seed = 0;
  bool seed_set = false;
  int threads = 0;
  int ctx = 0;
  std::string device = "auto";
  std::vector<std::string> stop;
  bool raw = false;
  std::string system;
  std::optional<bool> think;  // --think / --no-think: the template's enable_thinking
  bool chat = false;          // interactive REPL
  bool json_out = false;
  int logprobs = 0;
  bool ignore_eos = false;
  bool quiet = false;
  int thinking_budget = -1;
  bool hide_thinking = false;
  bool no_mtp = false;
};

// The chat-template kwargs from --think/--no-think.
std::string chat_kwargs(const RunOptions& o) {
  if (!o.think) return "";
  return json{{"enable_thinking", *o.think}}.dump();
}

// Renders messages with the model's chat template; returns false (and leaves `out` alone) when the model has none.
bool render_messages(const infer::Model& model, const json& messages, const RunOptions& o, std::string* out) {
  const std::string msgs = messages.dump();
  const std::string kw = chat_kwargs(o);
  size_t n = 0;
  std::string buf(4096, '\0');
  infer_status s = infer_chat_render(model.get(), msgs.c_str(), nullptr, kw.empty() ? nullptr : kw.c_str(), true,
                                     buf.data(), buf.size(), &n);
  if (s == INFER_ERR_INVALID_ARG && n > buf.size()) {
    buf.resize(n);
    s = infer_chat_render(model.get(), msgs.c_str(), nullptr, kw.empty() ? nullptr : kw.c_str(), true, buf.data(),
                          buf.size(), &n);
  }
  if (s == INFER_ERR_UNSUPPORTED) return false;  // no chat template: the prompt is used as plain text
  infer::check(s);
  buf.resize(n);
  *out = std::move(buf);
  return true;
}

// stops: storage for the stop-string pointers; must outlive the returned params.
infer_generate_params make_generate_params(const infer::Model& model, const RunOptions& o,
                                           std::vector<const char*>& stops) {
  infer_generate_params gp = infer_generate_default_params();
  stops.clear();
  for (const auto& st : o.stop) stops.push_back(st.c_str());
  gp.stop = stops.data();
  gp.n_stop = int32_t(stops.size());
  gp.sampling = model.sampler_defaults();
  // Qwen3 with thinking off: Qwen's recommended non-thinking sampling (model-spec.md §7.2), unless flags say otherwise.
  const std::string arch = model.arch();
  if (o.think && !*o.think && (arch == "qwen3" || arch == "qwen3_moe")) {
    gp.sampling.temperature = 0.7f;
    gp.sampling.top_p = 0.8f;
    gp.sampling.top_k = 20;
    gp.sampling.min_p = 0.0f;
  }
  if (o.temp) gp.sampling.temperature = *o.temp;
  if (o.top_k) gp.sampling.top_k = *o.top_k;
  if (o.top_p) gp.sampling.top_p = *o.top_p;
  if (o.min_p) gp.sampling.min_p = *o.min_p;
  if (o.presence) gp.sampling.presence_penalty = *o.presence;
  if (o.frequency) gp.sampling.frequency_penalty = *o.frequency;
  if (o.repeat) gp.sampling.repetition_penalty = *o.repeat;
  gp.sampling.seed = o.seed_set ? o.seed : uint64_t(std::random_device{}());
  gp.max_tokens = o.n_predict;
  gp.n_logprobs = o.logprobs;
  gp.ignore_eos = o.ignore_eos;
  gp.thinking_budget = o.thinking_budget;
  return gp;
}

// Streams one answer to stdout (reasoning dimmed on a terminal, hidden with --hide-thinking) and collects it.
struct Answer {
  std::vector<int32_t> tokens;
  std::string text, reasoning;
  bool saw_thinking = false;
  json logprobs = json::array();
  infer_generate_result res{};
};

Answer stream_answer(infer::Context& ctx, const std::vector<int32_t>& prompt, const infer_generate_params& gp,
                     const RunOptions& o) {
  Answer a;
  const bool tty = isatty(fileno(stdout));
  bool dim_on = false;
  auto set_dim = [&](bool on) {
    if (tty && on != dim_on) std::fputs(on ? "\x1b[2m" : "\x1b[0m", stdout);
    dim_on = on;
  };
  g_interrupted = 0;
  std::signal(SIGINT, on_sigint);
  try {
    a.res = ctx.generate(prompt, gp, [&](const infer_token_info& t) {
      if (t.id >= 0) a.tokens.push_back(t.id);
      const bool thinking = t.phase != INFER_PHASE_ANSWER;
      a.saw_thinking = a.saw_thinking || thinking;
      if (t.phase == INFER_PHASE_REASONING) a.reasoning.append(t.text, t.text_len);
      if (t.phase == INFER_PHASE_ANSWER) a.text.append(t.text, t.text_len);
      if (!o.json_out && t.text_len && !(thinking && o.hide_thinking)) {
        set_dim(thinking);
        std::fwrite(t.text, 1, t.text_len, stdout);
        std::fflush(stdout);
      }
      if (o.logprobs > 0 && t.id >= 0) {
        json top = json::array();
        for (int i = 0; i < t.n_top; ++i) top.push_back({{"id", t.top_ids[i]}, {"logprob", t.top_logprobs[i]}});
        a.logprobs.push_back({{"id", t.id}, {"logprob", t.logprob}, {"top", top}});
      }
      return g_interrupted == 0;
    });
  } catch (...) {
    std::signal(SIGINT, SIG_DFL);
    set_dim(false);
    throw;
  }
  std::signal(SIGINT, SIG_DFL);
  set_dim(false);
  return a;
}

const char* finish_name(infer_finish_reason r) {
  return r == INFER_FINISH_STOP ? "stop" : r == INFER_FINISH_LENGTH ? "length" : "cancelled";
}

// " | MTP drafts: accepted A of D (R%)" when the context ran MTP self-speculative decoding, else "".
std::string draft_summary(const infer_generate_result& res) {
  if (res.draft_tokens <= 0) return "";
  char buf[96];
  std::snprintf(buf, sizeof buf, " | MTP drafts: %d of %d accepted (%.1f%%)", res.draft_accepted, res.draft_tokens,
                100.0 * res.draft_accepted / res.draft_tokens);
  return buf;
}

// A "length" finish because the context filled up (not because -n was reached).
bool context_full(const infer::Context& ctx, const infer_generate_result& res) {
  return res.finish_reason == INFER_FINISH_LENGTH && ctx.n_past() >= ctx.n_ctx();
}

void print_timing(const infer_generate_result& res, bool ctx_full) {
  const double ptps = res.prompt_ms > 0 ? res.prompt_tokens * 1000.0 / res.prompt_ms : 0;
  const double gtps = res.gen_ms > 0 ? res.gen_tokens * 1000.0 / res.gen_ms : 0;
  std::fprintf(stderr,
               "[prompt: %d tokens, %.1f ms, %.2f tok/s | generation: %d tokens, %.1f ms, %.2f tok/s%s | %s%s]\n",
               res.prompt_tokens, res.prompt_ms, ptps, res.gen_tokens, res.gen_ms, gtps, draft_summary(res).c_str(),
               finish_name(res.finish_reason), ctx_full ? ": context full" : "");
}

// One line on the context: device, size, KV-cache bytes per token (the MTP draft head's cache apart).
void print_context(const infer::Context& ctx) {
  const int64_t kv = ctx.kv_bytes_per_token(), mtp = ctx.mtp_kv_bytes_per_token();
  std::fprintf(stderr, "context: %d tokens on %s, KV cache %lld bytes/token (%.1f MiB in all)", ctx.n_ctx(),
               ctx.device().c_str(), (long long)kv, double(kv) * ctx.n_ctx() / (1024.0 * 1024.0));
  if (mtp > 0)
    std::fprintf(stderr, " + MTP draft head %lld bytes/token (%.1f MiB)", (long long)mtp,
                 double(mtp) * ctx.n_ctx() / (1024.0 * 1024.0));
  std::fprintf(stderr, "\n");
}

// The interactive chat: multi-turn history rendered with the template's rules, the KV cache kept across turns
// (infer_generate reuses the longest cached prefix, so only the new tokens are prefilled).
int run_repl(infer::Model& model, infer::Context& ctx, const RunOptions& o) {
  json messages = json::array();
  if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
  std::vector<const char*> stops;
  const infer_generate_params gp = make_generate_params(model, o, stops);
  std::fprintf(stderr,
               "chat with %s — type a message; /think or /no_think in a message switch Qwen3's thinking; "
               "/clear starts over; /quit (or Ctrl-D) leaves; Ctrl-C stops an answer\n",
               model.arch().c_str());
  std::string line;
  for (;;) {
    std::fputs("> ", stdout);
    std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    if (line == "/quit" || line == "/exit") break;
    if (line == "/clear") {
      messages = json::array();
      if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
      ctx.truncate(0);
      std::fprintf(stderr, "(history cleared)\n");
      continue;
    }
    if (line.empty()) continue;
    try {
      require_utf8(line, "the message");
    } catch (const infer::Exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      continue;
    }
    json next = messages;
    next.push_back({{"role", "user"}, {"content", line}});
    std::string text;
    if (!render_messages(model, next, o, &text)) text = line;  // a model without a chat template: plain text
    const auto prompt = model.tokenize(text, false);
    if (int32_t(prompt.size()) >= ctx.n_ctx()) {
      std::fprintf(stderr, "the conversation (%zu tokens) no longer fits in the context of %d tokens: /clear to start over "
                           "(or restart with a larger -c)\n", prompt.size(), ctx.n_ctx());
      continue;
    }
    Answer a;
    try {
      a = stream_answer(ctx, prompt, gp, o);
    } catch (const infer::Exception& e) {
      std::fprintf(stderr, "\nerror: %s\n", e.what());
      continue;
    }
    std::printf("\n");
    if (a.res.finish_reason == INFER_FINISH_CANCELLED) std::fprintf(stderr, "(stopped)\n");
    if (context_full(ctx, a.res)) std::fprintf(stderr, "(the context is full: /clear to start over)\n");
    if (!o.quiet) print_timing(a.res, context_full(ctx, a.res));
    messages = next;
    json reply = {{"role", "assistant"}, {"content", a.text}};
    if (a.saw_thinking) reply["reasoning_content"] = a.reasoning;
    messages.push_back(reply);
  }
  return 0;
}

int cmd_run(const RunOptions& o) {
  const bool interactive = o.chat || (o.prompt.empty() && o.prompt_file.empty() && o.ids.empty());
  require_utf8(o.system, "the system prompt");
  infer::Model model = load_model(o.model_dir, o.quiet || o.json_out, o.ids.empty());
  infer_context_params cp = infer_context_default_params();
  cp.n_ctx = o.ctx;
  cp.n_threads = o.threads;
  cp.device = o.device.c_str();
  if (o.no_mtp) cp.mtp = false;
  infer::Context ctx(model, cp);
  if (!o.quiet && !o.json_out) print_context(ctx);
  if (interactive) return run_repl(model, ctx, o);

  std::vector<int32_t> prompt;
  if (!o.ids.empty()) {
    prompt = parse_ids(o.ids);
  } else {
    std::string text = o.prompt;
    if (!o.prompt_file.empty()) text = read_file_or_stdin(o.prompt_file);
    if (text.empty()) throw infer::Exception(INFER_ERR_INVALID_ARG, "no prompt: give -p TEXT, -f FILE or --ids");
    require_utf8(text, o.prompt_file.empty() ? "the prompt" : o.prompt_file == "-" ? "the prompt (stdin)"
                                                                                   : "the prompt file " + o.prompt_file);
    json messages = json::array();
    if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
    messages.push_back({{"role", "user"}, {"content", text}});
    std::string rendered;
    if (!o.raw && render_messages(model, messages, o, &rendered)) {
      prompt = model.tokenize(rendered, /*add_special=*/false);  // the template writes any BOS itself
    } else {
      if (!o.system.empty() && !o.raw)
        throw infer::Exception(INFER_ERR_UNSUPPORTED, "--system needs a chat template, and this model has none");
      prompt = model.tokenize(text, /*add_special=*/true);
    }
  }
  std::vector<const char*> stops;
  const infer_generate_params gp = make_generate_params(model, o, stops);
  const auto t_load_ms = model.load_ms();
  Answer a = stream_answer(ctx, prompt, gp, o);
  const infer_generate_result& res = a.res;
  const double ptps = res.prompt_ms > 0 ? res.prompt_tokens * 1000.0 / res.prompt_ms : 0;
  const double gtps = res.gen_ms > 0 ? res.gen_tokens * 1000.0 / res.gen_ms : 0;
  if (o.json_out) {
    json j;
    j["tokens"] = a.tokens;
    if (model.has_tokenizer()) j["text"] = a.text;
    if (a.saw_thinking) j["reasoning"] = a.reasoning;
    if (res.thinking_cut) j["thinking_cut"] = true;
    j["finish_reason"] = finish_name(res.finish_reason);
    if (context_full(ctx, res)) j["context_full"] = true;  // "length" because the context filled up
    j["timings"] = {{"load_ms", t_load_ms},       {"prompt_tokens", res.prompt_tokens}, {"prompt_ms", res.prompt_ms},
                    {"prompt_tps", ptps},         {"gen_tokens", res.gen_tokens},       {"gen_ms", res.gen_ms},
                    {"gen_tps", gtps}};
    j["kv_bytes_per_token"] = ctx.kv_bytes_per_token();
    if (ctx.mtp_kv_bytes_per_token() > 0) j["mtp_kv_bytes_per_token"] = ctx.mtp_kv_bytes_per_token();
    if (res.draft_tokens > 0)
      j["mtp"] = {{"draft_tokens", res.draft_tokens},
                  {"accepted", res.draft_accepted},
                  {"acceptance_rate", double(res.draft_accepted) / res.draft_tokens}};
    if (o.logprobs > 0) j["logprobs"] = a.logprobs;
    std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  } else {
    if (!model.has_tokenizer()) {  // ids in, ids out
      for (size_t i = 0; i < a.tokens.size(); ++i) std::printf("%s%d", i ? "," : "", a.tokens[i]);
    }
    std::printf("\n");
    std::fflush(stdout);
    if (!o.quiet) print_timing(res, context_full(ctx, res));
  }
  return 0;
}

int cmd_dump(const std::string& dir, const std::string& ids_s, const std::string& out, int threads) {
  infer::Model model = load_model(dir, true, false);
  const auto ids = parse_ids(ids_s);
  infer_context_params cp = infer_context_default_params();
  cp.n_ctx = int32_t(ids.size());
  cp.n_batch = int32_t(ids.size());
  cp.n_threads = threads;
  infer::Context ctx(model, cp);
  ctx.dump(ids, out);
  std::fprintf(stderr, "wrote logits [%zu, %d] and per-layer intermediates to %s\n", ids.size(), model.vocab_size(),
               out.c_str());
  return 0;
}

int cmd_tokenize(const std::string& dir, const std::string& text_arg, const std::string& file, bool as_json,
                 bool jsonl) {
  infer::Tokenizer tok(dir);  // a model directory or one with only the tokenizer files
  if (jsonl) {
    // One JSON string per input line → one JSON array of ids per output line.
    std::string line;
    size_t lineno = 0;
    while (std::getline(std::cin, line)) {
      ++lineno;
      json s;
      try {
        s = json::parse(line);
      } catch (const json::exception& e) {
        throw infer::Exception(INFER_ERR_FORMAT, "stdin line " + std::to_string(lineno) + ": not JSON: " + e.what());
      }
      if (!s.is_string())
        throw infer::Exception(INFER_ERR_FORMAT, "stdin line " + std::to_string(lineno) + ": expected a JSON string");
      std::cout << json(tok.encode(s.get<std::string>())).dump() << "\n";
    }
    return 0;
  }
  std::string text = text_arg;
  if (!file.empty()) text = read_file_or_stdin(file);
  const auto ids = tok.encode(text, false);
  if (as_json) {
    std::cout << json(ids).dump() << "\n";
  } else {
    for (int32_t id : ids)
      std::cout << id << "\t" << json(tok.decode({id})).dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"infer — run Hugging Face LLM checkpoints (Qwen3, …) on the CPU\n\n"
               "  infer -m ~/models/Qwen3-0.6B -p \"Hello\"           generate from a prompt\n"
               "  infer dump -m DIR --ids 1,2,3 -o out.safetensors   logits + per-layer intermediates\n"
               "  infer tokenize -m DIR \"some text\"                  token ids and pieces\n"
               "  infer bench -m DIR -p 512 -n 128 -t 1,2            pp/tg tokens per second (llama-bench style)\n"
               "  infer serve -m DIR --port 8080                     OpenAI-compatible server (continuous batching)\n",
               "infer"};
  app.set_version_flag("--version", std::string("infer ") + infer_version());
  app.require_subcommand(0, 1);

  RunOptions ro;
  float temp = 0, top_p = 0, min_p = 0, presence = 0, frequency = 0, repeat = 0;
  int top_k = 0;
  app.add_option("-m,--model", ro.model_dir, "Hugging Face model directory (config.json, *.safetensors, tokenizer.json)");
  app.add_option("-p,--prompt", ro.prompt, "Prompt text");
  app.add_option("-f,--file", ro.prompt_file, "Read the prompt from FILE ('-' for stdin)");
  app.add_option("--ids", ro.ids, "Prompt as comma-separated token ids instead of text");
  app.add_option("-n,--n-predict", ro.n_predict, "Tokens to generate (-1: until eos or a full context)")->capture_default_str();
  auto* o_temp = app.add_option("--temp,--temperature", temp, "Sampling temperature (0 = greedy); default: generation_config.json");
  auto* o_topk = app.add_option("--top-k", top_k, "Top-k sampling (0 = off)");
  auto* o_topp = app.add_option("--top-p", top_p, "Top-p (nucleus) sampling (1 = off)");
  auto* o_minp = app.add_option("--min-p", min_p, "Min-p sampling (0 = off)");
  auto* o_pres = app.add_option("--presence-penalty", presence, "Presence penalty (0 = off)");
  auto* o_freq = app.add_option("--frequency-penalty", frequency, "Frequency penalty (0 = off)");
  auto* o_rep = app.add_option("--repeat-penalty", repeat, "Repetition penalty, HF style (1 = off)");
  auto* o_seed = app.add_option("-s,--seed", ro.seed, "RNG seed (default: random)");
  app.add_option("-t,--threads", ro.threads, "Compute threads (default: all cores)");
  app.add_option("--device", ro.device, "Compute device: cpu, cuda, cuda:N or auto (CUDA when a usable GPU is present)")
      ->capture_default_str();
  app.add_option("-c,--ctx-size", ro.ctx, "Context size in tokens (default: min(max_position_embeddings, 4096))");
  app.add_option("--stop", ro.stop, "Stop when this text is generated (repeatable; not printed)");
  app.add_flag("--raw", ro.raw, "Feed the prompt as plain text (default: wrapped in the model's chat template)");
  app.add_option("--system", ro.system, "System prompt (chat template)");
  bool think_flag = false, nothink_flag = false;
  auto* o_think = app.add_flag("--think", think_flag, "Chat template: enable_thinking=true (Qwen3)");
  auto* o_nothink = app.add_flag("--no-think", nothink_flag, "Chat template: enable_thinking=false (Qwen3: empty think block, "
                                               "non-thinking sampling defaults)");
  o_think->excludes(o_nothink);
  (void)o_think;
  app.add_flag("--json", ro.json_out, "Print one JSON object (tokens, text, finish_reason, timings) instead of streaming");
  app.add_option("--logprobs", ro.logprobs, "With --json: top-N log-probabilities of each generated token (0..20)")
      ->check(CLI::Range(0, 20));
  app.add_flag("--ignore-eos", ro.ignore_eos, "Do not stop at end-of-sequence tokens");
  app.add_option("--thinking-budget", ro.thinking_budget,
                 "Reasoning tokens allowed after <think>; then the engine closes the thinking and the model answers "
                 "(-1: unlimited)")
      ->capture_default_str();
  app.add_flag("--hide-thinking", ro.hide_thinking, "Do not print the reasoning (text inside <think> … </think>)");
  app.add_flag("--no-mtp", ro.no_mtp,
               "Do not use the model's MTP draft head (DeepSeek-V3/R1) for self-speculative decoding; it is on by "
               "default when the checkpoint has one, and greedy output is the same either way");
  app.add_flag("-q,--quiet", ro.quiet, "No load progress or timing line");

  auto* dump = app.add_subcommand("dump", "Write logits and named per-layer intermediates of --ids to a safetensors file");
  std::string d_model, d_ids, d_out;
  int d_threads = 0;
  dump->add_option("-m,--model", d_model, "Model directory")->required();
  dump->add_option("--ids", d_ids, "Comma-separated token ids")->required();
  dump->add_option("-o,--output", d_out, "Output .safetensors file")->required();
  dump->add_option("-t,--threads", d_threads, "Compute threads");

  auto* tok = app.add_subcommand("tokenize", "Print the token ids (and pieces) of a text");
  std::string t_model, t_text, t_file;
  bool t_json = false, t_jsonl = false;
  tok->add_option("-m,--model", t_model, "Model directory, or one holding only tokenizer.json (+ tokenizer_config.json)")
      ->required();
  tok->add_option("text", t_text, "Text to tokenize");
  tok->add_option("-f,--file", t_file, "Read the exact bytes of FILE ('-' for stdin)");
  tok->add_flag("--json", t_json, "Print a JSON array of ids");
  tok->add_flag("--jsonl", t_jsonl, "Read one JSON string per stdin line, write one JSON array of ids per line");

  auto* chat = app.add_subcommand("chat", "Interactive chat (same as infer -m DIR with no prompt); options go before 'chat'");
  std::string c_model;
  chat->add_option("-m,--model", c_model, "Model directory")->required();

  std::function<int()> bench_run;
  auto* bench = add_bench_command(app, &bench_run);
  std::function<int()> render_run;
  auto* render = add_render_command(app, &render_run);
  std::function<int()> serve_run;
  auto* serve = add_serve_command(app, &serve_run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (*bench) return bench_run();
    if (*render) return render_run();
    if (*serve) return serve_run();
    if (*dump) return cmd_dump(d_model, d_ids, d_out, d_threads);
    if (*tok) return cmd_tokenize(t_model, t_text, t_file, t_json, t_jsonl);
    if (*chat) {
      ro.chat = true;
      ro.model_dir = c_model;
    }
    if (ro.model_dir.empty()) {
      std::cerr << app.help() << "\nerror: -m/--model is required\n";
      return 2;
    }
    if (*o_temp) ro.temp = temp;
    if (*o_topk) ro.top_k = top_k;
    if (*o_topp) ro.top_p = top_p;
    if (*o_minp) ro.min_p = min_p;
    if (*o_pres) ro.presence = presence;
    if (*o_freq) ro.frequency = frequency;
    if (*o_rep) ro.repeat = repeat;
    ro.seed_set = o_seed->count() > 0;
    if (think_flag) ro.think = true;
    if (nothink_flag) ro.think = false;
    return cmd_run(ro);
  } catch (const infer::Exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
