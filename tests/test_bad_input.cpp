// test_bad_input.cpp — the bad-input suite (docs/hardening.md): runs the real `infer` binary, as a user would, on
// broken model directories made at test time from the fixtures (truncated or lying safetensors headers, a shard
// index naming a missing file, NaN/Inf weights, unsupported dtypes, missing tokenizer files), on bad prompts
// (longer than the context, ids outside the vocabulary, invalid UTF-8 on stdin) and on a KV cache larger than the
// machine's memory. Each case must end with exit code 1 (an error, not a signal), a specific message naming what is
// wrong, no sanitizer report (in the ASan build the binary is instrumented too), and no half-written output file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli_test_util.h"

using ::testing::HasSubstr;
using ::testing::Not;
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;
using infer::testutil::CmdResult;
using infer::testutil::run_infer;

namespace {

// Runs `infer ARGS` through the shell (so ARGS may redirect stdin), capturing stdout and stderr.
CmdResult run(const std::string& args) { return run_infer(args); }

// The common expectations of every bad-input case: a clean error exit with `message` in the output.
void expect_clean_error(const CmdResult& r, const std::string& message) {
  EXPECT_FALSE(r.signaled) << r.out;
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("error: ")) << r.out;
  EXPECT_THAT(r.out, HasSubstr(message));
  EXPECT_THAT(r.out, Not(HasSubstr("Sanitizer")));
  EXPECT_THAT(r.out, Not(HasSubstr("runtime error")));
}

std::string tiny_src() { return std::string(INFER_TEST_DATA) + "/models/qwen3_tied_gqa2"; }
std::string demo_src() { return std::string(INFER_MODELS_DIR) + "/qwen3-tiny-random"; }

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
void write_bytes(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

// A writable copy of a model directory (symlinked tokenizer files are copied as files), removed at the end.
struct ModelCopy {
  fs::path dir;
  ModelCopy(const std::string& src, const std::string& tag) {
    dir = fs::temp_directory_path() / ("infer_bad_" + tag + "_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    for (const auto& e : fs::directory_iterator(src)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("reference", 0) == 0 || name == "README.md") continue;
      fs::copy_file(fs::canonical(e.path()), dir / name);
    }
  }
  ~ModelCopy() { fs::remove_all(dir); }
  ModelCopy(const ModelCopy&) = delete;
  ModelCopy& operator=(const ModelCopy&) = delete;
  fs::path weights() const { return dir / "model.safetensors"; }
  std::string m() const { return "-m " + dir.string(); }
};

// The safetensors file split into its JSON header (key order kept) and data section.
struct Safetensors {
  ojson header;
  std::string data;
  explicit Safetensors(const fs::path& p) {
    const std::string bytes = read_bytes(p);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[size_t(i)]);
    header = ojson::parse(bytes.substr(8, n));
    data = bytes.substr(8 + n);
  }
  void save(const fs::path& p) const {
    std::string h = header.dump();
    h.append((8 - h.size() % 8) % 8, ' ');
    std::string len(8, '\0');
    for (int i = 0; i < 8; ++i) len[size_t(i)] = char(uint64_t(h.size()) >> (8 * i));
    write_bytes(p, len + h + data);
  }
  // Offset of tensor `name`'s bytes in the data section.
  size_t offset(const std::string& name) const { return header.at(name).at("data_offsets")[0].get<size_t>(); }
};

const char* kIds = " --ids 1,2,3 -n 2 --temp 0";

// ---- damaged weights

TEST(BadInput, TruncatedWeights) {
  ModelCopy m(tiny_src(), "trunc");
  const std::string bytes = read_bytes(m.weights());
  write_bytes(m.weights(), bytes.substr(0, bytes.size() / 2));
  expect_clean_error(run(m.m() + kIds), "lie outside the data section");
  write_bytes(m.weights(), bytes.substr(0, 40));  // cut inside the JSON header
  expect_clean_error(run(m.m() + kIds), "goes beyond the end of the file");
  write_bytes(m.weights(), bytes.substr(0, 5));
  expect_clean_error(run(m.m() + kIds), "shorter than the 8-byte safetensors header length");
  write_bytes(m.weights(), "");
  expect_clean_error(run(m.m() + kIds), "model.safetensors");
}

