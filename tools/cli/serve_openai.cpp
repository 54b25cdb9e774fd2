// serve_openai.cpp — see serve_openai.h.
#include "serve_openai.h"

#include <random>

#include "infer/infer.h"

namespace serve {
namespace {

json parse_body(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    throw ApiError(400, std::string("the request body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object");
  return j;
}

std::optional<float> opt_number(const json& j, const char* key, double lo, double hi) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  if (!j[key].is_number()) throw ApiError(400, std::string("'") + key + "' must be a number", key);
  const double v = j[key].get<double>();
  if (v < lo || v > hi)
    throw ApiError(400, std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]",
                   key);
  return float(v);
}

std::optional<int64_t> opt_int(const json& j, const char* key, int64_t lo, int64_t hi) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  if (!j[key].is_number_integer()) throw ApiError(400, std::string("'") + key + "' must be an integer", key);
  const int64_t v = j[key].get<int64_t>();
  if (v < lo || v > hi)
    throw ApiError(400, std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]",
                   key);
  return v;
}

bool opt_bool(const json& j, const char* key, bool dflt) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  if (!j[key].is_boolean()) throw ApiError(400, std::string("'") + key + "' must be true or false", key);
  return j[key].get<bool>();
}

// The fields both endpoints share.
void parse_common(const json& j, ParsedRequest& r) {
  r.stream = opt_bool(j, "stream", false);
  if (j.contains("stream_options") && !j["stream_options"].is_null()) {
    if (!j["stream_options"].is_object()) throw ApiError(400, "'stream_options' must be an object", "stream_options");
    r.include_usage = opt_bool(j["stream_options"], "include_usage", false);
  }
  auto mt = opt_int(j, "max_completion_tokens", 1, INT32_MAX);
  if (!mt) mt = opt_int(j, "max_tokens", 1, INT32_MAX);
  if (mt) r.max_tokens = int32_t(*mt);
  r.temperature = opt_number(j, "temperature", 0, 2);
  r.top_p = opt_number(j, "top_p", 0, 1);
  r.min_p = opt_number(j, "min_p", 0, 1);
  r.presence_penalty = opt_number(j, "presence_penalty", -2, 2);
  r.frequency_penalty = opt_number(j, "frequency_penalty", -2, 2);
  r.repetition_penalty = opt_number(j, "repetition_penalty", 0.01, 10);
  if (auto k = opt_int(j, "top_k", -1, INT32_MAX)) r.top_k = int32_t(*k);
  if (j.contains("seed") && !j["seed"].is_null()) {
    if (!j["seed"].is_number_integer()) throw ApiError(400, "'seed' must be an integer", "seed");
    r.seed = j["seed"].is_number_unsigned() ? j["seed"].get<uint64_t>() : uint64_t(j["seed"].get<int64_t>());
  }
  if (j.contains("n") && !j["n"].is_null() && !(j["n"].is_number_integer() && j["n"].get<int64_t>() == 1))
    throw ApiError(400, "only n = 1 is supported", "n");
  if (j.contains("stop") && !j["stop"].is_null()) {
    const json& s = j["stop"];
    if (s.is_string()) {
      r.stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      if (s.size() > 16) throw ApiError(400, "'stop' holds at most 16 strings", "stop");
      for (const auto& x : s) {
        if (!x.is_string()) throw ApiError(400, "'stop' must be a string or an array of strings", "stop");
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      throw ApiError(400, "'stop' must be a string or an array of strings", "stop");
    }
  }
  if (auto b = opt_int(j, "thinking_budget", -1, INT32_MAX)) r.thinking_budget = int32_t(*b);
  r.ignore_eos = opt_bool(j, "ignore_eos", false);
}

// A message's content as the template takes it: a string (text parts joined), or null.
json message_content(const json& c, size_t i) {
  const std::string where = "messages[" + std::to_string(i) + "].content";
  if (c.is_null() || c.is_string()) return c;
  if (!c.is_array()) throw ApiError(400, "'" + where + "' must be a string, an array of content parts or null", where);
  std::string text;
  for (const auto& part : c) {
    if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text") ||
        !part["text"].is_string())
      throw ApiError(400, "'" + where + "': only text parts ({\"type\": \"text\", \"text\": …}) are supported", where);
    text += part["text"].get<std::string>();
  }
  return text;
}

}  // namespace

