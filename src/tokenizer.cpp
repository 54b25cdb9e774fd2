// tokenizer.cpp — HF tokenizer.json (+ tokenizer_config.json) loading and the encode/decode pipeline.
//
// Encoding follows tokenizers' TokenizerImpl::encode_single_sequence step by step:
//   1. added tokens with normalized=false are split out of the raw text (leftmost-longest match,
//      then the single_word / lstrip / rstrip rules of AddedVocabulary::find_matches);
//   2. every other piece is normalized, and added tokens with normalized=true are split out of it;
//   3. the pre-tokenizer sequence (Split regexes run by Oniguruma, Digits, then ByteLevel) cuts the
//      remaining pieces into words;
//   4. the BPE model turns each word into ids;
//   5. with add_special, the post-processor template (or, for the tokenizer classes whose
//      transformers implementation rebuilds it, tokenizer_config's add_bos_token/add_eos_token)
//      adds BOS/EOS.
// Decoding is the ByteLevel decoder: token bytes concatenated, invalid UTF-8 → U+FFFD.
#include "tokenizer.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common.h"
#include "tokenizer_bpe.h"
#include "tokenizer_regex.h"
#include "unicode.h"

namespace infer {

namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------------------------------------
// JSON access with errors that name the file and the field.

class JsonReader {
 public:
  explicit JsonReader(std::string file) : file_(std::move(file)) {}
  const std::string& file() const { return file_; }

  [[noreturn]] void format_error(const std::string& path, const std::string& what) const {
    fail(INFER_ERR_FORMAT, file_ + ": " + path + ": " + what);
  }
  [[noreturn]] void unsupported(const std::string& path, const std::string& what) const {
    fail(INFER_ERR_UNSUPPORTED, file_ + ": " + path + ": " + what);
  }

  // obj[key] or nullptr when absent (null counts as absent).
  static const json* find(const json& obj, const char* key) {
    if (!obj.is_object()) return nullptr;
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
  }
  const json& require(const json& obj, const char* key, const std::string& path) const {
    const json* v = find(obj, key);
    if (!v) format_error(path + "." + key, "missing");
    return *v;
  }
  std::string string(const json& v, const std::string& path) const {
    if (!v.is_string()) format_error(path, "expected a string, got " + std::string(v.type_name()));
    return v.get<std::string>();
  }
  bool boolean(const json& obj, const char* key, bool dflt, const std::string& path) const {
    const json* v = find(obj, key);
    if (!v) return dflt;
    if (!v->is_boolean()) format_error(path + "." + key, "expected true or false, got " + std::string(v->type_name()));
    return v->get<bool>();
  }
  const json& array(const json& v, const std::string& path) const {
    if (!v.is_array()) format_error(path, "expected an array, got " + std::string(v.type_name()));
    return v;
  }
  const json& object(const json& v, const std::string& path) const {
    if (!v.is_object()) format_error(path, "expected an object, got " + std::string(v.type_name()));
    return v;
  }
  std::string type_of(const json& obj, const std::string& path) const {
    object(obj, path);
    return string(require(obj, "type", path), path + ".type");
  }

 private:
  std::string file_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(INFER_ERR_IO, "cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(INFER_ERR_IO, "cannot read " + path);
  return std::move(ss).str();
}

bool file_exists(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return static_cast<bool>(in);
}

json parse_json(const std::string& text, const std::string& path) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(INFER_ERR_FORMAT, path + ": invalid JSON: " + e.what());
  }
}

// Builds the DOM of tokenizer.json except model.vocab and model.merges, which are streamed straight
// into a BpeModel::Config: those two are nearly all of the file, and a DOM for them (a std::map of
// 150k entries, 150k small arrays) would cost most of the load time.
class TokenizerJsonSax {
 public:
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  TokenizerJsonSax(const JsonReader& r, BpeModel::Config& cfg) : r_(r), cfg_(cfg) {}

  json root;
  bool vocab_seen = false, merges_seen = false;

  bool null() { return value(json(nullptr)); }
  bool boolean(bool v) { return value(json(v)); }
  bool number_integer(number_integer_t v) { return mode_ == Mode::kVocab ? vocab_id(v) : value(json(v)); }
  bool number_unsigned(number_unsigned_t v) {
    if (mode_ == Mode::kVocab) return vocab_id(v > static_cast<number_unsigned_t>(INT64_MAX) ? -1 : static_cast<int64_t>(v));
    return value(json(v));
  }
  bool number_float(number_float_t v, const string_t&) { return value(json(v)); }
  bool binary(binary_t&) { return value(json(nullptr)); }
  bool string(string_t& v) {
    if (mode_ == Mode::kMerges) return merge_string(v);
    return value(json(std::move(v)));
  }
  bool key(string_t& k) {
    key_ = std::move(k);
    return true;
  }
  bool start_object(std::size_t) {
    if (mode_ == Mode::kDom && stack_.size() == 2 && stack_.back() == model_ && key_ == "vocab") {
      mode_ = Mode::kVocab;
      vocab_seen = true;
      return true;
    }
    if (mode_ != Mode::kDom) return value(json(nullptr));  // reports the misplaced object
    json* obj = insert(json::object());
    if (stack_.size() == 1 && key_ == "model") model_ = obj;
    stack_.push_back(obj);
    return true;
  }
  bool end_object() {
    if (mode_ == Mode::kVocab) {
      mode_ = Mode::kDom;
      return true;
    }
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    if (mode_ == Mode::kDom && stack_.size() == 2 && stack_.back() == model_ && key_ == "merges") {
      mode_ = Mode::kMerges;
      merges_seen = true;
      merge_depth_ = 0;
      return true;
    }
    if (mode_ == Mode::kMerges && merge_depth_ == 0) {
      merge_depth_ = 1;
      pair_.clear();
      return true;
    }
    if (mode_ != Mode::kDom) return value(json(nullptr));
    stack_.push_back(insert(json::array()));
    return true;
  }
  bool end_array() {
    if (mode_ == Mode::kMerges) {
      if (merge_depth_ == 0) {
        mode_ = Mode::kDom;
        return true;
      }
      merge_depth_ = 0;
      if (pair_.size() != 2) return merge_error();
      cfg_.merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      return true;
    }
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    fail(INFER_ERR_FORMAT, r_.file() + ": invalid JSON: " + e.what());
  }

