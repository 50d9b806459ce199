// A dynamic (collisionless) embedding table: every admitted int64 id owns its own fp32 row.
//
// Glossary: D the dim; a row is D floats plus a header; a slot is one 8-byte word of the index;
// `now` is the caller's logical clock (any int64 that never decreases: seconds, batch numbers);
// a writer is any call that changes the table (observe, upsert, remove, expire, apply_adagrad,
// apply_delta, export_delta, save); a reader is lookup or embedding_bag.
//
// Index: open addressing with linear probing over a power-of-two array of slots, slot =
// (upper 32 bits of hash(id)) << 32 | (row + 1); 0 is empty, row field 0xffffffff a tombstone.
// The row header holds the true id, so a tag match is confirmed against the row. A new index is
// built (same size to drop tombstones, or twice the size) when live + tombstones would pass 5/8
// of the slots; it grows only while live rows pass 3/8.
//
// Admission (observe): an id not in the table is counted in a count-min sketch (depth rows of
// width uint32 counters, saturating); it is admitted once its estimate after this occurrence is
// >= admit_threshold and, when admit_probability < 1, a draw u of the table's splitmix64 stream
// (seeded with seed, advanced once per draw; draws happen only for ids that passed the
// threshold) has u < admit_probability, u = (next() >> 11) * 2^-53. Sketch counts are not
// decayed. upsert and apply_delta bypass admission.
//
// Expiry (expire(now)): a row is removed when ttl > 0 and now - last_seen >= ttl, or when
// rare_ttl > 0 and count < rare_count and now - last_seen >= rare_ttl (count = observations of
// the row since it was admitted, the admitting one included).
//
// Memory limit: at construction the table derives max_rows, the largest row count whose worst
// case fits memory_limit_bytes: the sketch, the row chunks, two indexes at the largest size it
// may take (old and new while rebuilding) and the removed-id log. Memory is allocated as rows
// arrive, never beyond that bound, so memory_bytes() (and peak_memory_bytes()) never exceed the
// limit. When a new row is needed and max_rows are live, the least recently written row is
// evicted (exact LRU over writes: observe, upsert, apply_adagrad, apply_delta touch a row;
// lookups do not).
//
// Concurrency: writers are serialized by a mutex. Readers take no lock: each row carries a
// sequence number (a seqlock: odd while a writer changes it), and a reader copies the row,
// re-reads the sequence and retries on change, then confirms the row still holds its id. The
// index pointer is published by RCU: a reader registers in one of two epoch counters for the
// length of its call; a rebuild publishes the new index, then waits for both counters to drain
// before freeing the old one. A reader therefore sees, for each id, either the row as it was
// before some write or after it, never a mix (no torn rows), and an id removed or evicted during
// the call reads as missing.
// The copy of a row's values may race with a writer by design: the sequence check discards it.
// Under ThreadSanitizer a reader/writer stress reports that copy and nothing else (the index,
// chunks and epochs are atomics); AddressSanitizer finds no use of a freed index.
//
// Missing ids (never admitted, expired, evicted) read as the default row: zeros, or the row
// given by set_default_row. Pooling counts them like any other id (they are in mean's divisor).
//
// Snapshot / delta: save writes every live row (id, count, last_seen, adagrad state, values)
// and load reads them back in O(rows). export_delta writes the rows written since the previous
// save or export_delta, and the ids removed since then; if more ids were removed than the
// removed-id log holds (max_rows), the delta is full: every live row, and apply_delta on it
// first clears the target table. apply_delta writes each row atomically (seqlock) while
// readers run; it reads the whole file first (a truncated file changes nothing), so it holds
// the file's size in memory for the call, outside the table's limit.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "adrank/embedding.hpp"

namespace adrank {

struct DynamicTableConfig {
  std::int64_t dim = 0;
  std::size_t memory_limit_bytes = 0;
  std::int64_t admit_threshold = 1;     // >= 1; 1 admits on first sight
  double admit_probability = 1.0;       // in (0, 1]
  std::int64_t sketch_width = 1 << 16;  // power of two when admit_threshold > 1
  std::int64_t sketch_depth = 4;        // 1..8
  std::int64_t ttl = 0;                 // 0: no age expiry
  std::int64_t rare_ttl = 0;            // 0: no frequency expiry
  std::int64_t rare_count = 0;
  float init_scale = 0.0f;  // new rows: uniform in [-init_scale, init_scale), 0 gives zeros
  std::uint64_t seed = 0;
};

// Checks every field and throws naming it.
void validate_dynamic_config(const DynamicTableConfig& config);

// A new row's value in column c: init_scale * (2 u - 1), u = (splitmix64_mix(seed ^ mix(id) +
// c) >> 40) * 2^-24, where mix is the splitmix64 finalizer (see dynamic_table.cpp).
float initial_value(const DynamicTableConfig& config, std::int64_t id, std::int64_t column);

struct DynamicTableStats {
  std::int64_t rows = 0;
  std::int64_t max_rows = 0;
  std::int64_t index_capacity = 0;
  std::int64_t admitted = 0;
  std::int64_t rejected = 0;  // observations of ids not admitted
  std::int64_t evicted = 0;
  std::int64_t expired = 0;
  std::int64_t rebuilds = 0;
};

class DynamicTable {
 public:
  explicit DynamicTable(const DynamicTableConfig& config);
  ~DynamicTable();
  DynamicTable(const DynamicTable&) = delete;
  DynamicTable& operator=(const DynamicTable&) = delete;

  const DynamicTableConfig& config() const { return config_; }
  std::int64_t max_rows() const { return max_rows_; }
  std::size_t memory_bytes() const { return memory_bytes_.load(std::memory_order_relaxed); }
  std::size_t peak_memory_bytes() const {
    return peak_memory_bytes_.load(std::memory_order_relaxed);
  }
  std::int64_t size() const { return live_.load(std::memory_order_relaxed); }
  DynamicTableStats stats() const;

