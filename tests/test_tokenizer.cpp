// test_tokenizer.cpp — the byte-level BPE tokenizer against HF tokenizers / transformers.
//
// Reference data (tests/data/tokenizer/, written by tools/gen_tokenizer_corpus.py; no Python here):
//   corpus.jsonl    ~2,300 strings with tokenizers' ids and decode for qwen3, deepseek_v3, llama3_1
//   special.jsonl   strings with transformers AutoTokenizer ids (add_special_tokens=True/False)
//   synthetic.jsonl + synthetic/<name>/tokenizer.json: small tokenizers exercising the options the
//                   three real files do not use
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include <unistd.h>

#include "common.h"
#include "tokenizer.h"
#include "tokenizer_bpe.h"
#include "unicode.h"

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const std::string kData = std::string(INFER_TEST_DATA) + "/tokenizer";
const std::string kModels = std::string(INFER_MODELS_DIR) + "/tokenizers";

std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::vector<json> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) rows.push_back(json::parse(line));
  }
  return rows;
}

const std::vector<json>& corpus() {
  static const std::vector<json> rows = read_jsonl(kData + "/corpus.jsonl");
  return rows;
}

// Tokenizers are loaded once per directory and shared by the tests.
const infer::Tokenizer& tokenizer_at(const std::string& dir) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<infer::Tokenizer>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[dir];
  if (!slot) slot = infer::Tokenizer::load(dir);
  return *slot;
}
const infer::Tokenizer& vocab(const std::string& name) { return tokenizer_at(kModels + "/" + name); }

// A printable rendering of a string for failure messages.
std::string show(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
    if (out.size() > 300) {
      out += "…";
      break;
    }
  }
  return out + "\"";
}

std::string show(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ", ";
    if (i == 40) {
      out += "… (" + std::to_string(ids.size()) + " ids)";
      break;
    }
    out += std::to_string(ids[i]);
  }
  return out + "]";
}

std::vector<int32_t> ids_of(const json& j) { return j.get<std::vector<int32_t>>(); }

// ---------------------------------------------------------------------------------------------
// The three vocabularies against the corpus.

class VocabTest : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabTest, CorpusIdsMatchHfTokenizers) {
  const std::string name = GetParam();
  const infer::Tokenizer& tok = vocab(name);
  ASSERT_GE(corpus().size(), 2000u);
  size_t mismatches = 0;
  for (const json& row : corpus()) {
    const std::string text = row["text"];
    const std::vector<int32_t> want = ids_of(row[name]);
    const std::vector<int32_t> got = tok.encode(text, false);
    if (got != want) {
      if (++mismatches <= 5) {
        ADD_FAILURE() << name << ": ids differ for " << show(text) << "\n  hf:   " << show(want)
                      << "\n  ours: " << show(got);
      }
    }
  }
  EXPECT_EQ(mismatches, 0u) << name << ": " << mismatches << " of " << corpus().size() << " strings differ";
}

TEST_P(VocabTest, DecodeMatchesHf) {
  // HF's decode(ids) is the text itself wherever it round-trips, else recorded as "dec.<vocab>".
  const std::string name = GetParam();
  const infer::Tokenizer& tok = vocab(name);
  size_t mismatches = 0, round_trips = 0;
  for (const json& row : corpus()) {
    const std::string text = row["text"];
    const std::string want = row.contains("dec." + name) ? row["dec." + name].get<std::string>() : text;
    round_trips += (want == text);
    const std::string got = tok.decode(ids_of(row[name]));
    if (got != want && ++mismatches <= 5) {
      ADD_FAILURE() << name << ": decode differs\n  hf:   " << show(want) << "\n  ours: " << show(got);
    }
  }
  EXPECT_EQ(mismatches, 0u);
  EXPECT_GT(round_trips, corpus().size() * 3 / 4);  // NFC (Qwen3) rewrites the NFD strings
}

TEST_P(VocabTest, AddSpecialMatchesTransformers) {
  const std::string name = GetParam();
  const infer::Tokenizer& tok = vocab(name);
  const std::vector<json> rows = read_jsonl(kData + "/special.jsonl");
  ASSERT_GE(rows.size(), 30u);
  for (const json& row : rows) {
    const std::string text = row["text"];
    EXPECT_EQ(tok.encode(text, true), ids_of(row[name])) << name << " add_special " << show(text);
    EXPECT_EQ(tok.encode(text, false), ids_of(row["plain." + name])) << name << " plain " << show(text);
    EXPECT_EQ(tok.decode(ids_of(row[name]), true), row["skip." + name].get<std::string>())
        << name << " decode(skip_special) " << show(text);
  }
}

