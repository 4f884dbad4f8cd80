// safetensors writer: reference byte layout (§1.4), HF sharding and index (§1.5).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>

#include "engine/error.h"
#include "io/json_util.h"
#include "io/safetensors.h"

namespace arq::io {

namespace fs = std::filesystem;

StWriteTensor StWriteTensor::from_tensor(std::string name, const Tensor& t) {
  ARQ_CHECK(t.defined(), IoError, "cannot write undefined tensor '", name, "'");
  Tensor c = t.device().is_cpu() ? t.contiguous() : t.to(Device::cpu()).contiguous();
  StWriteTensor w;
  w.name = std::move(name);
  w.dtype = st_from_engine(c.dtype());
  w.shape = c.shape();
  w.data = c.numel() ? c.data_ptr() : nullptr;
  w.nbytes = c.nbytes();
  w.keep = std::move(c);
  return w;
}

StWriteTensor StWriteTensor::from_bytes(std::string name, StDType dtype, Shape shape, const void* data,
                                        size_t nbytes) {
  StWriteTensor w;
  w.name = std::move(name);
  w.dtype = dtype;
  w.shape = std::move(shape);
  w.data = data;
  w.nbytes = nbytes;
  return w;
}

StWriteTensor StWriteTensor::lazy(std::string name, StDType dtype, Shape shape, std::function<Tensor()> produce) {
  StWriteTensor w;
  w.name = std::move(name);
  w.dtype = dtype;
  w.nbytes = static_cast<size_t>(shape_numel(shape)) * st_dtype_size(dtype);
  w.shape = std::move(shape);
  w.produce = std::move(produce);
  return w;
}

void sort_for_writing(std::vector<StWriteTensor>& tensors) {
  std::stable_sort(tensors.begin(), tensors.end(), [](const StWriteTensor& a, const StWriteTensor& b) {
    if (a.dtype != b.dtype) return static_cast<int>(a.dtype) > static_cast<int>(b.dtype);
    return a.name < b.name;   // std::string compares bytes (unsigned char traits for char in practice)
  });
}

namespace {

void check_tensor(const StWriteTensor& t) {
  ARQ_CHECK(!t.name.empty(), IoError, "cannot write a tensor with an empty name");
  ARQ_CHECK(t.name != "__metadata__", IoError, "'__metadata__' is reserved and cannot name a tensor");
  for (const int64_t d : t.shape)
    ARQ_CHECK(d >= 0, IoError, "tensor '", t.name, "' has negative dimension in ", shape_str(t.shape));
  const size_t expect = static_cast<size_t>(shape_numel(t.shape)) * st_dtype_size(t.dtype);
  ARQ_CHECK(t.nbytes == expect, IoError, "tensor '", t.name, "' ", st_dtype_name(t.dtype), shape_str(t.shape),
            " needs ", expect, " bytes, got ", t.nbytes);
  ARQ_CHECK(t.nbytes == 0 || t.data != nullptr || t.produce, IoError, "tensor '", t.name, "' has no data");
}

// The bytes of a lazy tensor, checked against what the header promised.
Tensor produce_checked(const StWriteTensor& t) {
  Tensor c = t.produce();
  ARQ_CHECK(c.defined(), IoError, "lazy tensor '", t.name, "' produced nothing");
  c = c.device().is_cpu() ? c.contiguous() : c.to(Device::cpu()).contiguous();
  ARQ_CHECK(st_from_engine(c.dtype()) == t.dtype && c.shape() == t.shape, IoError, "lazy tensor '", t.name,
            "' was announced as ", st_dtype_name(t.dtype), shape_str(t.shape), " but produced ",
            st_dtype_name(st_from_engine(c.dtype())), shape_str(c.shape()));
  return c;
}

void check_unique(const std::vector<StWriteTensor>& tensors) {
  std::set<std::string> seen;
  for (const auto& t : tensors)
    ARQ_CHECK(seen.insert(t.name).second, IoError, "tensor name '", t.name, "' given twice");
}

}  // namespace

std::string safetensors_header_json(const std::vector<StWriteTensor>& tensors, const StMetadata& metadata) {
  std::string h = "{";
  bool first = true;
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    for (size_t i = 0; i < metadata.size(); ++i) {
      if (i) h += ',';
      h += json_quote(metadata[i].first) + ":" + json_quote(metadata[i].second);
    }
    h += '}';
    first = false;
  }
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (!first) h += ',';
    first = false;
    h += json_quote(t.name) + ":{\"dtype\":\"" + st_dtype_name(t.dtype) + "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) {
      if (i) h += ',';
      h += std::to_string(t.shape[i]);
    }
    h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + t.nbytes) + "]}";
    offset += t.nbytes;
  }
  h += '}';
  h.append((8 - h.size() % 8) % 8, ' ');   // pad so the data buffer starts 8-aligned
  return h;
}

