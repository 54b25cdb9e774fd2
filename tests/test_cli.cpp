// test_cli.cpp — drives the `infer` binary as a user would: generation with --ids and --json, the bundled demo
// model with its real tokenizer, `infer dump`, and the errors users see for bad input.
#include <gtest/gtest.h>
#include <gmock/gmock.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli_test_util.h"
#include "safetensors.h"

using ::testing::HasSubstr;
using infer::testutil::CmdResult;
using infer::testutil::run_infer;
using infer::testutil::run_infer_stdout;
namespace fs = std::filesystem;

namespace {

CmdResult run(const std::string& args) { return run_infer(args); }
// stdout only (stderr dropped), for JSON output.
CmdResult run_stdout(const std::string& args) { return run_infer_stdout(args); }

std::string tiny(const std::string& name = "qwen3_tied_gqa2") { return std::string(INFER_TEST_DATA) + "/models/" + name; }
std::string demo() { return std::string(INFER_MODELS_DIR) + "/qwen3-tiny-random"; }

fs::path temp_dir(const std::string& tag) {
  fs::path d = fs::temp_directory_path() / ("infer_cli_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TEST(Cli, HelpExplainsUsage) {
  CmdResult r = run("--help");
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("--model"));
  EXPECT_THAT(r.out, HasSubstr("--temp"));
  EXPECT_THAT(r.out, HasSubstr("dump"));
}

TEST(Cli, GreedyIdsJson) {
  CmdResult r = run_stdout("-m " + tiny() + " --ids 5,6,7,8 -n 6 --temp 0 --json --logprobs 2");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["tokens"].size(), 6u);
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_EQ(j["timings"]["gen_tokens"], 6);
  EXPECT_EQ(j["timings"]["prompt_tokens"], 4);
  for (const char* k : {"load_ms", "prompt_ms", "prompt_tps", "gen_ms", "gen_tps"}) EXPECT_TRUE(j["timings"].contains(k)) << k;
  ASSERT_EQ(j["logprobs"].size(), 6u);
  // Greedy: the chosen token is the most likely one.
  for (const auto& lp : j["logprobs"]) EXPECT_EQ(lp["id"], lp["top"][0]["id"]);
  // Same run, same tokens (greedy is deterministic); threads do not change it.
  CmdResult r2 = run_stdout("-m " + tiny() + " --ids 5,6,7,8 -n 6 --temp 0 --json -t 1");
  EXPECT_EQ(nlohmann::json::parse(r2.out)["tokens"], j["tokens"]);
}

// DeepSeek with an MTP head: speculative decoding is on by default and reported (acceptance rate in the timing
// line and the JSON); --no-mtp turns it off and gives the same greedy tokens. The KV bytes per token are the MLA
// latent + rope key of every main layer (the MTP layer's own cache is listed apart).
TEST(Cli, MtpOnByDefaultReportsAcceptanceAndNoMtpDisables) {
  const std::string m = tiny("dsv3_mtp");
  const auto cfg = nlohmann::json::parse(std::ifstream(m + "/config.json"));
  const int64_t per_layer = (cfg["kv_lora_rank"].get<int64_t>() + cfg["qk_rope_head_dim"].get<int64_t>()) * 4;  // fp32
  const std::string args = "-m " + m + " --ids 5,6,7,8,9 -n 40 --temp 0 --device cpu";
  CmdResult on = run_stdout(args + " --json");
  ASSERT_EQ(on.code, 0) << on.out;
  auto j = nlohmann::json::parse(on.out);
  EXPECT_EQ(j["kv_bytes_per_token"], per_layer * cfg["num_hidden_layers"].get<int64_t>());
  EXPECT_EQ(j["mtp_kv_bytes_per_token"], per_layer * cfg["num_nextn_predict_layers"].get<int64_t>());
  ASSERT_TRUE(j.contains("mtp")) << on.out;
  const int drafted = j["mtp"]["draft_tokens"], accepted = j["mtp"]["accepted"];
  EXPECT_GT(drafted, 0);
  EXPECT_GT(accepted, 0);
  EXPECT_DOUBLE_EQ(j["mtp"]["acceptance_rate"].get<double>(), double(accepted) / drafted);

  CmdResult off = run_stdout(args + " --json --no-mtp");
  ASSERT_EQ(off.code, 0) << off.out;
  auto k = nlohmann::json::parse(off.out);
  EXPECT_EQ(k["tokens"], j["tokens"]);
  EXPECT_FALSE(k.contains("mtp"));
  EXPECT_FALSE(k.contains("mtp_kv_bytes_per_token"));

  // The human-readable lines on stderr.
  CmdResult text = run(args);
  ASSERT_EQ(text.code, 0) << text.out;
  EXPECT_THAT(text.out, HasSubstr("KV cache " + std::to_string(per_layer * cfg["num_hidden_layers"].get<int64_t>()) +
                                  " bytes/token"));
  EXPECT_THAT(text.out, HasSubstr("+ MTP draft head " + std::to_string(per_layer) + " bytes/token"));
  EXPECT_THAT(text.out, HasSubstr("MTP drafts: " + std::to_string(accepted) + " of " + std::to_string(drafted) +
                                  " accepted"));
  CmdResult text_off = run(args + " --no-mtp");
  EXPECT_THAT(text_off.out, ::testing::Not(HasSubstr("MTP drafts")));
  EXPECT_THAT(text_off.out, ::testing::Not(HasSubstr("MTP draft head")));
}