TEST_P(VocabTest, StreamDecoderEmitsWholeCharacters) {
  // Over the corpus: every push returns valid UTF-8, the pieces add up to decode(ids), and no U+FFFD
  // appears that decode would not produce. Tokens ending mid-character must occur (checked).
  const std::string name = GetParam();
  const infer::Tokenizer& tok = vocab(name);
  size_t held = 0;
  for (const json& row : corpus()) {
    const std::vector<int32_t> ids = ids_of(row[name]);
    infer::StreamDecoder sd(tok);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string piece = sd.push(id);
      ASSERT_TRUE(infer::unicode::utf8_valid(piece)) << name << " " << show(row["text"].get<std::string>());
      if (piece.empty() && !tok.token_bytes(id).empty()) ++held;
      streamed += piece;
    }
    streamed += sd.flush();
    EXPECT_EQ(streamed, tok.decode(ids)) << name << " " << show(row["text"].get<std::string>());
  }
  EXPECT_GT(held, 100u) << "the corpus should split many characters across tokens";
}

TEST_P(VocabTest, BpeHeapAndScanMergeAgree) {
  // The merge loop has two implementations (scan for short words, heap for long ones); run both on
  // every corpus string cut to the scan's size limit, as one word of raw bytes.
  const std::string name = GetParam();
  std::ifstream in(kModels + "/" + name + "/tokenizer.json");
  const json j = json::parse(in);
  infer::BpeModel::Config cfg;
  for (auto it = j["model"]["vocab"].begin(); it != j["model"]["vocab"].end(); ++it) {
    cfg.vocab.emplace_back(it.key(), it.value().get<int32_t>());
  }
  for (const json& m : j["model"]["merges"]) {
    if (m.is_string()) {
      const std::string s = m;
      cfg.merges.emplace_back(s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1));
    } else {
      cfg.merges.emplace_back(m[0], m[1]);
    }
  }
  const infer::BpeModel bpe(std::move(cfg), name);
  const auto& alpha = infer::ByteLevelAlphabet::get();
  size_t words = 0;
  for (const json& row : corpus()) {
    const std::string text = row["text"];
    for (size_t start = 0; start < text.size(); start += infer::BpeModel::kHeapThreshold) {
      const std::string word = text.substr(start, infer::BpeModel::kHeapThreshold);
      std::vector<int32_t> a;
      for (unsigned char b : word) a.push_back(bpe.token_to_id(alpha.encode(std::string(1, static_cast<char>(b)))));
      std::vector<int32_t> b = a;
      bpe.merge(a, false);
      bpe.merge(b, true);
      ASSERT_EQ(a, b) << name << " " << show(word);
      ++words;
    }
  }
  EXPECT_GT(words, 2000u);
}

INSTANTIATE_TEST_SUITE_P(Vocabs, VocabTest, ::testing::Values("qwen3", "deepseek_v3", "llama3_1"));

// ---------------------------------------------------------------------------------------------
// Synthetic tokenizers: split behaviours, added-token flags, GPT-2 ByteLevel, templates.

TEST(TokenizerSynthetic, IdsAndDecodeMatchHf) {
  const std::vector<json> rows = read_jsonl(kData + "/synthetic.jsonl");
  ASSERT_GE(rows.size(), 500u);
  std::map<std::string, size_t> per_tok;
  size_t mismatches = 0;
  for (const json& row : rows) {
    const std::string name = row["tok"];
    const std::string text = row["text"];
    const infer::Tokenizer& tok = tokenizer_at(kData + "/synthetic/" + name);
    ++per_tok[name];
    const std::vector<int32_t> got = tok.encode(text, false), got_special = tok.encode(text, true);
    const std::string want_dec = row.contains("dec") ? row["dec"].get<std::string>() : text;
    const std::string got_dec = tok.decode(ids_of(row["ids"]));
    if (got != ids_of(row["ids"]) || got_special != ids_of(row["ids_special"]) || got_dec != want_dec) {
      if (++mismatches <= 8) {
        ADD_FAILURE() << name << ": " << show(text) << "\n  hf:   " << show(ids_of(row["ids"])) << " / "
                      << show(ids_of(row["ids_special"])) << " / " << show(want_dec) << "\n  ours: " << show(got)
                      << " / " << show(got_special) << " / " << show(got_dec);
      }
    }
  }
  EXPECT_EQ(mismatches, 0u);
  EXPECT_EQ(per_tok.size(), 8u);
}