  // --- writers (serialized) ---
  // Counts each id and admits new ones by the rule above; admitted[i] = 1 when ids[i] has a row
  // after the call's step i. Rows of ids present get count + 1 and last_seen = now.
  void observe(const std::int64_t* ids, std::size_t n, std::int64_t now, std::uint8_t* admitted);
  // Sets rows (inserting without admission), n x D values. last_seen = now.
  void upsert(const std::int64_t* ids, std::size_t n, const float* values, std::int64_t now);
  // Removes ids; returns how many were present.
  std::size_t remove(const std::int64_t* ids, std::size_t n);
  // Removes expired rows (rule above); returns how many.
  std::size_t expire(std::int64_t now);
  // Row-wise Adagrad on present ids (absent ones are skipped; returns how many were updated):
  //   state += mean(g * g); row -= lr * g / (sqrt(state) + eps). Repeated ids apply in order.
  std::size_t apply_adagrad(const std::int64_t* ids, std::size_t n, const float* grads, float lr,
                            float eps, std::int64_t now);
  void set_default_row(const float* values);  // D floats; nullptr restores zeros

  // --- readers (lock-free) ---
  // out: n x D. found[i] = 1 when ids[i] had a row (found may be nullptr). Returns found count.
  std::size_t lookup(const std::int64_t* ids, std::size_t n, float* out, std::uint8_t* found) const;
  // torch.nn.functional.embedding_bag over this table with embedding.hpp's BagBatch rules
  // (int64 indices only; padding_idx is an id to skip, or -1). Missing ids pool as the default
  // row. Returns how many ids were found.
  std::size_t embedding_bag(const BagBatch& bags, const Pooling& pooling,
                            const PooledOutput& out) const;
  bool contains(std::int64_t id) const;

  // --- snapshot, delta ---
  void save(const std::string& path);
  static std::unique_ptr<DynamicTable> load(const std::string& path, std::size_t memory_limit);
  // Returns the number of rows written; *full tells whether the delta is full.
  std::int64_t export_delta(const std::string& path, bool* full);
  // Returns the number of rows written into the table (removed ids not counted).
  std::int64_t apply_delta(const std::string& path);

  // Live ids, in LRU order (least recently written first). Takes the writer lock.
  std::vector<std::int64_t> ids();
  // Per-row metadata for tests and tools: count, last_seen, adagrad state; false when absent.
  bool row_meta(std::int64_t id, std::int64_t* count, std::int64_t* last_seen, float* state);

 private:
  struct Index;
  struct Row;
  struct RecordHeader;
  class ReadGuard;

  Row* row_at(std::uint32_t r) const;
  std::size_t row_stride() const { return row_stride_; }
  std::uint32_t find_row(const Index& index, std::int64_t id) const;  // UINT32_MAX if absent
  std::size_t find_slot(const Index& index, std::int64_t id) const;   // SIZE_MAX if absent
  bool read_row(const Index& index, std::int64_t id, float* out) const;
  void prefetch_ahead(const Index& index, const std::int64_t* ids, std::size_t i,
                      std::size_t n) const;

  std::uint32_t insert_new(std::int64_t id, std::int64_t now);  // id known absent
  void remove_row(std::uint32_t r, std::size_t slot);
  std::uint32_t allocate_row();
  void ensure_slot_for_insert();
  void rebuild(std::size_t capacity);
  void synchronize_readers();
  void lru_unlink(std::uint32_t r);
  void lru_push_back(std::uint32_t r);
  void touch(std::uint32_t r, std::int64_t now);
  void begin_write(Row* row);
  void end_write(Row* row);
  void log_removed(std::int64_t id);
  std::uint64_t next_random();
  bool admit(std::int64_t id);
  void charge(std::ptrdiff_t bytes);
  void clear_all();
  void write_records(std::FILE* file, const std::string& path, bool only_dirty,
                     std::int64_t* written);
  std::uint32_t put_record(const RecordHeader& header, const float* values);

  DynamicTableConfig config_;
  std::int64_t max_rows_ = 0;
  std::size_t row_stride_ = 0;  // bytes a row takes, header included
  std::size_t chunk_rows_ = 0;  // rows a chunk holds (a power of two)
  unsigned chunk_shift_ = 0;
  std::size_t max_index_capacity_ = 0;

  mutable std::mutex writer_;
  std::atomic<unsigned char*>* chunk_table_ = nullptr;  // chunk pointers, fixed at the max
  std::unique_ptr<std::atomic<unsigned char*>[]> chunk_table_owner_;
  std::atomic<Index*> index_{nullptr};
  mutable std::atomic<std::int64_t> readers_[2];
  std::atomic<std::uint64_t> epoch_{0};

  std::vector<std::uint32_t> sketch_;
  std::uint64_t rng_state_ = 0;
  std::shared_ptr<const std::vector<float>> default_row_;  // nullptr: zeros

  std::atomic<std::int64_t> live_{0};
  std::size_t used_slots_ = 0;  // live + tombstones in the current index
  std::uint32_t rows_made_ = 0;
  std::uint32_t free_head_ = UINT32_MAX;
  std::uint32_t lru_head_ = UINT32_MAX;
  std::uint32_t lru_tail_ = UINT32_MAX;
  std::uint64_t generation_ = 1;
  std::vector<std::int64_t> removed_log_;
  bool removed_overflow_ = false;

  std::atomic<std::size_t> memory_bytes_{0};
  std::atomic<std::size_t> peak_memory_bytes_{0};
  DynamicTableStats stats_;
};

}  // namespace adrank
