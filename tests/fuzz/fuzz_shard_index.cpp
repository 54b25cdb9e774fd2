// fuzz_shard_index.cpp — model.safetensors.index.json text through parse_shard_index. An accepted index must
// name only plain relative paths (no escape from the model directory) and no empty shard.
#include <filesystem>

#include "fuzz_common.h"
#include "safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = infer::fuzz::as_string(data, size);
  infer::fuzz::expect_handled([&] {
    const auto shards = infer::parse_shard_index(text, "model.safetensors.index.json");
    if (shards.empty()) infer::fuzz::finding("an accepted index has no shards");
    for (const auto& [file, tensors] : shards) {
      const std::filesystem::path p(file);
      if (file.empty() || p.is_absolute()) infer::fuzz::finding("accepted shard name '" + file + "'");
      for (const auto& part : p)
        if (part == "..") infer::fuzz::finding("accepted shard name '" + file + "' escapes the directory");
      if (tensors.empty()) infer::fuzz::finding("shard " + file + " with no tensors");
    }
  });
  return 0;
}
