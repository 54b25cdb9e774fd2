// safetensors.cpp — mmap + validation of safetensors files (single, sharded via the index, or every
// *.safetensors in a directory) and a small writer for f32/i32 dumps.
// Every untrusted number in a header is range-checked before it is used to form a pointer, so a
// malformed or truncated file fails with an infer::Error naming the file and tensor, never a crash.
#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "common.h"

namespace infer {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";

std::string errno_str(int err) { return std::strerror(err); }

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// Dtypes that the safetensors format defines but this build does not load.
bool is_known_unsupported_dtype(const std::string& s) {
  static const char* const kNames[] = {"U16", "U32", "U64", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"};
  for (const char* n : kNames)
    if (s == n) return true;
  return false;
}

// A JSON value that is a non-negative integer fitting in uint64 (bools and floats are not).
bool as_u64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    *out = uint64_t(v.get<int64_t>());
    return true;
  }
  return false;
}

std::string json_excerpt(const json& v) {
  std::string s = v.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(INFER_ERR_IO, "cannot open " + path + ": " + errno_str(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(INFER_ERR_IO, "cannot read " + path);
  return ss.str();
}

// True for a path string that would escape the model directory (absolute, or with a ".." component).
bool escapes_dir(const std::string& name) {
  fs::path p(name);
  if (p.is_absolute()) return true;
  for (const auto& part : p)
    if (part == "..") return true;
  return false;
}

}  // namespace

std::string TensorInfo::shape_str() const { return shape_string(shape); }

// ---------------------------------------------------------------------------------------------------
// MappedFile

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(INFER_ERR_IO, "cannot open " + path + ": " + errno_str(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail(INFER_ERR_IO, "cannot stat " + path + ": " + errno_str(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(INFER_ERR_IO, path + " is not a regular file");
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      fail(INFER_ERR_IO, "cannot mmap " + path + ": " + errno_str(err));
    }
    data_ = static_cast<const uint8_t*>(p);
    // The header is read right away; the weights are touched later, tensor by tensor, so leave their
    // readahead to the kernel (WILLNEED on a multi-GB shard would evict useful pages).
    ::madvise(p, std::min<size_t>(size_, 1 << 20), MADV_WILLNEED);
  }
  ::close(fd);  // the mapping keeps the file referenced
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

// ---------------------------------------------------------------------------------------------------
// Parsing

void SafeTensors::parse(const uint8_t* data, size_t size, const std::string& name) {
  if (size < 8)
    fail_format(name + ": file is " + std::to_string(size) +
                " bytes, shorter than the 8-byte safetensors header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > size - 8)
    fail_format(name + ": header length " + std::to_string(header_len) + " goes beyond the end of the file (" +
                std::to_string(size) + " bytes)");
  const char* hbegin = reinterpret_cast<const char*>(data + 8);
  const char* hend = hbegin + header_len;
  const uint8_t* data_section = data + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  // Parse in place (no copy of the header). The callback rejects duplicate top-level keys, which
  // nlohmann would otherwise resolve silently by keeping the last one.
  std::set<std::string> seen_keys;
  std::string duplicate_key;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && parsed.is_string()) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (!seen_keys.insert(k).second && duplicate_key.empty()) duplicate_key = k;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(hbegin, hend, on_event);
  } catch (const json::exception& e) {
    fail_format(name + ": malformed JSON header: " + e.what());
  }
  if (!header.is_object()) fail_format(name + ": the JSON header is not an object");
  if (!duplicate_key.empty()) fail_format(name + ": tensor " + duplicate_key + " appears twice in the header");

  struct Span {
    uint64_t begin, end;
    size_t index;  // into `parsed`
  };
  std::vector<Span> spans;
  std::vector<TensorInfo> parsed;
  parsed.reserve(header.size());

  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (value.is_null()) continue;
      if (!value.is_object()) fail_format(name + ": __metadata__ is not an object of strings");
      // Only the first file's metadata is kept (metadata() documents this).
      const bool keep = files_.size() <= 1 && metadata_.empty();
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string())
          fail_format(name + ": __metadata__ value for '" + mk + "' is not a string: " + json_excerpt(mv));
        if (keep) metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor " + key + " in " + name;
    if (!value.is_object()) fail_format(where + ": header entry is not an object: " + json_excerpt(value));
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!value.contains(field)) fail_format(where + ": header entry has no \"" + field + "\"");

    TensorInfo info;
    info.name = key;
    info.file = name;

    const json& jd = value["dtype"];
    if (!jd.is_string()) fail_format(where + ": dtype is not a string: " + json_excerpt(jd));
    const std::string& dname = jd.get_ref<const std::string&>();
    if (!dtype_from_name(dname, &info.dtype)) {
      if (is_known_unsupported_dtype(dname))
        fail(INFER_ERR_UNSUPPORTED, where + ": dtype " + dname + " is not supported");
      fail_format(where + ": unknown dtype '" + dname + "'");
    }

    const json& js = value["shape"];
    if (!js.is_array()) fail_format(where + ": shape is not an array: " + json_excerpt(js));
    uint64_t nbytes = dtype_size(info.dtype);
    bool overflow = false;
    for (const auto& d : js) {
      uint64_t dim = 0;
      if (!as_u64(d, &dim) || dim > uint64_t(INT64_MAX))
        fail_format(where + ": shape " + json_excerpt(js) + " has an entry that is not a non-negative integer");
      info.shape.push_back(int64_t(dim));
      overflow = overflow || __builtin_mul_overflow(nbytes, dim, &nbytes);
    }

    const json& jo = value["data_offsets"];
    uint64_t begin = 0, end = 0;
    if (!jo.is_array() || jo.size() != 2 || !as_u64(jo[0], &begin) || !as_u64(jo[1], &end))
      fail_format(where + ": data_offsets " + json_excerpt(jo) + " is not [begin, end] of non-negative integers");
    if (begin > end)
      fail_format(where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                  "] has begin > end");
    if (end > data_size)
      fail_format(where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                  "] lie outside the data section (" + std::to_string(data_size) + " bytes)");
    // A shape whose byte size overflows can never equal end - begin, which is bounded by the file size.
    if (overflow || nbytes != end - begin)
      fail_format(where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] span " +
                  std::to_string(end - begin) + " bytes but dtype " + dname + " × shape " + shape_string(info.shape) +
                  (overflow ? " overflows" : " needs " + std::to_string(nbytes) + " bytes"));
    info.data = data_section + begin;
    info.nbytes = size_t(nbytes);
    spans.push_back({begin, end, parsed.size()});
    parsed.push_back(std::move(info));
  }

  // Overlap: sort by begin; each non-empty tensor must start at or after the furthest end so far.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t max_end = 0;
  const TensorInfo* max_end_tensor = nullptr;
  for (const Span& s : spans) {
    if (s.begin == s.end) continue;
    const TensorInfo& t = parsed[s.index];
    if (max_end_tensor && s.begin < max_end)
      fail_format(name + ": tensors " + max_end_tensor->name + " and " + t.name + " overlap in the data section");
    if (s.end > max_end) {
      max_end = s.end;
      max_end_tensor = &t;
    }
  }

  for (auto& info : parsed) {
    auto it = tensors_.find(info.name);
    if (it != tensors_.end())
      fail_format("duplicate tensor " + info.name + ": in " + it->second.file + " and in " + name);
  }
  for (auto& info : parsed) {
    std::string key = info.name;
    tensors_.emplace(std::move(key), std::move(info));
  }
}

