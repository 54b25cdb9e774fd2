// serve_openai.h — the OpenAI protocol of `infer serve`, apart from HTTP (cmd_serve.cpp) and the model: checking a
// request body, splitting generated text into reasoning_content / content / tool_calls, and the error object.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace serve {

using json = nlohmann::ordered_json;

// An error that becomes an HTTP status and an OpenAI error object:
// {"error": {"message": …, "type": …, "param": …, "code": …}}.
struct ApiError : std::runtime_error {
  int status;
  std::string type, param, code;
  ApiError(int status, const std::string& message, const std::string& param = "", const std::string& code = "",
           const std::string& type = "invalid_request_error")
      : std::runtime_error(message), status(status), type(type), param(param), code(code) {}
  json body() const;
};

// The fields of a /v1/chat/completions or /v1/completions body that the server uses, checked.
struct ParsedRequest {
  bool chat = true;
  json messages;         // chat: the messages as the chat template takes them (content parts joined to a string)
  json tools;            // chat: null or the tools array
  json template_kwargs;  // chat: null or chat_template_kwargs (enable_thinking, …)
  bool continue_final = false;  // chat: continue the last (assistant) message instead of starting a new one
  std::string prompt;    // completions
  bool stream = false, include_usage = false;
  int32_t max_tokens = -1;  // -1: not given (until eos or a full context)
  std::optional<float> temperature, top_p, min_p, presence_penalty, frequency_penalty, repetition_penalty;
  std::optional<int32_t> top_k;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  int32_t logprobs = 0;  // top logprobs per token; 0 with want_logprobs = logprob of the chosen token only
  bool want_logprobs = false;
  int32_t thinking_budget = -1;
  bool parse_tool_calls = false;  // tools given and tool_choice is not "none"
  bool ignore_eos = false;
  bool echo = false;     // completions: prepend the prompt
};

// Throw ApiError(400, …) naming the field that is wrong.
ParsedRequest parse_chat_request(const std::string& body);
ParsedRequest parse_completion_request(const std::string& body);

// Splits generated text, piece by piece with its phase (INFER_PHASE_ANSWER / REASONING / THINK_TAG), into
// reasoning text (between <think> and </think>; the tags dropped, the newlines just inside them trimmed), and answer
// text; with parse_tools, Qwen3 <tool_call>{"name": …, "arguments": …}</tool_call> blocks in the answer become
// tool calls (a block that is not valid JSON stays content, as vLLM does). Text that may still turn out to be part
// of a tag is held back until it is known.
class OutputParser {
 public:
  explicit OutputParser(bool parse_tools) : parse_tools_(parse_tools) {}
  struct Delta {
    std::string reasoning, content;
    std::vector<json> tool_calls;  // OpenAI tool_call objects {id, type, function: {name, arguments}}
    bool empty() const { return reasoning.empty() && content.empty() && tool_calls.empty(); }
  };
  Delta push(int32_t phase, const std::string& text);
  Delta finish();  // the end of generation: what is still held back
  int n_tool_calls() const { return n_calls_; }

 private:
  void answer(const std::string& text, Delta& d, bool final);
  void emit_content(std::string text, Delta& d, bool final);
  bool parse_tools_;
  bool reasoning_started_ = false, content_started_ = false, in_call_ = false;
  std::string held_nl_;    // trailing newlines of the reasoning (dropped if </think> follows)
  std::string buf_;        // answer text not yet classified (a partial tag, an open tool call)
  std::string held_ws_;    // whitespace after a tool call (dropped unless more content follows)
  int n_calls_ = 0;
};

// "call_" + 24 random hex digits.
std::string new_call_id();

}  // namespace serve
