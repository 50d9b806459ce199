// Constrained selection: the greedy walk of topk.hpp, done exactly without sorting everything.
//
// Rounds: collect the best m eligible candidates, walk them in order, and stop once k are
// taken or no candidate is left; otherwise collect the next m below the last one walked, m
// sized from how many of the walked ones the caps let through. Skewed groups cost more
// rounds, never a wrong answer.
#include <algorithm>
#include <vector>

#include "adrank/check.hpp"
#include "adrank/topk.hpp"
#include "topk_internal.hpp"

namespace adrank {
namespace {

using namespace topk_internal;

// How many candidates of each group id are taken: a small open-addressing table, since at
// most k ids ever get a count and the ids themselves are arbitrary (raw advertiser ids).
class GroupCounts {
 public:
  void reset(std::size_t max_ids) {
    std::size_t size = 16;
    while (size < 2 * max_ids) size *= 2;
    slots_.assign(size, Slot{});
    mask_ = size - 1;
  }

  std::int64_t count(std::int64_t id) const { return slots_[find(id)].count; }

  void increment(std::int64_t id) {
    Slot& slot = slots_[find(id)];
    slot.id = id;
    ++slot.count;
  }

 private:
  struct Slot {
    std::int64_t id = 0;
    std::int64_t count = 0;  // 0: empty
  };

  // The slot holding id, or the empty slot where it would go (load factor <= 1/2).
  std::size_t find(std::int64_t id) const {
    std::size_t at =
        static_cast<std::size_t>((static_cast<std::uint64_t>(id) * 0x9E3779B97F4A7C15ULL) >> 32) &
        mask_;
    while (slots_[at].count != 0 && slots_[at].id != id) at = (at + 1) & mask_;
    return at;
  }

  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
};

// One request's view of the constraints: pointers shifted to the request's first candidate,
// and only the caps that can bind (a cap >= k never does).
struct RequestConstraints {
  std::vector<const std::int64_t*> ids;
  std::vector<std::int64_t> caps;
  std::vector<GroupCounts> counts;
  const std::uint8_t* eligible = nullptr;

  // At most `most_taken` candidates will be counted: min(k, candidates), not k, so that the
  // tables stay as small as the request whatever k is.
  void reset(const SelectConstraints& c, std::size_t begin, std::size_t k, std::size_t most_taken) {
    ids.clear();
    caps.clear();
    for (std::size_t g = 0; g < c.num_groups; ++g) {
      if (c.groups[g].cap >= static_cast<std::int64_t>(k)) continue;
      ids.push_back(c.groups[g].ids + begin);
      caps.push_back(c.groups[g].cap);
    }
    if (counts.size() < ids.size()) counts.resize(ids.size());
    for (std::size_t g = 0; g < ids.size(); ++g) counts[g].reset(most_taken);
    eligible = c.eligible == nullptr ? nullptr : c.eligible + begin;
  }

  bool has_room(std::size_t i) const {
    for (std::size_t g = 0; g < ids.size(); ++g) {
      if (counts[g].count(ids[g][i]) >= caps[g]) return false;
    }
    return true;
  }

  void take(std::size_t i) {
    for (std::size_t g = 0; g < ids.size(); ++g) counts[g].increment(ids[g][i]);
  }

  bool is_eligible(std::size_t i) const { return eligible == nullptr || eligible[i] != 0; }
};

void check_constraints(const SelectConstraints& c) {
  ADRANK_CHECK_VALUE(!(c.min_score != c.min_score), "min_score must not be NaN");
  for (std::size_t g = 0; g < c.num_groups; ++g) {
    ADRANK_CHECK_VALUE(c.groups[g].cap >= 0, "groups[", g, "] cap must be >= 0, got ",
                       c.groups[g].cap);
  }
}

// The greedy walk for one request; returns how many candidates it took into `taken`.
std::size_t select_request(const float* x, std::size_t n, std::size_t k, float min_score,
                           RequestConstraints& request, std::vector<Key>& keys,
                           std::vector<Key>& taken) {
  taken.clear();
  for (std::int64_t cap : request.caps) {
    if (cap == 0) return 0;  // every candidate has an id in every group
  }
  // Twice k: most requests are answered in the first round.
  std::size_t m = std::min(n, 2 * k + 8);
  std::size_t walked = 0;
  Key below = kNoBound;
  const auto eligible = [&](std::size_t i) { return request.is_eligible(i); };
  for (;;) {
    if (request.eligible == nullptr) {
      collect_best<true>(x, n, m, min_score, below, eligible, keys);
    } else {
      collect_best<false>(x, n, m, min_score, below, eligible, keys);
    }
    const std::size_t taken_before = taken.size();
    for (const Key key : keys) {
      const std::size_t i = index_of(key);
      if (!request.has_room(i)) continue;
      request.take(i);
      taken.push_back(key);
      if (taken.size() == k) return k;
    }
    if (keys.size() < m) return taken.size();  // nothing left below the last one walked
    below = keys.back();
    walked += keys.size();
    // Size the next round from the share of walked candidates the caps let through; when this
    // round let through under a quarter, the groups are skewed: at least double.
    const double share = static_cast<double>(std::max<std::size_t>(taken.size(), 1)) / walked;
    const auto expected = static_cast<std::size_t>((k - taken.size()) / share * 1.25) + 16;
    const bool skewed = (taken.size() - taken_before) * 4 < keys.size();
    m = std::min(n, std::max(expected, skewed ? 2 * m : 0));
  }
}

}  // namespace

void validate_select(const ScoreRows& rows, std::size_t k, const SelectConstraints& constraints) {
  validate_topk(rows, k);
  check_constraints(constraints);
}

void select(const ScoreRows& rows, std::size_t k, const SelectConstraints& constraints,
            float* values, std::int64_t* indices) {
  validate_select(rows, k, constraints);
  select_unchecked(rows, k, constraints, values, indices);
}

void select_unchecked(const ScoreRows& rows, std::size_t k, const SelectConstraints& constraints,
                      float* values, std::int64_t* indices) {
  for_each_row(rows, [&](std::size_t r, std::size_t begin, std::size_t n) {
    thread_local RequestConstraints request;
    thread_local std::vector<Key> keys;
    thread_local std::vector<Key> taken;
    const float* x = rows.scores + begin;
    if (k == 0) return;
    request.reset(constraints, begin, k, std::min(k, n));
    const std::size_t count =
        n == 0 ? 0 : select_request(x, n, k, constraints.min_score, request, keys, taken);
    write_answer(x, taken.data(), count, k, values + r * k, indices + r * k);
  });
}

}  // namespace adrank
