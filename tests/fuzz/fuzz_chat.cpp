// fuzz_chat.cpp — arbitrary JSON as the messages of a chat request, rendered with the bundled official chat
// templates (Qwen3, DeepSeek-V3, Llama 3.1, Qwen2.5, R1-Distill): the input a chat server takes from users.
// The input is "messages JSON" or "messages JSON\n\x1etools JSON"; its first byte picks the template.
#include <vector>

#include "chat_template.h"
#include "fuzz_common.h"

namespace {
std::vector<infer::ChatTemplate> load_templates() {
  const std::string models = INFER_FUZZ_MODELS_DIR;
  std::vector<infer::ChatTemplate> v;
  v.push_back(infer::ChatTemplate::from_dir(models + "/tokenizers/qwen3"));
  v.push_back(infer::ChatTemplate::from_dir(models + "/tokenizers/deepseek_v3"));
  const nlohmann::ordered_json special = {{"bos_token", "<s>"}, {"eos_token", "</s>"}};
  for (const char* f : {"llama-3.1-instruct.jinja", "qwen2.5-instruct.jinja", "deepseek-r1-distill-llama.jinja"})
    v.emplace_back(infer::fuzz::read_or_die(models + "/templates/" + f), special, f);
  return v;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<infer::ChatTemplate> templates = load_templates();
  if (size < 1) return 0;
  const infer::ChatTemplate& t = templates[data[0] % templates.size()];
  const std::string text = infer::fuzz::as_string(data + 1, size - 1);
  const size_t sep = text.find("\n\x1e");
  nlohmann::ordered_json messages, tools;
  try {
    messages = nlohmann::ordered_json::parse(text.substr(0, sep));
    if (sep != std::string::npos) tools = nlohmann::ordered_json::parse(text.substr(sep + 2));
  } catch (const nlohmann::json::exception&) {
    return 0;  // not JSON: the API rejects it before any template runs
  }
  std::tm now{};
  now.tm_year = 125;
  infer::jinja::RenderOptions ro;
  ro.now = now;
  infer::fuzz::expect_handled([&] { (void)t.render(messages, tools, true, nullptr, ro); });
  infer::fuzz::expect_handled([&] { (void)t.render(messages, nullptr, false, {{"enable_thinking", false}}, ro); });
  return 0;
}
