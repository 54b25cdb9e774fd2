// tokenizer_bpe.cpp — BPE vocabulary/merges tables and the merge loop (HF tokenizers' BPE model:
// repeatedly apply the lowest-ranked merge, leftmost first; ignore_merges looks the whole word up).
#include "tokenizer_bpe.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>

#include "common.h"
#include "unicode.h"

namespace infer {

// ---------------------------------------------------------------------------------------------
// Hashing and the two open-addressing maps.

uint64_t hash_bytes(std::string_view s) {
  // A small multiply-xorshift hash over 8-byte words: fast for the short keys BPE sees.
  constexpr uint64_t kMul = 0x9E3779B97F4A7C15ull;
  uint64_t h = 0x243F6A8885A308D3ull ^ (s.size() * kMul);
  const char* p = s.data();
  size_t n = s.size();
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * kMul;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * kMul;
    h ^= h >> 29;
  }
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 31;
  return h;
}

void StringIdMap::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  if (cap <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
  for (const Slot& s : old) {
    if (s.id < 0) continue;
    uint64_t i = s.hash & mask_;
    while (slots_[i].id >= 0) i = (i + 1) & mask_;
    slots_[i] = s;
  }
}

void StringIdMap::set(std::string_view key, int32_t id) {
  if ((count_ + 1) * 2 > slots_.size()) reserve(std::max<size_t>(16, (count_ + 1) * 2));
  const uint64_t h = hash_bytes(key);
  for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.id < 0) {
      s.hash = h;
      s.off = static_cast<uint32_t>(arena_.size());
      s.len = static_cast<uint32_t>(key.size());
      s.id = id;
      arena_.append(key);
      ++count_;
      return;
    }
    if (s.hash == h && std::string_view(arena_.data() + s.off, s.len) == key) {
      s.id = id;
      return;
    }
  }
}

int32_t StringIdMap::find(std::string_view key) const {
  if (slots_.empty()) return -1;
  const uint64_t h = hash_bytes(key);
  for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
    const Slot& s = slots_[i];
    if (s.id < 0) return -1;
    if (s.hash == h && s.len == key.size() && std::memcmp(arena_.data() + s.off, key.data(), s.len) == 0) {
      return s.id;
    }
  }
}

void PairRankMap::reserve(size_t n) {
  size_t cap = 16;
  int bits = 4;
  while (cap < n * 2) {
    cap <<= 1;
    ++bits;
  }
  if (cap <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
  shift_ = 64 - bits;
  for (const Slot& s : old) {
    if (s.key == kEmpty) continue;
    uint64_t i = slot_of(s.key);
    while (slots_[i].key != kEmpty) i = (i + 1) & mask_;
    slots_[i] = s;
  }
}

void PairRankMap::set(int32_t a, int32_t b, Value v) {
  if ((count_ + 1) * 2 > slots_.size()) reserve(std::max<size_t>(16, (count_ + 1) * 2));
  const uint64_t key = make_key(a, b);
  for (uint64_t i = slot_of(key);; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.key == key) {
      s.value = v;
      return;
    }
    if (s.key == kEmpty) {
      s.key = key;
      s.value = v;
      ++count_;
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The GPT-2 byte alphabet.

ByteLevelAlphabet::ByteLevelAlphabet() {
  // Printable bytes map to themselves; the rest, in byte order, to U+0100, U+0101, …
  auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); };
  std::fill(std::begin(cp_to_byte), std::end(cp_to_byte), static_cast<int16_t>(-1));
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    byte_to_cp[b] = printable(b) ? static_cast<char32_t>(b) : next++;
    cp_to_byte[byte_to_cp[b]] = static_cast<int16_t>(b);
  }
}

const ByteLevelAlphabet& ByteLevelAlphabet::get() {
  static const ByteLevelAlphabet alphabet;
  return alphabet;
}

std::string ByteLevelAlphabet::encode(std::string_view raw) const {
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char b : raw) unicode::append_utf8(out, byte_to_cp[b]);
  return out;
}

