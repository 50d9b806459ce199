// Pieces of the dynamic table shared by its source files: the row and index layouts, the file
// record, the hash and the random stream (dynamic_table.hpp documents the rules they implement).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "adrank/dynamic_table.hpp"

namespace adrank {

namespace dynamic_internal {

constexpr std::uint64_t kEmpty = 0;
constexpr std::uint64_t kRowMask = 0xffffffffull;
constexpr std::uint64_t kTombstone = kRowMask;  // row field all ones, tag 0
constexpr std::uint32_t kNone = UINT32_MAX;
constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// The splitmix64 finalizer.
inline std::uint64_t mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline std::uint64_t hash_id(std::int64_t id) { return mix(static_cast<std::uint64_t>(id)); }
inline std::uint32_t tag_of(std::uint64_t hash) { return static_cast<std::uint32_t>(hash >> 32); }

}  // namespace dynamic_internal

// Header of a row; D floats follow it. Readers read seq, id and the values only.
struct DynamicTable::Row {
  std::atomic<std::uint32_t> seq;  // odd while a writer changes the row
  std::uint32_t count;             // observations since admission (saturating)
  std::atomic<std::int64_t> id;
  std::int64_t last_seen;
  std::uint64_t dirty_gen;  // generation of the last value write
  std::uint32_t prev;       // LRU list (writer only); `next` also links the free list
  std::uint32_t next;
  float state;  // row-wise Adagrad accumulator
  std::uint32_t reserved;

  float* values() { return reinterpret_cast<float*>(this + 1); }
  const float* values() const { return reinterpret_cast<const float*>(this + 1); }
};

struct DynamicTable::Index {
  std::size_t capacity;
  std::size_t mask;
  std::unique_ptr<std::atomic<std::uint64_t>[]> slots;

  explicit Index(std::size_t cap)
      : capacity(cap), mask(cap - 1), slots(new std::atomic<std::uint64_t>[cap]) {
    for (std::size_t i = 0; i < cap; ++i) slots[i].store(0, std::memory_order_relaxed);
  }
  std::size_t bytes() const { return sizeof(Index) + capacity * sizeof(std::uint64_t); }
};

// One row in a snapshot or delta file; D floats follow it.
struct DynamicTable::RecordHeader {
  std::int64_t id;
  std::int64_t last_seen;
  std::uint32_t count;
  float state;
};

}  // namespace adrank