 private:
  enum class Mode { kDom, kVocab, kMerges };

  json* insert(json&& v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    json& top = *stack_.back();
    if (top.is_array()) {
      top.push_back(std::move(v));
      return &top.back();
    }
    json& slot = top[key_];
    slot = std::move(v);
    return &slot;
  }
  bool value(json&& v) {
    if (mode_ == Mode::kVocab) {
      r_.format_error("model.vocab[\"" + key_ + "\"]", "expected a non-negative integer id");
    }
    if (mode_ == Mode::kMerges) return merge_error();
    insert(std::move(v));
    return true;
  }
  bool vocab_id(int64_t v) {
    if (v < 0 || v > INT32_MAX) r_.format_error("model.vocab[\"" + key_ + "\"]", "expected a non-negative integer id");
    cfg_.vocab.emplace_back(std::move(key_), static_cast<int32_t>(v));
    return true;
  }
  bool merge_string(string_t& v) {
    if (merge_depth_ == 1) {
      pair_.push_back(std::move(v));
      return true;
    }
    // Legacy form "a b": exactly one space (tokens cannot contain spaces in this form).
    const size_t sp = v.find(' ');
    if (sp == std::string::npos || v.find(' ', sp + 1) != std::string::npos) {
      r_.format_error("model.merges[" + std::to_string(cfg_.merges.size()) + "]",
                      "expected \"<left> <right>\", got \"" + v + "\"");
    }
    cfg_.merges.emplace_back(v.substr(0, sp), v.substr(sp + 1));
    return true;
  }
  [[noreturn]] bool merge_error() {
    r_.format_error("model.merges[" + std::to_string(cfg_.merges.size()) + "]",
                    "expected \"<left> <right>\" or [\"<left>\", \"<right>\"]");
  }

  const JsonReader& r_;
  BpeModel::Config& cfg_;
  Mode mode_ = Mode::kDom;
  std::vector<json*> stack_;
  json* model_ = nullptr;
  std::string key_;
  int merge_depth_ = 0;
  std::vector<std::string> pair_;
};

// ---------------------------------------------------------------------------------------------
// Added tokens.

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool single_word = false, lstrip = false, rstrip = false, normalized = true, special = false;
};

// A byte trie over added-token contents for leftmost-longest matching (aho-corasick's
// MatchKind::LeftmostLongest as tokenizers uses it).
class TokenTrie {
 public:
  void add(std::string_view key, int32_t value) {
    int32_t node = 0;
    if (nodes_.empty()) nodes_.emplace_back();
    for (unsigned char c : key) {
      auto& kids = nodes_[node].kids;
      auto it = std::lower_bound(kids.begin(), kids.end(), c,
                                 [](const std::pair<unsigned char, int32_t>& k, unsigned char x) { return k.first < x; });
      if (it != kids.end() && it->first == c) {
        node = it->second;
      } else {
        const auto child = static_cast<int32_t>(nodes_.size());
        kids.insert(it, {c, child});
        nodes_.emplace_back();
        node = child;
      }
    }
    nodes_[node].value = value;
    first_[static_cast<unsigned char>(key[0])] = true;
  }
  bool empty() const { return nodes_.empty(); }

  // The leftmost match starting at or after `from`, longest among those starting there.
  bool find(std::string_view s, size_t from, size_t& start, size_t& end, int32_t& value) const {
    if (nodes_.empty()) return false;
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    for (size_t i = from; i < s.size(); ++i) {
      if (!first_[p[i]]) continue;
      int32_t node = 0, best = -1;
      size_t best_end = 0;
      for (size_t j = i; j < s.size(); ++j) {
        const auto& kids = nodes_[node].kids;
        auto it = std::lower_bound(kids.begin(), kids.end(), p[j],
                                   [](const std::pair<unsigned char, int32_t>& k, unsigned char x) { return k.first < x; });
        if (it == kids.end() || it->first != p[j]) break;
        node = it->second;
        if (nodes_[node].value >= 0) {
          best = nodes_[node].value;
          best_end = j + 1;
        }
      }
      if (best >= 0) {
        start = i;
        end = best_end;
        value = best;
        return true;
      }
    }
    return false;
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> kids;  // sorted by byte
    int32_t value = -1;
  };
  std::vector<Node> nodes_;
  std::array<bool, 256> first_{};
};

