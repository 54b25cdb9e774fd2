// kv_blocks.cpp — see kv_blocks.h.
#include "server/kv_blocks.h"

#include <algorithm>

#include "common.h"

namespace infer::server {

BlockPool::BlockPool(int64_t n_blocks, int64_t block_size)
    : block_size_(block_size), refs_(size_t(std::max<int64_t>(0, n_blocks)), 0),
      entries_(size_t(std::max<int64_t>(0, n_blocks))) {
  if (n_blocks <= 0 || block_size <= 0) fail(INFER_ERR_INVALID_ARG, "KV block pool: sizes must be positive");
  if (n_blocks > INT32_MAX) fail(INFER_ERR_INVALID_ARG, "KV block pool: too many blocks");
  for (int64_t b = n_blocks - 1; b >= 0; --b) free_.push_back(int32_t(b));  // hands out 0, 1, 2, … first
}

uint64_t BlockPool::chain_key(uint64_t parent_key, const int32_t* tokens) const {
  // splitmix64 steps over the parent key and the tokens.
  uint64_t h = parent_key;
  auto mix = [&](uint64_t v) {
    h += v + 0x9e3779b97f4a7c15ull;
    uint64_t z = h;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    h = z ^ (z >> 31);
  };
  for (int64_t i = 0; i < block_size_; ++i) mix(uint64_t(uint32_t(tokens[i])));
  return h;
}

int32_t BlockPool::allocate() {
  int32_t b = -1;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {
    b = lru_.front();
    lru_.pop_front();
    unregister(b);
  } else {
    return -1;
  }
  refs_[size_t(b)] = 1;
  ++n_used_;
  return b;
}

void BlockPool::retain(int32_t b) {
  Entry& e = entries_[size_t(b)];
  if (refs_[size_t(b)]++ == 0) {
    ++n_used_;
    if (e.registered) lru_.erase(e.lru);
  }
}

void BlockPool::release(int32_t b) {
  if (refs_[size_t(b)] <= 0) fail(INFER_ERR_INTERNAL, "KV block pool: block " + std::to_string(b) + " released twice");
  if (--refs_[size_t(b)] > 0) return;
  --n_used_;
  Entry& e = entries_[size_t(b)];
  if (e.registered) {
    e.lru = lru_.insert(lru_.end(), b);
  } else {
    free_.push_back(b);
  }
}

void BlockPool::unregister(int32_t b) {
  Entry& e = entries_[size_t(b)];
  if (!e.registered) return;
  auto it = by_key_.find(e.key);
  if (it != by_key_.end() && it->second == b) by_key_.erase(it);
  e.registered = false;
  e.tokens.clear();
}

std::vector<int32_t> BlockPool::match_prefix(const int32_t* tokens, int64_t n_tokens, int64_t max_blocks,
                                             uint64_t* key) {
  std::vector<int32_t> out;
  uint64_t k = kRootKey;
  for (int64_t i = 0; i < max_blocks && (i + 1) * block_size_ <= n_tokens; ++i) {
    const int32_t* t = tokens + i * block_size_;
    const uint64_t next = chain_key(k, t);
    auto it = by_key_.find(next);
    if (it == by_key_.end()) break;
    const Entry& e = entries_[size_t(it->second)];
    if (e.parent != k || !std::equal(e.tokens.begin(), e.tokens.end(), t)) break;  // a hash collision
    retain(it->second);
    out.push_back(it->second);
    k = next;
  }
  if (key) *key = k;
  return out;
}

uint64_t BlockPool::publish(int32_t b, uint64_t parent_key, const int32_t* tokens) {
  const uint64_t k = chain_key(parent_key, tokens);
  Entry& e = entries_[size_t(b)];
  if (e.registered || by_key_.count(k)) return k;
  e.key = k;
  e.parent = parent_key;
  e.tokens.assign(tokens, tokens + block_size_);
  e.registered = true;
  by_key_[k] = b;
  return k;
}

}  // namespace infer::server
