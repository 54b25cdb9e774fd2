// cmd_serve.cpp — `infer serve`: an OpenAI-compatible HTTP server (cpp-httplib) over the continuous-batching engine
// (infer_engine_* in the C API). Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,
// GET /health. The protocol pieces (request checks, reasoning/content/tool-call split) are in serve_openai.h.
//
// Each request runs on an HTTP worker thread: it renders the chat template, tokenizes, submits to the engine, then
// writes what the engine's callbacks push into its Channel — SSE chunks when streaming, one JSON object at the end
// otherwise. Responses are written with chunked transfer encoding in both cases, so that a client that disconnects is
// noticed (a failed write, or the socket no longer writable) and its request cancelled, freeing its KV blocks.
#include <httplib.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "infer/infer.hpp"
#include "serve_openai.h"

using serve::ApiError;
using serve::json;

namespace {

struct ServeArgs {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 8080;
  int parallel = 4;
  int ctx = 0;
  int threads = 0;
  int batch = 512;
  int block = 16;
  int kv_blocks = 0;
  int queue = 64;
  std::string api_key;
  std::string alias;
  std::string device = "cpu";
  size_t max_body = 1 << 20;
  int http_threads = 0;
};

// One token (or trailing text) from the engine.
struct Event {
  int32_t id = -1;
  int32_t phase = 0;
  bool forced = false;
  std::string text;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
};

// What the engine's thread hands to the HTTP thread of one request.
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Event> events;
  bool done = false;
  infer_generate_result res{};
  infer_status status = INFER_OK;
  std::string message;
  std::atomic<bool> gone{false};  // the client disconnected
};

bool on_token(const infer_token_info* t, void* user) {
  Channel& c = **static_cast<std::shared_ptr<Channel>*>(user);
  Event e;
  e.id = t->id;
  e.phase = t->phase;
  e.forced = t->forced;
  e.text.assign(t->text, t->text_len);
  e.logprob = t->logprob;
  for (int32_t i = 0; i < t->n_top; ++i) e.top.emplace_back(t->top_ids[i], t->top_logprobs[i]);
  {
    std::lock_guard<std::mutex> lk(c.mu);
    c.events.push_back(std::move(e));
  }
  c.cv.notify_one();
  return !c.gone.load();
}

void on_done(const infer_generate_result* r, infer_status st, const char* msg, void* user) {
  auto* holder = static_cast<std::shared_ptr<Channel>*>(user);
  Channel& c = **holder;
  {
    std::lock_guard<std::mutex> lk(c.mu);
    c.res = *r;
    c.status = st;
    c.message = msg ? msg : "";
    c.done = true;
  }
  c.cv.notify_one();
  delete holder;
}

int64_t rss_bytes() {
  std::ifstream f("/proc/self/statm");
  int64_t pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * int64_t(sysconf(_SC_PAGESIZE));
}

std::string random_id(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string s = prefix;
  for (int i = 0; i < 24; ++i) s += hex[rng() & 15];
  return s;
}

class Server {
 public:
  Server(const ServeArgs& a, infer::Model& model, infer_engine* engine)
      : a_(a), model_(model), engine_(engine), params_(infer_engine_get_params(engine)) {
    name_ = a.alias.empty() ? std::filesystem::path(a.model).lexically_normal().filename().string() : a.alias;
    if (name_.empty()) name_ = std::filesystem::path(a.model).lexically_normal().parent_path().filename().string();
    created_ = int64_t(std::time(nullptr));
  }

