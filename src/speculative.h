// speculative.h — self-speculative decoding with the model's own draft head (DeepSeek-V3/R1 MTP; model-spec §5).
//
// Each round: the head drafts k tokens after the token just sampled (Session::draft), the main model evaluates
// [sampled, drafts…] in one batched forward, and the caller's sampler then walks the k + 1 logit rows: a draft is
// taken while it equals the token the sampler picks from the row before it; at the first mismatch the rest of the
// round is dropped from the KV caches (main and MTP) and the next round starts from the token actually sampled.
// Every emitted token is thus sampled from the main model's logits for exactly the prefix plain decoding would have
// (the batched rows equal one-at-a-time rows bit for bit on the CPU), so the output is the same as without drafts —
// for greedy and, given the same random stream, for sampling too; only the number of forward passes changes.
#pragma once
#include <cstdint>
#include <vector>

#include "session.h"

namespace infer {

class Speculator {
 public:
  // n_draft: tokens drafted per round (the MTP module is trained to predict one; more are chained through it).
  // Inactive (plain decoding through the session) when the session runs no draft head.
  Speculator(Session& s, int64_t n_draft = 1);
  bool active() const { return active_; }

  // `id` was sampled from the last logits handed out (the session's after the prompt, then this method's): appends
  // it and returns the logits of the next position (valid until the next call).
  const float* advance(int32_t id);
  // Tokens confirmed in the cache: those handed to advance(), plus the prompt (drafts awaiting their check excluded).
  int64_t n_past() const;
  // Drops unconfirmed drafts from the caches: the session then holds what plain decoding would have cached.
  void flush();

  int64_t drafted() const { return drafted_; }    // drafts checked against a sampled token (not those left unchecked
                                                  // when generation ends or a round is cut short by a rejection)
  int64_t accepted() const { return accepted_; }  // of those, taken
  int64_t rounds() const { return rounds_; }      // batched verification forwards

 private:
  Session& s_;
  int64_t n_draft_;
  bool active_;
  bool in_round_ = false;
  int64_t p_ = 0;  // position of the round's first token (the sampled one)
  int64_t n_ = 0;  // tokens evaluated in the round (1 + drafts)
  int64_t i_ = 0;  // logit row handed out last
  std::vector<int32_t> batch_;   // [sampled, drafts…]
  std::vector<float> logits_;    // [n_, vocab]
  int64_t drafted_ = 0, accepted_ = 0, rounds_ = 0;
};

}  // namespace infer