json ApiError::body() const {
  json e = {{"message", what()}, {"type", type}, {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}};
  return json{{"error", e}};
}

ParsedRequest parse_chat_request(const std::string& body) {
  const json j = parse_body(body);
  ParsedRequest r;
  r.chat = true;
  parse_common(j, r);
  if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
    throw ApiError(400, "'messages' must be a non-empty array", "messages");
  r.messages = json::array();
  for (size_t i = 0; i < j["messages"].size(); ++i) {
    const json& m = j["messages"][i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) throw ApiError(400, "'" + where + "' must be an object", where);
    if (!m.contains("role") || !m["role"].is_string()) throw ApiError(400, "'" + where + ".role' must be a string", where);
    std::string role = m["role"].get<std::string>();
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant" && role != "tool")
      throw ApiError(400, "'" + where + ".role' must be system, developer, user, assistant or tool (got '" + role + "')",
                     where + ".role");
    json out = m;
    out["role"] = role;
    out["content"] = message_content(m.contains("content") ? m["content"] : json(nullptr), i);
    if (role != "assistant" && out["content"].is_null())
      throw ApiError(400, "'" + where + ".content' is required for role " + role, where + ".content");
    if (out["content"].is_null()) out["content"] = "";  // an assistant turn of only tool calls (templates test `in`)
    if (m.contains("tool_calls") && !m["tool_calls"].is_null() && !m["tool_calls"].is_array())
      throw ApiError(400, "'" + where + ".tool_calls' must be an array", where + ".tool_calls");
    r.messages.push_back(out);
  }
  if (j.contains("tools") && !j["tools"].is_null()) {
    if (!j["tools"].is_array()) throw ApiError(400, "'tools' must be an array", "tools");
    for (size_t i = 0; i < j["tools"].size(); ++i) {
      const json& t = j["tools"][i];
      if (!t.is_object() || !t.contains("function") || !t["function"].is_object() || !t["function"].contains("name") ||
          !t["function"]["name"].is_string())
        throw ApiError(400, "'tools[" + std::to_string(i) + "]' must be {\"type\": \"function\", \"function\": {\"name\": …}}",
                       "tools");
    }
    if (!j["tools"].empty()) r.tools = j["tools"];
  }
  std::string tool_choice = "auto";
  if (j.contains("tool_choice") && j["tool_choice"].is_string()) tool_choice = j["tool_choice"].get<std::string>();
  r.parse_tool_calls = !r.tools.is_null() && tool_choice != "none";
  if (j.contains("chat_template_kwargs") && !j["chat_template_kwargs"].is_null()) {
    if (!j["chat_template_kwargs"].is_object())
      throw ApiError(400, "'chat_template_kwargs' must be an object", "chat_template_kwargs");
    r.template_kwargs = j["chat_template_kwargs"];
  }
  r.continue_final = opt_bool(j, "continue_final_message", false);
  if (r.continue_final && r.messages.back()["role"] != "assistant")
    throw ApiError(400, "'continue_final_message' needs an assistant message last", "continue_final_message");
  if (j.contains("logprobs") && !j["logprobs"].is_null()) r.want_logprobs = opt_bool(j, "logprobs", false);
  if (auto t = opt_int(j, "top_logprobs", 0, 20)) {
    if (!r.want_logprobs) throw ApiError(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs");
    r.logprobs = int32_t(*t);
  }
  return r;
}

ParsedRequest parse_completion_request(const std::string& body) {
  const json j = parse_body(body);
  ParsedRequest r;
  r.chat = false;
  parse_common(j, r);
  if (!j.contains("prompt")) throw ApiError(400, "'prompt' is required", "prompt");
  const json& p = j["prompt"];
  if (p.is_string()) {
    r.prompt = p.get<std::string>();
  } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
    r.prompt = p[0].get<std::string>();
  } else {
    throw ApiError(400, "'prompt' must be a string (one prompt per request)", "prompt");
  }
  if (r.prompt.empty()) throw ApiError(400, "'prompt' is empty", "prompt");
  if (auto lp = opt_int(j, "logprobs", 0, 20)) {
    r.want_logprobs = true;
    r.logprobs = int32_t(*lp);
  }
  r.echo = opt_bool(j, "echo", false);
  return r;
}

