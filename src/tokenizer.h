// tokenizer.h — byte-level BPE driven by a Hugging Face tokenizer.json (+ tokenizer_config.json).
// Follows the file (normalizer, pre-tokenizer sequence, BPE model, added tokens, decoder) rather than
// hard-coded family logic; the regex semantics are Oniguruma's, as in HF tokenizers.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace infer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads dir/tokenizer.json and, if present, dir/tokenizer_config.json. Throws infer::Error
  // (INFER_ERR_IO / INFER_ERR_FORMAT / INFER_ERR_UNSUPPORTED) naming the file and field.
  static std::unique_ptr<Tokenizer> load(const std::string& dir);
  // The same from in-memory texts (config_json may be null); `name` stands for the directory in messages.
  static std::unique_ptr<Tokenizer> from_json(const std::string& tokenizer_json, const std::string* config_json,
                                              const std::string& name);

  // add_special: prepend BOS / append EOS as tokenizer_config.json (add_bos_token/add_eos_token) or
  // the tokenizer.json post-processor asks — what transformers' AutoTokenizer does with
  // add_special_tokens=True. Added tokens inside the text are always matched whole.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special = false) const = 0;
  // Concatenated bytes of the tokens (ByteLevel decoder). skip_special drops special added tokens.
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const = 0;
  // The raw bytes one token stands for (after the ByteLevel decoder; may be a partial UTF-8 char).
  virtual std::string token_bytes(int32_t id) const = 0;
  // The id of a token by its exact vocabulary/added-token string, or -1.
  virtual int32_t token_id(std::string_view token) const = 0;
  // One past the largest id (BPE vocab and added tokens).
  virtual int32_t vocab_size() const = 0;
  virtual bool is_special(int32_t id) const = 0;
  virtual int32_t bos_id() const = 0;  // -1 if none
  virtual int32_t eos_id() const = 0;  // -1 if none
  // The chat_template string from tokenizer_config.json ("" if none).
  virtual const std::string& chat_template() const = 0;
};

// Streaming detokenizer: feed ids one at a time, get back only complete UTF-8 text (a token that
// ends mid-character is held until the character completes; never emits U+FFFD for a split char).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  // Returns the newly complete text released by this token (possibly empty).
  std::string push(int32_t id);
  // Whatever is still pending at the end (invalid UTF-8 is returned as U+FFFD, as HF decode does).
  std::string flush();
  void reset() { pending_.clear(); }

 private:
  const Tokenizer& tok_;
  std::string pending_;
};

}  // namespace infer