bool ByteLevelAlphabet::decode(std::string_view s, std::string& out) const {
  std::string bytes;
  bytes.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const char32_t cp = unicode::next_cp(s, i);
    if (cp >= 512 || cp_to_byte[cp] < 0) return false;
    bytes += static_cast<char>(cp_to_byte[cp]);
  }
  out = std::move(bytes);
  return true;
}

// ---------------------------------------------------------------------------------------------
// The model.

namespace {

constexpr uint32_t kNoRank = ~0u;

// Word → ids cache, one per thread and model (encode is const and may run on many threads). A
// direct-mapped table of fixed-size entries: no allocation per word, no locks; a colliding word
// just replaces the entry. Words longer than kMaxKey bytes or with more than kMaxIds tokens are not
// cached (they are rare, and their merge loop dominates the lookup anyway).
constexpr size_t kCacheSlots = size_t{1} << 14;
constexpr size_t kMaxKey = 22;
constexpr size_t kMaxIds = 8;

struct CacheEntry {
  uint64_t hash = 0;
  uint8_t key_len = 0, n_ids = 0;
  char key[kMaxKey];
  int32_t ids[kMaxIds];
};

struct WordCache {
  uint64_t owner = 0;  // BpeModel::instance_ (never reused, so a dead model's entries never match)
  std::vector<CacheEntry> slots;
};

WordCache& thread_cache(uint64_t owner) {
  thread_local std::array<WordCache, 2> caches;
  thread_local size_t next = 0;
  for (WordCache& c : caches) {
    if (c.owner == owner) return c;
  }
  WordCache& c = caches[next++ % caches.size()];
  c.owner = owner;
  c.slots.assign(kCacheSlots, CacheEntry{});
  return c;
}

std::atomic<uint64_t> next_instance{1};

}  // namespace

BpeModel::BpeModel(Config cfg, const std::string& where)
    : fuse_unk_(cfg.fuse_unk), ignore_merges_(cfg.ignore_merges), instance_(next_instance++) {
  const ByteLevelAlphabet& alpha = ByteLevelAlphabet::get();

  int32_t max_id = -1;
  vocab_.reserve(cfg.vocab.size());
  raw_vocab_.reserve(cfg.vocab.size());
  for (const auto& [tok, id] : cfg.vocab) {
    vocab_.set(tok, id);
    max_id = std::max(max_id, id);
  }
  id_bytes_.assign(static_cast<size_t>(max_id + 1), std::string());
  has_id_.assign(static_cast<size_t>(max_id + 1), 0);
  const bool duplicate_keys = vocab_.size() < cfg.vocab.size();
  for (auto& [tok, id] : cfg.vocab) {
    const auto slot = static_cast<size_t>(id);
    if (duplicate_keys && vocab_.find(tok) != id) continue;  // a repeated key: the later entry won
    has_id_[slot] = 1;
    std::string& bytes = id_bytes_[slot];
    if (alpha.decode(tok, bytes)) {
      raw_vocab_.set(bytes, id);  // reachable from byte-level words
    } else {
      bytes = tok;
    }
  }

  if (!cfg.unk_token.empty()) {
    unk_ = vocab_.find(cfg.unk_token);
    if (unk_ < 0) fail(INFER_ERR_FORMAT, where + ".unk_token \"" + cfg.unk_token + "\" is not in model.vocab");
  }

  // Initial symbols: the byte's alphabet character, else its byte-fallback tokens, else unknown.
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    unicode::append_utf8(ch, alpha.byte_to_cp[b]);
    const int32_t id = vocab_.find(ch);
    if (id >= 0) {
      byte_syms_[b] = {id};
      continue;
    }
    simple_bytes_ = false;
    if (cfg.byte_fallback) {
      std::vector<int32_t> ids;
      for (unsigned char c : ch) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", c);
        const int32_t fid = vocab_.find(name);
        if (fid < 0) {
          ids.clear();
          break;
        }
        ids.push_back(fid);
      }
      if (!ids.empty()) {
        byte_syms_[b] = std::move(ids);
        byte_fallback_[b] = true;
      }
    }
  }

  // Merges: rank = position in the list; the merged token is the concatenation of the two.
  merges_.reserve(cfg.merges.size());
  std::string joined;
  for (size_t rank = 0; rank < cfg.merges.size(); ++rank) {
    const auto& [a, b] = cfg.merges[rank];
    const int32_t a_id = vocab_.find(a);
    const int32_t b_id = vocab_.find(b);
    const std::string at = where + ".merges[" + std::to_string(rank) + "]";
    if (a_id < 0) fail(INFER_ERR_FORMAT, at + ": token \"" + a + "\" is not in model.vocab");
    if (b_id < 0) fail(INFER_ERR_FORMAT, at + ": token \"" + b + "\" is not in model.vocab");
    joined.assign(a).append(b);
    const int32_t new_id = vocab_.find(joined);
    if (new_id < 0) fail(INFER_ERR_FORMAT, at + ": merged token \"" + joined + "\" is not in model.vocab");
    merges_.set(a_id, b_id, {static_cast<uint32_t>(rank), new_id});
  }
}

