// fuzz_jinja.cpp — arbitrary template source through the Jinja interpreter (parse, then render with a small
// conversation, tools and the special tokens a chat template sees). Errors are infer::Error naming the line.
#include "chat_template.h"
#include "fuzz_common.h"

namespace {
const nlohmann::ordered_json& messages() {
  static const auto m = nlohmann::ordered_json::parse(R"([
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi <b>there</b> 東京"},
    {"role": "assistant", "content": "<think>\nhm\n</think>\n\nHello.", "reasoning_content": "hm",
     "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"x": 1, "y": [true, null, 2.5]}}}]},
    {"role": "tool", "content": "{\"ok\": 1}"},
    {"role": "user", "content": [{"type": "text", "text": "and?"}]}])");
  return m;
}
const nlohmann::ordered_json& tools() {
  static const auto t = nlohmann::ordered_json::parse(
      R"([{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object",
          "properties": {"x": {"type": "integer"}}, "required": ["x"]}}}])");
  return t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string source = infer::fuzz::as_string(data, size);
  static const nlohmann::ordered_json special = {{"bos_token", "<s>"}, {"eos_token", "</s>"}};
  infer::fuzz::expect_handled([&] {
    infer::ChatTemplate t(source, special, "fuzz template");
    std::tm now{};
    now.tm_year = 125;
    now.tm_mday = 1;
    infer::jinja::RenderOptions ro;
    ro.now = now;  // strftime_now: deterministic
    (void)t.render(messages(), tools(), true, {{"enable_thinking", false}}, ro);
    (void)t.render(messages(), nullptr, false, nullptr, ro);
  });
  return 0;
}