// The regexes tokenizers uses (Rust regex) around added tokens: \w and \s, Unicode-aware.
const OnigRegex& word_char_regex() {
  static const OnigRegex re(R"(\A[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}])", "word-character regex");
  return re;
}
const OnigRegex& space_char_regex() {
  static const OnigRegex re(R"(\A\s)", "whitespace regex");
  return re;
}

bool starts_with_word(std::string_view s) { return !s.empty() && word_char_regex().match_at_start(s); }
bool ends_with_word(std::string_view s) {
  if (s.empty()) return false;
  size_t i = s.size();
  unicode::prev_cp(s, i);
  return word_char_regex().match_at_start(s.substr(i));
}
// Start of the run of whitespace that ends s (s.size() if none).
size_t trailing_space_start(std::string_view s) {
  size_t i = s.size();
  while (i > 0) {
    size_t j = i;
    unicode::prev_cp(s, j);
    if (!space_char_regex().match_at_start(s.substr(j))) break;
    i = j;
  }
  return i;
}
// Length of the run of whitespace that starts s.
size_t leading_space_len(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && space_char_regex().match_at_start(s.substr(i))) unicode::next_cp(s, i);
  return i;
}

// ---------------------------------------------------------------------------------------------
// Pipeline pieces parsed from tokenizer.json.

struct SplitStep {
  std::unique_ptr<OnigRegex> re;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
};

struct ByteLevelStep {
  bool present = false;
  bool add_prefix_space = false;
  bool use_regex = false;
};

// GPT-2's pattern, used by the ByteLevel pre-tokenizer when use_regex is true.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// transformers tokenizer classes whose __init__ rebuilds the post-processor from add_bos_token /
// add_eos_token (update_post_processor), with their default values.
struct BosEosClass {
  const char* name;
  bool add_bos, add_eos;
};
constexpr BosEosClass kBosEosClasses[] = {
    {"LlamaTokenizer", true, false},  {"CodeLlamaTokenizer", true, false}, {"GemmaTokenizer", true, false},
    {"CohereTokenizer", true, false}, {"GPTNeoXTokenizer", false, false},
};

struct AddedSplit {
  size_t begin, end;
  int32_t token;  // index into added_, or -1 for plain text
};

// Per-thread scratch buffers for encode (encode is const and may run on many threads at once).
struct EncodeScratch {
  std::vector<Span> cur, next, matches;
  std::string prefixed;
  std::vector<AddedSplit> raw_parts, norm_parts;  // added-token splits of the raw / normalized text
};

// ---------------------------------------------------------------------------------------------

class HfTokenizer final : public Tokenizer {
 public:
  explicit HfTokenizer(const std::string& dir);
  // From the texts of tokenizer.json and (if not null) tokenizer_config.json; paths name them in messages.
  HfTokenizer(const std::string& tokenizer_json, const std::string& tok_path, const std::string* config_json,
              const std::string& cfg_path);

  std::vector<int32_t> encode(std::string_view text, bool add_special) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override;
  std::string token_bytes(int32_t id) const override;
  int32_t token_id(std::string_view token) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  bool is_special(int32_t id) const override {
    return id >= 0 && id < vocab_size_ && special_[static_cast<size_t>(id)];
  }
  int32_t bos_id() const override { return bos_id_; }
  int32_t eos_id() const override { return eos_id_; }
  const std::string& chat_template() const override { return chat_template_; }

 private:
  void load_tokenizer_json(const std::string& text, const std::string& path);
  void load_config(const std::string& text, const std::string& path);
  void finish_special_ids();
  void parse_normalizer(const JsonReader& r, const json& j, const std::string& path);
  void parse_pre_tokenizer(const JsonReader& r, const json& j, const std::string& path);
  void parse_decoder(const JsonReader& r, const json& j, const std::string& path);
  void parse_post_processor(const JsonReader& r, const json& j, const std::string& path);
  void add_tokens(const JsonReader& r, const json& arr);
  int32_t lookup_special(const JsonReader& r, const json& tok, const std::string& field) const;

  void find_added(std::string_view s, const TokenTrie& trie, std::vector<AddedSplit>& out) const;
  std::string_view normalize(std::string_view s, std::string& buf) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out, EncodeScratch& sc) const;
  void encode_plain(std::string_view text, std::vector<int32_t>& out, EncodeScratch& sc) const;

  std::unique_ptr<BpeModel> bpe_;
  std::vector<unicode::NormForm> normalizers_;
  std::vector<SplitStep> splits_;
  ByteLevelStep byte_level_;
  std::unique_ptr<OnigRegex> gpt2_re_;

  std::vector<AddedToken> added_;
  StringIdMap added_ids_;            // content → id
  TokenTrie raw_trie_, norm_trie_;   // non-normalized / normalized added tokens (values: added_ index)

  std::vector<int32_t> template_prefix_, template_suffix_;  // from the post-processor
  std::vector<int32_t> prefix_, suffix_;                     // what add_special actually adds

  int32_t vocab_size_ = 0;
  std::vector<std::string> token_bytes_;  // per id, after the ByteLevel decoder
  std::vector<uint8_t> has_token_, special_;
  int32_t bos_id_ = -1, eos_id_ = -1;
  std::string chat_template_;
};

