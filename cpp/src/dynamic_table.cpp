// The dynamic table's index, rows, admission, eviction, expiry and lock-free reads
// (rules in cpp/include/adrank/dynamic_table.hpp; snapshot and delta files in
// dynamic_table_io.cpp).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <thread>

#include "adrank/check.hpp"
#include "dynamic_table_internal.hpp"

namespace adrank {

using namespace dynamic_internal;

namespace {

bool is_power_of_two(std::int64_t x) { return x > 0 && (x & (x - 1)) == 0; }

std::size_t pow2_floor(std::size_t x) {
  std::size_t p = 1;
  while (p * 2 <= x) p *= 2;
  return p;
}

std::size_t row_stride_for(std::int64_t dim) {
  const std::size_t bytes = 48 + static_cast<std::size_t>(dim) * sizeof(float);
  return (bytes + 15) / 16 * 16;
}

}  // namespace

void validate_dynamic_config(const DynamicTableConfig& c) {
  ADRANK_CHECK_VALUE(c.dim >= 1 && c.dim <= (1 << 16), "dim must be in [1, 65536], got ", c.dim);
  ADRANK_CHECK_VALUE(c.admit_threshold >= 1, "admit_threshold must be >= 1, got ",
                     c.admit_threshold);
  ADRANK_CHECK_VALUE(c.admit_probability > 0.0 && c.admit_probability <= 1.0,
                     "admit_probability must be in (0, 1], got ", c.admit_probability);
  ADRANK_CHECK_VALUE(is_power_of_two(c.sketch_width) && c.sketch_width <= (std::int64_t{1} << 30),
                     "sketch_width must be a power of two <= 2**30, got ", c.sketch_width);
  ADRANK_CHECK_VALUE(c.sketch_depth >= 1 && c.sketch_depth <= 8,
                     "sketch_depth must be in [1, 8], got ", c.sketch_depth);
  ADRANK_CHECK_VALUE(c.ttl >= 0, "ttl must be >= 0, got ", c.ttl);
  ADRANK_CHECK_VALUE(c.rare_ttl >= 0, "rare_ttl must be >= 0, got ", c.rare_ttl);
  ADRANK_CHECK_VALUE(c.rare_count >= 0, "rare_count must be >= 0, got ", c.rare_count);
  ADRANK_CHECK_VALUE(std::isfinite(c.init_scale) && c.init_scale >= 0.0f,
                     "init_scale must be finite and >= 0, got ", c.init_scale);
}

float initial_value(const DynamicTableConfig& config, std::int64_t id, std::int64_t column) {
  if (config.init_scale == 0.0f) return 0.0f;
  const std::uint64_t z = mix((config.seed ^ hash_id(id)) + static_cast<std::uint64_t>(column));
  const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
  return config.init_scale * (2.0f * u - 1.0f);
}

// --- reader registration (RCU of the index) ---

class DynamicTable::ReadGuard {
 public:
  explicit ReadGuard(const DynamicTable& table)
      : counter_(table.readers_[table.epoch_.load(std::memory_order_seq_cst) & 1]) {
    counter_.fetch_add(1, std::memory_order_seq_cst);
    index_ = table.index_.load(std::memory_order_seq_cst);
  }
  ~ReadGuard() { counter_.fetch_sub(1, std::memory_order_release); }
  const Index& index() const { return *index_; }

