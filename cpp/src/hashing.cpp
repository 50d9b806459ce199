#include "adrank/hashing.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "adrank/check.hpp"
#include "adrank/parallel.hpp"
#include "adrank/simd.hpp"
#include "hashing_internal.hpp"

namespace adrank {
namespace {

constexpr std::size_t kGrain = 16384;  // values per chunk: enough to amortize a thread wake-up

inline bool is_valid(const std::uint8_t* validity, std::int64_t offset, std::size_t i) {
  if (validity == nullptr) return true;
  const std::uint64_t bit = static_cast<std::uint64_t>(offset) + i;
  return (validity[bit >> 3] >> (bit & 7)) & 1;
}

// Appends the UTF-8 encoding of UCS-4 text, as Python's str.encode("utf-8") would.
void append_utf8(const std::uint32_t* text, std::size_t count, std::size_t row, std::string& out) {
  for (std::size_t j = 0; j < count; ++j) {
    const std::uint32_t cp = text[j];
    ADRANK_CHECK_VALUE(cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF), "values[", row,
                       "] holds code point ", cp, ", which has no UTF-8 encoding");
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
}

// Calls visit(i, bytes, length) for present values and visit(i, nullptr, 0) for missing ones,
// for i in [begin, end). The layout switch runs once per chunk, not once per value.
template <class Visit>
void visit_strings(const StringColumn& c, std::size_t begin, std::size_t end, Visit&& visit) {
  switch (c.layout) {
    case StringColumn::Layout::kViews:
      for (std::size_t i = begin; i < end; ++i) {
        visit(i, c.view_data[i], static_cast<std::size_t>(c.view_lengths[i]));
      }
      return;
    case StringColumn::Layout::kArrow32:
    case StringColumn::Layout::kArrow64: {
      const bool wide = c.layout == StringColumn::Layout::kArrow64;
      const auto* o32 = static_cast<const std::int32_t*>(c.offsets);
      const auto* o64 = static_cast<const std::int64_t*>(c.offsets);
      for (std::size_t i = begin; i < end; ++i) {
        if (!is_valid(c.validity, c.validity_offset, i)) {
          visit(i, nullptr, 0);
          continue;
        }
        const std::int64_t lo = wide ? o64[i] : o32[i];
        const std::int64_t hi = wide ? o64[i + 1] : o32[i + 1];
        visit(i, reinterpret_cast<const char*>(c.data) + lo, static_cast<std::size_t>(hi - lo));
      }
      return;
    }
    case StringColumn::Layout::kFixedBytes:
      for (std::size_t i = begin; i < end; ++i) {
        const char* item = reinterpret_cast<const char*>(c.data) + i * c.itemsize;
        std::size_t length = c.itemsize;
        while (length > 0 && item[length - 1] == '\0') --length;  // numpy strips trailing NULs
        visit(i, item, length);
      }
      return;
    case StringColumn::Layout::kFixedUcs4: {
      // Copied out through memcpy: numpy does not promise 4-byte alignment of the items.
      std::vector<std::uint32_t> text(c.itemsize / 4);
      std::string utf8;
      for (std::size_t i = begin; i < end; ++i) {
        std::memcpy(text.data(), c.data + i * c.itemsize, text.size() * 4);
        std::size_t length = text.size();
        while (length > 0 && text[length - 1] == 0) --length;  // numpy strips trailing NULs
        utf8.clear();
        append_utf8(text.data(), length, i, utf8);
        visit(i, utf8.data(), utf8.size());
      }
      return;
    }
  }
}

void check_column(const StringColumn& c) {
  if (c.layout == StringColumn::Layout::kArrow32 || c.layout == StringColumn::Layout::kArrow64) {
    const bool wide = c.layout == StringColumn::Layout::kArrow64;
    const auto* o32 = static_cast<const std::int32_t*>(c.offsets);
    const auto* o64 = static_cast<const std::int64_t*>(c.offsets);
    std::int64_t previous = wide ? o64[0] : o32[0];
    ADRANK_CHECK_VALUE(previous >= 0, "values: Arrow offsets[0] must be >= 0, got ", previous);
    for (std::size_t i = 1; i <= c.size; ++i) {
      const std::int64_t current = wide ? o64[i] : o32[i];
      ADRANK_CHECK_VALUE(current >= previous, "values: Arrow offsets must not decrease (offsets[",
                         i, "] = ", current, " < ", previous, ")");
      previous = current;
    }
    ADRANK_CHECK_VALUE(static_cast<std::uint64_t>(previous) <= c.data_size,
                       "values: Arrow offsets run past the data buffer (", previous, " > ",
                       c.data_size, " bytes)");
  }
}

void check_spec(const KeyedHashSpec& spec, std::size_t n) {
  ADRANK_CHECK_VALUE(spec.key_offsets[0] == 0, "key offsets must start at 0, got ",
                     spec.key_offsets[0]);
  for (std::size_t k = 0; k < spec.num_keys; ++k) {
    ADRANK_CHECK_VALUE(spec.key_offsets[k + 1] >= spec.key_offsets[k],
                       "key offsets must not decrease (key ", k, ")");
    ADRANK_CHECK_VALUE(spec.slots[k] >= 0, "slot must be >= 0, got ", spec.slots[k], " for key ",
                       k);
    ADRANK_CHECK_VALUE(spec.num_buckets[k] >= 1, "num_buckets must be >= 1, got ",
                       spec.num_buckets[k], " for key ", k);
  }
  ADRANK_CHECK_VALUE(static_cast<std::size_t>(spec.key_offsets[spec.num_keys]) == n,
                     "key offsets end at ", spec.key_offsets[spec.num_keys], " but there are ", n,
                     " values");
}

// Runs hash_chunk(key, begin, end) over [0, n) split by key and by thread chunk.
template <class HashChunk>
void for_each_keyed_chunk(const KeyedHashSpec& spec, std::size_t n, HashChunk&& hash_chunk) {
  parallel_for(n, kGrain, [&](std::size_t begin, std::size_t end) {
    const std::int64_t* first = spec.key_offsets;
    const std::int64_t* last = spec.key_offsets + spec.num_keys + 1;
    // The key owning value `begin`: the last key offset <= begin (skipping empty keys).
    std::size_t key = static_cast<std::size_t>(
        std::upper_bound(first, last, static_cast<std::int64_t>(begin)) - first - 1);
    while (begin < end) {
      const std::size_t key_end =
          std::min(end, static_cast<std::size_t>(spec.key_offsets[key + 1]));
      if (key_end > begin) hash_chunk(key, begin, key_end);
      begin = std::max(begin, key_end);
      ++key;
    }
  });
}

}  // namespace

void hash_strings(const StringColumn& values, const KeyedHashSpec& spec, std::int64_t* out) {
  check_column(values);
  check_spec(spec, values.size);
  for_each_keyed_chunk(spec, values.size, [&](std::size_t key, std::size_t begin, std::size_t end) {
    const std::uint64_t seed = slot_seed(spec.seed, spec.slots[key]);
    const auto buckets = static_cast<std::uint64_t>(spec.num_buckets[key]);
    const std::int64_t missing = reduce_to_bucket(fmix64(seed), buckets);
    const Xxh3Seeded hash(seed);
    visit_strings(values, begin, end, [&](std::size_t i, const char* bytes, std::size_t length) {
      out[i] = bytes == nullptr ? missing : reduce_to_bucket(hash(bytes, length), buckets);
    });
  });
}

void hash_ids(const std::int64_t* ids, const std::uint8_t* validity, std::int64_t validity_offset,
              std::size_t n, const KeyedHashSpec& spec, std::int64_t* out) {
  check_spec(spec, n);
  for_each_keyed_chunk(spec, n, [&](std::size_t key, std::size_t begin, std::size_t end) {
    const std::uint64_t seed = slot_seed(spec.seed, spec.slots[key]);
    const auto buckets = static_cast<std::uint64_t>(spec.num_buckets[key]);
    if (validity == nullptr) {
      if (simd_level() == SimdLevel::kAvx512 && buckets < (std::uint64_t{1} << 32)) {
        hashing_internal::hash_ids_avx512(ids + begin, end - begin, seed, buckets, out + begin);
        return;
      }
      for (std::size_t i = begin; i < end; ++i) {
        out[i] = reduce_to_bucket(xxh3_64_u64(static_cast<std::uint64_t>(ids[i]), seed), buckets);
      }
      return;
    }
    const std::int64_t missing = reduce_to_bucket(fmix64(seed), buckets);
    for (std::size_t i = begin; i < end; ++i) {
      out[i] =
          is_valid(validity, validity_offset, i)
              ? reduce_to_bucket(xxh3_64_u64(static_cast<std::uint64_t>(ids[i]), seed), buckets)
              : missing;
    }
  });
}

void hash_cross(const std::int64_t* const* columns, std::size_t num_columns, std::size_t n,
                std::int64_t slot, std::int64_t num_buckets, std::uint64_t seed,
                std::int64_t* out) {
  ADRANK_CHECK_VALUE(num_columns >= 2, "columns: a cross needs at least 2 columns, got ",
                     num_columns);
  ADRANK_CHECK_VALUE(slot >= 0, "slot must be >= 0, got ", slot);
  ADRANK_CHECK_VALUE(num_buckets >= 1, "num_buckets must be >= 1, got ", num_buckets);
  const std::uint64_t first_seed = slot_seed(seed, slot);
  const auto buckets = static_cast<std::uint64_t>(num_buckets);
  parallel_for(n, kGrain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      std::uint64_t h = first_seed;
      for (std::size_t j = 0; j < num_columns; ++j) {
        h = xxh3_64_u64(static_cast<std::uint64_t>(columns[j][i]), h);
      }
      out[i] = reduce_to_bucket(h, buckets);
    }
  });
}

