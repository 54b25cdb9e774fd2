// tokenizer_bpe.h — the BPE model of a byte-level tokenizer.json: vocabulary, merges by rank, and
// the merge loop. Words arrive as raw bytes (the ByteLevel pre-tokenizer's byte→char mapping is
// folded into per-byte initial symbols), so no byte-level strings are built while encoding.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace infer {

// Open-addressing map from byte strings to ids; keys live in one arena (cheap to build and probe).
class StringIdMap {
 public:
  void reserve(size_t n);
  // Inserts or overwrites (the later value wins, like a JSON object read into a hash map).
  void set(std::string_view key, int32_t id);
  // The id stored for key, or -1.
  int32_t find(std::string_view key) const;
  size_t size() const { return count_; }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t off = 0, len = 0;
    int32_t id = -1;  // -1 = empty slot
  };
  std::vector<Slot> slots_;
  std::string arena_;
  size_t count_ = 0;
  uint64_t mask_ = 0;
};

// Open-addressing map from a pair of token ids to (merge rank, merged id).
class PairRankMap {
 public:
  struct Value {
    uint32_t rank;
    int32_t id;
  };
  void reserve(size_t n);
  void set(int32_t a, int32_t b, Value v);  // later values win
  // nullptr when the pair has no merge.
  const Value* find(int32_t a, int32_t b) const {
    const uint64_t key = make_key(a, b);
    for (uint64_t i = slot_of(key);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s.value;
      if (s.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return count_; }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  struct Slot {
    uint64_t key = kEmpty;
    Value value{0, -1};
  };
  static uint64_t make_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  uint64_t slot_of(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }
  std::vector<Slot> slots_;
  size_t count_ = 0;
  uint64_t mask_ = 0;
  int shift_ = 64;
};

// 64-bit hash of a byte string (also used by the per-thread word cache).
uint64_t hash_bytes(std::string_view s);

// The ByteLevel alphabet of GPT-2 (tokenizers' bytes_char): each byte maps to one code point.
struct ByteLevelAlphabet {
  char32_t byte_to_cp[256];
  int16_t cp_to_byte[512];  // -1 where a code point below 512 is not in the alphabet
  ByteLevelAlphabet();
  static const ByteLevelAlphabet& get();
  // The byte-level string (UTF-8) of raw bytes.
  std::string encode(std::string_view raw) const;
  // Raw bytes of a byte-level string; false (out untouched) if some char is outside the alphabet.
  bool decode(std::string_view s, std::string& out) const;
};

class BpeModel {
 public:
  struct Config {
    std::vector<std::pair<std::string, int32_t>> vocab;      // model.vocab (byte-level strings)
    std::vector<std::pair<std::string, std::string>> merges;  // model.merges in rank order
    std::string unk_token;                                    // "" = none
    bool fuse_unk = false;
    bool byte_fallback = false;
    bool ignore_merges = false;
  };

  // `where` prefixes error messages ("<file>: model"). Throws INFER_ERR_FORMAT for merges whose
  // tokens (or their concatenation) are not in the vocabulary, as tokenizers does.
  BpeModel(Config cfg, const std::string& where);

  // Appends the ids of one pre-tokenized word, given as raw bytes (the ByteLevel pre-tokenizer's
  // output before its byte→char mapping).
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;
  // The merge loop alone: merges `syms` in place (lowest rank first, leftmost on ties). `heap`
  // selects the priority-queue implementation used for long words (exposed for tests: both must
  // agree; tokenize() picks by length).
  void merge(std::vector<int32_t>& syms, bool heap) const;

  int32_t token_to_id(std::string_view token) const { return vocab_.find(token); }
  // Whether a vocabulary entry has this id (ids may have gaps).
  bool has_id(int32_t id) const { return id >= 0 && id < size() && has_id_[static_cast<size_t>(id)]; }
  // The bytes of an id as the ByteLevel decoder sees them: the token's characters mapped back to
  // bytes, or its UTF-8 text when some character is outside the byte alphabet ("" for no token).
  const std::string& id_bytes(int32_t id) const;
  // One past the largest vocabulary id.
  int32_t size() const { return static_cast<int32_t>(id_bytes_.size()); }
  size_t num_entries() const { return vocab_.size(); }
  size_t num_merges() const { return merges_.size(); }

  // Words up to this many bytes use the scan merge; longer ones use the heap.
  static constexpr size_t kHeapThreshold = 96;

 private:
  void initial_symbols(std::string_view word, std::vector<int32_t>& syms) const;
  void merge_scan(std::vector<int32_t>& syms) const;
  void merge_heap(std::vector<int32_t>& syms) const;

  StringIdMap vocab_;       // byte-level token string → id
  StringIdMap raw_vocab_;   // raw bytes → id, for tokens entirely inside the ByteLevel alphabet
  std::vector<std::string> id_bytes_;
  std::vector<uint8_t> has_id_;
  PairRankMap merges_;
  // Initial symbol(s) for each byte: normally one id; byte_fallback may give several; empty means
  // unknown (then unk_ applies, or the byte is dropped as tokenizers does without an unk token).
  std::vector<int32_t> byte_syms_[256];
  bool byte_fallback_[256] = {};  // byte_syms_[b] are byte-fallback tokens ("<0xC4>", …)
  int32_t unk_ = -1;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  bool simple_bytes_ = true;  // every byte maps to exactly one id
  uint64_t instance_;         // identifies this model's entries in the per-thread word caches
};

}  // namespace infer
