// Top-k creative selection: exact, deterministic, and constrained during the selection.
//
// Glossary: B requests, N candidates in a request, K slots in the answer.
//
// Order: candidate i ranks above j iff scores[i] > scores[j], or they are equal and i < j
// (-0.0 equals +0.0). NaN never ranks and is never selected. This is the order of
// numpy.argsort(-scores, kind="stable") with NaN removed.
//
// topk, per request:
//   order = candidates sorted by the order above, NaN removed
//   for s in [0, K): values[s], indices[s] = s < len(order) ? (scores[order[s]], order[s])
//                                                          : (-inf, -1)
//
// select, per request: the greedy walk, so the answer is exact however skewed the groups are:
//   taken = 0; count[g][id] = 0 for every group constraint g
//   for i in order:
//     if taken == K: break
//     if not eligible[i] or scores[i] < min_score: continue
//     if any count[g][group_ids[g][i]] >= cap[g]: continue
//     count[g][group_ids[g][i]] += 1 for every g; output slot `taken++` = (scores[i], i)
//   remaining slots = (-inf, -1)
// Group ids are arbitrary int64 labels (raw advertiser ids work as they are).
//
// Indices are positions within the request (0 for its first candidate), so a jagged batch
// answers as each request alone would. A request holds at most 2^32 - 1 candidates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

namespace adrank {

// B requests over one score array. Dense (B x N, row-major): offsets == nullptr and every row
// holds row_length scores. Jagged: request r owns [offsets[r], offsets[r + 1]); offsets has
// B + 1 entries, starts at 0, never decreases and ends at size.
struct ScoreRows {
  const float* scores = nullptr;
  std::size_t size = 0;  // scores in the array
  std::size_t num_rows = 0;
  std::size_t row_length = 0;
  const std::int64_t* offsets = nullptr;
};

// At most `cap` (>= 0) selected candidates per distinct id; ids are laid out like the scores.
struct GroupCap {
  const std::int64_t* ids = nullptr;
  std::int64_t cap = 0;
};

struct SelectConstraints {
  const GroupCap* groups = nullptr;
  std::size_t num_groups = 0;
  const std::uint8_t* eligible = nullptr;  // laid out like the scores; 0 = never; nullptr = all
  float min_score = -std::numeric_limits<float>::infinity();  // not NaN
};

// Slots of padding an answer may have beyond its request's candidates.
constexpr std::size_t kMaxPadding = 65536;

// The largest k accepted for rows: k may exceed a request's length (the rest of its answer is
// padding), up to max(ceil(size / num_rows), kMaxPadding), which is max(N, kMaxPadding) for one
// request or a dense batch. So an answer never holds more than max(size, kMaxPadding *
// num_rows) entries: its memory is bounded by the input's, whatever k a caller passes.
std::size_t max_k(const ScoreRows& rows);

// Throws ValueError for bad rows, a k over max_k(rows), or bad constraints.
void validate_topk(const ScoreRows& rows, std::size_t k);
void validate_select(const ScoreRows& rows, std::size_t k, const SelectConstraints& constraints);

// values and indices hold num_rows * k entries, row-major. The *_unchecked kernels skip
// validation, so that a caller (the Python binding) can validate while it holds the GIL and
// allocate the answer only for a valid k.
void topk(const ScoreRows& rows, std::size_t k, float* values, std::int64_t* indices);
void topk_unchecked(const ScoreRows& rows, std::size_t k, float* values, std::int64_t* indices);

// As topk, under the constraints.
void select(const ScoreRows& rows, std::size_t k, const SelectConstraints& constraints,
            float* values, std::int64_t* indices);
void select_unchecked(const ScoreRows& rows, std::size_t k, const SelectConstraints& constraints,
                      float* values, std::int64_t* indices);

}  // namespace adrank