HfTokenizer::HfTokenizer(const std::string& dir) {
  const std::string tok_path = dir + "/tokenizer.json";
  load_tokenizer_json(read_file(tok_path), tok_path);
  prefix_ = template_prefix_;
  suffix_ = template_suffix_;
  const std::string cfg_path = dir + "/tokenizer_config.json";
  if (file_exists(cfg_path)) load_config(read_file(cfg_path), cfg_path);
  if (chat_template_.empty() && file_exists(dir + "/chat_template.jinja")) {
    chat_template_ = read_file(dir + "/chat_template.jinja");
  }
  finish_special_ids();
}

HfTokenizer::HfTokenizer(const std::string& tokenizer_json, const std::string& tok_path, const std::string* config_json,
                         const std::string& cfg_path) {
  load_tokenizer_json(tokenizer_json, tok_path);
  prefix_ = template_prefix_;
  suffix_ = template_suffix_;
  if (config_json) load_config(*config_json, cfg_path);
  finish_special_ids();
}

void HfTokenizer::finish_special_ids() {
  if (bos_id_ < 0 && !template_prefix_.empty()) bos_id_ = template_prefix_.front();
  if (eos_id_ < 0 && !template_suffix_.empty()) eos_id_ = template_suffix_.back();
}

void HfTokenizer::load_tokenizer_json(const std::string& text, const std::string& path) {
  const JsonReader r(path);
  BpeModel::Config cfg;
  TokenizerJsonSax sax(r, cfg);
  json::sax_parse(text, &sax);
  const json& root = sax.root;
  if (!root.is_object()) r.format_error("(root)", "expected a JSON object");

  // ---- model
  const json& model = r.object(r.require(root, "model", "(root)"), "model");
  if (const json* t = JsonReader::find(model, "type")) {
    const std::string type = r.string(*t, "model.type");
    if (type != "BPE") r.unsupported("model.type", "\"" + type + "\" is not supported (only BPE)");
  }
  // vocab and merges were captured by the SAX pass when they had the right shape; if they are
  // still in the DOM they had the wrong one.
  if (!sax.vocab_seen) r.object(r.require(model, "vocab", "model"), "model.vocab");
  if (!sax.merges_seen) {
    const json* merges = JsonReader::find(model, "merges");
    if (!merges) r.format_error("model.merges", "missing (a BPE model needs its merges)");
    r.array(*merges, "model.merges");
  }
  if (const json* u = JsonReader::find(model, "unk_token")) cfg.unk_token = r.string(*u, "model.unk_token");
  cfg.fuse_unk = r.boolean(model, "fuse_unk", false, "model");
  cfg.byte_fallback = r.boolean(model, "byte_fallback", false, "model");
  cfg.ignore_merges = r.boolean(model, "ignore_merges", false, "model");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (const json* v = JsonReader::find(model, key)) {
      if (!r.string(*v, std::string("model.") + key).empty()) {
        r.unsupported(std::string("model.") + key, "a non-empty value is not supported by byte-level BPE");
      }
    }
  }
  if (const json* d = JsonReader::find(model, "dropout")) {
    if (!d->is_number()) r.format_error("model.dropout", "expected a number or null");
    if (d->get<double>() != 0.0) r.unsupported("model.dropout", "BPE dropout is not supported");
  }
  bpe_ = std::make_unique<BpeModel>(std::move(cfg), path + ": model");

  // ---- normalizer, pre-tokenizer, decoder, post-processor
  if (const json* n = JsonReader::find(root, "normalizer")) parse_normalizer(r, *n, "normalizer");
  const json* pt = JsonReader::find(root, "pre_tokenizer");
  if (!pt) r.unsupported("pre_tokenizer", "missing; a byte-level BPE needs a ByteLevel pre-tokenizer");
  parse_pre_tokenizer(r, *pt, "pre_tokenizer");
  if (!byte_level_.present) {
    r.unsupported("pre_tokenizer", "no ByteLevel step; only byte-level BPE tokenizers are supported");
  }
  if (byte_level_.use_regex) gpt2_re_ = std::make_unique<OnigRegex>(kGpt2Pattern, path + ": ByteLevel regex");
  const json* dec = JsonReader::find(root, "decoder");
  if (!dec) r.unsupported("decoder", "missing; only the ByteLevel decoder is supported");
  parse_decoder(r, *dec, "decoder");
  if (const json* pp = JsonReader::find(root, "post_processor")) parse_post_processor(r, *pp, "post_processor");

  // ---- added tokens (after the normalizer: normalized ones are matched in normalized form)
  vocab_size_ = bpe_->size();
  if (const json* at = JsonReader::find(root, "added_tokens")) add_tokens(r, r.array(*at, "added_tokens"));
  // The post-processor's special tokens must be tokens of this vocabulary (fuzz finding: a template naming id 800 of
  // a 512-token vocabulary made encode() return it).
  for (const auto* ids : {&template_prefix_, &template_suffix_})
    for (int32_t id : *ids)
      if (id < 0 || id >= vocab_size_)
        r.format_error("post_processor.special_tokens", "token id " + std::to_string(id) +
                                                            " is outside the vocabulary [0, " +
                                                            std::to_string(vocab_size_) + ")");

  // ---- per-id tables: bytes (the ByteLevel decoder's view of the token) and special flags
  token_bytes_.assign(static_cast<size_t>(vocab_size_), std::string());
  has_token_.assign(static_cast<size_t>(vocab_size_), 0);
  special_.assign(static_cast<size_t>(vocab_size_), 0);
  for (int32_t id = 0; id < bpe_->size(); ++id) {
    if (!bpe_->has_id(id)) continue;  // a gap in the ids
    has_token_[static_cast<size_t>(id)] = 1;
    token_bytes_[static_cast<size_t>(id)] = bpe_->id_bytes(id);
  }
  // tokenizers decodes an id to the added token's content when there is one (else the model's
  // token); the ByteLevel decoder maps alphabet characters back to bytes and passes a token with
  // any other character through as UTF-8. A token is special when its text is a special token's.
  const ByteLevelAlphabet& alpha = ByteLevelAlphabet::get();
  for (const AddedToken& t : added_) {
    const auto slot = static_cast<size_t>(t.id);
    has_token_[slot] = 1;
    std::string& bytes = token_bytes_[slot];
    if (!alpha.decode(t.content, bytes)) bytes = t.content;
  }
  for (const AddedToken& t : added_) {
    if (t.special) special_[static_cast<size_t>(token_id(t.content))] = 1;
  }
}

