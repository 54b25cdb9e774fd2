// arch_config.cpp — see arch_config.h.
#include "models/arch_config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "common.h"

namespace infer::models {

using nlohmann::json;

struct ArchConfig::Impl {
  json j;
  const json* find(const char* key) const {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return nullptr;
    return &*it;
  }
};

namespace {
std::string excerpt(const json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}
}  // namespace

ArchConfig::ArchConfig(const ModelConfig& c) : impl_(std::make_unique<Impl>()) {
  file_ = (c.dir.empty() ? std::string("config.json") : c.dir + "/config.json");
  try {
    impl_->j = json::parse(c.raw_json.empty() ? std::string("{}") : c.raw_json);
  } catch (const json::exception& e) {
    fail_format(file_ + ": malformed JSON: " + e.what());
  }
  if (!impl_->j.is_object()) fail_format(file_ + ": expected a JSON object at the top level");
}

ArchConfig::~ArchConfig() = default;

void ArchConfig::bad(const char* key, const std::string& what) const {
  fail_format(file_ + ": field '" + key + "' " + what);
}

bool ArchConfig::has(const char* key) const { return impl_->find(key) != nullptr; }

bool ArchConfig::is_null(const char* key) const {
  auto it = impl_->j.find(key);
  return it != impl_->j.end() && it->is_null();
}

static int64_t to_int(const ArchConfig& a, const char* key, const json& v) {
  if (v.is_number_unsigned() && v.get<uint64_t>() <= uint64_t(INT64_MAX)) return int64_t(v.get<uint64_t>());
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return int64_t(d);
  }
  a.bad(key, "must be an integer, got " + excerpt(v));
}

int64_t ArchConfig::get_int(const char* key, int64_t def) const {
  const json* v = impl_->find(key);
  return v ? to_int(*this, key, *v) : def;
}

int64_t ArchConfig::positive(const char* key, int64_t def) const {
  const json* v = impl_->find(key);
  if (!v) {
    if (def <= 0) fail_format(file_ + ": missing required field '" + key + "'");
    return def;
  }
  const int64_t n = to_int(*this, key, *v);
  if (n <= 0) bad(key, "must be a positive integer, got " + excerpt(*v));
  return n;
}

int64_t ArchConfig::non_negative(const char* key, int64_t def) const {
  const json* v = impl_->find(key);
  if (!v) return def;
  const int64_t n = to_int(*this, key, *v);
  if (n < 0) bad(key, "must be a non-negative integer, got " + excerpt(*v));
  return n;
}

double ArchConfig::get_double(const char* key, double def) const {
  const json* v = impl_->find(key);
  if (!v) return def;
  if (!v->is_number() || !std::isfinite(v->get<double>())) bad(key, "must be a finite number, got " + excerpt(*v));
  return v->get<double>();
}

bool ArchConfig::get_bool(const char* key, bool def) const {
  const json* v = impl_->find(key);
  if (!v) return def;
  if (!v->is_boolean()) bad(key, "must be a boolean, got " + excerpt(*v));
  return v->get<bool>();
}

std::string ArchConfig::get_string(const char* key, const std::string& def) const {
  const json* v = impl_->find(key);
  if (!v) return def;
  if (!v->is_string()) bad(key, "must be a string, got " + excerpt(*v));
  return v->get<std::string>();
}

std::vector<int64_t> ArchConfig::get_int_list(const char* key) const {
  std::vector<int64_t> out;
  const json* v = impl_->find(key);
  if (!v) return out;
  if (!v->is_array()) bad(key, "must be a list of integers, got " + excerpt(*v));
  for (const auto& e : *v) out.push_back(to_int(*this, key, e));
  return out;
}

std::vector<int64_t> ArchConfig::get_nested_int_list(const char* obj, const char* key, bool* found) const {
  std::vector<int64_t> out;
  *found = false;
  const json* o = impl_->find(obj);
  if (!o) return out;
  if (!o->is_object()) bad(obj, "must be an object, got " + excerpt(*o));
  auto it = o->find(key);
  if (it == o->end() || it->is_null()) return out;
  const std::string name = std::string(obj) + "." + key;
  if (!it->is_array()) bad(name.c_str(), "must be a list of integers, got " + excerpt(*it));
  for (const auto& e : *it) out.push_back(to_int(*this, name.c_str(), e));
  *found = true;
  return out;
}

std::string ArchConfig::get_nested_string(const char* obj, const char* key, const std::string& def) const {
  const json* o = impl_->find(obj);
  if (!o || !o->is_object()) return def;
  auto it = o->find(key);
  if (it == o->end() || it->is_null()) return def;
  const std::string name = std::string(obj) + "." + key;
  if (!it->is_string()) bad(name.c_str(), "must be a string, got " + excerpt(*it));
  return it->get<std::string>();
}

}  // namespace infer::models
