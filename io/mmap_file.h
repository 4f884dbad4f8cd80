// A read-only memory mapping of a whole file.
//
// Files are mapped PROT_READ / MAP_PRIVATE: nothing we do can write through to the checkpoint,
// and pages are loaded lazily, so opening a 100 GB model costs nothing until a tensor is read.
// A mapping is shared (std::shared_ptr) so that tensors viewing it keep it alive: pass it as the
// `owner` of `Storage::wrap`.
//
//   auto f = MappedFile::open("model.safetensors");   // throws IoError when missing/unreadable
//   const uint8_t* p = f->data();  size_t n = f->size();
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace arq::io {

class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }  // null for an empty file
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// Drops the resident pages of every live mapping (madvise MADV_DONTNEED). Mappings are
// read-only and private, so nothing is lost: a page read again is faulted back from the file.
// Touched file pages count in this process's RSS until unmapped; a caller that streams through
// a large checkpoint block by block (the quantizer) calls this between blocks so its peak RSS
// stays one block, not the whole file. Returns the bytes advised.
size_t release_mapped_pages();

}  // namespace arq::io