TEST(Cli, SeededSamplingIsReproducible) {
  const std::string a = "-m " + tiny() + " --ids 5,6,7 -n 12 --temp 1.0 --top-k 40 --top-p 0.9 --min-p 0.01 --json";
  CmdResult r1 = run_stdout(a + " --seed 42"), r2 = run_stdout(a + " --seed 42"), r3 = run_stdout(a + " --seed 7");
  ASSERT_EQ(r1.code, 0) << r1.out;
  EXPECT_EQ(nlohmann::json::parse(r1.out)["tokens"], nlohmann::json::parse(r2.out)["tokens"]);
  EXPECT_NE(nlohmann::json::parse(r1.out)["tokens"], nlohmann::json::parse(r3.out)["tokens"]);
}

TEST(Cli, StopsOnEosFromGenerationConfig) {
  // Generate greedily, then make the 3rd generated token an eos id via a copied model dir.
  CmdResult r = run_stdout("-m " + tiny() + " --ids 5,6,7,8 -n 8 --temp 0 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  auto toks = nlohmann::json::parse(r.out)["tokens"];
  fs::path d = temp_dir("eos");
  fs::copy(tiny(), d, fs::copy_options::recursive);
  nlohmann::json gc = nlohmann::json::parse(std::ifstream(d / "generation_config.json"));
  gc["eos_token_id"] = nlohmann::json::array({toks[2]});
  std::ofstream(d / "generation_config.json") << gc.dump();
  CmdResult s = run_stdout("-m " + d.string() + " --ids 5,6,7,8 -n 8 --temp 0 --json");
  ASSERT_EQ(s.code, 0) << s.out;
  auto j = nlohmann::json::parse(s.out);
  EXPECT_EQ(j["finish_reason"], "stop");
  EXPECT_EQ(j["tokens"].size(), 3u);
  fs::remove_all(d);
}

TEST(Cli, DemoModelWithRealTokenizer) {
  CmdResult r = run("-m " + demo() + " -p \"Hello, world\" -n 8 --seed 1 -t 2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("RANDOM"));
  EXPECT_THAT(r.out, HasSubstr("tok/s"));
  CmdResult j = run_stdout("-m " + demo() + " -p \"Hello\" -n 5 --seed 1 --json --raw");
  ASSERT_EQ(j.code, 0) << j.out;
  auto o = nlohmann::json::parse(j.out);
  EXPECT_TRUE(o.contains("text"));
  EXPECT_EQ(o["timings"]["prompt_tokens"], 1);  // "Hello" is one Qwen3 token
}

TEST(Cli, StopStringIsNotPrinted) {
  // Find what the demo model says greedily, then stop on a piece of it.
  CmdResult r = run_stdout("-m " + demo() + " -p \"abc\" -n 12 --temp 0 --json --raw");
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string text = nlohmann::json::parse(r.out)["text"];
  ASSERT_GE(text.size(), 4u);
  const std::string stop = text.substr(2, 2);
  CmdResult s = run_stdout("-m " + demo() + " -p \"abc\" -n 12 --temp 0 --json --raw --stop '" + stop + "'");
  ASSERT_EQ(s.code, 0) << s.out;
  auto j = nlohmann::json::parse(s.out);
  EXPECT_EQ(j["finish_reason"], "stop");
  EXPECT_EQ(j["text"], text.substr(0, text.find(stop)));
}

TEST(Cli, PromptFromFileAndStdin) {
  fs::path d = temp_dir("file");
  std::ofstream(d / "p.txt") << "Hello";
  CmdResult a = run_stdout("-m " + demo() + " -f " + (d / "p.txt").string() + " -n 3 --temp 0 --json");
  CmdResult b = run_stdout("-m " + demo() + " -f - -n 3 --temp 0 --json < " + (d / "p.txt").string());
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_EQ(nlohmann::json::parse(a.out)["tokens"], nlohmann::json::parse(b.out)["tokens"]);
  fs::remove_all(d);
}

TEST(Cli, DumpWritesLogitsAndLayers) {
  fs::path d = temp_dir("dump");
  const std::string out = (d / "dump.safetensors").string();
  CmdResult r = run("dump -m " + tiny() + " --ids 5,6,7 -o " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  auto st = infer::SafeTensors::open_file(out);
  EXPECT_EQ(st->get("logits").shape, (std::vector<int64_t>{3, 512}));
  EXPECT_NE(st->find("layers.0.attn_norm"), nullptr);
  EXPECT_NE(st->find("layers.1.out"), nullptr);
  fs::remove_all(d);
}

TEST(Cli, TokenizeTokenizerOnlyDirectory) {
  const std::string dir = std::string(INFER_MODELS_DIR) + "/tokenizers/qwen3";
  CmdResult r = run_stdout("tokenize -m " + dir + " --json 'Hello world'");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out), nlohmann::json::parse("[9707, 1879]"));  // HF tokenizers' ids
  CmdResult p = run_stdout("tokenize -m " + dir + " 'Hello world'");
  EXPECT_EQ(p.out, "9707\t\"Hello\"\n1879\t\" world\"\n");
}

TEST(Cli, TokenizeJsonlAndFile) {
  fs::path d = temp_dir("tok");
  std::ofstream(d / "in.jsonl") << "\"Hello world\"\n\"Hello\"\n";
  std::ofstream(d / "raw.txt", std::ios::binary) << "Hello world";
  const std::string dir = std::string(INFER_MODELS_DIR) + "/tokenizers/qwen3";
  CmdResult j = run_stdout("tokenize -m " + dir + " --jsonl < " + (d / "in.jsonl").string());
  ASSERT_EQ(j.code, 0) << j.out;
  EXPECT_EQ(j.out, "[9707,1879]\n[9707]\n");
  CmdResult f = run_stdout("tokenize -m " + dir + " --json -f " + (d / "raw.txt").string());
  EXPECT_EQ(f.out, "[9707,1879]\n");
  std::ofstream(d / "bad.jsonl") << "not json\n";
  CmdResult b = run("tokenize -m " + dir + " --jsonl < " + (d / "bad.jsonl").string());
  EXPECT_EQ(b.code, 1);
  EXPECT_THAT(b.out, HasSubstr("line 1"));
  fs::remove_all(d);
}

TEST(Cli, ThinkingBudgetJsonSplitsReasoningFromAnswer) {
  const std::string prompt = "$'<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\n<think>\\n'";
  CmdResult r = run_stdout("-m " + demo() + " -p " + prompt + " --raw --thinking-budget 4 -n 40 --temp 0 --ignore-eos --json");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["thinking_cut"], true);
  const std::string reasoning = j["reasoning"];
  const std::string cut = "\n\nConsidering the limited time by the user, I have to give the solution based on the thinking directly now.\n";
  ASSERT_GE(reasoning.size(), cut.size());
  EXPECT_EQ(reasoning.substr(reasoning.size() - cut.size()), cut);
  // The answer never contains the reasoning or the tags; it starts with the "\n\n" after </think>.
  const std::string text = j["text"];
  EXPECT_EQ(text.find("</think>"), std::string::npos);
  EXPECT_EQ(text.find("Considering the limited time"), std::string::npos);
  EXPECT_EQ(text.substr(0, 2), "\n\n");
  // Streaming output (not a TTY: no colour codes) carries the same bytes, tags included.
  CmdResult s = run_stdout("-m " + demo() + " -p " + prompt + " --raw --thinking-budget 4 -n 40 --temp 0 --ignore-eos -q");
  EXPECT_NE(s.out.find(cut + "</think>\n\n"), std::string::npos);
  CmdResult h = run_stdout("-m " + demo() + " -p " + prompt + " --raw --thinking-budget 4 -n 40 --temp 0 --ignore-eos -q --hide-thinking");
  EXPECT_EQ(h.out, text + "\n");
}

