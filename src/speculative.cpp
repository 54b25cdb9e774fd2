// speculative.cpp — see speculative.h.
#include "speculative.h"

#include <algorithm>

#include "common.h"

namespace infer {

Speculator::Speculator(Session& s, int64_t n_draft) : s_(s), n_draft_(std::max<int64_t>(1, n_draft)), active_(s.mtp()) {}

int64_t Speculator::n_past() const { return in_round_ ? p_ + i_ + 1 : s_.n_past(); }

void Speculator::flush() {
  if (in_round_) s_.truncate(p_ + i_ + 1);
  in_round_ = false;
}

const float* Speculator::advance(int32_t id) {
  if (!active_) {
    s_.eval(&id, 1, false);
    return s_.logits();
  }
  const int64_t V = s_.model().vocab_size();
  if (in_round_ && i_ + 1 < n_) {
    ++drafted_;  // the draft for this position is checked now
    if (batch_[size_t(i_ + 1)] == id) {
      // It is the token sampled: its row (computed with it in place) is already here.
      ++i_;
      ++accepted_;
      return logits_.data() + i_ * V;
    }
  }
  // A mismatch (or the round is used up): drop the unchecked drafts, then a new round from `id`.
  flush();
  const int64_t room = s_.n_ctx() - s_.n_past() - 1;  // positions left after `id`
  if (room < 0) fail(INFER_ERR_CONTEXT_FULL, "speculative decoding: the context is full");
  batch_.assign(size_t(1 + n_draft_), 0);
  batch_[0] = id;
  const int64_t k = s_.draft(id, std::min(n_draft_, room), batch_.data() + 1);
  p_ = s_.n_past();
  n_ = 1 + k;
  i_ = 0;
  s_.eval(batch_.data(), n_, true);
  ++rounds_;
  logits_.assign(s_.logits(), s_.logits() + n_ * V);
  in_round_ = true;
  return logits_.data();
}

}  // namespace infer
