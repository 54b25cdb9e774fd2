// chat_template.cpp — loads a model's chat template(s) and special tokens the way transformers'
// from_pretrained does, and renders conversations with the Jinja2 interpreter (see chat_template.h).
#include "chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common.h"

namespace infer {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

// The whole file, bytes as they are.
std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) fail(INFER_ERR_IO, "cannot open " + p.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) fail(INFER_ERR_IO, "cannot read " + p.string());
  return ss.str();
}

ojson read_json(const fs::path& p) {
  try {
    return ojson::parse(read_text(p));
  } catch (const ojson::exception& e) {
    fail_format(p.string() + ": not valid JSON: " + e.what());
  }
}

// A special token's text: "…" or an AddedToken object {"content": "…", …}; "" when unset.
std::string token_text(const ojson& v, const std::string& where) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object()) {
    const auto it = v.find("content");
    if (it != v.end() && it->is_string()) return it->get<std::string>();
  }
  fail_format(where + ": expected a string or an AddedToken object with \"content\"");
}

// transformers' special_tokens_map: the attributes that are set, as strings, in this order.
const char* const kSpecialAttrs[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                     "pad_token", "cls_token", "mask_token"};

jinja::ValueDict special_tokens_from(const ojson& cfg, const std::string& where) {
  jinja::ValueDict d;
  if (!cfg.is_object()) return d;
  for (const char* attr : kSpecialAttrs) {
    const auto it = cfg.find(attr);
    if (it == cfg.end()) continue;
    const std::string t = token_text(*it, where + " " + attr);
    if (!t.empty()) d.set(jinja::Value(attr), jinja::Value(t));
  }
  if (const auto it = cfg.find("additional_special_tokens"); it != cfg.end() && !it->is_null()) {
    if (!it->is_array()) fail_format(where + " additional_special_tokens: expected a list");
    jinja::ValueList list;
    for (const auto& t : *it) list.emplace_back(token_text(t, where + " additional_special_tokens"));
    if (!list.empty()) d.set(jinja::Value("additional_special_tokens"), jinja::Value::list(std::move(list)));
  }
  if (const auto it = cfg.find("extra_special_tokens"); it != cfg.end() && it->is_object()) {
    for (auto e = it->begin(); e != it->end(); ++e) {
      const std::string t = token_text(e.value(), where + " extra_special_tokens." + e.key());
      if (!t.empty()) d.set(jinja::Value(e.key()), jinja::Value(t));
    }
  }
  return d;
}

jinja::Options options_for(const std::string& origin, const std::string& name, size_t n_named) {
  jinja::Options o;
  o.name = n_named > 1 ? origin + " (template '" + name + "')" : origin;
  return o;
}

}  // namespace

ChatTemplate::ChatTemplate(const std::string& source, const ojson& special_tokens, const std::string& origin)
    : ChatTemplate(std::map<std::string, std::string>{{"default", source}}, special_tokens, origin) {}

ChatTemplate::ChatTemplate(const std::map<std::string, std::string>& named_sources, const ojson& special_tokens,
                           const std::string& origin)
    : origin_(origin) {
  if (named_sources.empty()) fail(INFER_ERR_UNSUPPORTED, origin + ": no chat template");
  for (const auto& [name, src] : named_sources)
    templates_.emplace(name, Named{src, jinja::Template(src, options_for(origin, name, named_sources.size()))});
  if (!special_tokens.is_null() && !special_tokens.is_object())
    fail(INFER_ERR_INVALID_ARG, "special tokens must be a JSON object");
  if (special_tokens.is_object()) {
    // Accept both plain variables and tokenizer_config-style AddedToken objects.
    for (auto it = special_tokens.begin(); it != special_tokens.end(); ++it) {
      if (it->is_object() && it->contains("content")) special_.set(jinja::Value(it.key()), jinja::Value(token_text(*it, it.key())));
      else special_.set(jinja::Value(it.key()), jinja::from_json(*it));
    }
  }
}