TEST(Cli, ChatTemplateAppliedByDefault) {
  // -p wraps the prompt in the model's chat template (Qwen3: system + user turn + generation prompt).
  fs::path d = temp_dir("tmpl");
  std::ofstream(d / "m.json") << R"([{"role":"system","content":"Be brief."},{"role":"user","content":"Hello"}])";
  CmdResult rendered = run_stdout("render -m " + demo() + " --messages " + (d / "m.json").string() + " --no-think");
  ASSERT_EQ(rendered.code, 0) << rendered.out;
  CmdResult r = run_stdout("-m " + demo() + " -p Hello --system 'Be brief.' --no-think -n 1 --temp 0 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  // The prompt token count is that of the rendered template.
  std::ofstream(d / "p.txt", std::ios::binary) << rendered.out;
  CmdResult t = run_stdout("tokenize -m " + demo() + " --json -f " + (d / "p.txt").string());
  EXPECT_EQ(nlohmann::json::parse(r.out)["timings"]["prompt_tokens"], nlohmann::json::parse(t.out).size());
  CmdResult raw = run_stdout("-m " + demo() + " -p Hello --raw -n 1 --temp 0 --json");
  EXPECT_EQ(nlohmann::json::parse(raw.out)["timings"]["prompt_tokens"], 1);
  fs::remove_all(d);
}

TEST(Cli, BenchJsonHasLlamaBenchFields) {
  CmdResult r = run_stdout("bench -m " + tiny() + " -p 8,16 -n 4 -r 2 -t 1,2 -o json");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 6u);  // (pp8, pp16, tg4) × 2 thread counts
  for (const auto& rec : j) {
    for (const char* k : {"model_type", "n_threads", "n_prompt", "n_gen", "avg_ts", "stddev_ts", "samples_ts",
                          "avg_ns", "backend", "dtype", "peak_rss_mib", "build_commit"})
      EXPECT_TRUE(rec.contains(k)) << k;
    EXPECT_EQ(rec["samples_ts"].size(), 2u);
    EXPECT_GT(rec["avg_ts"].get<double>(), 0.0);
  }
  EXPECT_EQ(j[0]["n_prompt"], 8);
  EXPECT_EQ(j[2]["n_gen"], 4);
  EXPECT_EQ(j[3]["n_threads"], 2);
  // --mem-bw: the measured bandwidth and the decode roofline (bandwidth / weight bytes read per token) on tg records.
  CmdResult bw = run_stdout("bench -m " + tiny() + " -p 0 -n 2 -r 1 -t 1 --mem-bw -o json");
  ASSERT_EQ(bw.code, 0) << bw.out;
  auto jb = nlohmann::json::parse(bw.out);
  ASSERT_EQ(jb.size(), 1u);
  EXPECT_GT(jb[0]["mem_read_gbps"].get<double>(), 0.1);
  EXPECT_GT(jb[0]["weight_bytes_per_token"].get<int64_t>(), 0);
  EXPECT_LE(jb[0]["weight_bytes_per_token"].get<int64_t>(), jb[0]["model_size"].get<int64_t>());
  EXPECT_NEAR(jb[0]["roofline_ts"].get<double>(),
              jb[0]["mem_read_gbps"].get<double>() * 1e9 / jb[0]["weight_bytes_per_token"].get<double>(), 1e-6);
  // One probe before each repetition and one after the last; their 512 MiB buffers are not the tests' peak RSS.
  EXPECT_EQ(jb[0]["mem_read_gbps_samples"].size(), 2u);
  EXPECT_LT(jb[0]["peak_rss_mib"].get<double>(), 400.0) << "the bandwidth probes' buffers were counted";
  CmdResult bad = run("bench -m " + tiny() + " -p x");
  EXPECT_EQ(bad.code, 1);
  EXPECT_THAT(bad.out, HasSubstr("'x'"));
}

