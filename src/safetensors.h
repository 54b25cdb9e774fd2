// safetensors.h — memory-mapped safetensors files, single or sharded (model.safetensors.index.json).
// Every header is validated before use: header length within the file, JSON well-formed, dtype known,
// byte size == dtype size × shape product, offsets inside the data section and not overlapping.
// Errors (infer::Error, INFER_ERR_IO / INFER_ERR_FORMAT / INFER_ERR_UNSUPPORTED) name the file and tensor.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dtype.h"

namespace infer {

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;  // PyTorch order
  const uint8_t* data;         // into the mmap; valid while the SafeTensors object lives
  size_t nbytes;
  std::string file;            // file name (for error messages)
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  std::string shape_str() const;  // "[1024, 2048]"
};

// One mmapped file.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws INFER_ERR_IO
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

class SafeTensors {
 public:
  // Opens `dir`: model.safetensors.index.json if present (every shard it names must exist, every tensor
  // it maps must be in that shard), else every *.safetensors file in the directory (sorted).
  static std::unique_ptr<SafeTensors> open_dir(const std::string& dir);
  // Opens a single file.
  static std::unique_ptr<SafeTensors> open_file(const std::string& path);
  // Parses an in-memory safetensors image (for fuzzing); `name` is used in messages. Does not copy.
  static std::unique_ptr<SafeTensors> parse_buffer(const uint8_t* data, size_t size, const std::string& name);

  const TensorInfo* find(const std::string& name) const;  // nullptr if absent
  // Throws INFER_ERR_FORMAT "missing tensor NAME (expected shape […]) in DIR" if absent.
  const TensorInfo& get(const std::string& name) const;
  // Checks dtype-independent shape; throws INFER_ERR_FORMAT naming tensor, file, expected and actual shape
  // and, if given, the config.json field(s) the expectation came from.
  const TensorInfo& get(const std::string& name, const std::vector<int64_t>& expected_shape,
                        const std::string& config_fields = "") const;
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }  // __metadata__ of the first file
  std::string location() const { return location_; }  // directory or file path for messages

 private:
  void add_file(const std::string& path, const std::vector<std::string>* expected_names);
  void parse(const uint8_t* data, size_t size, const std::string& name);
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
  std::string location_;
};

// Parses the text of model.safetensors.index.json (`path` names it in messages): shard file → the tensors the
// weight_map puts there (shards sorted). Throws INFER_ERR_FORMAT for malformed JSON, a missing or empty weight_map,
// or a file name that is not a plain path inside the model directory.
std::map<std::string, std::vector<std::string>> parse_shard_index(const std::string& text, const std::string& path);

// Writes float32/int32 tensors to a safetensors file (used by `infer dump`). Writes PATH.tmp and renames.
struct WriteTensor {
  std::string name;
  DType dtype;  // F32 or I32
  std::vector<int64_t> shape;
  const void* data;
};
void write_safetensors(const std::string& path, const std::vector<WriteTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace infer