void HfTokenizer::parse_normalizer(const JsonReader& r, const json& j, const std::string& path) {
  const std::string type = r.type_of(j, path);
  if (type == "Sequence") {
    const json& list = r.array(r.require(j, "normalizers", path), path + ".normalizers");
    for (size_t i = 0; i < list.size(); ++i) {
      parse_normalizer(r, list[i], path + ".normalizers[" + std::to_string(i) + "]");
    }
  } else if (type == "NFC") {
    normalizers_.push_back(unicode::NormForm::kNFC);
  } else if (type == "NFD") {
    normalizers_.push_back(unicode::NormForm::kNFD);
  } else if (type == "NFKC") {
    normalizers_.push_back(unicode::NormForm::kNFKC);
  } else if (type == "NFKD") {
    normalizers_.push_back(unicode::NormForm::kNFKD);
  } else {
    r.unsupported(path + ".type", "normalizer \"" + type + "\" is not supported (NFC, NFD, NFKC, NFKD, Sequence)");
  }
}

void HfTokenizer::parse_pre_tokenizer(const JsonReader& r, const json& j, const std::string& path) {
  const std::string type = r.type_of(j, path);
  if (type == "Sequence") {
    const json& list = r.array(r.require(j, "pretokenizers", path), path + ".pretokenizers");
    for (size_t i = 0; i < list.size(); ++i) {
      parse_pre_tokenizer(r, list[i], path + ".pretokenizers[" + std::to_string(i) + "]");
    }
    return;
  }
  // The ByteLevel step maps bytes to its alphabet; a Split after it would see those characters
  // instead of the text, which this implementation (working on raw bytes) does not model.
  if (byte_level_.present) r.unsupported(path, "pre-tokenizer steps after ByteLevel are not supported");
  if (type == "ByteLevel") {
    byte_level_.present = true;
    byte_level_.add_prefix_space = r.boolean(j, "add_prefix_space", true, path);
    byte_level_.use_regex = r.boolean(j, "use_regex", true, path);
  } else if (type == "Split") {
    SplitStep step;
    const json& pat = r.object(r.require(j, "pattern", path), path + ".pattern");
    std::string regex;
    if (const json* re = JsonReader::find(pat, "Regex")) {
      regex = r.string(*re, path + ".pattern.Regex");
    } else if (const json* lit = JsonReader::find(pat, "String")) {
      regex = regex_escape(r.string(*lit, path + ".pattern.String"));
    } else {
      r.format_error(path + ".pattern", "expected {\"Regex\": …} or {\"String\": …}");
    }
    step.re = std::make_unique<OnigRegex>(regex, r.file() + ": " + path + ".pattern");
    const std::string behavior = r.string(r.require(j, "behavior", path), path + ".behavior");
    if (behavior == "Isolated") {
      step.behavior = SplitBehavior::kIsolated;
    } else if (behavior == "Removed") {
      step.behavior = SplitBehavior::kRemoved;
    } else if (behavior == "MergedWithPrevious") {
      step.behavior = SplitBehavior::kMergedWithPrevious;
    } else if (behavior == "MergedWithNext") {
      step.behavior = SplitBehavior::kMergedWithNext;
    } else if (behavior == "Contiguous") {
      step.behavior = SplitBehavior::kContiguous;
    } else {
      r.format_error(path + ".behavior", "unknown split behavior \"" + behavior + "\"");
    }
    step.invert = r.boolean(j, "invert", false, path);
    splits_.push_back(std::move(step));
  } else if (type == "Digits") {
    // Digits = runs of numeric chars (Contiguous), or each one alone (individual_digits).
    SplitStep step;
    const bool individual = r.boolean(j, "individual_digits", false, path);
    step.re = std::make_unique<OnigRegex>(individual ? R"(\p{N})" : R"(\p{N}+)", r.file() + ": " + path);
    step.behavior = SplitBehavior::kIsolated;
    splits_.push_back(std::move(step));
  } else {
    r.unsupported(path + ".type", "pre-tokenizer \"" + type + "\" is not supported (Split, Digits, ByteLevel, Sequence)");
  }
}

