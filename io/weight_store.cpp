#include "io/json_util.h"
#include "io/weight_store.h"

#include <simdjson.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/error.h"

namespace arq::io {

namespace fs = std::filesystem;

namespace {


// weight_map of an index file: tensor name -> shard file name.
std::vector<std::pair<std::string, std::string>> read_weight_map(const fs::path& index) {
  const std::string text = read_text_file(index);
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (const auto err = parser.parse(text).get(root))
    throw IoError(cat(index.string(), ": malformed JSON (", simdjson::error_message(err), ")"));
  simdjson::dom::object wm;
  ARQ_CHECK(!root["weight_map"].get_object().get(wm), IoError, index.string(),
            ": no object field 'weight_map'");
  std::vector<std::pair<std::string, std::string>> out;
  for (simdjson::dom::key_value_pair kv : wm) {
    std::string_view file;
    ARQ_CHECK(!kv.value.get_string().get(file), IoError, index.string(), ": weight_map entry '", kv.key,
              "' is not a string");
    const std::string f(file);
    ARQ_CHECK(!f.empty() && f.find('/') == std::string::npos && f != "." && f != "..", IoError, index.string(),
              ": weight_map entry '", kv.key, "' names '", f, "', which is not a file in the folder");
    out.emplace_back(std::string(kv.key), f);
  }
  return out;
}

}  // namespace

WeightStore WeightStore::open(const std::string& path) {
  WeightStore ws;
  const fs::path p(path);
  std::error_code ec;
  if (fs::is_regular_file(p, ec)) {
    ws.folder_ = p.parent_path().string();
    ws.files_.push_back(SafetensorsFile::open(p.string()));
    for (const auto& t : ws.files_[0].tensors()) ws.where_[t.name] = 0;
    return ws;
  }
  ARQ_CHECK(fs::is_directory(p, ec), IoError, "model path '", path, "' is neither a folder nor a file");
  ws.folder_ = p.string();

  const fs::path index = p / "model.safetensors.index.json";
  if (fs::exists(index, ec)) {
    const auto wm = read_weight_map(index);
    std::map<std::string, size_t> file_ix;
    for (const auto& [name, file] : wm) {
      auto it = file_ix.find(file);
      if (it == file_ix.end()) {
        const fs::path fp = p / file;
        ARQ_CHECK(fs::exists(fp, ec), IoError, index.string(), " lists shard '", file, "' (for tensor '", name,
                  "'), which does not exist");
        ws.files_.push_back(SafetensorsFile::open(fp.string()));
        it = file_ix.emplace(file, ws.files_.size() - 1).first;
      }
      ARQ_CHECK(ws.files_[it->second].find(name), IoError, index.string(), " says tensor '", name, "' is in '", file,
                "', but that file does not contain it");
      ws.where_[name] = it->second;
    }
    return ws;
  }

  std::vector<fs::path> shards;
  for (const auto& e : fs::directory_iterator(p, ec))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") shards.push_back(e.path());
  ARQ_CHECK(!ec, IoError, "cannot list folder '", path, "': ", ec.message());
  ARQ_CHECK(!shards.empty(), IoError, "no model.safetensors.index.json and no *.safetensors file in '", path, "'");
  std::sort(shards.begin(), shards.end());
  for (const auto& s : shards) {
    ws.files_.push_back(SafetensorsFile::open(s.string()));
    const size_t k = ws.files_.size() - 1;
    for (const auto& t : ws.files_[k].tensors()) {
      const auto [it, fresh] = ws.where_.emplace(t.name, k);
      ARQ_CHECK(fresh, IoError, "tensor '", t.name, "' is in both '", ws.files_[it->second].path(), "' and '",
                s.string(), "' (and there is no index to choose)");
    }
  }
  return ws;
}

std::vector<std::string> WeightStore::files() const {
  std::vector<std::string> out;
  for (const auto& f : files_) out.push_back(f.path());
  return out;
}

std::vector<std::string> WeightStore::names(const std::string& prefix) const {
  std::vector<std::string> out;
  for (auto it = where_.lower_bound(prefix); it != where_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
    out.push_back(it->first);
  return out;
}

void WeightStore::missing(const std::string& name) const {
  std::string searched;
  for (const auto& f : files_) searched += (searched.empty() ? "" : ", ") + f.path();
  throw IoError(cat("tensor '", name, "' not found in model '", folder_, "' (searched: ", searched, ")"));
}

const SafetensorsFile& WeightStore::file_of(const std::string& name) const {
  const auto it = where_.find(name);
  if (it == where_.end()) missing(name);
  return files_[it->second];
}

const StTensorInfo& WeightStore::info(const std::string& name) const { return file_of(name).info(name); }
RawTensor WeightStore::raw(const std::string& name) const { return file_of(name).raw(name); }
Tensor WeightStore::view(const std::string& name) const { return file_of(name).tensor(name); }

Tensor WeightStore::load(const std::string& name, DType dtype, Device device) const {
  Tensor t = view(name);
  // A same-dtype view still points into the read-only mapping: copy it (to the device directly
  // when the target is not the CPU).
  if (t.dtype() != dtype) t = t.to(dtype);
  else if (device.is_cpu()) t = t.clone();
  if (!device.is_cpu()) t = t.to(device);
  return t;
}

Tensor WeightStore::load(const std::string& name) const {
  Tensor t = view(name);
  return t.clone();
}

std::map<std::string, Tensor> WeightStore::load_prefix(const std::string& prefix, DType dtype, Device device) const {
  std::map<std::string, Tensor> out;
  for (const auto& n : names(prefix)) out.emplace(n, load(n, dtype, device));
  return out;
}

std::map<std::string, Tensor> WeightStore::load_block(int64_t i, DType dtype, Device device,
                                                      const std::string& layers_prefix) const {
  const std::string prefix = cat(layers_prefix, i, ".");
  auto out = load_prefix(prefix, dtype, device);
  ARQ_CHECK(!out.empty(), IoError, "no tensor named '", prefix, "*' in model '", folder_, "'");
  return out;
}

}  // namespace arq::io