 private:
  std::atomic<std::int64_t>& counter_;
  const Index* index_;
};

void DynamicTable::synchronize_readers() {
  // Two flips: a reader that registered under either parity before the new index was published
  // has left once both counters have drained once after it.
  for (int round = 0; round < 2; ++round) {
    const std::uint64_t old = epoch_.fetch_add(1, std::memory_order_seq_cst);
    while (readers_[old & 1].load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  }
}

// --- construction and memory ---

DynamicTable::DynamicTable(const DynamicTableConfig& config) : config_(config) {
  validate_dynamic_config(config_);
  readers_[0].store(0);
  readers_[1].store(0);
  row_stride_ = row_stride_for(config_.dim);
  const std::size_t limit = config_.memory_limit_bytes;
  const std::size_t sketch_bytes =
      config_.admit_threshold > 1
          ? static_cast<std::size_t>(config_.sketch_width * config_.sketch_depth) * 4
          : 0;
  const std::size_t default_bytes = static_cast<std::size_t>(config_.dim) * sizeof(float);
  // The largest max_rows over index sizes C: the index must hold max_rows at 3/8 load, two
  // indexes of C slots may live at once, each row costs its stride and a removed-log entry,
  // and rows come in chunks, each with a pointer.
  std::size_t best_rows = 0, best_chunk = 1;
  for (std::size_t cap = 16; cap <= (std::size_t{1} << 33); cap *= 2) {
    const std::size_t fixed = sketch_bytes + default_bytes + 2 * (sizeof(Index) + cap * 8);
    if (fixed >= limit) break;
    const std::size_t avail = limit - fixed;
    const std::size_t by_index = cap * 3 / 8;
    const std::size_t rough = std::min(by_index, avail / (row_stride_ + 8 + 1));
    const std::size_t chunk =
        std::min<std::size_t>(4096, pow2_floor(std::max<std::size_t>(1, rough / 64)));
    const std::size_t chunks = avail / (chunk * (row_stride_ + 8) + sizeof(void*));
    const std::size_t rows = std::min({by_index, chunks * chunk, std::size_t{kNone - 1}});
    if (rows > best_rows) best_rows = rows, best_chunk = chunk;
  }
  ADRANK_CHECK_VALUE(best_rows >= 1, "memory_limit_bytes (", limit,
                     ") is too small for one row of dim ", config_.dim);
  max_rows_ = static_cast<std::int64_t>(best_rows);
  chunk_rows_ = best_chunk;
  while ((std::size_t{1} << chunk_shift_) < chunk_rows_) ++chunk_shift_;
  max_index_capacity_ = 16;
  while (max_index_capacity_ * 3 / 8 < best_rows) max_index_capacity_ *= 2;

  const std::size_t num_chunks = (best_rows + chunk_rows_ - 1) / chunk_rows_;
  chunk_table_owner_.reset(new std::atomic<unsigned char*>[num_chunks]);
  for (std::size_t i = 0; i < num_chunks; ++i) chunk_table_owner_[i].store(nullptr);
  chunk_table_ = chunk_table_owner_.get();
  charge(static_cast<std::ptrdiff_t>(num_chunks * sizeof(void*)));
  if (sketch_bytes) {
    sketch_.assign(sketch_bytes / 4, 0);
    charge(static_cast<std::ptrdiff_t>(sketch_bytes));
  }
  removed_log_.reserve(best_rows);
  charge(static_cast<std::ptrdiff_t>(best_rows * sizeof(std::int64_t)));
  charge(static_cast<std::ptrdiff_t>(default_bytes));
  rng_state_ = config_.seed;
  stats_.max_rows = max_rows_;
  auto* index = new Index(std::min<std::size_t>(16, max_index_capacity_));
  charge(static_cast<std::ptrdiff_t>(index->bytes()));
  index_.store(index);
}

DynamicTable::~DynamicTable() {
  delete index_.load();
  const std::size_t num_chunks =
      (static_cast<std::size_t>(max_rows_) + chunk_rows_ - 1) / chunk_rows_;
  for (std::size_t i = 0; i < num_chunks; ++i) delete[] chunk_table_[i].load();
}

void DynamicTable::charge(std::ptrdiff_t bytes) {
  const std::size_t now = memory_bytes_.load(std::memory_order_relaxed) + bytes;
  memory_bytes_.store(now, std::memory_order_relaxed);
  if (now > peak_memory_bytes_.load(std::memory_order_relaxed)) {
    peak_memory_bytes_.store(now, std::memory_order_relaxed);
  }
}

DynamicTableStats DynamicTable::stats() const {
  std::lock_guard<std::mutex> lock(writer_);
  DynamicTableStats s = stats_;
  s.rows = size();
  s.index_capacity = static_cast<std::int64_t>(index_.load()->capacity);
  return s;
}

DynamicTable::Row* DynamicTable::row_at(std::uint32_t r) const {
  unsigned char* chunk = chunk_table_[r >> chunk_shift_].load(std::memory_order_relaxed);
  return reinterpret_cast<Row*>(chunk + (r & (chunk_rows_ - 1)) * row_stride_);
}

// --- the index ---

std::size_t DynamicTable::find_slot(const Index& index, std::int64_t id) const {
  const std::uint64_t h = hash_id(id);
  const std::uint32_t tag = tag_of(h);
  for (std::size_t pos = h & index.mask;; pos = (pos + 1) & index.mask) {
    const std::uint64_t word = index.slots[pos].load(std::memory_order_acquire);
    if (word == kEmpty) return SIZE_MAX;
    if (word != kTombstone && (word >> 32) == tag &&
        row_at(static_cast<std::uint32_t>((word & kRowMask) - 1))
                ->id.load(std::memory_order_relaxed) == id) {
      return pos;
    }
  }
}

std::uint32_t DynamicTable::find_row(const Index& index, std::int64_t id) const {
  const std::size_t slot = find_slot(index, id);
  if (slot == SIZE_MAX) return kNone;
  return static_cast<std::uint32_t>((index.slots[slot].load(std::memory_order_relaxed) & kRowMask) -
                                    1);
}

void DynamicTable::rebuild(std::size_t capacity) {
  auto* fresh = new Index(capacity);
  charge(static_cast<std::ptrdiff_t>(fresh->bytes()));
  for (std::uint32_t r = lru_head_; r != kNone; r = row_at(r)->next) {
    const std::uint64_t h = hash_id(row_at(r)->id.load(std::memory_order_relaxed));
    std::size_t pos = h & fresh->mask;
    while (fresh->slots[pos].load(std::memory_order_relaxed) != kEmpty)
      pos = (pos + 1) & fresh->mask;
    fresh->slots[pos].store((std::uint64_t{tag_of(h)} << 32) | (r + 1), std::memory_order_relaxed);
  }
  Index* old = index_.exchange(fresh, std::memory_order_seq_cst);
  used_slots_ = static_cast<std::size_t>(live_.load());
  synchronize_readers();
  charge(-static_cast<std::ptrdiff_t>(old->bytes()));
  delete old;
  ++stats_.rebuilds;
}

void DynamicTable::ensure_slot_for_insert() {
  const Index& index = *index_.load(std::memory_order_relaxed);
  if ((used_slots_ + 1) * 8 <= index.capacity * 5) return;
  const auto live = static_cast<std::size_t>(live_.load());
  rebuild((live + 1) * 8 > index.capacity * 3 ? index.capacity * 2 : index.capacity);
}

// --- rows ---

void DynamicTable::begin_write(Row* row) {
  const std::uint32_t s = row->seq.load(std::memory_order_relaxed);
  row->seq.store(s + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
}

void DynamicTable::end_write(Row* row) {
  row->seq.store(row->seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

void DynamicTable::lru_unlink(std::uint32_t r) {
  Row* row = row_at(r);
  if (row->prev != kNone)
    row_at(row->prev)->next = row->next;
  else
    lru_head_ = row->next;
  if (row->next != kNone)
    row_at(row->next)->prev = row->prev;
  else
    lru_tail_ = row->prev;
}

void DynamicTable::lru_push_back(std::uint32_t r) {
  Row* row = row_at(r);
  row->prev = lru_tail_;
  row->next = kNone;
  if (lru_tail_ != kNone)
    row_at(lru_tail_)->next = r;
  else
    lru_head_ = r;
  lru_tail_ = r;
}

void DynamicTable::touch(std::uint32_t r, std::int64_t now) {
  row_at(r)->last_seen = now;
  if (lru_tail_ != r) {
    lru_unlink(r);
    lru_push_back(r);
  }
}

void DynamicTable::log_removed(std::int64_t id) {
  if (removed_overflow_) return;
  if (removed_log_.size() == static_cast<std::size_t>(max_rows_)) {
    removed_overflow_ = true;
    removed_log_.clear();
    return;
  }
  removed_log_.push_back(id);
}

void DynamicTable::remove_row(std::uint32_t r, std::size_t slot) {
  Index& index = *index_.load(std::memory_order_relaxed);
  index.slots[slot].store(kTombstone, std::memory_order_release);
  Row* row = row_at(r);
  log_removed(row->id.load(std::memory_order_relaxed));
  lru_unlink(r);
  row->next = free_head_;
  free_head_ = r;
  live_.fetch_sub(1, std::memory_order_relaxed);
}

std::uint32_t DynamicTable::allocate_row() {
  if (free_head_ != kNone) {
    const std::uint32_t r = free_head_;
    free_head_ = row_at(r)->next;
    return r;
  }
  if (rows_made_ < static_cast<std::uint32_t>(max_rows_)) {
    const std::uint32_t r = rows_made_;
    if ((r & (chunk_rows_ - 1)) == 0) {
      auto* chunk = new unsigned char[chunk_rows_ * row_stride_]();
      charge(static_cast<std::ptrdiff_t>(chunk_rows_ * row_stride_));
      chunk_table_[r >> chunk_shift_].store(chunk, std::memory_order_release);
    }
    new (row_at(r)) Row{};
    ++rows_made_;
    return r;
  }
  // Full: evict the least recently written row.
  const std::uint32_t r = lru_head_;
  const std::size_t slot = find_slot(*index_.load(std::memory_order_relaxed),
                                     row_at(r)->id.load(std::memory_order_relaxed));
  remove_row(r, slot);
  ++stats_.evicted;
  free_head_ = row_at(r)->next;
  return r;
}

std::uint32_t DynamicTable::insert_new(std::int64_t id, std::int64_t now) {
  const std::uint32_t r = allocate_row();
  ensure_slot_for_insert();
  Row* row = row_at(r);
  begin_write(row);
  row->id.store(id, std::memory_order_relaxed);
  float* values = row->values();
  for (std::int64_t c = 0; c < config_.dim; ++c) values[c] = initial_value(config_, id, c);
  end_write(row);
  row->count = 0;
  row->state = 0.0f;
  row->last_seen = now;
  row->dirty_gen = generation_;
  Index& index = *index_.load(std::memory_order_relaxed);
  const std::uint64_t h = hash_id(id);
  std::size_t pos = h & index.mask;
  for (;; pos = (pos + 1) & index.mask) {
    const std::uint64_t word = index.slots[pos].load(std::memory_order_relaxed);
    if (word == kEmpty || word == kTombstone) break;
  }
  if (index.slots[pos].load(std::memory_order_relaxed) == kEmpty) ++used_slots_;
  index.slots[pos].store((std::uint64_t{tag_of(h)} << 32) | (r + 1), std::memory_order_release);
  live_.fetch_add(1, std::memory_order_relaxed);
  lru_push_back(r);
  return r;
}

// --- admission ---

std::uint64_t DynamicTable::next_random() {
  rng_state_ += kGolden;
  return mix(rng_state_);
}

bool DynamicTable::admit(std::int64_t id) {
  if (config_.admit_threshold > 1) {
    const auto width = static_cast<std::size_t>(config_.sketch_width);
    std::uint32_t estimate = UINT32_MAX;
    for (std::int64_t d = 0; d < config_.sketch_depth; ++d) {
      const std::uint64_t h = mix(static_cast<std::uint64_t>(id) ^
                                  (config_.seed + kGolden * static_cast<std::uint64_t>(d + 1)));
      std::uint32_t& cell = sketch_[static_cast<std::size_t>(d) * width + (h & (width - 1))];
      if (cell != UINT32_MAX) ++cell;
      estimate = std::min(estimate, cell);
    }
    if (static_cast<std::int64_t>(estimate) < config_.admit_threshold) return false;
  }
  if (config_.admit_probability < 1.0) {
    const double u = static_cast<double>(next_random() >> 11) * 0x1.0p-53;
    if (!(u < config_.admit_probability)) return false;
  }
  return true;
}

// --- writers ---

void DynamicTable::observe(const std::int64_t* ids, std::size_t n, std::int64_t now,
                           std::uint8_t* admitted) {
  std::lock_guard<std::mutex> lock(writer_);
  for (std::size_t i = 0; i < n; ++i) {
    prefetch_ahead(*index_.load(std::memory_order_relaxed), ids, i, n);
    std::uint32_t r = find_row(*index_.load(std::memory_order_relaxed), ids[i]);
    if (r == kNone) {
      if (!admit(ids[i])) {
        ++stats_.rejected;
        if (admitted) admitted[i] = 0;
        continue;
      }
      r = insert_new(ids[i], now);
      ++stats_.admitted;
    }
    Row* row = row_at(r);
    if (row->count != UINT32_MAX) ++row->count;
    touch(r, now);
    if (admitted) admitted[i] = 1;
  }
}

void DynamicTable::upsert(const std::int64_t* ids, std::size_t n, const float* values,
                          std::int64_t now) {
  std::lock_guard<std::mutex> lock(writer_);
  const auto dim = static_cast<std::size_t>(config_.dim);
  for (std::size_t i = 0; i < n; ++i) {
    prefetch_ahead(*index_.load(std::memory_order_relaxed), ids, i, n);
    std::uint32_t r = find_row(*index_.load(std::memory_order_relaxed), ids[i]);
    if (r == kNone) {
      r = insert_new(ids[i], now);
      row_at(r)->count = 1;
    }
    Row* row = row_at(r);
    begin_write(row);
    std::memcpy(row->values(), values + i * dim, dim * sizeof(float));
    end_write(row);
    row->dirty_gen = generation_;
    touch(r, now);
  }
}

std::size_t DynamicTable::remove(const std::int64_t* ids, std::size_t n) {
  std::lock_guard<std::mutex> lock(writer_);
  std::size_t removed = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const Index& index = *index_.load(std::memory_order_relaxed);
    const std::size_t slot = find_slot(index, ids[i]);
    if (slot == SIZE_MAX) continue;
    remove_row(static_cast<std::uint32_t>((index.slots[slot].load() & kRowMask) - 1), slot);
    ++removed;
  }
  return removed;
}

std::size_t DynamicTable::expire(std::int64_t now) {
  std::lock_guard<std::mutex> lock(writer_);
  std::size_t expired = 0;
  for (std::uint32_t r = lru_head_; r != kNone;) {
    Row* row = row_at(r);
    const std::uint32_t next = row->next;
    const std::int64_t age = now - row->last_seen;
    const bool old = config_.ttl > 0 && age >= config_.ttl;
    const bool rare = config_.rare_ttl > 0 &&
                      static_cast<std::int64_t>(row->count) < config_.rare_count &&
                      age >= config_.rare_ttl;
    if (old || rare) {
      const std::size_t slot = find_slot(*index_.load(std::memory_order_relaxed),
                                         row->id.load(std::memory_order_relaxed));
      remove_row(r, slot);
      ++expired;
    }
    r = next;
  }
  stats_.expired += static_cast<std::int64_t>(expired);
  return expired;
}

std::size_t DynamicTable::apply_adagrad(const std::int64_t* ids, std::size_t n, const float* grads,
                                        float lr, float eps, std::int64_t now) {
  std::lock_guard<std::mutex> lock(writer_);
  const auto dim = static_cast<std::size_t>(config_.dim);
  std::size_t updated = 0;
  for (std::size_t i = 0; i < n; ++i) {
    prefetch_ahead(*index_.load(std::memory_order_relaxed), ids, i, n);
    const std::uint32_t r = find_row(*index_.load(std::memory_order_relaxed), ids[i]);
    if (r == kNone) continue;
    Row* row = row_at(r);
    const float* g = grads + i * dim;
    float squares = 0.0f;
    for (std::size_t c = 0; c < dim; ++c) squares += g[c] * g[c];
    row->state += squares / static_cast<float>(dim);
    const float step = lr / (std::sqrt(row->state) + eps);
    begin_write(row);
    float* v = row->values();
    for (std::size_t c = 0; c < dim; ++c) v[c] -= step * g[c];
    end_write(row);
    row->dirty_gen = generation_;
    touch(r, now);
    ++updated;
  }
  return updated;
}

void DynamicTable::set_default_row(const float* values) {
  std::lock_guard<std::mutex> lock(writer_);
  auto fresh = std::make_shared<std::vector<float>>(static_cast<std::size_t>(config_.dim), 0.0f);
  if (values) std::copy(values, values + config_.dim, fresh->begin());
  std::atomic_store(&default_row_, std::shared_ptr<const std::vector<float>>(fresh));
}

std::vector<std::int64_t> DynamicTable::ids() {
  std::lock_guard<std::mutex> lock(writer_);
  std::vector<std::int64_t> out;
  out.reserve(static_cast<std::size_t>(size()));
  for (std::uint32_t r = lru_head_; r != kNone; r = row_at(r)->next) {
    out.push_back(row_at(r)->id.load(std::memory_order_relaxed));
  }
  return out;
}

bool DynamicTable::row_meta(std::int64_t id, std::int64_t* count, std::int64_t* last_seen,
                            float* state) {
  std::lock_guard<std::mutex> lock(writer_);
  const std::uint32_t r = find_row(*index_.load(std::memory_order_relaxed), id);
  if (r == kNone) return false;
  *count = row_at(r)->count;
  *last_seen = row_at(r)->last_seen;
  *state = row_at(r)->state;
  return true;
}

// --- readers ---

bool DynamicTable::read_row(const Index& index, std::int64_t id, float* out) const {
  const std::uint64_t h = hash_id(id);
  const std::uint32_t tag = tag_of(h);
  const std::size_t bytes = static_cast<std::size_t>(config_.dim) * sizeof(float);
  for (std::size_t pos = h & index.mask;; pos = (pos + 1) & index.mask) {
    const std::uint64_t word = index.slots[pos].load(std::memory_order_acquire);
    if (word == kEmpty) return false;
    if (word == kTombstone || (word >> 32) != tag) continue;
    const Row* row = row_at(static_cast<std::uint32_t>((word & kRowMask) - 1));
    std::int64_t held;
    for (;;) {
      const std::uint32_t before = row->seq.load(std::memory_order_acquire);
      if (before & 1) {
        std::this_thread::yield();
        continue;
      }
      held = row->id.load(std::memory_order_relaxed);
      std::memcpy(out, row->values(), bytes);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (row->seq.load(std::memory_order_relaxed) == before) break;
    }
    // A row reused for another id since the slot was read: the id was removed meanwhile.
    if (held == id) return true;
  }
}

// Random reads: the slot of ids[i + 2 * kAhead] and the row of ids[i + kAhead] (through its
// home slot, fetched one stage earlier) are requested ahead, so several misses are in flight.
constexpr std::size_t kAhead = 8;

void DynamicTable::prefetch_ahead(const Index& index, const std::int64_t* ids, std::size_t i,
                                  std::size_t n) const {
  if (i + 2 * kAhead < n) {
    __builtin_prefetch(&index.slots[hash_id(ids[i + 2 * kAhead]) & index.mask], 0, 3);
  }
  if (i + kAhead < n) {
    const std::uint64_t word =
        index.slots[hash_id(ids[i + kAhead]) & index.mask].load(std::memory_order_relaxed);
    if (word != kEmpty && word != kTombstone) {
      const auto* row =
          reinterpret_cast<const char*>(row_at(static_cast<std::uint32_t>((word & kRowMask) - 1)));
      for (std::size_t b = 0; b < row_stride_; b += 64) __builtin_prefetch(row + b, 0, 3);
    }
  }
}

bool DynamicTable::contains(std::int64_t id) const {
  ReadGuard guard(*this);
  return find_slot(guard.index(), id) != SIZE_MAX;
}

std::size_t DynamicTable::lookup(const std::int64_t* ids, std::size_t n, float* out,
                                 std::uint8_t* found) const {
  const auto dim = static_cast<std::size_t>(config_.dim);
  const auto fallback = std::atomic_load(&default_row_);
  ReadGuard guard(*this);
  std::size_t hits = 0;
  for (std::size_t i = 0; i < n; ++i) {
    prefetch_ahead(guard.index(), ids, i, n);
    float* dst = out + i * dim;
    const bool hit = read_row(guard.index(), ids[i], dst);
    if (!hit) {
      if (fallback)
        std::memcpy(dst, fallback->data(), dim * sizeof(float));
      else
        std::fill(dst, dst + dim, 0.0f);
    }
    hits += hit;
    if (found) found[i] = hit;
  }
  return hits;
}

std::size_t DynamicTable::embedding_bag(const BagBatch& bags, const Pooling& pooling,
                                        const PooledOutput& out) const {
  ADRANK_CHECK_TYPE(bags.index_type == IndexType::kInt64, "indices must have dtype int64");
  const auto* indices = static_cast<const std::int64_t*>(bags.indices);
  const auto* offsets = static_cast<const std::int64_t*>(bags.offsets);
  const std::size_t n = bags.num_indices;
  const std::size_t num_offsets = bags.num_bags + (bags.include_last_offset ? 1 : 0);
  ADRANK_CHECK_VALUE(pooling.mode == PoolingMode::kSum || pooling.mode == PoolingMode::kMean ||
                         pooling.mode == PoolingMode::kMax,
                     "mode must be sum, mean or max");
  ADRANK_CHECK_VALUE(bags.per_sample_weights == nullptr || pooling.mode == PoolingMode::kSum,
                     "per_sample_weights is only supported with mode sum");
  ADRANK_CHECK_VALUE(out.row_stride >= static_cast<std::size_t>(config_.dim),
                     "out must have at least dim (", config_.dim, ") columns");
  if (num_offsets > 0) {
    ADRANK_CHECK_VALUE(offsets[0] == 0, "offsets[0] must be 0, got ", offsets[0]);
  }
  for (std::size_t b = 0; b < num_offsets; ++b) {
    ADRANK_CHECK_VALUE(offsets[b] >= 0 && static_cast<std::size_t>(offsets[b]) <= n, "offsets[", b,
                       "] must be in [0, ", n, "], got ", offsets[b]);
    ADRANK_CHECK_VALUE(b == 0 || offsets[b] >= offsets[b - 1],
                       "offsets must not decrease: offsets[", b, "] = ", offsets[b], " < ",
                       offsets[b - 1]);
  }
  if (bags.include_last_offset && num_offsets > 0) {
    ADRANK_CHECK_VALUE(static_cast<std::size_t>(offsets[num_offsets - 1]) == n,
                       "with include_last_offset the last offset must equal the number of ids (", n,
                       "), got ", offsets[num_offsets - 1]);
  }

  const auto dim = static_cast<std::size_t>(config_.dim);
  const auto fallback = std::atomic_load(&default_row_);
  std::vector<float> row(dim);
  ReadGuard guard(*this);
  std::size_t hits = 0;
  for (std::size_t b = 0; b < bags.num_bags; ++b) {
    const auto begin = static_cast<std::size_t>(offsets[b]);
    const auto end = b + 1 < num_offsets ? static_cast<std::size_t>(offsets[b + 1]) : n;
    float* acc = out.data + b * out.row_stride;
    const bool is_max = pooling.mode == PoolingMode::kMax;
    std::fill(acc, acc + dim, is_max ? -std::numeric_limits<float>::infinity() : 0.0f);
    std::size_t kept = 0;
    for (std::size_t p = begin; p < end; ++p) {
      if (pooling.padding_idx >= 0 && indices[p] == pooling.padding_idx) continue;
      ++kept;
      prefetch_ahead(guard.index(), indices, p, n);
      const float* src = row.data();
      if (read_row(guard.index(), indices[p], row.data())) {
        ++hits;
      } else if (fallback) {
        src = fallback->data();
      } else {
        std::fill(row.begin(), row.end(), 0.0f);
      }
      if (is_max) {
        for (std::size_t c = 0; c < dim; ++c) acc[c] = std::max(acc[c], src[c]);
      } else {
        const float w = bags.per_sample_weights ? bags.per_sample_weights[p] : 1.0f;
        for (std::size_t c = 0; c < dim; ++c) acc[c] += w * src[c];
      }
    }
    if (kept == 0) {
      std::fill(acc, acc + dim, 0.0f);
    } else if (pooling.mode == PoolingMode::kMean) {
      const float inv = 1.0f / static_cast<float>(kept);
      for (std::size_t c = 0; c < dim; ++c) acc[c] *= inv;
    }
  }
  return hits;
}

}  // namespace adrank