TEST(BadInput, HeaderLiesAboutOffsets) {
  ModelCopy m(tiny_src(), "offsets");
  const Safetensors orig(m.weights());
  {
    Safetensors st = orig;
    st.header["model.norm.weight"]["data_offsets"] = {st.data.size() - 16, st.data.size() + 112};
    st.save(m.weights());
    expect_clean_error(run(m.m() + kIds), "tensor model.norm.weight in");
    expect_clean_error(run(m.m() + kIds), "lie outside the data section");
  }
  {
    Safetensors st = orig;  // two tensors of the same size sharing their bytes
    st.header["model.layers.0.post_attention_layernorm.weight"]["data_offsets"] =
        st.header["model.layers.0.input_layernorm.weight"]["data_offsets"];
    st.save(m.weights());
    expect_clean_error(run(m.m() + kIds), "overlap in the data section");
  }
  {
    Safetensors st = orig;
    st.header["model.norm.weight"]["data_offsets"] = {64, 32};
    st.save(m.weights());
    expect_clean_error(run(m.m() + kIds), "has begin > end");
  }
  {
    Safetensors st = orig;
    st.header["model.norm.weight"]["data_offsets"] = "everywhere";
    st.save(m.weights());
    expect_clean_error(run(m.m() + kIds), "is not [begin, end] of non-negative integers");
  }
}

TEST(BadInput, HeaderLiesAboutDtypeOrShape) {
  ModelCopy m(tiny_src(), "dtype");
  const Safetensors orig(m.weights());
  {
    Safetensors st = orig;
    st.header["model.norm.weight"]["dtype"] = "F32";  // twice the bytes the offsets span
    st.save(m.weights());
    expect_clean_error(run(m.m() + kIds), "but dtype F32 × shape");
  }
  {
    Safetensors st = orig;
    st.header["model.norm.weight"]["shape"] = {1u << 20};
    st.save(m.weights());
    expect_clean_error(run(m.m() + kIds), "tensor model.norm.weight in");
  }
  {
    Safetensors st = orig;
    st.header["model.norm.weight"]["dtype"] = "Q4_K";
    st.save(m.weights());
    expect_clean_error(run(m.m() + kIds), "unknown dtype 'Q4_K'");
  }
}

TEST(BadInput, UnsupportedDtypes) {
  ModelCopy m(tiny_src(), "unsupported");
  const Safetensors orig(m.weights());
  {
    Safetensors st = orig;  // a dtype the format defines but this build does not read
    st.header["model.norm.weight"]["dtype"] = "U16";
    st.save(m.weights());
    expect_clean_error(run(m.m() + kIds), "dtype U16 is not supported");
  }
  {
    Safetensors st = orig;  // a readable dtype of the same size that is not a weight dtype
    st.header["model.norm.weight"]["dtype"] = "I16";
    st.save(m.weights());
    expect_clean_error(run(m.m() + kIds), "model.norm.weight");
    expect_clean_error(run(m.m() + kIds), "has dtype I16; supported for norm weights: BF16, F32");
  }
  {
    Safetensors st = orig;
    st.header["model.layers.0.mlp.down_proj.weight"]["dtype"] = "I16";
    st.save(m.weights());
    expect_clean_error(run(m.m() + kIds), "model.layers.0.mlp.down_proj.weight");
    expect_clean_error(run(m.m() + kIds), "supported for weights: BF16, F16, F32");
  }
}