void write_safetensors(const std::string& path, std::vector<StWriteTensor> tensors, const StMetadata& metadata) {
  for (const auto& t : tensors) check_tensor(t);
  check_unique(tensors);
  sort_for_writing(tensors);
  const std::string header = safetensors_header_json(tensors, metadata);

  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  ARQ_CHECK(f, IoError, "cannot create '", tmp, "'");
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(header.data(), 1, header.size(), f) == header.size();
  uint64_t total = 0;
  for (const auto& t : tensors) {
    if (!ok) break;
    if (t.produce && t.nbytes > 0) {
      Tensor c;
      try {
        c = produce_checked(t);
      } catch (...) {
        std::fclose(f);
        std::remove(tmp.c_str());
        throw;
      }
      ok = std::fwrite(c.data_ptr(), 1, t.nbytes, f) == t.nbytes;
    } else {
      ok = t.nbytes == 0 || std::fwrite(t.data, 1, t.nbytes, f) == t.nbytes;
    }
    total += t.nbytes;
  }
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    throw IoError(cat("cannot write '", tmp, "' (", 8 + header.size() + total, " bytes; disk full?)"));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw IoError(cat("cannot rename '", tmp, "' to '", path, "': ", ec.message()));
  }
}

ShardResult save_safetensors_sharded(const std::string& folder, const std::vector<StWriteTensor>& tensors,
                                     const ShardOptions& options) {
  for (const auto& t : tensors) check_tensor(t);
  check_unique(tensors);
  std::error_code ec;
  fs::create_directories(folder, ec);
  ARQ_CHECK(!ec, IoError, "cannot create folder '", folder, "': ", ec.message());

  // huggingface_hub's split: in order; oversized tensors get their own shard (placed when met).
  std::vector<std::vector<const StWriteTensor*>> shards;
  std::vector<const StWriteTensor*> current;
  uint64_t current_size = 0;
  ShardResult res;
  for (const auto& t : tensors) {
    res.total_size += t.nbytes;
    if (t.nbytes > options.max_shard_bytes) {
      shards.push_back({&t});
      continue;
    }
    if (current_size + t.nbytes > options.max_shard_bytes && !current.empty()) {
      shards.push_back(std::move(current));
      current.clear();
      current_size = 0;
    }
    current.push_back(&t);
    current_size += t.nbytes;
  }
  if (!current.empty() || shards.empty()) shards.push_back(std::move(current));

  const size_t n = shards.size();
  JsonValue weight_map = JsonValue::object();
  for (size_t i = 0; i < n; ++i) {
    std::string name;
    if (n == 1) {
      name = options.prefix + ".safetensors";
    } else {
      char buf[64];
      std::snprintf(buf, sizeof buf, "-%05zu-of-%05zu.safetensors", i + 1, n);
      name = options.prefix + buf;
    }
    std::vector<StWriteTensor> part;
    for (const StWriteTensor* t : shards[i]) {
      StWriteTensor c = StWriteTensor::from_bytes(t->name, t->dtype, t->shape, t->data, t->nbytes);
      c.produce = t->produce;
      part.push_back(std::move(c));
      weight_map.set(t->name, name);
    }
    write_safetensors((fs::path(folder) / name).string(), std::move(part), options.metadata);
    res.files.push_back(name);
  }
  const fs::path index_path = fs::path(folder) / (options.prefix + ".safetensors.index.json");
  if (n > 1) {
    JsonValue index = JsonValue::object();
    index.set("metadata", JsonValue::object().set("total_size", res.total_size));
    index.set("weight_map", std::move(weight_map));
    index.sort_keys();
    write_text_file_atomic(index_path.string(), index.dump(2) + "\n");
    res.indexed = true;
  } else {
    // A stale index from an earlier sharded save would point a loader at missing shards.
    fs::remove(index_path, ec);
  }
  return res;
}

ShardResult save_safetensors_sharded(const std::string& folder,
                                     const std::vector<std::pair<std::string, Tensor>>& tensors,
                                     const ShardOptions& options) {
  std::vector<StWriteTensor> w;
  w.reserve(tensors.size());
  for (const auto& [name, t] : tensors) w.push_back(StWriteTensor::from_tensor(name, t));
  return save_safetensors_sharded(folder, w, options);
}

}  // namespace arq::io
