// Snapshot and delta files of the dynamic table.
//
// A file: FileHeader, then num_removed int64 ids (deltas only), then num_records records, each a
// RecordHeader and dim fp32 values, in LRU order (least recently written first, so a table
// loading into a smaller limit keeps the most recent rows). Native byte order. Files are
// written to PATH.tmp and renamed, so a reader of PATH never sees half a file.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "adrank/check.hpp"
#include "dynamic_table_internal.hpp"

namespace adrank {

using namespace dynamic_internal;

namespace {

constexpr char kMagic[8] = {'A', 'D', 'R', 'D', 'Y', 'N', 'T', 'B'};
constexpr std::uint32_t kVersion = 1;
enum FileKind : std::uint32_t { kSnapshot = 0, kDelta = 1, kFullDelta = 2 };

struct FileHeader {
  char magic[8];
  std::uint32_t version;
  std::uint32_t kind;
  std::int64_t dim;
  std::int64_t num_records;
  std::int64_t num_removed;
  std::uint64_t memory_limit_bytes;
  std::int64_t admit_threshold;
  double admit_probability;
  std::int64_t sketch_width;
  std::int64_t sketch_depth;
  std::int64_t ttl;
  std::int64_t rare_ttl;
  std::int64_t rare_count;
  float init_scale;
  std::uint32_t reserved;
  std::uint64_t seed;
};

struct File {
  std::FILE* f;
  explicit File(std::FILE* file) : f(file) {}
  ~File() {
    if (f) std::fclose(f);
  }
};

FileHeader header_for(const DynamicTableConfig& c, FileKind kind) {
  FileHeader h{};
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.version = kVersion;
  h.kind = kind;
  h.dim = c.dim;
  h.memory_limit_bytes = c.memory_limit_bytes;
  h.admit_threshold = c.admit_threshold;
  h.admit_probability = c.admit_probability;
  h.sketch_width = c.sketch_width;
  h.sketch_depth = c.sketch_depth;
  h.ttl = c.ttl;
  h.rare_ttl = c.rare_ttl;
  h.rare_count = c.rare_count;
  h.init_scale = c.init_scale;
  h.seed = c.seed;
  return h;
}

DynamicTableConfig config_from(const FileHeader& h) {
  DynamicTableConfig c;
  c.dim = h.dim;
  c.memory_limit_bytes = h.memory_limit_bytes;
  c.admit_threshold = h.admit_threshold;
  c.admit_probability = h.admit_probability;
  c.sketch_width = h.sketch_width;
  c.sketch_depth = h.sketch_depth;
  c.ttl = h.ttl;
  c.rare_ttl = h.rare_ttl;
  c.rare_count = h.rare_count;
  c.init_scale = h.init_scale;
  c.seed = h.seed;
  return c;
}

void read_exact(std::FILE* f, void* into, std::size_t bytes, const std::string& path) {
  ADRANK_CHECK_VALUE(std::fread(into, 1, bytes, f) == bytes, "path ", path,
                     " is truncated: not a complete dynamic table file");
}

void write_exact(std::FILE* f, const void* from, std::size_t bytes, const std::string& path) {
  ADRANK_CHECK_VALUE(std::fwrite(from, 1, bytes, f) == bytes, "path ", path,
                     ": write failed: ", std::strerror(errno));
}

std::FILE* open_or_throw(const std::string& path, const char* mode) {
  std::FILE* f = std::fopen(path.c_str(), mode);
  ADRANK_CHECK_VALUE(f != nullptr, "path ", path, ": cannot open: ", std::strerror(errno));
  return f;
}

FileHeader read_header(std::FILE* f, const std::string& path) {
  FileHeader h;
  read_exact(f, &h, sizeof(h), path);
  ADRANK_CHECK_VALUE(std::memcmp(h.magic, kMagic, sizeof(kMagic)) == 0, "path ", path,
                     " is not a dynamic table file");
  ADRANK_CHECK_VALUE(h.version == kVersion, "path ", path, " has version ", h.version,
                     ", this build reads ", kVersion);
  ADRANK_CHECK_VALUE(h.kind <= kFullDelta && h.num_records >= 0 && h.num_removed >= 0, "path ",
                     path, " has a corrupt header");
  return h;
}

}  // namespace

void DynamicTable::write_records(std::FILE* f, const std::string& path, bool only_dirty,
                                 std::int64_t* written) {
  const auto dim = static_cast<std::size_t>(config_.dim);
  for (std::uint32_t r = lru_head_; r != kNone; r = row_at(r)->next) {
    const Row* row = row_at(r);
    if (only_dirty && row->dirty_gen != generation_) continue;
    const RecordHeader record{row->id.load(std::memory_order_relaxed), row->last_seen, row->count,
                              row->state};
    write_exact(f, &record, sizeof(record), path);
    write_exact(f, row->values(), dim * sizeof(float), path);
    ++*written;
  }
}

std::uint32_t DynamicTable::put_record(const RecordHeader& record, const float* values) {
  std::uint32_t r = find_row(*index_.load(std::memory_order_relaxed), record.id);
  if (r == kNone) r = insert_new(record.id, record.last_seen);
  Row* row = row_at(r);
  begin_write(row);
  std::memcpy(row->values(), values, static_cast<std::size_t>(config_.dim) * sizeof(float));
  end_write(row);
  row->count = record.count;
  row->state = record.state;
  row->dirty_gen = generation_;
  touch(r, record.last_seen);
  return r;
}

void DynamicTable::clear_all() {
  while (lru_head_ != kNone) {
    const std::uint32_t r = lru_head_;
    remove_row(r, find_slot(*index_.load(std::memory_order_relaxed),
                            row_at(r)->id.load(std::memory_order_relaxed)));
  }
  // Removals this table cannot list: its own next delta must be full.
  removed_overflow_ = true;
  removed_log_.clear();
}

namespace {

// Writes header + body to path.tmp, patches the header's counts, renames onto path.
template <class Body>
void write_file(const std::string& path, FileHeader header, Body body) {
  const std::string tmp = path + ".tmp";
  {
    File file(open_or_throw(tmp, "wb"));
    write_exact(file.f, &header, sizeof(header), path);
    body(file.f, &header);
    ADRANK_CHECK_VALUE(std::fseek(file.f, 0, SEEK_SET) == 0, "path ", path, ": seek failed");
    write_exact(file.f, &header, sizeof(header), path);
    ADRANK_CHECK_VALUE(std::fflush(file.f) == 0, "path ", path, ": write failed");
  }
  ADRANK_CHECK_VALUE(std::rename(tmp.c_str(), path.c_str()) == 0, "path ", path,
                     ": rename failed: ", std::strerror(errno));
}

}  // namespace

void DynamicTable::save(const std::string& path) {
  std::lock_guard<std::mutex> lock(writer_);
  write_file(path, header_for(config_, kSnapshot),
             [&](std::FILE* f, FileHeader* h) { write_records(f, path, false, &h->num_records); });
  // Rows written from now on belong to the next delta.
  ++generation_;
  removed_log_.clear();
  removed_overflow_ = false;
}

std::int64_t DynamicTable::export_delta(const std::string& path, bool* full) {
  std::lock_guard<std::mutex> lock(writer_);
  const bool is_full = removed_overflow_;
  std::int64_t written = 0;
  write_file(
      path, header_for(config_, is_full ? kFullDelta : kDelta), [&](std::FILE* f, FileHeader* h) {
        if (!is_full) {
          h->num_removed = static_cast<std::int64_t>(removed_log_.size());
          write_exact(f, removed_log_.data(), removed_log_.size() * sizeof(std::int64_t), path);
        }
        write_records(f, path, !is_full, &h->num_records);
        written = h->num_records;
      });
  ++generation_;
  removed_log_.clear();
  removed_overflow_ = false;
  if (full) *full = is_full;
  return written;
}

std::unique_ptr<DynamicTable> DynamicTable::load(const std::string& path,
                                                 std::size_t memory_limit) {
  File file(open_or_throw(path, "rb"));
  const FileHeader header = read_header(file.f, path);
  ADRANK_CHECK_VALUE(header.kind == kSnapshot, "path ", path,
                     " is a delta, not a snapshot: apply it with apply_delta");
  DynamicTableConfig config = config_from(header);
  if (memory_limit) config.memory_limit_bytes = memory_limit;
  auto table = std::make_unique<DynamicTable>(config);
  std::lock_guard<std::mutex> lock(table->writer_);
  std::vector<float> values(static_cast<std::size_t>(config.dim));
  for (std::int64_t i = 0; i < header.num_records; ++i) {
    RecordHeader record;
    read_exact(file.f, &record, sizeof(record), path);
    read_exact(file.f, values.data(), values.size() * sizeof(float), path);
    table->put_record(record, values.data());
  }
  // A loaded table starts clean: its first delta holds what changes after the load.
  ++table->generation_;
  table->removed_log_.clear();
  table->removed_overflow_ = false;
  return table;
}

std::int64_t DynamicTable::apply_delta(const std::string& path) {
  File file(open_or_throw(path, "rb"));
  const FileHeader header = read_header(file.f, path);
  ADRANK_CHECK_VALUE(header.kind != kSnapshot, "path ", path,
                     " is a snapshot, not a delta: load it with load");
  ADRANK_CHECK_VALUE(header.dim == config_.dim, "path ", path, " holds rows of dim ", header.dim,
                     ", this table has dim ", config_.dim);
  // Read everything first: a truncated file changes nothing.
  std::vector<std::int64_t> removed(static_cast<std::size_t>(header.num_removed));
  read_exact(file.f, removed.data(), removed.size() * sizeof(std::int64_t), path);
  const std::size_t record_bytes =
      sizeof(RecordHeader) + static_cast<std::size_t>(config_.dim) * sizeof(float);
  std::vector<unsigned char> body(static_cast<std::size_t>(header.num_records) * record_bytes);
  read_exact(file.f, body.data(), body.size(), path);

  std::lock_guard<std::mutex> lock(writer_);
  if (header.kind == kFullDelta) clear_all();
  for (const std::int64_t id : removed) {
    const Index& index = *index_.load(std::memory_order_relaxed);
    const std::size_t slot = find_slot(index, id);
    if (slot != SIZE_MAX) {
      remove_row(static_cast<std::uint32_t>((index.slots[slot].load() & kRowMask) - 1), slot);
    }
  }
  for (std::int64_t i = 0; i < header.num_records; ++i) {
    const unsigned char* at = body.data() + static_cast<std::size_t>(i) * record_bytes;
    RecordHeader record;
    std::memcpy(&record, at, sizeof(record));
    put_record(record, reinterpret_cast<const float*>(at + sizeof(record)));
  }
  return header.num_records;
}

}  // namespace adrank
