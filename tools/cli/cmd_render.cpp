// cmd_render.cpp — `infer render`: prints a conversation rendered with the model's chat template, exactly
// (no newline added), as transformers' apply_chat_template(…, tokenize=False) would. For checking
// prompts and feeding them to other tools.
//
//   infer render -m DIR --messages chat.json [--tools tools.json] [--think|--no-think] [--no-generation-prompt]
//
// --messages holds a JSON array of messages, or an object {"messages": […], "tools": …, "kwargs": {…},
// "add_generation_prompt": …} (a line of tests/data/chat/*.jsonl works); flags override its fields.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "commands.h"
#include "infer/infer.hpp"

namespace {

using ojson = nlohmann::ordered_json;

struct RenderArgs {
  std::string model;
  std::string messages_file;
  std::string tools_file;
  std::string kwargs;
  bool think = false, no_think = false, no_generation_prompt = false;
};

ojson read_json_file(const std::string& path, const char* what) {
  std::string text;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw infer::Exception(INFER_ERR_IO, std::string("cannot open ") + what + " file '" + path + "'");
    text.assign(std::istreambuf_iterator<char>(f), {});
  }
  try {
    return ojson::parse(text);
  } catch (const ojson::exception& e) {
    throw infer::Exception(INFER_ERR_INVALID_ARG, std::string(what) + " file '" + path + "' is not valid JSON: " + e.what());
  }
}

int run_render(const RenderArgs& a) {
  ojson in = read_json_file(a.messages_file, "--messages");
  ojson messages, tools = nullptr, kwargs = ojson::object();
  bool add_generation_prompt = true;
  if (in.is_array()) {
    messages = std::move(in);
  } else if (in.is_object() && in.contains("messages")) {
    messages = in["messages"];
    if (in.contains("tools")) tools = in["tools"];
    if (in.contains("kwargs") && in["kwargs"].is_object()) kwargs = in["kwargs"];
    if (in.contains("add_generation_prompt") && in["add_generation_prompt"].is_boolean())
      add_generation_prompt = in["add_generation_prompt"].get<bool>();
  } else {
    throw infer::Exception(INFER_ERR_INVALID_ARG,
                           "--messages must hold a JSON array of messages or an object with a \"messages\" array");
  }
  if (!a.tools_file.empty()) tools = read_json_file(a.tools_file, "--tools");
  if (!a.kwargs.empty()) {
    try {
      const ojson extra = ojson::parse(a.kwargs);
      if (!extra.is_object()) throw infer::Exception(INFER_ERR_INVALID_ARG, "--kwargs must be a JSON object");
      for (auto it = extra.begin(); it != extra.end(); ++it) kwargs[it.key()] = it.value();
    } catch (const ojson::exception& e) {
      throw infer::Exception(INFER_ERR_INVALID_ARG, std::string("--kwargs is not valid JSON: ") + e.what());
    }
  }
  if (a.think) kwargs["enable_thinking"] = true;
  if (a.no_think) kwargs["enable_thinking"] = false;
  if (a.no_generation_prompt) add_generation_prompt = false;

  const std::string text = infer::render_chat(a.model, messages.dump(), tools.is_null() ? "" : tools.dump(),
                                              kwargs.empty() ? "" : kwargs.dump(), add_generation_prompt);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return 0;
}

}  // namespace

CLI::App* add_render_command(CLI::App& app, std::function<int()>* run) {
  auto* cmd = app.add_subcommand("render", "Print a conversation rendered with the model's chat template (exact bytes)");
  auto a = std::make_shared<RenderArgs>();
  cmd->add_option("-m,--model", a->model, "Model directory, or one holding only tokenizer_config.json / chat_template.jinja")
      ->required();
  cmd->add_option("--messages", a->messages_file,
                  "JSON file ('-' for stdin): an array of messages, or {\"messages\": […], \"tools\": …, \"kwargs\": …}")
      ->required();
  cmd->add_option("--tools", a->tools_file, "JSON file with an array of tool (function) schemas");
  cmd->add_option("--kwargs", a->kwargs, "Extra template variables as a JSON object, e.g. '{\"enable_thinking\": false}'");
  auto* think = cmd->add_flag("--think", a->think, "Pass enable_thinking=true to the template");
  auto* no_think = cmd->add_flag("--no-think", a->no_think, "Pass enable_thinking=false to the template");
  think->excludes(no_think);
  cmd->add_flag("--no-generation-prompt", a->no_generation_prompt,
                "Do not append the assistant turn header (add_generation_prompt=false)");
  *run = [a] { return run_render(*a); };
  return cmd;
}
