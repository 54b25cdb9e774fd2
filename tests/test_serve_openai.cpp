// test_serve_openai.cpp — the OpenAI protocol pieces of `infer serve` (tools/cli/serve_openai.cpp): request checks
// naming the bad field, and the split of generated text into reasoning_content, content and Qwen3 tool calls,
// fed piece by piece as the engine streams it (tags split across pieces included).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "infer/infer.h"
#include "serve_openai.h"

using serve::ApiError;
using serve::json;
using serve::OutputParser;

namespace {

std::string param_of(const std::string& body, bool chat = true) {
  try {
    chat ? serve::parse_chat_request(body) : serve::parse_completion_request(body);
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    return e.param.empty() ? std::string("<") + e.what() + ">" : e.param;
  }
  return "";
}

TEST(ServeRequest, ChecksFieldsAndNamesTheBadOne) {
  EXPECT_EQ(param_of("{not json").rfind("<the request body is not valid JSON", 0), 0u);
  EXPECT_EQ(param_of("[1, 2]"), "<the request body must be a JSON object>");
  EXPECT_EQ(param_of("{}"), "messages");
  EXPECT_EQ(param_of(R"({"messages": []})"), "messages");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "robot", "content": "x"}]})"), "messages[0].role");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user"}]})"), "messages[0].content");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"})"), "temperature");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "temperature": 7})"), "temperature");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0})"), "max_tokens");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "stop": [1]})"), "stop");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "n": 2})"), "n");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 3})"), "top_logprobs");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "tools": {}})"), "tools");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "stream": "yes"})"), "stream");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})"), "messages[0].content");
  EXPECT_EQ(param_of(R"({"prompt": 5})", false), "prompt");
  EXPECT_EQ(param_of(R"({"prompt": "x", "logprobs": 21})", false), "logprobs");
}

TEST(ServeRequest, ReadsTheFieldsItUses) {
  const auto r = serve::parse_chat_request(R"({
    "model": "m", "messages": [{"role": "developer", "content": "be brief"},
                               {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
    "stream": true, "stream_options": {"include_usage": true}, "max_completion_tokens": 7, "max_tokens": 9,
    "temperature": 0, "top_p": 0.5, "top_k": 3, "min_p": 0.1, "presence_penalty": 1, "frequency_penalty": -1,
    "seed": 42, "stop": "END", "logprobs": true, "top_logprobs": 2, "thinking_budget": 16,
    "chat_template_kwargs": {"enable_thinking": false},
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]})");
  EXPECT_EQ(r.messages[0]["role"], "system");
  EXPECT_EQ(r.messages[1]["content"], "ab");
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.max_tokens, 7);  // max_completion_tokens wins
  EXPECT_EQ(*r.temperature, 0.f);
  EXPECT_EQ(*r.top_k, 3);
  EXPECT_EQ(*r.seed, 42u);
  EXPECT_EQ(r.stop, std::vector<std::string>{"END"});
  EXPECT_TRUE(r.want_logprobs);
  EXPECT_EQ(r.logprobs, 2);
  EXPECT_EQ(r.thinking_budget, 16);
  EXPECT_EQ(r.template_kwargs["enable_thinking"], false);
  EXPECT_TRUE(r.parse_tool_calls);
  const auto n = serve::parse_chat_request(
      R"({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}],
          "tool_choice": "none"})");
  EXPECT_FALSE(n.parse_tool_calls);
}

struct Collected {
  std::string reasoning, content;
  std::vector<json> calls;
};

// Feeds (phase, text) pieces one at a time, then finish().
Collected run(bool tools, const std::vector<std::pair<int, std::string>>& pieces) {
  OutputParser p(tools);
  Collected c;
  auto take = [&](const OutputParser::Delta& d) {
    c.reasoning += d.reasoning;
    c.content += d.content;
    for (const auto& t : d.tool_calls) c.calls.push_back(t);
  };
  for (const auto& [ph, t] : pieces) take(p.push(ph, t));
  take(p.finish());
  return c;
}