// from_pretrained's order: chat_template.jinja and additional_chat_templates/*.jinja first, then
// the config's chat_template; special tokens from tokenizer_config.json (+ legacy special_tokens_map.json).
ChatTemplate ChatTemplate::from_dir(const std::string& dir) {
  const fs::path d(dir);
  const fs::path cfg_path = d / "tokenizer_config.json";
  const fs::path jinja_path = d / "chat_template.jinja";
  const bool has_cfg = fs::exists(cfg_path), has_jinja = fs::exists(jinja_path);
  if (!has_cfg && !has_jinja)
    fail(INFER_ERR_IO, "no chat template in " + dir + ": neither tokenizer_config.json nor chat_template.jinja is there");
  ojson cfg = has_cfg ? read_json(cfg_path) : ojson::object();
  if (!cfg.is_object()) fail_format(cfg_path.string() + ": expected a JSON object");

  // Legacy special_tokens_map.json is applied only when the config has no added_tokens_decoder.
  if (!cfg.contains("added_tokens_decoder") && fs::exists(d / "special_tokens_map.json")) {
    const ojson m = read_json(d / "special_tokens_map.json");
    if (m.is_object())
      for (auto it = m.begin(); it != m.end(); ++it) cfg[it.key()] = it.value();
  }
  const jinja::ValueDict special = special_tokens_from(cfg, cfg_path.string());

  // Template files take priority over the config's chat_template (transformers 4.45+).
  std::map<std::string, std::string> named;
  std::string origin;
  if (has_jinja) {
    named["default"] = read_text(jinja_path);
    origin = jinja_path.string();
  }
  const fs::path extra_dir = d / "additional_chat_templates";
  if (fs::is_directory(extra_dir)) {
    for (const auto& e : fs::directory_iterator(extra_dir))
      if (e.path().extension() == ".jinja") named[e.path().stem().string()] = read_text(e.path());
    if (origin.empty()) origin = extra_dir.string();
  }
  if (named.empty()) {
    const auto it = cfg.find("chat_template");
    if (it == cfg.end() || it->is_null())
      fail(INFER_ERR_UNSUPPORTED, "no chat template in " + dir +
                                      ": tokenizer_config.json has no \"chat_template\" and there is no chat_template.jinja");
    origin = cfg_path.string() + " chat_template";
    if (it->is_string()) {
      named["default"] = it->get<std::string>();
    } else if (it->is_array()) {
      for (const auto& e : *it) {
        if (!e.is_object() || !e.contains("name") || !e.contains("template") || !e["name"].is_string() ||
            !e["template"].is_string())
          fail_format(cfg_path.string() + " chat_template: expected a list of {\"name\": …, \"template\": …}");
        named[e["name"].get<std::string>()] = e["template"].get<std::string>();
      }
    } else {
      fail_format(cfg_path.string() + " chat_template: expected a string or a list of named templates");
    }
  }
  ChatTemplate ct(named, nullptr, origin);
  ct.special_ = special;
  return ct;
}

const std::string& ChatTemplate::source(const std::string& name) const {
  const auto it = templates_.find(name);
  if (it == templates_.end()) fail(INFER_ERR_INVALID_ARG, origin_ + ": no template named '" + name + "'");
  return it->second.source;
}

// apply_chat_template → render_jinja_template: pick the template, then render with
// messages/tools/documents/add_generation_prompt plus {**special_tokens, **kwargs}.
std::string ChatTemplate::render(const ojson& messages, const ojson& tools, bool add_generation_prompt,
                                 const ojson& kwargs, const jinja::RenderOptions& ro) const {
  if (!messages.is_array()) fail(INFER_ERR_INVALID_ARG, "chat messages must be a JSON array of message objects");
  if (!tools.is_null() && !tools.is_array()) fail(INFER_ERR_INVALID_ARG, "chat tools must be a JSON array or null");
  if (!kwargs.is_null() && !kwargs.is_object()) fail(INFER_ERR_INVALID_ARG, "chat template kwargs must be a JSON object");

  // transformers' get_chat_template: "tool_use" when tools are given and it exists, else "default".
  const Named* t = nullptr;
  if (templates_.size() == 1 && templates_.count("default")) {
    t = &templates_.begin()->second;
  } else if (!tools.is_null() && templates_.count("tool_use")) {
    t = &templates_.at("tool_use");
  } else if (templates_.count("default")) {
    t = &templates_.at("default");
  } else {
    std::string names;
    for (const auto& [n, _] : templates_) names += (names.empty() ? "" : ", ") + n;
    fail(INFER_ERR_INVALID_ARG, origin_ + ": several chat templates (" + names + ") and none named \"default\"");
  }

  // render(messages=…, tools=…, documents=…, add_generation_prompt=…, **{**special_tokens, **kwargs})
  jinja::ValueDict vars;
  vars.entries.reserve(special_.size() + 6);
  vars.set(jinja::Value("messages"), jinja::from_json(messages));
  vars.set(jinja::Value("tools"), jinja::from_json(tools));
  vars.set(jinja::Value("documents"), jinja::Value(nullptr));
  vars.set(jinja::Value("add_generation_prompt"), jinja::Value(add_generation_prompt));
  for (const auto& e : special_.entries) vars.set(e.first, e.second);
  if (kwargs.is_object()) {
    for (auto it = kwargs.begin(); it != kwargs.end(); ++it) {
      const std::string& k = it.key();
      if (k == "messages" || k == "tools" || k == "add_generation_prompt")
        fail(INFER_ERR_INVALID_ARG, "chat template kwargs must not set '" + k + "' (it is a render argument)");
      vars.set(jinja::Value(k), jinja::from_json(it.value()));
    }
  }
  return t->tmpl.render(vars, ro);
}

}  // namespace infer
