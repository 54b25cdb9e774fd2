// tokenizer_regex.h — Oniguruma regexes with the semantics HF tokenizers gives them (the `onig`
// crate: UTF-8, ONIG_OPTION_NONE, the default Oniguruma syntax), plus the pre-tokenizer Split.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace infer {

// A byte range [begin, end) inside some text.
struct Span {
  uint32_t begin, end;
};

// Owns a compiled Oniguruma regex. Searching is thread-safe (each call uses its own region).
class OnigRegex {
 public:
  // Throws infer::Error(INFER_ERR_FORMAT) with `where` and Oniguruma's message if it does not compile.
  OnigRegex(std::string_view pattern, const std::string& where);
  ~OnigRegex();
  OnigRegex(const OnigRegex&) = delete;
  OnigRegex& operator=(const OnigRegex&) = delete;

  // Appends every match in text to out (as HF's onig find_iter: searches start at the previous
  // match's end with the whole text as context; an empty match right after the previous match is
  // skipped by advancing one character). Offsets are relative to text.data().
  void find_all(std::string_view text, std::vector<Span>& out) const;
  // True when the regex matches a prefix of text starting at text[0] (anchored match).
  bool match_at_start(std::string_view text) const;

 private:
  void* reg_ = nullptr;  // regex_t*
};

// The pre-tokenizer Split's delimiter behaviour (tokenizers' SplitDelimiterBehavior).
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Splits text by the matches of re under `behavior` (with `invert` swapping matches and gaps), as
// NormalizedString::split does; empty pieces are dropped as PreTokenizedString::split does.
// Pieces are appended to out, offset by `base`. `matches` is scratch space.
void split_by_regex(const OnigRegex& re, SplitBehavior behavior, bool invert, std::string_view text,
                    uint32_t base, std::vector<Span>& out, std::vector<Span>& matches);

// Escapes every regex metacharacter so that s matches literally (tokenizers' Split with a
// {"String": …} pattern goes through regex::escape).
std::string regex_escape(std::string_view s);

}  // namespace infer