// ---------------------------------------------------------------------------------------------
// Metadata.

TEST(TokenizerVocab, SpecialIdsAndFlags) {
  const infer::Tokenizer& qwen = vocab("qwen3");
  EXPECT_EQ(qwen.vocab_size(), 151669);
  EXPECT_EQ(qwen.bos_id(), -1);
  EXPECT_EQ(qwen.eos_id(), 151645);
  EXPECT_EQ(qwen.token_id("<|im_end|>"), 151645);
  EXPECT_TRUE(qwen.is_special(151645));
  EXPECT_EQ(qwen.token_id("<think>"), 151667);
  EXPECT_FALSE(qwen.is_special(151667));  // non-special, but still matched whole
  EXPECT_EQ(qwen.encode("a<think>b"), (std::vector<int32_t>{64, 151667, 65}));
  EXPECT_EQ(qwen.token_id("Ġhello"), 23811);
  EXPECT_EQ(qwen.token_bytes(23811), " hello");
  EXPECT_EQ(qwen.token_id("no such token"), -1);
  EXPECT_NE(qwen.chat_template().find("im_start"), std::string::npos);

  const infer::Tokenizer& ds = vocab("deepseek_v3");
  EXPECT_EQ(ds.vocab_size(), 128815);
  EXPECT_EQ(ds.bos_id(), 0);
  EXPECT_EQ(ds.eos_id(), 1);
  EXPECT_TRUE(ds.is_special(0));
  EXPECT_FALSE(ds.is_special(ds.token_id("<｜User｜>")));
  EXPECT_EQ(ds.token_bytes(ds.token_id("<｜User｜>")), "<｜User｜>");  // outside the byte alphabet: as is
  EXPECT_EQ(ds.encode("hi", true).front(), 0);  // tokenizer_config add_bos_token, not the post-processor

  const infer::Tokenizer& llama = vocab("llama3_1");
  EXPECT_EQ(llama.vocab_size(), 128256);
  EXPECT_EQ(llama.bos_id(), 128000);
  EXPECT_EQ(llama.eos_id(), 128009);
  EXPECT_EQ(llama.encode("hi", true), (std::vector<int32_t>{128000, 6151}));
  EXPECT_FALSE(llama.chat_template().empty());
}

TEST(TokenizerEncode, EmptyAndInvalidUtf8) {
  const infer::Tokenizer& tok = vocab("qwen3");
  EXPECT_TRUE(tok.encode("").empty());
  // Bytes that are not UTF-8 are encoded as U+FFFD (Rust's from_utf8_lossy), one per bad sequence.
  EXPECT_EQ(tok.encode("a\xFF" "b"), tok.encode("a\xEF\xBF\xBD" "b"));
  EXPECT_EQ(tok.encode("x\xF0\x9F\x98"), tok.encode("x\xEF\xBF\xBD"));
  EXPECT_EQ(tok.encode(std::string("nul\0inside", 10)), tok.encode(std::string("nul\0inside", 10)));
  EXPECT_EQ(tok.decode(tok.encode(std::string("nul\0inside", 10))), std::string("nul\0inside", 10));
}

TEST(TokenizerEncode, ConcurrentEncodesAgree) {
  const infer::Tokenizer& tok = vocab("llama3_1");
  std::vector<std::vector<int32_t>> want;
  for (size_t i = 0; i < 200; ++i) want.push_back(tok.encode(corpus()[i]["text"].get<std::string>()));
  std::vector<std::thread> threads;
  std::vector<int> bad(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = 0; i < 200; ++i) bad[t] += tok.encode(corpus()[i]["text"].get<std::string>()) != want[i];
    });
  }
  for (auto& th : threads) th.join();
  for (int b : bad) EXPECT_EQ(b, 0);
}

// ---------------------------------------------------------------------------------------------
// StreamDecoder on hand-made splits.

// The id of the single-byte token for byte b in a byte-level vocabulary.
int32_t byte_token(const infer::Tokenizer& tok, unsigned char b) {
  return tok.token_id(infer::ByteLevelAlphabet::get().encode(std::string(1, static_cast<char>(b))));
}