std::string new_call_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string s = "call_";
  for (int i = 0; i < 24; ++i) s += hex[rng() & 15];
  return s;
}

// ---- OutputParser

OutputParser::Delta OutputParser::push(int32_t phase, const std::string& text) {
  Delta d;
  if (phase == INFER_PHASE_THINK_TAG) {
    held_nl_.clear();          // the newline before </think> belongs to the template, not the reasoning
    content_started_ = false;  // nor the blank line after it
    reasoning_started_ = false;
    return d;
  }
  if (phase == INFER_PHASE_REASONING) {
    std::string t = text;
    if (!reasoning_started_) {
      const size_t k = t.find_first_not_of('\n');
      t.erase(0, k == std::string::npos ? t.size() : k);
      if (t.empty()) return d;
      reasoning_started_ = true;
    }
    t = held_nl_ + t;
    const size_t k = t.find_last_not_of('\n');
    const size_t keep = k == std::string::npos ? 0 : k + 1;
    held_nl_ = t.substr(keep);
    d.reasoning = t.substr(0, keep);
    return d;
  }
  answer(text, d, false);
  return d;
}

OutputParser::Delta OutputParser::finish() {
  Delta d;
  answer("", d, true);
  return d;
}

void OutputParser::emit_content(std::string t, Delta& d, bool final) {
  if (!content_started_) {
    const size_t k = t.find_first_not_of('\n');
    t.erase(0, k == std::string::npos ? t.size() : k);
    if (t.empty()) return;
    content_started_ = true;
  }
  if (n_calls_ > 0) {  // whitespace around tool calls is not content
    held_ws_ += t;
    if (held_ws_.find_first_not_of(" \t\r\n") == std::string::npos) return;
    t.swap(held_ws_);
    held_ws_.clear();
  }
  d.content += t;
  (void)final;
}

void OutputParser::answer(const std::string& text, Delta& d, bool final) {
  static const std::string open = "<tool_call>", close = "</tool_call>";
  if (!parse_tools_) {
    emit_content(text, d, final);
    return;
  }
  buf_ += text;
  for (;;) {
    if (in_call_) {
      const size_t e = buf_.find(close);
      if (e == std::string::npos) {
        if (final) {  // never closed (max_tokens): it stays text
          emit_content(open + buf_, d, final);
          buf_.clear();
          in_call_ = false;
        }
        return;
      }
      const std::string body = buf_.substr(0, e);
      buf_.erase(0, e + close.size());
      in_call_ = false;
      json call;
      bool ok = false;
      try {
        call = json::parse(body);
        ok = call.is_object() && call.contains("name") && call["name"].is_string() &&
             (!call.contains("arguments") || call["arguments"].is_object() || call["arguments"].is_string());
      } catch (const json::exception&) {
      }
      if (!ok) {
        emit_content(open + body + close, d, final);
        continue;
      }
      std::string args = "{}";
      if (call.contains("arguments")) args = call["arguments"].is_string() ? call["arguments"].get<std::string>()
                                                                            : call["arguments"].dump();
      d.tool_calls.push_back(json{{"id", new_call_id()},
                                  {"type", "function"},
                                  {"function", {{"name", call["name"]}, {"arguments", args}}}});
      ++n_calls_;
      continue;
    }
    const size_t s = buf_.find(open);
    if (s != std::string::npos) {
      emit_content(buf_.substr(0, s), d, final);
      buf_.erase(0, s + open.size());
      in_call_ = true;
      continue;
    }
    // Hold back a suffix that could be the start of <tool_call>.
    size_t keep = 0;
    if (!final)
      for (size_t k = std::min(open.size() - 1, buf_.size()); k > 0; --k)
        if (buf_.compare(buf_.size() - k, k, open, 0, k) == 0) {
          keep = k;
          break;
        }
    emit_content(buf_.substr(0, buf_.size() - keep), d, final);
    buf_.erase(0, buf_.size() - keep);
    return;
  }
}

}  // namespace serve