void HfTokenizer::parse_decoder(const JsonReader& r, const json& j, const std::string& path) {
  const std::string type = r.type_of(j, path);
  if (type == "Sequence") {
    const json& list = r.array(r.require(j, "decoders", path), path + ".decoders");
    if (list.empty()) r.unsupported(path, "an empty decoder sequence is not supported");
    for (size_t i = 0; i < list.size(); ++i) parse_decoder(r, list[i], path + ".decoders[" + std::to_string(i) + "]");
  } else if (type != "ByteLevel") {
    r.unsupported(path + ".type", "decoder \"" + type + "\" is not supported (only ByteLevel)");
  }
}

void HfTokenizer::parse_post_processor(const JsonReader& r, const json& j, const std::string& path) {
  const std::string type = r.type_of(j, path);
  if (type == "Sequence") {
    const json& list = r.array(r.require(j, "processors", path), path + ".processors");
    for (size_t i = 0; i < list.size(); ++i) {
      parse_post_processor(r, list[i], path + ".processors[" + std::to_string(i) + "]");
    }
  } else if (type == "ByteLevel") {
    // Only adjusts offsets; no ids.
  } else if (type == "TemplateProcessing") {
    const json& single = r.array(r.require(j, "single", path), path + ".single");
    const json& specials = r.object(r.require(j, "special_tokens", path), path + ".special_tokens");
    bool seen_sequence = false;
    template_prefix_.clear();
    template_suffix_.clear();
    for (size_t i = 0; i < single.size(); ++i) {
      const std::string at = path + ".single[" + std::to_string(i) + "]";
      const json& piece = r.object(single[i], at);
      if (JsonReader::find(piece, "Sequence")) {
        seen_sequence = true;
      } else if (const json* st = JsonReader::find(piece, "SpecialToken")) {
        const std::string name = r.string(r.require(*st, "id", at + ".SpecialToken"), at + ".SpecialToken.id");
        const json* entry = JsonReader::find(specials, name.c_str());
        if (!entry) r.format_error(path + ".special_tokens", "no entry for \"" + name + "\"");
        const json& ids = r.array(r.require(*entry, "ids", path + ".special_tokens." + name),
                                  path + ".special_tokens." + name + ".ids");
        for (const json& id : ids) {
          if (!id.is_number_integer()) r.format_error(path + ".special_tokens." + name + ".ids", "expected integers");
          (seen_sequence ? template_suffix_ : template_prefix_).push_back(id.get<int32_t>());
        }
      } else {
        r.format_error(at, "expected {\"Sequence\": …} or {\"SpecialToken\": …}");
      }
    }
  } else {
    r.unsupported(path + ".type", "post-processor \"" + type + "\" is not supported (TemplateProcessing, ByteLevel, Sequence)");
  }
}

void HfTokenizer::add_tokens(const JsonReader& r, const json& arr) {
  // AddedVocabulary::add_tokens: the id is the content's existing id (added, then model vocab) or
  // the next free one; the "id" field of the file is not used (tokenizers only warns on mismatch).
  // The first free id is the model's vocabulary size (its number of entries), as in tokenizers.
  int32_t next_id = static_cast<int32_t>(bpe_->num_entries());
  for (size_t i = 0; i < arr.size(); ++i) {
    const std::string at = "added_tokens[" + std::to_string(i) + "]";
    const json& j = r.object(arr[i], at);
    AddedToken t;
    t.content = r.string(r.require(j, "content", at), at + ".content");
    t.special = r.boolean(j, "special", false, at);
    t.single_word = r.boolean(j, "single_word", false, at);
    t.lstrip = r.boolean(j, "lstrip", false, at);
    t.rstrip = r.boolean(j, "rstrip", false, at);
    t.normalized = r.boolean(j, "normalized", !t.special, at);
    if (t.content.empty()) continue;
    if (!unicode::utf8_valid(t.content)) r.format_error(at + ".content", "not valid UTF-8");
    int32_t id = added_ids_.find(t.content);
    if (id < 0) id = bpe_->token_to_id(t.content);
    if (id < 0) id = next_id++;
    t.id = id;
    added_ids_.set(t.content, id);
    // A token re-added with the same content replaces the earlier entry.
    auto same = std::find_if(added_.begin(), added_.end(), [&](const AddedToken& o) { return o.id == id; });
    if (same != added_.end()) {
      *same = t;
    } else {
      added_.push_back(t);
    }
    vocab_size_ = std::max(vocab_size_, id + 1);
  }
  for (size_t i = 0; i < added_.size(); ++i) {
    const AddedToken& t = added_[i];
    if (t.normalized) {
      std::string buf;
      const std::string_view n = normalize(t.content, buf);
      if (!n.empty()) norm_trie_.add(n, static_cast<int32_t>(i));
    } else {
      raw_trie_.add(t.content, static_cast<int32_t>(i));
    }
  }
}