TEST(BadInput, IndexNamesMissingShard) {
  ModelCopy m(tiny_src(), "index");
  const Safetensors st(m.weights());
  ojson wm = ojson::object();
  for (const auto& [name, _] : st.header.items())
    if (name != "__metadata__") wm[name] = "model.safetensors";
  wm["model.norm.weight"] = "model-00002-of-00002.safetensors";
  write_bytes(m.dir / "model.safetensors.index.json", ojson{{"metadata", {{"total_size", 1}}}, {"weight_map", wm}}.dump(2));
  const CmdResult r = run(m.m() + kIds);
  expect_clean_error(r, "shard model-00002-of-00002.safetensors named by model.safetensors.index.json");
  EXPECT_THAT(r.out, HasSubstr("does not exist"));

  wm["model.norm.weight"] = "../elsewhere.safetensors";
  write_bytes(m.dir / "model.safetensors.index.json", ojson{{"weight_map", wm}}.dump());
  expect_clean_error(run(m.m() + kIds), "which is not a file inside the model directory");
  write_bytes(m.dir / "model.safetensors.index.json", "{\"weight_map\": {");
  expect_clean_error(run(m.m() + kIds), "model.safetensors.index.json: malformed JSON");
}

// NaN or Inf in a weight gives non-finite logits; the error names the tensor instead of printing garbage.
TEST(BadInput, NonFiniteWeightsAreReported) {
  ModelCopy m(tiny_src(), "nan");
  const Safetensors orig(m.weights());
  for (const uint16_t bits : {uint16_t(0x7FC0), uint16_t(0xFF80)}) {  // bf16 NaN, -Inf
    Safetensors st = orig;
    ASSERT_EQ(st.header["model.layers.1.mlp.down_proj.weight"]["dtype"], "BF16");
    const size_t off = st.offset("model.layers.1.mlp.down_proj.weight") + 2 * 5;  // element 5 of row 0
    std::memcpy(&st.data[off], &bits, 2);
    st.save(m.weights());
    const CmdResult r = run(m.m() + kIds);
    expect_clean_error(r, "non-finite (NaN/Inf) logits at position");
    EXPECT_THAT(r.out, HasSubstr("the checkpoint holds non-finite weights: model.layers.1.mlp.down_proj.weight in"));
    EXPECT_THAT(r.out, HasSubstr("(1 of "));
  }
}

// ---- bad prompts

TEST(BadInput, PromptLongerThanContext) {
  std::string words;
  for (int i = 0; i < 40; ++i) words += "word" + std::to_string(i) + " ";
  expect_clean_error(run("-m " + demo_src() + " -p \"" + words + "\" -c 16 -n 4"), "but the context holds 16");
  expect_clean_error(run("-m " + tiny_src() + " --ids 1,2,3,4,5,6,7,8,9,10 -c 8 -n 2"), "the context holds 8");
}

TEST(BadInput, TokenIdsOutsideVocabulary) {
  const CmdResult r = run("-m " + tiny_src() + " --ids 1,2,99999999 -n 2");
  expect_clean_error(r, "token id 99999999 is outside the vocabulary");
  expect_clean_error(run("-m " + demo_src() + " --ids 151936 -n 2"), "outside the vocabulary [0, 151936)");
}

TEST(BadInput, InvalidUtf8OnStdin) {
  const fs::path f = fs::temp_directory_path() / ("infer_bad_utf8_" + std::to_string(::getpid()));
  write_bytes(f, "caf\xc3\xa9 ok \xff\xfe more");
  expect_clean_error(run("-m " + demo_src() + " -f - -n 2 < " + f.string()),
                     "the prompt (stdin) is not valid UTF-8: byte 0xFF at offset 9");
  write_bytes(f, "truncated \xe2\x82");
  expect_clean_error(run("-m " + demo_src() + " -f " + f.string() + " -n 2"), "is not valid UTF-8: byte 0xE2 at offset 10");
  write_bytes(f, "surrogate \xed\xa0\x80");
  expect_clean_error(run("-m " + demo_src() + " -f - -n 2 < " + f.string()), "byte 0xED at offset 10");
  fs::remove(f);
}

