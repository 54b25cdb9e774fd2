// kv_blocks.h — the bookkeeping of the paged KV cache (host side; the memory itself is the model's paged state,
// Transformer::new_paged_state): a pool of fixed-size blocks with a free list and reference counts, and a prefix
// cache of full blocks keyed by their content, so that sequences starting with the same tokens (a shared system
// prompt, the earlier turns of a conversation) share the blocks that hold them instead of computing them again.
//
// A block is in one of three states: free (never filled, or evicted), in use (reference count > 0), or cached
// (count 0, but its full contents are registered and a later sequence may take it back). allocate() takes free
// blocks first, then evicts the cached block released longest ago. The key of a full block is a hash chained over
// every token of the sequence up to its end; a lookup also compares the block's own tokens and its parent's key.
#pragma once
#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

namespace infer::server {

class BlockPool {
 public:
  BlockPool(int64_t n_blocks, int64_t block_size);

  int64_t n_blocks() const { return int64_t(refs_.size()); }
  int64_t block_size() const { return block_size_; }
  int64_t n_used() const { return n_used_; }                            // referenced by a sequence
  int64_t n_available() const { return n_blocks() - n_used_; }          // free + cached (allocate() can have them)
  int64_t n_cached() const { return int64_t(by_key_.size()); }          // registered in the prefix cache
  int64_t refs(int32_t b) const { return refs_[size_t(b)]; }

  // A block with one reference, or -1 when every block is in use.
  int32_t allocate();
  void retain(int32_t b);
  // Drops one reference; at zero the block becomes cached (if registered) or free.
  void release(int32_t b);

  // The key that chains a full block's tokens onto the key of the blocks before it (kRootKey for the first).
  static constexpr uint64_t kRootKey = 0x9e3779b97f4a7c15ull;
  uint64_t chain_key(uint64_t parent_key, const int32_t* tokens) const;

  // The cached blocks holding tokens[0 .. k·block_size) for the largest k <= max_blocks, each retained for the
  // caller; *key receives the chain key after them (kRootKey when k = 0).
  std::vector<int32_t> match_prefix(const int32_t* tokens, int64_t n_tokens, int64_t max_blocks, uint64_t* key);
  // Registers block b (in use, full) as holding `tokens` (block_size of them) after the blocks whose chain key is
  // parent_key; returns b's chain key. A block with the same key already cached is kept and b stays unregistered.
  uint64_t publish(int32_t b, uint64_t parent_key, const int32_t* tokens);

 private:
  struct Entry {
    uint64_t key = 0, parent = 0;
    bool registered = false;
    std::vector<int32_t> tokens;
    std::list<int32_t>::iterator lru;  // valid while cached with no reference
  };
  void unregister(int32_t b);

  int64_t block_size_;
  int64_t n_used_ = 0;
  std::vector<int32_t> refs_;
  std::vector<Entry> entries_;
  std::vector<int32_t> free_;                  // never filled or evicted (a stack)
  std::list<int32_t> lru_;                     // cached, unreferenced: oldest release first
  std::unordered_map<uint64_t, int32_t> by_key_;
};

}  // namespace infer::server