TEST(TokenizerStream, EmojiSplitIntoBytes) {
  for (const char* name : {"qwen3", "deepseek_v3", "llama3_1"}) {
    const infer::Tokenizer& tok = vocab(name);
    const std::string emoji = "\xF0\x9F\x98\x80";  // U+1F600
    infer::StreamDecoder sd(tok);
    EXPECT_EQ(sd.push(tok.token_id("Hi")), "Hi");
    for (int i = 0; i < 3; ++i) EXPECT_EQ(sd.push(byte_token(tok, static_cast<unsigned char>(emoji[i]))), "") << name;
    EXPECT_EQ(sd.push(byte_token(tok, static_cast<unsigned char>(emoji[3]))), emoji) << name;
    EXPECT_EQ(sd.flush(), "");
  }
}

TEST(TokenizerStream, CjkSplitAcrossTokens) {
  // 你好 fed as byte tokens, and as a vocabulary token that ends inside the second character.
  const infer::Tokenizer& tok = vocab("llama3_1");
  infer::StreamDecoder sd(tok);
  EXPECT_EQ(sd.push(byte_token(tok, 0xE4)), "");
  EXPECT_EQ(sd.push(byte_token(tok, 0xBD)), "");
  EXPECT_EQ(sd.push(byte_token(tok, 0xA0)), "\xE4\xBD\xA0");
  EXPECT_EQ(sd.flush(), "");
  // A vocabulary token made of whole characters and then the first byte(s) of another one.
  int32_t straddling = -1;
  size_t whole = 0;
  for (int32_t id = 0; id < tok.vocab_size() && straddling < 0; ++id) {
    const std::string b = tok.token_bytes(id);
    size_t i = 0;
    while (i < b.size()) {
      const auto st = infer::unicode::utf8_step(std::string_view(b).substr(i));
      if (st.kind != infer::unicode::Utf8Step::kValid) break;
      i += st.len;
    }
    if (i > 0 && i < b.size() &&
        infer::unicode::utf8_step(std::string_view(b).substr(i)).kind == infer::unicode::Utf8Step::kTruncated) {
      straddling = id;
      whole = i;
    }
  }
  ASSERT_GE(straddling, 0);
  const std::string b = tok.token_bytes(straddling);
  EXPECT_EQ(sd.push(straddling), b.substr(0, whole));  // the partial character is held back
  EXPECT_EQ(sd.flush(), "\xEF\xBF\xBD");            // and replaced if the stream ends there
}

