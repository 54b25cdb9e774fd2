// tokenizer_regex.cpp — Oniguruma wrapper and the Split pre-tokenizer's behaviours.
#include "tokenizer_regex.h"

#include <oniguruma.h>

#include <mutex>

#include "common.h"
#include "unicode.h"

namespace infer {

namespace {

void onig_init_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encs[1] = {ONIG_ENCODING_UTF8};
    onig_initialize(encs, 1);
  });
}

// One match region per thread, reused by every search on that thread.
struct RegionHolder {
  OnigRegion* region = onig_region_new();
  ~RegionHolder() { onig_region_free(region, 1); }
};

OnigRegion* thread_region() {
  thread_local RegionHolder holder;
  return holder.region;
}

}  // namespace

OnigRegex::OnigRegex(std::string_view pattern, const std::string& where) {
  onig_init_once();
  regex_t* reg = nullptr;
  OnigErrorInfo einfo{};
  const auto* p = reinterpret_cast<const UChar*>(pattern.data());
  // The onig crate's Regex::new: UTF-8, no options, the library's default syntax (Oniguruma).
  const int r = onig_new(&reg, p, p + pattern.size(), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8,
                         ONIG_SYNTAX_DEFAULT, &einfo);
  if (r != ONIG_NORMAL) {
    UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
    onig_error_code_to_str(msg, r, &einfo);
    fail(INFER_ERR_FORMAT, where + ": invalid regex: " + reinterpret_cast<const char*>(msg));
  }
  reg_ = reg;
}

OnigRegex::~OnigRegex() {
  if (reg_) onig_free(static_cast<regex_t*>(reg_));
}

void OnigRegex::find_all(std::string_view text, std::vector<Span>& out) const {
  auto* reg = static_cast<regex_t*>(reg_);
  OnigRegion* region = thread_region();
  const auto* str = reinterpret_cast<const UChar*>(text.data());
  const auto* end = str + text.size();
  size_t last_end = 0;
  bool have_last = false;
  size_t last_match_end = 0;
  while (last_end <= text.size()) {
    const int r = onig_search(reg, str, end, str + last_end, end, region, ONIG_OPTION_NONE);
    if (r == ONIG_MISMATCH) break;
    if (r < 0) {
      UChar msg[ONIG_MAX_ERROR_MESSAGE_LEN];
      onig_error_code_to_str(msg, r);
      fail(INFER_ERR_INTERNAL, std::string("regex search failed: ") + reinterpret_cast<const char*>(msg));
    }
    const auto s = static_cast<size_t>(region->beg[0]);
    const auto e = static_cast<size_t>(region->end[0]);
    if (s == e && have_last && last_match_end == e) {
      // An empty match right after the previous one: step over one character and retry.
      if (last_end < text.size()) {
        last_end += unicode::utf8_step(text.substr(last_end)).len;
      } else {
        last_end += 1;
      }
      continue;
    }
    last_end = e;
    last_match_end = e;
    have_last = true;
    out.push_back({static_cast<uint32_t>(s), static_cast<uint32_t>(e)});
  }
}

bool OnigRegex::match_at_start(std::string_view text) const {
  const auto* str = reinterpret_cast<const UChar*>(text.data());
  const int r = onig_match(static_cast<regex_t*>(reg_), str, str + text.size(), str, nullptr, ONIG_OPTION_NONE);
  return r >= 0;
}

void split_by_regex(const OnigRegex& re, SplitBehavior behavior, bool invert, std::string_view text,
                    uint32_t base, std::vector<Span>& out, std::vector<Span>& matches) {
  if (text.empty()) return;  // the single empty piece would be dropped anyway
  matches.clear();
  re.find_all(text, matches);

  // Walk the segments (gaps and matches, covering the text in order) without materialising them.
  const auto n = static_cast<uint32_t>(text.size());
  const size_t first_out = out.size();
  bool previous_match = false;
  std::vector<std::pair<Span, bool>> merge_next;
  auto emit = [&](uint32_t b, uint32_t e, bool is_match) {
    if (invert) is_match = !is_match;
    switch (behavior) {
      case SplitBehavior::kIsolated:
        out.push_back({base + b, base + e});
        break;
      case SplitBehavior::kRemoved:
        if (!is_match) out.push_back({base + b, base + e});
        break;
      case SplitBehavior::kContiguous:
        if (is_match == previous_match && out.size() > first_out) {
          out.back().end = base + e;
        } else {
          out.push_back({base + b, base + e});
        }
        break;
      case SplitBehavior::kMergedWithPrevious:
        if (is_match && !previous_match && out.size() > first_out) {
          out.back().end = base + e;
        } else {
          out.push_back({base + b, base + e});
        }
        break;
      case SplitBehavior::kMergedWithNext:
        merge_next.push_back({{base + b, base + e}, is_match});  // folded from the right below
        break;
    }
    previous_match = is_match;
  };
  uint32_t prev = 0;
  for (const Span& m : matches) {
    if (prev != m.begin) emit(prev, m.begin, false);
    emit(m.begin, m.end, true);
    prev = m.end;
  }
  if (prev != n) emit(prev, n, false);

  if (behavior == SplitBehavior::kMergedWithNext) {
    // tokenizers folds the reversed segments: a match following a non-match (in reverse order)
    // extends the piece after it to start at the match.
    std::vector<Span> acc;
    bool prev_match = false;
    for (auto it = merge_next.rbegin(); it != merge_next.rend(); ++it) {
      const auto [s, is_match] = *it;
      if (is_match && !prev_match && !acc.empty()) {
        acc.back().begin = s.begin;
      } else {
        acc.push_back(s);
      }
      prev_match = is_match;
    }
    out.insert(out.end(), acc.rbegin(), acc.rend());
  }

  // PreTokenizedString::split drops empty pieces.
  size_t w = first_out;
  for (size_t r = first_out; r < out.size(); ++r) {
    if (out[r].end > out[r].begin) out[w++] = out[r];
  }
  out.resize(w);
}

std::string regex_escape(std::string_view s) {
  // The metacharacters of Rust's regex::escape; escaping them with a backslash is also literal in
  // Oniguruma's syntax.
  static constexpr std::string_view kMeta = "\\.+*?()|[]{}^$#&-~";
  std::string out;
  out.reserve(s.size() * 2);
  for (char c : s) {
    if (kMeta.find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

}  // namespace infer
