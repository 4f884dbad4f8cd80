#include "io/mmap_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>

#include "engine/error.h"

namespace arq::io {

namespace {

// Live mappings, for release_mapped_pages().
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::set<const MappedFile*>& registry() {
  static std::set<const MappedFile*> r;
  return r;
}

}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(cat("cannot open '", path, "': ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw IoError(cat("cannot stat '", path, "': ", std::strerror(e)));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw IoError(cat("'", path, "' is not a regular file"));
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int e = errno;
      ::close(fd);
      throw IoError(cat("cannot mmap '", path, "' (", f->size_, " bytes): ", std::strerror(e)));
    }
    f->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping stays valid after the descriptor is closed
  if (f->data_) {
    std::lock_guard<std::mutex> lock(registry_mutex());
    registry().insert(f.get());
  }
  return f;
}

MappedFile::~MappedFile() {
  if (!data_) return;
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    registry().erase(this);
  }
  ::munmap(const_cast<uint8_t*>(data_), size_);
}

size_t release_mapped_pages() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  size_t n = 0;
  for (const MappedFile* f : registry()) {
    // mmap returned a page-aligned start; the length need not be a page multiple.
    if (::madvise(const_cast<uint8_t*>(f->data()), f->size(), MADV_DONTNEED) == 0) n += f->size();
  }
  return n;
}

}  // namespace arq::io