TEST(CliErrors, MissingModelDirectory) {
  CmdResult r = run("-m /nonexistent/model --ids 1,2");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("/nonexistent/model"));
}

TEST(CliErrors, UnknownModelType) {
  fs::path d = temp_dir("arch");
  fs::copy(tiny(), d, fs::copy_options::recursive);
  nlohmann::json c = nlohmann::json::parse(std::ifstream(d / "config.json"));
  c["model_type"] = "mamba9";
  std::ofstream(d / "config.json") << c.dump();
  CmdResult r = run("-m " + d.string() + " --ids 1,2");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("mamba9"));
  EXPECT_THAT(r.out, HasSubstr("qwen3"));  // lists what is supported
  fs::remove_all(d);
}

TEST(CliErrors, TokenIdOutsideVocabulary) {
  CmdResult r = run("-m " + tiny() + " --ids 1,99999 -n 2");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("99999"));
  EXPECT_THAT(r.out, HasSubstr("vocabulary"));
}

TEST(CliErrors, PromptLongerThanContext) {
  CmdResult r = run("-m " + tiny() + " --ids 1,2,3,4,5,6,7,8 -c 4 -n 2");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("context"));
}

TEST(CliErrors, TextPromptWithoutTokenizer) {
  CmdResult r = run("-m " + tiny() + " -p hello");
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("tokenizer.json"));
}

TEST(CliErrors, BadIds) {
  CmdResult r = run("-m " + tiny() + " --ids 1,x,3");
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("'x'"));
}

TEST(CliErrors, ContextFullEndsWithLength) {
  CmdResult r = run_stdout("-m " + tiny() + " --ids 1,2,3 -c 8 -n 100 --temp 0 --json --ignore-eos");
  ASSERT_EQ(r.code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_EQ(j["tokens"].size(), 6u);  // 3 prompt + 5 cached generated + the last sampled one
}

}  // namespace