const std::string& BpeModel::id_bytes(int32_t id) const {
  static const std::string empty;
  if (id < 0 || static_cast<size_t>(id) >= id_bytes_.size()) return empty;
  return id_bytes_[static_cast<size_t>(id)];
}

void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& syms) const {
  syms.clear();
  if (simple_bytes_) {
    for (unsigned char b : word) syms.push_back(byte_syms_[b][0]);
    return;
  }
  // The general case mirrors BPE::merge_word: known characters flush a pending unknown; byte
  // fallback tokens are appended directly; unknowns become unk (fused when fuse_unk) or vanish.
  bool pending_unk = false;
  for (unsigned char b : word) {
    const std::vector<int32_t>& s = byte_syms_[b];
    if (!s.empty() && !byte_fallback_[b]) {
      if (pending_unk) syms.push_back(unk_);
      pending_unk = false;
      syms.push_back(s[0]);
    } else if (!s.empty()) {
      syms.insert(syms.end(), s.begin(), s.end());
    } else if (unk_ >= 0) {
      if (pending_unk && !fuse_unk_) syms.push_back(unk_);
      pending_unk = true;
    }
  }
  if (pending_unk) syms.push_back(unk_);
}

void BpeModel::merge_scan(std::vector<int32_t>& syms) const {
  // For short words: keep the rank of every adjacent pair and rescan for the minimum after each
  // merge; only the two pairs touching the merged symbol need a new lookup.
  size_t n = syms.size();
  if (n < 2) return;
  uint32_t ranks[kHeapThreshold + 8];
  int32_t ids[kHeapThreshold + 8];
  for (size_t i = 0; i + 1 < n; ++i) {
    const PairRankMap::Value* v = merges_.find(syms[i], syms[i + 1]);
    ranks[i] = v ? v->rank : kNoRank;
    ids[i] = v ? v->id : -1;
  }
  while (true) {
    uint32_t best = kNoRank;
    size_t at = 0;
    for (size_t i = 0; i + 1 < n; ++i) {
      if (ranks[i] < best) {
        best = ranks[i];
        at = i;
      }
    }
    if (best == kNoRank) break;
    syms[at] = ids[at];
    // Remove symbol at+1 and pair at+1 (pair `at` now joins at and at+2). Plain loops: the arrays
    // are short, and a memmove call costs more than the copy.
    for (size_t i = at + 1; i + 1 < n; ++i) syms[i] = syms[i + 1];
    for (size_t i = at + 1; i + 2 < n; ++i) {
      ranks[i] = ranks[i + 1];
      ids[i] = ids[i + 1];
    }
    --n;
    if (at + 1 < n) {
      const PairRankMap::Value* v = merges_.find(syms[at], syms[at + 1]);
      ranks[at] = v ? v->rank : kNoRank;
      ids[at] = v ? v->id : -1;
    }
    if (at > 0) {
      const PairRankMap::Value* v = merges_.find(syms[at - 1], syms[at]);
      ranks[at - 1] = v ? v->rank : kNoRank;
      ids[at - 1] = v ? v->id : -1;
    }
  }
  syms.resize(n);
}