  void route(httplib::Server& svr) {
    svr.set_payload_max_length(a_.max_body);
    svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (a_.api_key.empty() || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
      const std::string h = req.get_header_value("Authorization");
      if (h == "Bearer " + a_.api_key) return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, ApiError(401, h.empty() ? "missing API key: send 'Authorization: Bearer KEY'" : "invalid API key",
                               "", "invalid_api_key"));
      return httplib::Server::HandlerResponse::Handled;
    });
    svr.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req,
                                                                  httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // our own error object
      if (res.status == 413) {  // over --max-body: an invalid request like any other (OpenAI answers 400)
        send_error(res, ApiError(400, "the request body is larger than the server's limit (--max-body)", "",
                                 "request_too_large"));
      } else if (res.status == 404) {
        send_error(res, ApiError(404, "no route for " + req.method + " " + req.path, "", "not_found"));
      } else {
        send_error(res, ApiError(res.status, "HTTP error " + std::to_string(res.status)));
      }
      return httplib::Server::HandlerResponse::Handled;
    }));
    svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      send_error(res, ApiError(500, "internal error: " + what, "", "internal_error", "server_error"));
    });
    svr.Get("/health", [this](const httplib::Request&, httplib::Response& res) { health(res); });
    svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      json m = {{"id", name_}, {"object", "model"}, {"created", created_}, {"owned_by", "infer"},
                {"max_model_len", params_.n_ctx}};
      res.set_content(json{{"object", "list"}, {"data", json::array({m})}}.dump(), "application/json");
    });
    svr.Post("/v1/chat/completions",
             [this](const httplib::Request& req, httplib::Response& res) { handle(req, res, true); });
    svr.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { handle(req, res, false); });
  }

  static void send_error(httplib::Response& res, const ApiError& e) {
    res.status = e.status;
    res.set_content(e.body().dump(), "application/json");
  }

 private:
  void health(httplib::Response& res) {
    infer_engine_stats s{};
    infer_engine_get_stats(engine_, &s);
    json j = {{"status", "ok"},
              {"model", name_},
              {"n_parallel", params_.n_parallel},
              {"n_ctx", params_.n_ctx},
              {"running", s.running},
              {"queued", s.queued},
              {"kv_blocks", s.kv_blocks},
              {"kv_blocks_used", s.kv_blocks_used},
              {"kv_blocks_cached", s.kv_blocks_cached},
              {"kv_block_size", s.kv_block_size},
              {"steps", s.steps},
              {"max_step_requests", s.max_step_requests},
              {"prompt_tokens", s.prompt_tokens},
              {"prompt_tokens_cached", s.prompt_tokens_cached},
              {"generated_tokens", s.generated_tokens},
              {"requests_done", s.requests_done},
              {"rss_bytes", rss_bytes()}};
    res.set_content(j.dump(), "application/json");
  }

  std::string render(const serve::ParsedRequest& r) const {
    const std::string msgs = r.messages.dump();
    const std::string tools = r.tools.is_null() ? "" : r.tools.dump();
    const std::string kw = r.template_kwargs.is_null() ? "" : r.template_kwargs.dump();
    const bool add_gen = !r.continue_final;
    std::string out(8192, '\0');
    size_t n = 0;
    auto call = [&] {
      return infer_chat_render(model_.get(), msgs.c_str(), tools.empty() ? nullptr : tools.c_str(),
                               kw.empty() ? nullptr : kw.c_str(), add_gen, out.data(), out.size(), &n);
    };
    infer_status st = call();
    if (st == INFER_ERR_INVALID_ARG && n > out.size()) {
      out.resize(n);
      st = call();
    }
    if (st == INFER_ERR_UNSUPPORTED) throw ApiError(400, "this model has no chat template: use /v1/completions", "messages");
    if (st != INFER_OK) throw ApiError(400, std::string("chat template: ") + infer_last_error(), "messages");
    out.resize(n);
    if (r.continue_final) {
      // As transformers' continue_final_message: cut the rendered text right after the last message's content.
      std::string last = r.messages.back()["content"].is_string() ? r.messages.back()["content"].get<std::string>() : "";
      const size_t b = last.find_first_not_of(" \t\r\n"), e = last.find_last_not_of(" \t\r\n");
      last = b == std::string::npos ? "" : last.substr(b, e - b + 1);
      const size_t p = last.empty() ? std::string::npos : out.rfind(last);
      if (p == std::string::npos)
        throw ApiError(400, "continue_final_message: the final message's content is not in the rendered prompt",
                       "continue_final_message");
      out.resize(p + last.size());
    }
    return out;
  }

  std::string token_text(int32_t id) const {
    std::string s(64, '\0');
    size_t n = 0;
    if (infer_detokenize(model_.get(), &id, 1, false, s.data(), s.size(), &n) == INFER_ERR_INVALID_ARG && n > s.size()) {
      s.resize(n);
      infer_detokenize(model_.get(), &id, 1, false, s.data(), s.size(), &n);
    }
    s.resize(std::min(n, s.size()));
    return s;
  }

  static json bytes_of(const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(int(c));
    return b;
  }

  // A chat logprobs entry for one token.
  json chat_logprob(const Event& e) const {
    const std::string t = token_text(e.id);
    json top = json::array();
    for (const auto& [id, lp] : e.top) {
      const std::string tt = token_text(id);
      top.push_back({{"token", tt}, {"logprob", lp}, {"bytes", bytes_of(tt)}});
    }
    return {{"token", t}, {"logprob", e.logprob}, {"bytes", bytes_of(t)}, {"top_logprobs", top}};
  }

  infer_generate_params gen_params(const serve::ParsedRequest& r, std::vector<const char*>& stops) const {
    infer_generate_params gp = infer_generate_default_params();
    gp.sampling = model_.sampler_defaults();  // generation_config.json, then what the request sets
    if (r.temperature) gp.sampling.temperature = *r.temperature;
    if (r.top_p) gp.sampling.top_p = *r.top_p;
    if (r.top_k) gp.sampling.top_k = *r.top_k;
    if (r.min_p) gp.sampling.min_p = *r.min_p;
    if (r.presence_penalty) gp.sampling.presence_penalty = *r.presence_penalty;
    if (r.frequency_penalty) gp.sampling.frequency_penalty = *r.frequency_penalty;
    if (r.repetition_penalty) gp.sampling.repetition_penalty = *r.repetition_penalty;
    gp.sampling.seed = r.seed ? *r.seed : uint64_t(std::random_device{}()) << 32 ^ std::random_device{}();
    gp.max_tokens = r.max_tokens > 0 ? r.max_tokens : 0;
    for (const auto& s : r.stop) stops.push_back(s.c_str());
    gp.stop = stops.data();
    gp.n_stop = int32_t(stops.size());
    gp.n_logprobs = r.want_logprobs ? r.logprobs : 0;
    gp.thinking_budget = r.thinking_budget;
    gp.ignore_eos = r.ignore_eos;
    gp.no_logprob = !r.want_logprobs;
    return gp;
  }

  static const char* finish_name(infer_finish_reason f, bool tool_calls) {
    switch (f) {
      case INFER_FINISH_STOP: return tool_calls ? "tool_calls" : "stop";
      case INFER_FINISH_LENGTH: return "length";
      case INFER_FINISH_CANCELLED: return "abort";
      default: return "error";
    }
  }

  void handle(const httplib::Request& req, httplib::Response& res, bool chat) {
    try {
      auto r = std::make_shared<serve::ParsedRequest>(chat ? serve::parse_chat_request(req.body)
                                                           : serve::parse_completion_request(req.body));
      const std::string text = chat ? render(*r) : r->prompt;
      std::vector<int32_t> prompt = model_.tokenize(text, /*add_special=*/!chat);  // a template writes its own BOS
      if (int64_t(prompt.size()) > params_.n_ctx)
        throw ApiError(400,
                       "the prompt has " + std::to_string(prompt.size()) + " tokens but the context holds " +
                           std::to_string(params_.n_ctx) + " (--ctx-size)",
                       chat ? "messages" : "prompt", "context_length_exceeded");
      auto stops = std::make_shared<std::vector<const char*>>();
      const infer_generate_params gp = gen_params(*r, *stops);
      auto ch = std::make_shared<Channel>();
      auto* holder = new std::shared_ptr<Channel>(ch);
      uint64_t id = 0;
      const infer_status st = infer_engine_submit(engine_, prompt.data(), int32_t(prompt.size()), &gp, on_token,
                                                  on_done, holder, &id);
      if (st != INFER_OK) {
        delete holder;
        const std::string msg = infer_last_error();
        if (st == INFER_ERR_BUSY) {
          res.set_header("Retry-After", "1");
          throw ApiError(503, "the server is busy: " + msg, "", "server_busy", "server_error");
        }
        if (st == INFER_ERR_CONTEXT_FULL) throw ApiError(400, msg, chat ? "messages" : "prompt", "context_length_exceeded");
        if (st == INFER_ERR_INVALID_ARG || st == INFER_ERR_UNSUPPORTED) throw ApiError(400, msg);
        if (st == INFER_ERR_CANCELLED) throw ApiError(503, msg, "", "shutting_down", "server_error");
        throw ApiError(500, msg, "", "internal_error", "server_error");
      }
      const int64_t n_prompt = int64_t(prompt.size());
      const std::string rid = random_id(chat ? "chatcmpl-" : "cmpl-");
      const std::string echo = r->echo ? text : "";
      res.set_chunked_content_provider(
          r->stream ? "text/event-stream" : "application/json",
          [this, r, ch, id, n_prompt, rid, chat, echo, stops](size_t, httplib::DataSink& sink) {
            write_response(*r, *ch, id, n_prompt, rid, chat, echo, sink);
            return true;
          });
      if (r->stream) res.set_header("Cache-Control", "no-cache");
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const infer::Exception& e) {
      send_error(res, ApiError(400, e.what()));
    }
  }

  // Runs on the HTTP thread until the request ends: turns the channel's events into the response.
  void write_response(const serve::ParsedRequest& r, Channel& ch, uint64_t id, int64_t n_prompt, const std::string& rid,
                      bool chat, const std::string& echo, httplib::DataSink& sink) {
    serve::OutputParser parser(chat && r.parse_tool_calls);
    const int64_t created = int64_t(std::time(nullptr));
    bool ok = true;
    auto last_write = std::chrono::steady_clock::now();
    auto write = [&](const std::string& s) {
      if (ok && !sink.write(s.data(), s.size())) ok = false;
      last_write = std::chrono::steady_clock::now();
      return ok;
    };
    auto sse = [&](const json& j) { return write("data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n"); };
    auto chunk = [&](json delta, json logprobs, json finish) {
      json c = {{"id", rid}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", created},
                {"model", name_}};
      if (chat) {
        c["choices"] = json::array({{{"index", 0}, {"delta", delta}, {"logprobs", logprobs}, {"finish_reason", finish}}});
      } else {
        c["choices"] = json::array(
            {{{"index", 0}, {"text", delta}, {"logprobs", logprobs}, {"finish_reason", finish}}});
      }
      return sse(c);
    };
    // Accumulated (non-streaming) or pending (streaming) output.
    std::string reasoning, content, raw = echo;
    json tool_calls = json::array(), lp_content = json::array();
    json lp_tokens = json::array(), lp_token_lp = json::array(), lp_top = json::array();
    int n_calls = 0;
    if (r.stream) {
      if (chat) {
        chunk({{"role", "assistant"}, {"content", ""}}, nullptr, nullptr);
      } else if (!echo.empty()) {
        chunk(echo, nullptr, nullptr);
      }
    }
    auto emit_delta = [&](const serve::OutputParser::Delta& d, json lps) {
      if (!r.stream) {
        reasoning += d.reasoning;
        content += d.content;
        for (auto tc : d.tool_calls) tool_calls.push_back(tc);
        return;
      }
      if (!d.reasoning.empty()) chunk({{"reasoning_content", d.reasoning}}, nullptr, nullptr);
      if (!d.content.empty() || !lps.is_null()) {
        json delta = json::object();
        if (!d.content.empty()) delta["content"] = d.content;
        chunk(delta, lps, nullptr);
      }
      for (const auto& tc : d.tool_calls) {
        json t = tc;
        t["index"] = n_calls++;
        chunk({{"tool_calls", json::array({t})}}, nullptr, nullptr);
      }
    };
    bool done = false;
    while (!done) {
      std::deque<Event> evs;
      {
        std::unique_lock<std::mutex> lk(ch.mu);
        ch.cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return !ch.events.empty() || ch.done; });
        evs.swap(ch.events);
        done = ch.done && ch.events.empty();
      }
      // Nothing written for a second (a non-streamed answer, a queued request, a long prefill, held-back text): send
      // a heartbeat that the client ignores — an SSE comment, or JSON's leading whitespace — whose failed write tells
      // that it went away (a socket can look writable long after the peer closed it).
      if (!done && std::chrono::steady_clock::now() - last_write > std::chrono::seconds(1))
        write(r.stream ? ": keep-alive\n\n" : " ");
      for (const Event& e : evs) {
        if (chat) {
          json lps = nullptr;
          if (r.want_logprobs && e.id >= 0 && !e.forced) {
            if (r.stream) lps = {{"content", json::array({chat_logprob(e)})}};
            else lp_content.push_back(chat_logprob(e));
          }
          emit_delta(parser.push(e.phase, e.text), lps);
        } else {
          json lps = nullptr;
          if (r.want_logprobs && e.id >= 0 && !e.forced) {
            json top = json::object();
            for (const auto& [tid, lp] : e.top) top[token_text(tid)] = lp;
            const std::string tt = token_text(e.id);
            if (r.stream) {
              lps = {{"tokens", {tt}}, {"token_logprobs", {e.logprob}}, {"top_logprobs", {top}}};
            } else {
              lp_tokens.push_back(tt);
              lp_token_lp.push_back(e.logprob);
              lp_top.push_back(top);
            }
          }
          if (r.stream) {
            if (!e.text.empty() || !lps.is_null()) chunk(e.text, lps, nullptr);
          } else {
            raw += e.text;
          }
        }
        if (!ok) break;
      }
      if (!ok) {
        ch.gone = true;
        infer_engine_cancel(engine_, id);
        std::fprintf(stderr, "infer serve: %s: the client disconnected; request cancelled\n", rid.c_str());
        return;  // nothing more can reach the client; the engine frees the request's blocks
      }
    }
    // The end.
    infer_generate_result res;
    infer_status st;
    std::string msg;
    {
      std::lock_guard<std::mutex> lk(ch.mu);
      res = ch.res;
      st = ch.status;
      msg = ch.message;
    }
    if (chat) emit_delta(parser.finish(), nullptr);
    const int calls = chat ? parser.n_tool_calls() : 0;
    json usage = {{"prompt_tokens", n_prompt},
                  {"completion_tokens", res.gen_tokens},
                  {"total_tokens", n_prompt + res.gen_tokens},
                  {"prompt_tokens_details", {{"cached_tokens", res.prompt_cached_tokens}}},
                  {"completion_tokens_details", {{"reasoning_tokens", res.reasoning_tokens}}}};
    // llama-server's extra field: the engine's own timings (decode time excludes the prompt and the HTTP side).
    const json timings = {{"prompt_n", res.prompt_tokens}, {"prompt_ms", res.prompt_ms}, {"predicted_n", res.gen_tokens},
                          {"predicted_ms", res.gen_ms},
                          {"predicted_per_second", res.gen_ms > 0 ? 1000.0 * res.gen_tokens / res.gen_ms : 0.0}};
    if (st != INFER_OK) {
      const json err = ApiError(500, msg, "", "internal_error", "server_error").body();
      if (r.stream) {
        sse(err);
        write("data: [DONE]\n\n");
      } else {
        write(err.dump());
      }
      sink.done();
      return;
    }
    const char* finish = finish_name(res.finish_reason, calls > 0);
    if (r.stream) {
      chunk(chat ? json::object() : json(""), nullptr, finish);
      if (r.include_usage) {
        sse({{"id", rid}, {"object", chat ? "chat.completion.chunk" : "text_completion"}, {"created", created},
             {"model", name_}, {"choices", json::array()}, {"usage", usage}, {"timings", timings}});
      }
      write("data: [DONE]\n\n");
    } else {
      json choice = {{"index", 0}};
      if (chat) {
        json m = {{"role", "assistant"}};
        m["content"] = content.empty() && calls > 0 ? json(nullptr) : json(content);
        if (!reasoning.empty()) m["reasoning_content"] = reasoning;
        if (calls > 0) m["tool_calls"] = tool_calls;
        choice["message"] = m;
        choice["logprobs"] = r.want_logprobs ? json{{"content", lp_content}} : json(nullptr);
      } else {
        choice["text"] = raw;
        choice["logprobs"] = r.want_logprobs ? json{{"tokens", lp_tokens}, {"token_logprobs", lp_token_lp},
                                                     {"top_logprobs", lp_top}}
                                             : json(nullptr);
      }
      choice["finish_reason"] = finish;
      json body = {{"id", rid}, {"object", chat ? "chat.completion" : "text_completion"}, {"created", created},
                   {"model", name_}, {"choices", json::array({choice})}, {"usage", usage}, {"timings", timings}};
      write(body.dump(-1, ' ', false, json::error_handler_t::replace));
    }
    if (ok) sink.done();
  }

  const ServeArgs& a_;
  infer::Model& model_;
  infer_engine* engine_;
  infer_engine_params params_;
  std::string name_;
  int64_t created_ = 0;
};

