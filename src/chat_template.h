// chat_template.h — a model's chat template: messages (+ tools) → the prompt text, byte-identical to
// transformers' tokenizer.apply_chat_template(messages, tools=…, add_generation_prompt=…,
// tokenize=False, **kwargs).
//
// What transformers does and this mirrors: the template comes from chat_template.jinja in the model
// directory if present, else tokenizer_config.json's "chat_template" (a string, or a list of named
// templates: "tool_use" when tools are given and it exists, else "default"); extra named templates
// may sit in additional_chat_templates/NAME.jinja. The template sees `messages`, `tools` (None when
// not given), `documents` (None), `add_generation_prompt`, the special tokens that are set
// (bos_token, eos_token, unk_token, sep_token, pad_token, cls_token, mask_token,
// additional_special_tokens, as strings) and the caller's kwargs (e.g. enable_thinking), kwargs
// overriding special tokens. Rendering uses the Jinja2 interpreter in jinja.h.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "jinja.h"

namespace infer {

class ChatTemplate {
 public:
  // One template. special_tokens: a JSON object of template variables such as {"bos_token": "<s>"}
  // (values may also be AddedToken objects {"content": …}). origin names it in error messages.
  ChatTemplate(const std::string& source, const nlohmann::ordered_json& special_tokens,
               const std::string& origin = "chat template");
  // Named templates, as in the list form of tokenizer_config.json's chat_template.
  ChatTemplate(const std::map<std::string, std::string>& named_sources, const nlohmann::ordered_json& special_tokens,
               const std::string& origin = "chat template");

  // Reads a model or tokenizer directory (see the header comment). Throws infer::Error:
  // INFER_ERR_IO if neither tokenizer_config.json nor chat_template.jinja can be read,
  // INFER_ERR_FORMAT for malformed JSON, INFER_ERR_UNSUPPORTED if there is no chat template.
  static ChatTemplate from_dir(const std::string& dir);

  // Renders. messages: a JSON array of message objects; tools: an array or null; kwargs: an object
  // or null ("documents" in kwargs is passed as the documents argument). Throws infer::Error
  // (INFER_ERR_INVALID_ARG for bad arguments and for errors the template raises).
  std::string render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                     bool add_generation_prompt, const nlohmann::ordered_json& kwargs = nullptr,
                     const jinja::RenderOptions& ro = {}) const;

  // The special-token variables the template sees (bos_token, eos_token, …), in transformers' order.
  const jinja::ValueDict& special_tokens() const { return special_; }
  // The source of a named template ("default" for a single one); throws if there is no such name.
  const std::string& source(const std::string& name = "default") const;

 private:
  struct Named {
    std::string source;
    jinja::Template tmpl;
  };
  std::map<std::string, Named> templates_;
  jinja::ValueDict special_;
  std::string origin_;
};

}  // namespace infer