template <class Float>
void bucketize(const Float* values, std::size_t n, const double* boundaries,
               std::size_t num_boundaries, std::int64_t* out) {
  for (std::size_t j = 0; j < num_boundaries; ++j) {
    ADRANK_CHECK_VALUE(!std::isnan(boundaries[j]), "boundaries must not contain NaN (boundaries[",
                       j, "] is NaN)");
    ADRANK_CHECK_VALUE(j == 0 || boundaries[j] > boundaries[j - 1],
                       "boundaries must be strictly increasing (boundaries[", j, "] <= boundaries[",
                       j - 1, "])");
  }
  const double* last = boundaries + num_boundaries;
  const auto nan_bucket = static_cast<std::int64_t>(num_boundaries) + 1;
  parallel_for(n, kGrain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      const double v = static_cast<double>(values[i]);
      out[i] = std::isnan(v) ? nan_bucket : std::upper_bound(boundaries, last, v) - boundaries;
    }
  });
}

template void bucketize<float>(const float*, std::size_t, const double*, std::size_t,
                               std::int64_t*);
template void bucketize<double>(const double*, std::size_t, const double*, std::size_t,
                                std::int64_t*);

void hash_sklearn(const StringColumn& values, std::int64_t n_features, bool alternate_sign,
                  std::int64_t* indices, std::int8_t* signs) {
  ADRANK_CHECK_VALUE(n_features >= 1 && n_features <= 2147483647,
                     "n_features must be in [1, 2**31 - 1], got ", n_features);
  check_column(values);
  parallel_for(values.size, kGrain, [&](std::size_t begin, std::size_t end) {
    visit_strings(values, begin, end, [&](std::size_t i, const char* bytes, std::size_t length) {
      ADRANK_CHECK_VALUE(bytes != nullptr, "values[", i,
                         "] is missing; FeatureHasher has no missing value");
      const auto h = static_cast<std::int32_t>(murmur3_x86_32(bytes, length, 0));
      // |INT32_MIN| overflows int32; scikit-learn defines its index as 2^31 % n_features.
      const std::int64_t magnitude = h == INT32_MIN ? 2147483648LL : std::llabs(h);
      indices[i] = magnitude % n_features;
      signs[i] = (!alternate_sign || h >= 0) ? 1 : -1;
    });
  });
}

}  // namespace adrank