int run_serve(const ServeArgs& a) {
  // SIGINT/SIGTERM are taken by one thread (sigwait); every other thread blocks them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (a.device != "cpu")
    throw infer::Exception(INFER_ERR_UNSUPPORTED, "infer serve runs on the CPU backend; --device " + a.device +
                                                      " has no paged attention (continuous batching) yet");
  infer_model_params mp = infer_model_default_params();
  infer::Model model(a.model, mp);
  if (!model.has_tokenizer())
    throw infer::Exception(INFER_ERR_UNSUPPORTED, "the model directory " + a.model + " has no tokenizer.json");
  std::fprintf(stderr, "model: %s\n", model.desc().c_str());
  if (model.is_random())
    std::fprintf(stderr, "note: this model's weights are RANDOM (infer_random_weights): its output is meaningless\n");

  infer_engine_params ep = infer_engine_default_params();
  ep.n_parallel = a.parallel;
  ep.n_ctx = a.ctx;
  ep.n_threads = a.threads;
  ep.n_batch = a.batch;
  ep.kv_block_size = a.block;
  ep.n_kv_blocks = a.kv_blocks;
  ep.max_queue = a.queue;
  ep.device = a.device.c_str();
  infer_engine* engine = nullptr;
  infer::check(infer_engine_create(model.get(), &ep, &engine));
  std::unique_ptr<infer_engine, void (*)(infer_engine*)> engine_guard(engine, infer_engine_free);
  const infer_engine_params p = infer_engine_get_params(engine);

  httplib::Server svr;
  // Every request holds a worker for its whole generation: enough for the running and queued ones, and a few more
  // for /health and requests that get a quick 503.
  const int workers = a.http_threads > 0 ? a.http_threads : std::min(1024, p.n_parallel + p.max_queue + 8);
  svr.new_task_queue = [workers] { return new httplib::ThreadPool(size_t(workers)); };
  Server server(a, model, engine);
  server.route(svr);
  if (!svr.bind_to_port(a.host.c_str(), a.port))
    throw infer::Exception(INFER_ERR_IO, "cannot listen on " + a.host + ":" + std::to_string(a.port) +
                                             " (in use, or not an address of this machine)");
  std::fprintf(stderr,
               "infer serve: listening on http://%s:%d  (parallel %d, ctx %d, batch %d, KV %d blocks × %d tokens, "
               "queue %d%s)\n",
               a.host.c_str(), a.port, p.n_parallel, p.n_ctx, p.n_batch, p.n_kv_blocks, p.kv_block_size, p.max_queue,
               a.api_key.empty() ? "" : ", API key required");
  std::fflush(stderr);

  std::atomic<bool> quitting{false};
  std::thread sig([&] {
    int s = 0;
    sigwait(&sigs, &s);
    if (quitting.exchange(true)) return;
    std::fprintf(stderr, "infer serve: %s, shutting down\n", s == SIGINT ? "SIGINT" : "SIGTERM");
    infer_engine_free(engine_guard.release());  // ends every request (streams get finish_reason "abort")
    svr.stop();
  });
  svr.listen_after_bind();
  if (!quitting.exchange(true)) pthread_kill(sig.native_handle(), SIGTERM);  // listen failed: end the waiter
  sig.join();
  std::fprintf(stderr, "infer serve: stopped\n");
  return 0;
}

}  // namespace