TEST(BadInput, ModelDirectoryWithoutTokenizer) {
  ModelCopy m(demo_src(), "notok");
  fs::remove(m.dir / "tokenizer.json");
  fs::remove(m.dir / "tokenizer_config.json");
  expect_clean_error(run(m.m() + " -p hello -n 2"), "has no tokenizer.json: pass token ids with --ids");
  expect_clean_error(run("tokenize " + m.m() + " hello"), "tokenizer.json");
  // With ids it still runs, ids in and out.
  const CmdResult ok = run(m.m() + " --ids 1,2,3 -n 2 --temp 0 -q");
  EXPECT_EQ(ok.code, 0) << ok.out;
}

TEST(BadInput, BrokenTokenizerOrConfigFiles) {
  ModelCopy m(demo_src(), "badtok");
  const std::string tok = read_bytes(m.dir / "tokenizer.json");
  write_bytes(m.dir / "tokenizer.json", tok.substr(0, tok.size() / 3));
  expect_clean_error(run(m.m() + " -p hello -n 2"), "tokenizer.json: invalid JSON");
  write_bytes(m.dir / "tokenizer.json", tok);
  const std::string cfg = read_bytes(m.dir / "config.json");
  write_bytes(m.dir / "config.json", cfg.substr(0, cfg.size() / 2));
  expect_clean_error(run(m.m() + " -p hello -n 2"), "config.json");
  fs::remove(m.dir / "config.json");
  expect_clean_error(run(m.m() + " -p hello -n 2"), "config.json");
  fs::remove_all(m.dir);
  expect_clean_error(run(m.m() + " -p hello -n 2"), "does not exist");
}

// A context whose KV cache cannot fit in memory fails when the context is made, not as the machine runs out.
TEST(BadInput, KvCacheLargerThanMemory) {
  const CmdResult r = run("-m " + demo_src() + " -p hello -c 2000000000 -n 2");
  expect_clean_error(r, "the KV cache for a context of 2000000000 tokens needs");
  EXPECT_THAT(r.out, HasSubstr("of memory available; use a smaller context (-c)"));
}

// `infer dump` writes to a temporary name and renames: a failed dump leaves neither a partial file nor the temporary
// one, and an existing file at the output path is left as it was.
TEST(BadInput, DumpLeavesNoHalfWrittenFile) {
  const fs::path d = fs::temp_directory_path() / ("infer_bad_dump_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  const fs::path out = d / "out.safetensors";
  expect_clean_error(run("dump -m " + tiny_src() + " --ids 1,99999999 -o " + out.string()), "outside the vocabulary");
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(d / "out.safetensors.tmp"));
  write_bytes(out, "previous contents");
  expect_clean_error(run("dump -m " + tiny_src() + " --ids 1,99999999 -o " + out.string()), "outside the vocabulary");
  EXPECT_EQ(read_bytes(out), "previous contents");
  expect_clean_error(run("dump -m " + tiny_src() + " --ids 1,2 -o " + (d / "no/such/dir/x.safetensors").string()),
                     "cannot write");
  EXPECT_EQ(std::distance(fs::directory_iterator(d), fs::directory_iterator{}), 1);  // only out.safetensors
  fs::remove_all(d);
}

// ---- long runs

// A generation that runs into the end of the context finishes cleanly: finish "length", marked as a full context,
// with every position of the context used.
TEST(LongRun, GenerationFillsTheWholeContext) {
  const CmdResult r = run("-m " + demo_src() + " -p Hello -c 96 -n -1 --ignore-eos --temp 0 --json 2>/dev/null");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_EQ(j["context_full"], true);
  const int prompt = j["timings"]["prompt_tokens"];
  // Every generated token but the last is evaluated into the cache: prompt + (generated - 1) == n_ctx.
  EXPECT_EQ(prompt + int(j["tokens"].size()) - 1, 96);
  const CmdResult text = run("-m " + demo_src() + " -p Hello -c 64 -n -1 --ignore-eos --temp 0");
  EXPECT_EQ(text.code, 0) << text.out;
  EXPECT_THAT(text.out, HasSubstr("| length: context full]"));
}

}  // namespace