void SafeTensors::add_file(const std::string& path, const std::vector<std::string>* expected_names) {
  files_.push_back(std::make_unique<MappedFile>(path));
  const MappedFile& f = *files_.back();
  parse(f.data(), f.size(), path);
  if (!expected_names) return;
  const std::string file_name = fs::path(path).filename().string();
  for (const auto& n : *expected_names) {
    auto it = tensors_.find(n);
    if (it == tensors_.end() || it->second.file != path)
      fail_format(std::string(kIndexName) + " maps tensor " + n + " to " + file_name + ", but " + path +
                  " does not contain it");
  }
}

// ---------------------------------------------------------------------------------------------------
// Opening

std::unique_ptr<SafeTensors> SafeTensors::parse_buffer(const uint8_t* data, size_t size, const std::string& name) {
  auto st = std::unique_ptr<SafeTensors>(new SafeTensors());
  st->location_ = name;
  st->parse(data, size, name);
  return st;
}

std::unique_ptr<SafeTensors> SafeTensors::open_file(const std::string& path) {
  auto st = std::unique_ptr<SafeTensors>(new SafeTensors());
  st->location_ = path;
  st->add_file(path, nullptr);
  return st;
}

std::map<std::string, std::vector<std::string>> parse_shard_index(const std::string& text, const std::string& ipath) {
  json index;
  try {
    index = json::parse(text);
  } catch (const json::exception& e) {
    fail_format(ipath + ": malformed JSON: " + e.what());
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail_format(ipath + ": no \"weight_map\" object");
  // shard file → tensors the index puts there; std::map keeps the shards in sorted order.
  std::map<std::string, std::vector<std::string>> by_shard;
  for (const auto& [tensor, file] : index["weight_map"].items()) {
    if (!file.is_string())
      fail_format(ipath + ": weight_map entry for tensor " + tensor + " is not a file name: " + json_excerpt(file));
    const std::string& fname = file.get_ref<const std::string&>();
    if (fname.empty() || escapes_dir(fname))
      fail_format(ipath + ": weight_map entry for tensor " + tensor + " names '" + fname +
                  "', which is not a file inside the model directory");
    by_shard[fname].push_back(tensor);
  }
  if (by_shard.empty()) fail_format(ipath + ": weight_map is empty");
  return by_shard;
}

std::unique_ptr<SafeTensors> SafeTensors::open_dir(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    if (!fs::exists(dir, ec)) fail(INFER_ERR_IO, "model directory " + dir + " does not exist");
    fail(INFER_ERR_IO, dir + " is not a directory");
  }
  auto st = std::unique_ptr<SafeTensors>(new SafeTensors());
  st->location_ = dir;
  const fs::path base(dir);
  const fs::path index_path = base / kIndexName;

  if (fs::exists(index_path, ec)) {
    const std::string ipath = index_path.string();
    const auto by_shard = parse_shard_index(read_text_file(ipath), ipath);
    for (const auto& [fname, names] : by_shard) {
      const fs::path shard = base / fname;
      if (!fs::is_regular_file(shard, ec))
        fail(INFER_ERR_IO, "shard " + fname + " named by " + kIndexName + " for tensor " + names.front() +
                               " does not exist (looked for " + shard.string() + ")");
      st->add_file(shard.string(), &names);
    }
    return st;
  }

  // As transformers does: model.safetensors when there is no index. Other *.safetensors files beside it (a dump,
  // reference data) are not weights.
  const fs::path single = base / "model.safetensors";
  if (fs::is_regular_file(single, ec)) {
    st->add_file(single.string(), nullptr);
    return st;
  }
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(base, ec)) {
    const std::string fname = e.path().filename().string();
    // Dot files (e.g. macOS "._x.safetensors" resource forks) are not checkpoints.
    if (fname.empty() || fname[0] == '.' || e.path().extension() != ".safetensors") continue;
    if (!e.is_regular_file(ec)) continue;
    files.push_back(e.path().string());
  }
  if (ec) fail(INFER_ERR_IO, "cannot list " + dir + ": " + ec.message());
  if (files.empty()) fail(INFER_ERR_IO, "no *.safetensors files in " + dir);
  std::sort(files.begin(), files.end());
  for (const auto& f : files) st->add_file(f, nullptr);
  return st;
}