CLI::App* add_serve_command(CLI::App& app, std::function<int()>* run) {
  auto a = std::make_shared<ServeArgs>();
  auto* c = app.add_subcommand("serve", "OpenAI-compatible HTTP server with continuous batching (see docs/serve.md)");
  c->add_option("-m,--model", a->model, "Model directory")->required();
  c->add_option("--host", a->host, "Address to listen on (loopback by default; 0.0.0.0 for every interface)")
      ->capture_default_str();
  c->add_option("--port", a->port, "TCP port")->capture_default_str()->check(CLI::Range(0, 65535));
  c->add_option("--parallel,--np", a->parallel, "Requests decoded together in one batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  c->add_option("-c,--ctx-size", a->ctx,
                "Tokens per request, prompt + output (default: min(max_position_embeddings, 4096))");
  c->add_option("-t,--threads", a->threads, "Compute threads (default: all cores)");
  c->add_option("-b,--batch-size", a->batch, "Tokens per forward step, all requests together (prompt chunks + decodes)")
      ->capture_default_str()
      ->check(CLI::Range(1, 65536));
  c->add_option("--kv-block-size", a->block, "Tokens per KV-cache block (the unit of paging and prefix sharing)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  c->add_option("--kv-blocks", a->kv_blocks,
                "KV-cache blocks in the pool (default: enough for --parallel full contexts; fewer lets more requests "
                "share less memory, and one that finds no block ends with finish_reason \"length\")");
  c->add_option("--queue", a->queue, "Requests waiting beyond --parallel; more get 503 with Retry-After")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000));
  c->add_option("--api-key", a->api_key, "Require 'Authorization: Bearer KEY' on /v1/* (401 otherwise)");
  c->add_option("--alias", a->alias, "Model name in responses and /v1/models (default: the directory's name)");
  c->add_option("--device", a->device, "Compute device: only cpu for now (no paged-attention kernel on CUDA yet)")
      ->capture_default_str();
  c->add_option("--max-body", a->max_body, "Largest request body in bytes; larger ones get 400")->capture_default_str();
  c->add_option("--http-threads", a->http_threads,
                "HTTP worker threads (default: parallel + queue + 8; each request holds one while it runs)");
  *run = [a] { return run_serve(*a); };
  return c;
}
