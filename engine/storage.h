// Shared, ref-counted bytes on one device, and the allocators that make them.
//
// CPU memory is 64-byte aligned. A device registers its allocator with `set_allocator`
// (the CUDA backend installs a caching allocator there); storages made by an allocator hand
// their bytes back to it when the last tensor referring to them goes away. A storage can also
// wrap memory it does not own (a memory-mapped file), kept alive by an opaque `owner`.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "engine/device.h"

namespace arq {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;   // throws arq::Error when out of memory
  virtual void deallocate(void* p, size_t nbytes) = 0;
  virtual size_t bytes_in_use() const = 0;
  virtual size_t peak_bytes() const = 0;
  virtual void reset_peak() = 0;
};

// The allocator for a device type; CPU's is built in, CUDA's installed by its backend.
Allocator& allocator_for(const Device& d);
void set_allocator(DeviceType t, Allocator* a);

class Storage {
 public:
  // Fresh bytes from the device's allocator (contents undefined).
  static std::shared_ptr<Storage> allocate(size_t nbytes, Device d);
  // Bytes owned by someone else; `owner` keeps them alive (e.g. a file mapping).
  static std::shared_ptr<Storage> wrap(void* data, size_t nbytes, Device d,
                                       std::shared_ptr<void> owner);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  const Device& device() const { return device_; }

 private:
  Storage() = default;
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;   // null when wrapped
  std::shared_ptr<void> owner_;
};

}  // namespace arq