TEST(TokenizerStream, InvalidBytesAreReplacedLikeDecode) {
  const infer::Tokenizer& tok = vocab("qwen3");
  infer::StreamDecoder sd(tok);
  // A lone continuation byte can never complete: replaced at once.
  EXPECT_EQ(sd.push(byte_token(tok, 0x80)), "\xEF\xBF\xBD");
  // A lead byte followed by a non-continuation: one U+FFFD, then the ASCII.
  EXPECT_EQ(sd.push(byte_token(tok, 0xE4)), "");
  EXPECT_EQ(sd.push(byte_token(tok, 'a')), "\xEF\xBF\xBD" "a");
  // Truncated at the end: flush gives U+FFFD, as decode does.
  EXPECT_EQ(sd.push(byte_token(tok, 0xF0)), "");
  EXPECT_EQ(sd.push(byte_token(tok, 0x9F)), "");
  EXPECT_EQ(sd.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(tok.decode({byte_token(tok, 0xF0), byte_token(tok, 0x9F)}), "\xEF\xBF\xBD");
  sd.reset();
  EXPECT_EQ(sd.flush(), "");
}

TEST(TokenizerUnicode, LossyMatchesRust) {
  using infer::unicode::utf8_lossy;
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(utf8_lossy("abc"), "abc");
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), r + r + r);  // a surrogate: three maximal subparts
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x98" "a"), r + "a");  // a truncated sequence is one subpart
  EXPECT_EQ(utf8_lossy("\xC0\xAF"), r + r);            // overlong
  EXPECT_EQ(utf8_lossy("\xF4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(utf8_lossy("\xE2\x82"), r);
}

// ---------------------------------------------------------------------------------------------
// Bad input.

class TokenizerErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    static int n = 0;
    dir_ = fs::temp_directory_path() / ("infer_tokenizer_test_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A minimal valid byte-level tokenizer.json: the 256 byte tokens, "ab" and "abc" with two merges.
  static json mini() {
    json vocab = json::object();
    const auto& alpha = infer::ByteLevelAlphabet::get();
    for (int b = 0; b < 256; ++b) vocab[alpha.encode(std::string(1, static_cast<char>(b)))] = b;
    vocab["ab"] = 256;
    vocab["abc"] = 257;
    return {
        {"version", "1.0"},
        {"added_tokens", json::array({{{"id", 258}, {"content", "<eos>"}, {"special", true}, {"normalized", false}}})},
        {"normalizer", nullptr},
        {"pre_tokenizer",
         {{"type", "Sequence"},
          {"pretokenizers", json::array({{{"type", "Split"},
                                          {"pattern", {{"Regex", R"(\s+|\S+)"}}},
                                          {"behavior", "Isolated"},
                                          {"invert", false}},
                                         {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
        {"post_processor", nullptr},
        {"decoder", {{"type", "ByteLevel"}}},
        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"a b", "ab c"})}}},
    };
  }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  void write(const json& j) { write("tokenizer.json", j.dump()); }

  // Loads dir_ expecting an infer::Error with `code` whose message contains every fragment.
  void expect_error(infer_status code, std::initializer_list<std::string> fragments) {
    try {
      infer::Tokenizer::load(dir_.string());
      ADD_FAILURE() << "expected an error";
    } catch (const infer::Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      for (const std::string& f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
    }
  }

  fs::path dir_;
};

TEST_F(TokenizerErrors, MiniTokenizerLoads) {
  write(mini());
  auto tok = infer::Tokenizer::load(dir_.string());
  EXPECT_EQ(tok->encode("abc ab<eos>"), (std::vector<int32_t>{257, ' ', 256, 258}));
  EXPECT_EQ(tok->vocab_size(), 259);
  EXPECT_TRUE(tok->is_special(258));
  EXPECT_EQ(tok->decode({257, 258}, true), "abc");
  EXPECT_EQ(tok->bos_id(), -1);
}

TEST_F(TokenizerErrors, BothMergeEncodingsAgree) {
  json j = mini();
  write(j);
  const auto a = infer::Tokenizer::load(dir_.string())->encode("abcab cba");
  j["model"]["merges"] = json::array({json::array({"a", "b"}), json::array({"ab", "c"})});
  write(j);
  EXPECT_EQ(infer::Tokenizer::load(dir_.string())->encode("abcab cba"), a);
}

TEST_F(TokenizerErrors, MissingDirectoryIsIo) {
  dir_ /= "does_not_exist";
  expect_error(INFER_ERR_IO, {"tokenizer.json"});
}

TEST_F(TokenizerErrors, MalformedJson) {
  write("tokenizer.json", "{\"model\": {\"type\": \"BPE\", ");
  expect_error(INFER_ERR_FORMAT, {"tokenizer.json", "invalid JSON"});
}

TEST_F(TokenizerErrors, UnsupportedModelType) {
  json j = mini();
  j["model"]["type"] = "WordPiece";
  write(j);
  expect_error(INFER_ERR_UNSUPPORTED, {"tokenizer.json", "model.type", "WordPiece"});
}

TEST_F(TokenizerErrors, MissingMerges) {
  json j = mini();
  j["model"].erase("merges");
  write(j);
  expect_error(INFER_ERR_FORMAT, {"tokenizer.json", "model.merges", "missing"});
}

TEST_F(TokenizerErrors, MissingVocab) {
  json j = mini();
  j["model"].erase("vocab");
  write(j);
  expect_error(INFER_ERR_FORMAT, {"tokenizer.json", "model.vocab", "missing"});
}

TEST_F(TokenizerErrors, BadVocabId) {
  json j = mini();
  j["model"]["vocab"]["ab"] = "x";
  write(j);
  expect_error(INFER_ERR_FORMAT, {"tokenizer.json", "model.vocab[\"ab\"]"});
}

TEST_F(TokenizerErrors, MergeOutsideVocab) {
  json j = mini();
  j["model"]["merges"] = json::array({"a b", "ab zz"});
  write(j);
  expect_error(INFER_ERR_FORMAT, {"tokenizer.json", "model.merges[1]", "zz"});
}

TEST_F(TokenizerErrors, MalformedMerge) {
  json j = mini();
  j["model"]["merges"] = json::array({"a b", "abc"});
  write(j);
  expect_error(INFER_ERR_FORMAT, {"tokenizer.json", "model.merges[1]"});
  j["model"]["merges"] = json::array({json::array({"a", "b", "c"})});
  write(j);
  expect_error(INFER_ERR_FORMAT, {"tokenizer.json", "model.merges[0]"});
}

TEST_F(TokenizerErrors, UnsupportedNormalizer) {
  json j = mini();
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "Lowercase"}}})}};
  write(j);
  expect_error(INFER_ERR_UNSUPPORTED, {"tokenizer.json", "normalizer.normalizers[0].type", "Lowercase"});
}