// ---------------------------------------------------------------------------------------------------
// Lookup

const TensorInfo* SafeTensors::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const TensorInfo& SafeTensors::get(const std::string& name) const {
  const TensorInfo* t = find(name);
  if (!t) fail_format("missing tensor " + name + " in " + location_);
  return *t;
}

const TensorInfo& SafeTensors::get(const std::string& name, const std::vector<int64_t>& expected_shape,
                                   const std::string& config_fields) const {
  const std::string from = config_fields.empty() ? "" : " (from config.json: " + config_fields + ")";
  const TensorInfo* t = find(name);
  if (!t) fail_format("missing tensor " + name + " (expected shape " + shape_string(expected_shape) + from + ") in " +
                      location_);
  if (t->shape != expected_shape)
    fail_format("tensor " + name + " in " + t->file + " has shape " + t->shape_str() + ", expected " +
                shape_string(expected_shape) + from);
  return *t;
}

// ---------------------------------------------------------------------------------------------------
// Writing

void write_safetensors(const std::string& path, const std::vector<WriteTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<size_t> sizes;
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (t.dtype != DType::F32 && t.dtype != DType::I32)
      fail(INFER_ERR_INVALID_ARG, "write_safetensors " + path + ": tensor " + t.name + " has dtype " +
                                      dtype_name(t.dtype) + "; only F32 and I32 can be written");
    if (t.name.empty() || t.name == "__metadata__" || !names.insert(t.name).second)
      fail(INFER_ERR_INVALID_ARG, "write_safetensors " + path + ": tensor name '" + t.name + "' is empty, reserved or repeated");
    uint64_t nbytes = dtype_size(t.dtype);
    for (int64_t d : t.shape) {
      if (d < 0 || __builtin_mul_overflow(nbytes, uint64_t(d), &nbytes))
        fail(INFER_ERR_INVALID_ARG, "write_safetensors " + path + ": tensor " + t.name + " has a bad shape " +
                                        shape_string(t.shape));
    }
    if (nbytes > 0 && !t.data)
      fail(INFER_ERR_INVALID_ARG, "write_safetensors " + path + ": tensor " + t.name + " has no data");
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    sizes.push_back(size_t(nbytes));
  }
  std::string hjson = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned, as the Python safetensors library does.
  hjson.append((8 - hjson.size() % 8) % 8, ' ');
  uint8_t len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = uint8_t(uint64_t(hjson.size()) >> (8 * i));

  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(INFER_ERR_IO, "cannot write " + tmp + ": " + errno_str(errno));
  bool ok = std::fwrite(len_bytes, 1, 8, f) == 8 && std::fwrite(hjson.data(), 1, hjson.size(), f) == hjson.size();
  for (size_t i = 0; ok && i < tensors.size(); ++i)
    ok = sizes[i] == 0 || std::fwrite(tensors[i].data, 1, sizes[i], f) == sizes[i];
  int err = ok ? 0 : errno;
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    std::remove(tmp.c_str());
    fail(INFER_ERR_IO, "cannot write " + tmp + ": " + errno_str(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    fail(INFER_ERR_IO, "cannot rename " + tmp + " to " + path + ": " + errno_str(err));
  }
}

}  // namespace infer