int32_t HfTokenizer::lookup_special(const JsonReader& r, const json& tok, const std::string& field) const {
  // A special token in tokenizer_config.json: "content" or {"content": "…", …} (AddedToken dict).
  std::string content;
  if (tok.is_string()) {
    content = tok.get<std::string>();
  } else if (tok.is_object()) {
    content = r.string(r.require(tok, "content", field), field + ".content");
  } else {
    r.format_error(field, "expected a string or an object with \"content\"");
  }
  const int32_t id = token_id(content);
  if (id < 0) r.format_error(field, "token \"" + content + "\" is not in the vocabulary");
  return id;
}

void HfTokenizer::load_config(const std::string& text, const std::string& path) {
  const JsonReader r(path);
  const json cfg = parse_json(text, path);
  if (!cfg.is_object()) r.format_error("(root)", "expected a JSON object");
  if (const json* b = JsonReader::find(cfg, "bos_token")) bos_id_ = lookup_special(r, *b, "bos_token");
  if (const json* e = JsonReader::find(cfg, "eos_token")) eos_id_ = lookup_special(r, *e, "eos_token");

  if (const json* ct = JsonReader::find(cfg, "chat_template")) {
    if (ct->is_string()) {
      chat_template_ = ct->get<std::string>();
    } else if (ct->is_array()) {
      // Named templates: [{"name": "default", "template": "…"}, …] — take "default", else the first.
      for (size_t i = 0; i < ct->size(); ++i) {
        const json& e = r.object((*ct)[i], "chat_template[" + std::to_string(i) + "]");
        const std::string name = r.string(r.require(e, "name", "chat_template"), "chat_template.name");
        if (i == 0 || name == "default") {
          chat_template_ = r.string(r.require(e, "template", "chat_template"), "chat_template.template");
        }
        if (name == "default") break;
      }
    } else {
      r.format_error("chat_template", "expected a string or a list of named templates");
    }
  }

  // add_special: transformers' Llama-family fast tokenizers replace the post-processor with
  // "[bos] $A [eos]" from add_bos_token / add_eos_token (class defaults when absent); every other
  // class keeps tokenizer.json's post-processor.
  std::string cls;
  if (const json* c = JsonReader::find(cfg, "tokenizer_class")) cls = r.string(*c, "tokenizer_class");
  if (cls.size() > 4 && cls.compare(cls.size() - 4, 4, "Fast") == 0) cls.resize(cls.size() - 4);
  for (const BosEosClass& k : kBosEosClasses) {
    if (cls != k.name) continue;
    const bool add_bos = r.boolean(cfg, "add_bos_token", k.add_bos, "(root)");
    const bool add_eos = r.boolean(cfg, "add_eos_token", k.add_eos, "(root)");
    if (add_bos && bos_id_ < 0) r.format_error("add_bos_token", "true, but bos_token is not set");
    if (add_eos && eos_id_ < 0) r.format_error("add_eos_token", "true, but eos_token is not set");
    prefix_.clear();
    suffix_.clear();
    if (add_bos) prefix_.push_back(bos_id_);
    if (add_eos) suffix_.push_back(eos_id_);
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding.

void HfTokenizer::find_added(std::string_view s, const TokenTrie& trie, std::vector<AddedSplit>& out) const {
  // AddedVocabulary::find_matches.
  out.clear();
  if (s.empty()) return;
  size_t start_offset = 0, pos = 0;
  size_t start = 0, stop = 0;
  int32_t idx = -1;
  while (trie.find(s, pos, start, stop, idx)) {
    pos = stop;  // the matcher resumes after the raw match, whatever happens to it below
    const AddedToken& t = added_[static_cast<size_t>(idx)];
    if (t.single_word) {
      const bool start_space = start == 0 || !ends_with_word(s.substr(0, start));
      const bool stop_space = stop == s.size() || !starts_with_word(s.substr(stop));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) start = std::max(trailing_space_start(s.substr(0, start)), start_offset);
    if (t.rstrip) stop += leading_space_len(s.substr(stop));
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, idx});
    start_offset = stop;
  }
  if (start_offset != s.size()) out.push_back({start_offset, s.size(), -1});
}

std::string_view HfTokenizer::normalize(std::string_view s, std::string& buf) const {
  bool owned = false;
  for (unicode::NormForm f : normalizers_) {
    if (unicode::normalization_trivially_stable(owned ? std::string_view(buf) : s, f)) continue;
    buf = unicode::normalize(owned ? std::string_view(buf) : s, f);
    owned = true;
  }
  return owned ? std::string_view(buf) : s;
}

void HfTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& out, EncodeScratch& sc) const {
  // Pre-tokenizer: each Split refines the list of spans; then ByteLevel; then BPE per word.
  sc.cur.clear();
  sc.cur.push_back({0, static_cast<uint32_t>(piece.size())});
  for (const SplitStep& step : splits_) {
    sc.next.clear();
    for (const Span& sp : sc.cur) {
      split_by_regex(*step.re, step.behavior, step.invert, piece.substr(sp.begin, sp.end - sp.begin), sp.begin,
                     sc.next, sc.matches);
    }
    sc.cur.swap(sc.next);
  }
  for (const Span& sp : sc.cur) {
    std::string_view word = piece.substr(sp.begin, sp.end - sp.begin);
    if (byte_level_.add_prefix_space && word.front() != ' ') {
      sc.prefixed.assign(1, ' ');
      sc.prefixed.append(word);
      word = sc.prefixed;
    }
    if (!byte_level_.use_regex) {
      bpe_->tokenize(word, out);
      continue;
    }
    sc.next.clear();
    split_by_regex(*gpt2_re_, SplitBehavior::kIsolated, false, word, 0, sc.next, sc.matches);
    for (const Span& w : sc.next) bpe_->tokenize(word.substr(w.begin, w.end - w.begin), out);
  }
}

void HfTokenizer::encode_plain(std::string_view text, std::vector<int32_t>& out, EncodeScratch& sc) const {
  // Text between non-normalized added tokens: normalize, then split out the normalized ones.
  std::string buf;
  const std::string_view norm = normalize(text, buf);
  if (norm_trie_.empty()) {
    if (!norm.empty()) encode_piece(norm, out, sc);
    return;
  }
  std::vector<AddedSplit>& parts = sc.norm_parts;
  find_added(norm, norm_trie_, parts);
  for (const AddedSplit& p : parts) {
    if (p.end == p.begin) continue;
    if (p.token >= 0) {
      out.push_back(added_[static_cast<size_t>(p.token)].id);
    } else {
      encode_piece(norm.substr(p.begin, p.end - p.begin), out, sc);
    }
  }
}

std::vector<int32_t> HfTokenizer::encode(std::string_view text, bool add_special) const {
  // Text that is not valid UTF-8 is first repaired the way Rust's from_utf8_lossy would.
  std::string repaired;
  if (!unicode::utf8_valid(text)) {
    repaired = unicode::utf8_lossy(text);
    text = repaired;
  }
  thread_local EncodeScratch sc;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  if (add_special) out.insert(out.end(), prefix_.begin(), prefix_.end());
  if (raw_trie_.empty()) {
    encode_plain(text, out, sc);
  } else {
    std::vector<AddedSplit>& parts = sc.raw_parts;
    find_added(text, raw_trie_, parts);
    for (const AddedSplit& p : parts) {
      if (p.end == p.begin) continue;
      if (p.token >= 0) {
        out.push_back(added_[static_cast<size_t>(p.token)].id);
      } else {
        encode_plain(text.substr(p.begin, p.end - p.begin), out, sc);
      }
    }
  }
  if (add_special) out.insert(out.end(), suffix_.begin(), suffix_.end());
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding and lookups.

std::string HfTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string bytes;
  for (int32_t id : ids) {
    // tokenizers drops ids that have no token.
    if (id < 0 || id >= vocab_size_ || !has_token_[static_cast<size_t>(id)]) continue;
    if (skip_special && special_[static_cast<size_t>(id)]) continue;
    bytes += token_bytes_[static_cast<size_t>(id)];
  }
  if (unicode::utf8_valid(bytes)) return bytes;
  return unicode::utf8_lossy(bytes);
}

std::string HfTokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size_) {
    fail(INFER_ERR_INVALID_ARG, "token id " + std::to_string(id) + " is outside the vocabulary (size " +
                                    std::to_string(vocab_size_) + ")");
  }
  return token_bytes_[static_cast<size_t>(id)];
}

int32_t HfTokenizer::token_id(std::string_view token) const {
  const int32_t id = added_ids_.find(token);
  return id >= 0 ? id : bpe_->token_to_id(token);
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& dir) { return std::make_unique<HfTokenizer>(dir); }

std::unique_ptr<Tokenizer> Tokenizer::from_json(const std::string& tokenizer_json, const std::string* config_json,
                                                const std::string& name) {
  return std::make_unique<HfTokenizer>(tokenizer_json, name + "/tokenizer.json", config_json,
                                       name + "/tokenizer_config.json");
}

// ---------------------------------------------------------------------------------------------
// StreamDecoder.

std::string StreamDecoder::push(int32_t id) {
  pending_ += tok_.token_bytes(id);
  // Release everything up to a trailing sequence that is a valid-so-far prefix of a character.
  // Sequences that can never become valid are replaced now, exactly as decode() would replace them.
  std::string out;
  size_t i = 0, run = 0;  // [run, i) is valid text not yet copied
  while (i < pending_.size()) {
    if (static_cast<unsigned char>(pending_[i]) < 0x80) {
      ++i;
      continue;
    }
    const unicode::Utf8Step st = unicode::utf8_step(std::string_view(pending_).substr(i));
    if (st.kind == unicode::Utf8Step::kValid) {
      i += st.len;
    } else if (st.kind == unicode::Utf8Step::kTruncated) {
      break;
    } else {
      out.append(pending_, run, i - run);
      out += "\xEF\xBF\xBD";
      i += st.len;
      run = i;
    }
  }
  out.append(pending_, run, i - run);
  pending_.erase(0, i);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = unicode::utf8_lossy(pending_);
  pending_.clear();
  return out;
}

}  // namespace infer