TEST_F(TokenizerErrors, UnsupportedPreTokenizer) {
  json j = mini();
  j["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Whitespace"}};
  write(j);
  expect_error(INFER_ERR_UNSUPPORTED, {"tokenizer.json", "pre_tokenizer.pretokenizers[0].type", "Whitespace"});
}

TEST_F(TokenizerErrors, NoByteLevelPreTokenizer) {
  json j = mini();
  j["pre_tokenizer"] = j["pre_tokenizer"]["pretokenizers"][0];
  write(j);
  expect_error(INFER_ERR_UNSUPPORTED, {"tokenizer.json", "pre_tokenizer", "ByteLevel"});
}

TEST_F(TokenizerErrors, BadSplitRegex) {
  json j = mini();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  write(j);
  expect_error(INFER_ERR_FORMAT, {"tokenizer.json", "pre_tokenizer.pretokenizers[0].pattern", "invalid regex"});
}

TEST_F(TokenizerErrors, UnknownSplitBehavior) {
  json j = mini();
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways";
  write(j);
  expect_error(INFER_ERR_FORMAT, {"tokenizer.json", "pre_tokenizer.pretokenizers[0].behavior", "Sideways"});
}

TEST_F(TokenizerErrors, UnsupportedDecoder) {
  json j = mini();
  j["decoder"] = {{"type", "WordPiece"}};
  write(j);
  expect_error(INFER_ERR_UNSUPPORTED, {"tokenizer.json", "decoder.type", "WordPiece"});
}

TEST_F(TokenizerErrors, UnsupportedPostProcessor) {
  json j = mini();
  j["post_processor"] = {{"type", "RobertaProcessing"}};
  write(j);
  expect_error(INFER_ERR_UNSUPPORTED, {"tokenizer.json", "post_processor.type", "RobertaProcessing"});
}

TEST_F(TokenizerErrors, AddedTokenWithoutContent) {
  json j = mini();
  j["added_tokens"][0].erase("content");
  write(j);
  expect_error(INFER_ERR_FORMAT, {"tokenizer.json", "added_tokens[0].content"});
}

TEST_F(TokenizerErrors, MalformedConfig) {
  write(mini());
  write("tokenizer_config.json", "{\"bos_token\": ");
  expect_error(INFER_ERR_FORMAT, {"tokenizer_config.json", "invalid JSON"});
  write("tokenizer_config.json", R"({"bos_token": "<nope>"})");
  expect_error(INFER_ERR_FORMAT, {"tokenizer_config.json", "bos_token", "<nope>"});
  write("tokenizer_config.json", R"({"tokenizer_class": "LlamaTokenizerFast", "add_bos_token": true})");
  expect_error(INFER_ERR_FORMAT, {"tokenizer_config.json", "add_bos_token"});
}

TEST_F(TokenizerErrors, ConfigAddBosAndEos) {
  write(mini());
  write("tokenizer_config.json",
        R"({"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<eos>", "eos_token": {"content": "<eos>"},
            "add_bos_token": true, "add_eos_token": true, "chat_template": [{"name": "tool", "template": "T"},
            {"name": "default", "template": "D"}]})");
  auto tok = infer::Tokenizer::load(dir_.string());
  EXPECT_EQ(tok->encode("ab", true), (std::vector<int32_t>{258, 256, 258}));
  EXPECT_EQ(tok->chat_template(), "D");
}

TEST_F(TokenizerErrors, TokenBytesOutOfRange) {
  write(mini());
  auto tok = infer::Tokenizer::load(dir_.string());
  try {
    tok->token_bytes(100000);
    ADD_FAILURE() << "expected an error";
  } catch (const infer::Error& e) {
    EXPECT_EQ(e.code(), INFER_ERR_INVALID_ARG);
  }
  EXPECT_EQ(tok->decode({97, 100000, -5, 98}), "ab");  // tokenizers drops ids it does not know
}

}  // namespace
