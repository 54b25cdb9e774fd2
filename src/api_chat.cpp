// api_chat.cpp — the chat-template part of the C API (infer_chat_render*, include/infer/infer.h):
// renders JSON messages with the chat template of a model or tokenizer directory (chat_template.h).
// Like every entry point in api.cpp, exceptions stop here and become a status + infer_last_error().
#include <cstring>
#include <string>

#include "api_internal.h"
#include "chat_template.h"
#include "common.h"

namespace {

nlohmann::ordered_json parse_arg(const char* json, const char* what, bool nullable) {
  if (!json) {
    if (nullable) return nullptr;
    infer::fail(INFER_ERR_INVALID_ARG, std::string(what) + " is NULL");
  }
  try {
    return nlohmann::ordered_json::parse(json);
  } catch (const nlohmann::ordered_json::exception& e) {
    infer::fail(INFER_ERR_INVALID_ARG, std::string(what) + " is not valid JSON: " + e.what());
  }
}

void render_to(const std::string& dir, const char* messages_json, const char* tools_json,
               const char* kwargs_json, bool add_generation_prompt, char* out, size_t cap, size_t* n_out) {
  if (!n_out) infer::fail(INFER_ERR_INVALID_ARG, "infer_chat_render: n_out is NULL");
  *n_out = 0;
  const auto messages = parse_arg(messages_json, "messages_json", false);
  const auto tools = parse_arg(tools_json, "tools_json", true);
  const auto kwargs = parse_arg(kwargs_json, "kwargs_json", true);
  const infer::ChatTemplate ct = infer::ChatTemplate::from_dir(dir);
  const std::string text = ct.render(messages, tools, add_generation_prompt, kwargs);
  *n_out = text.size();
  if (text.size() > cap)
    infer::fail(INFER_ERR_INVALID_ARG, "infer_chat_render: the prompt needs " + std::to_string(text.size()) +
                                           " bytes, the buffer has " + std::to_string(cap));
  if (!text.empty()) {
    if (!out) infer::fail(INFER_ERR_INVALID_ARG, "infer_chat_render: out is NULL");
    std::memcpy(out, text.data(), text.size());
  }
}

}  // namespace

extern "C" {

INFER_API infer_status infer_chat_render_dir(const char* dir, const char* messages_json, const char* tools_json,
                                             const char* kwargs_json, bool add_generation_prompt, char* out,
                                             size_t cap, size_t* n_out) {
  return infer_guarded_internal([&] {
    if (!dir) infer::fail(INFER_ERR_INVALID_ARG, "infer_chat_render_dir: dir is NULL");
    render_to(dir, messages_json, tools_json, kwargs_json, add_generation_prompt, out, cap, n_out);
  });
}

INFER_API infer_status infer_chat_render(const infer_model* model, const char* messages_json, const char* tools_json,
                                         const char* kwargs_json, bool add_generation_prompt, char* out, size_t cap,
                                         size_t* n_out) {
  return infer_guarded_internal([&] {
    if (!model) infer::fail(INFER_ERR_INVALID_ARG, "infer_chat_render: model is NULL");
    render_to(infer_model_dir_internal(model), messages_json, tools_json, kwargs_json, add_generation_prompt, out,
              cap, n_out);
  });
}

}  // extern "C"