void BpeModel::merge_heap(std::vector<int32_t>& syms) const {
  // For long words: tokenizers' Word::merge_all — a min-heap of candidate merges ordered by
  // (rank, position) over a doubly linked list of symbols; stale candidates are skipped.
  const auto n = static_cast<int32_t>(syms.size());
  if (n < 2) return;
  struct Node {
    int32_t id, prev, next;
  };
  struct Cand {
    uint32_t rank;
    int32_t pos, new_id;
  };
  // std heap functions build a max-heap; "less" here means lower priority.
  auto lower = [](const Cand& x, const Cand& y) { return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos; };
  std::vector<Node> nodes(static_cast<size_t>(n));
  std::vector<Cand> heap;
  heap.reserve(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) nodes[i] = {syms[i], i - 1, i + 1 < n ? i + 1 : -1};
  for (int32_t i = 0; i + 1 < n; ++i) {
    if (const PairRankMap::Value* v = merges_.find(syms[i], syms[i + 1])) heap.push_back({v->rank, i, v->id});
  }
  std::make_heap(heap.begin(), heap.end(), lower);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), lower);
    const Cand top = heap.back();
    heap.pop_back();
    Node& cur = nodes[top.pos];
    if (cur.id < 0 || cur.next < 0) continue;  // merged away, or now the last symbol
    Node& right = nodes[cur.next];
    const PairRankMap::Value* v = merges_.find(cur.id, right.id);
    if (!v || v->id != top.new_id) continue;  // the pair changed since this candidate was queued
    cur.id = top.new_id;
    right.id = -1;
    cur.next = right.next;
    if (cur.next >= 0) nodes[cur.next].prev = top.pos;
    if (cur.prev >= 0) {
      if (const PairRankMap::Value* w = merges_.find(nodes[cur.prev].id, cur.id)) {
        heap.push_back({w->rank, cur.prev, w->id});
        std::push_heap(heap.begin(), heap.end(), lower);
      }
    }
    if (cur.next >= 0) {
      if (const PairRankMap::Value* w = merges_.find(cur.id, nodes[cur.next].id)) {
        heap.push_back({w->rank, top.pos, w->id});
        std::push_heap(heap.begin(), heap.end(), lower);
      }
    }
  }
  size_t w = 0;
  for (int32_t i = 0; i >= 0; i = nodes[i].next) syms[w++] = nodes[i].id;
  syms.resize(w);
}

void BpeModel::merge(std::vector<int32_t>& syms, bool heap) const {
  if (heap || syms.size() > kHeapThreshold) {
    merge_heap(syms);
  } else {
    merge_scan(syms);
  }
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    // Llama-3 style: a word that is itself a token is taken whole, whatever the merges say.
    const int32_t id = raw_vocab_.find(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  if (word.size() == 1 && simple_bytes_) {
    out.push_back(byte_syms_[static_cast<unsigned char>(word[0])][0]);
    return;
  }
  const bool cacheable = word.size() <= kMaxKey;
  CacheEntry* entry = nullptr;
  uint64_t h = 0;
  if (cacheable) {
    h = hash_bytes(word) | 1;  // never 0, the empty entry's hash
    entry = &thread_cache(instance_).slots[h & (kCacheSlots - 1)];
    if (entry->hash == h && entry->key_len == word.size() && std::memcmp(entry->key, word.data(), word.size()) == 0) {
      out.insert(out.end(), entry->ids, entry->ids + entry->n_ids);
      return;
    }
  }
  thread_local std::vector<int32_t> syms;
  initial_symbols(word, syms);
  merge(syms, false);
  out.insert(out.end(), syms.begin(), syms.end());
  if (cacheable && syms.size() <= kMaxIds) {
    entry->hash = h;
    entry->key_len = static_cast<uint8_t>(word.size());
    entry->n_ids = static_cast<uint8_t>(syms.size());
    std::memcpy(entry->key, word.data(), word.size());
    std::copy(syms.begin(), syms.end(), entry->ids);
  }
}

}  // namespace infer