constexpr int A = INFER_PHASE_ANSWER, R = INFER_PHASE_REASONING, T = INFER_PHASE_THINK_TAG;

TEST(OutputParser, SplitsReasoningFromContentAndTrimsTheTemplateNewlines) {
  const auto c = run(false, {{T, "<think>"}, {R, "\n"}, {R, "Let me"}, {R, " think.\n"}, {R, "\nDone"}, {R, "\n"},
                             {T, "</think>"}, {A, "\n\n"}, {A, "The answer"}, {A, " is 4."}});
  EXPECT_EQ(c.reasoning, "Let me think.\n\nDone");
  EXPECT_EQ(c.content, "The answer is 4.");
}

TEST(OutputParser, ThinkingBudgetCutTextStaysInTheReasoning) {
  // What TokenGenerator emits on a budget cut: the forced text is in the reasoning phase, then </think>.
  const auto c = run(false, {{R, "\n"}, {R, "hmm"}, {R, "\n\nConsidering the limited time by the user, I have to give "
                                                     "the solution based on the thinking directly now.\n"},
                             {T, "</think>"}, {A, "\n\n"}, {A, "42"}});
  EXPECT_EQ(c.reasoning, "hmm\n\nConsidering the limited time by the user, I have to give the solution based on the "
                         "thinking directly now.");
  EXPECT_EQ(c.content, "42");
}

TEST(OutputParser, ParsesQwen3ToolCallsSplitAcrossPieces) {
  const auto c = run(true, {{A, "Let me check."}, {A, "\n<tool"}, {A, "_call>\n{\"name\": \"get_weather\", "},
                            {A, "\"arguments\": {\"city\": \"Paris\"}}\n</tool_"}, {A, "call>"}, {A, "\n<tool_call>"},
                            {A, "{\"name\": \"now\", \"arguments\": {}}"}, {A, "</tool_call>"}, {A, "\n"}});
  EXPECT_EQ(c.content, "Let me check.\n");
  ASSERT_EQ(c.calls.size(), 2u);
  EXPECT_EQ(c.calls[0]["type"], "function");
  EXPECT_EQ(c.calls[0]["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(c.calls[0]["function"]["arguments"].get<std::string>()), json::parse(R"({"city": "Paris"})"));
  EXPECT_EQ(c.calls[0]["id"].get<std::string>().rfind("call_", 0), 0u);
  EXPECT_NE(c.calls[0]["id"], c.calls[1]["id"]);
  EXPECT_EQ(c.calls[1]["function"]["name"], "now");
  EXPECT_EQ(c.calls[1]["function"]["arguments"], "{}");
}

TEST(OutputParser, InvalidOrUnclosedToolCallsStayContent) {
  const auto bad = run(true, {{A, "<tool_call>{not json}</tool_call>"}});
  EXPECT_TRUE(bad.calls.empty());
  EXPECT_EQ(bad.content, "<tool_call>{not json}</tool_call>");
  const auto open = run(true, {{A, "x <tool_call>{\"name\": \"f\""}});  // cut by max_tokens
  EXPECT_TRUE(open.calls.empty());
  EXPECT_EQ(open.content, "x <tool_call>{\"name\": \"f\"");
  const auto partial = run(true, {{A, "a <tool_c"}});  // a partial tag at the end is released at the end
  EXPECT_EQ(partial.content, "a <tool_c");
  const auto off = run(false, {{A, "<tool_call>{\"name\": \"f\"}</tool_call>"}});  // no tools in the request
  EXPECT_TRUE(off.calls.empty());
  EXPECT_EQ(off.content, "<tool_call>{\"name\": \"f\"}</tool_call>");
}

TEST(ServeRequest, ErrorObjectHasOpenAIShape) {
  const json b = ApiError(400, "bad", "messages", "x").body();
  EXPECT_EQ(b["error"]["message"], "bad");
  EXPECT_EQ(b["error"]["type"], "invalid_request_error");
  EXPECT_EQ(b["error"]["param"], "messages");
  EXPECT_EQ(b["error"]["code"], "x");
}

}  // namespace
