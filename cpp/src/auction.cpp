// The auction pass of auction.hpp: one loop gathers, scores and filters the candidates, the
// select kernel of topk.hpp picks the winners, a loop over them prices.
#include "adrank/auction.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "adrank/check.hpp"
#include "adrank/topk.hpp"

namespace adrank {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// numpy's maximum and minimum: NaN if either side is NaN.
double nan_max(double a, double b) { return (a != a || b != b) ? a + b : (a < b ? b : a); }
double nan_min(double a, double b) { return (a != a || b != b) ? a + b : (b < a ? b : a); }

// A small set of int64 ids, sorted: membership by binary search (a request blocks a handful
// of categories and has seen a few dozen creatives).
bool contains(const std::vector<std::int64_t>& sorted, std::int64_t id) {
  return std::binary_search(sorted.begin(), sorted.end(), id);
}

// The creative ids seen at least `cap` times: np.unique with counts, then the counts >= cap.
void over_cap_ids(const AuctionRules& rules, std::vector<std::int64_t>& seen,
                  std::vector<std::int64_t>& over) {
  over.clear();
  seen.assign(rules.recently_seen, rules.recently_seen + rules.num_seen);
  std::sort(seen.begin(), seen.end());
  for (std::size_t i = 0; i < seen.size();) {
    std::size_t j = i;
    while (j < seen.size() && seen[j] == seen[i]) ++j;
    if (static_cast<std::int64_t>(j - i) >= rules.frequency_cap) over.push_back(seen[i]);
    i = j;
  }
}

// Per-thread buffers, reused across requests.
struct Scratch {
  std::vector<double> ecpm, penalty, pacing;
  std::vector<float> scores;
  std::vector<std::int64_t> advertiser, ad;
  std::vector<std::uint8_t> eligible;
  std::vector<std::int64_t> blocked, seen, over_cap;
  std::vector<float> chosen_values;
  std::vector<std::int64_t> chosen;
};

// One reference per call: each use of a thread_local itself costs a call to __tls_get_addr.
Scratch& thread_scratch() {
  thread_local Scratch scratch;
  return scratch;
}

}  // namespace

float float32_floor(double value) {
  if (value != value) return static_cast<float>(value);
  constexpr double kLargest = std::numeric_limits<float>::max();
  if (value > kLargest) return std::numeric_limits<float>::infinity();
  if (value < -kLargest) {
    return value == -kInf ? -std::numeric_limits<float>::infinity()
                          : -std::numeric_limits<float>::max();
  }
  float floor = static_cast<float>(value);
  if (static_cast<double>(floor) < value) {
    floor = std::nextafter(floor, std::numeric_limits<float>::infinity());
  }
  return floor;
}

PackedCatalog::PackedCatalog(const AuctionCatalog& columns)
    : rows_(columns.num_rows), has_ads_(columns.ad_id != nullptr) {
  for (std::size_t r = 0; r < columns.num_rows; ++r) {
    ADRANK_CHECK_VALUE(columns.objective[r] >= 0 && columns.objective[r] <= 2,
                       "objective must hold codes 0 (CPM), 1 (CPC) or 2 (oCPM), got ",
                       static_cast<int>(columns.objective[r]), " at row ", r);
    AuctionRow& row = rows_[r];
    row.creative_id = columns.creative_id[r];
    row.advertiser_id = columns.advertiser_id[r];
    row.category = columns.category[r];
    row.bid = columns.bid[r];
    row.target_cpa = columns.target_cpa[r];
    row.region_mask = columns.region_mask[r];
    row.ad_id = has_ads_ ? columns.ad_id[r] : columns.creative_id[r];
    row.objective = columns.objective[r];
    row.active = columns.active[r] != 0 ? 1 : 0;
  }
}

void validate_auction(const PackedCatalog& catalog, const AuctionCandidates& candidates,
                      const AuctionRules& rules) {
  ADRANK_CHECK_VALUE(std::isfinite(rules.reserve_ecpm) && rules.reserve_ecpm >= 0,
                     "reserve_ecpm must be a finite number >= 0, got ", rules.reserve_ecpm);
  ADRANK_CHECK_VALUE(std::isfinite(rules.neg_penalty) && rules.neg_penalty >= 0,
                     "neg_penalty must be a finite number >= 0, got ", rules.neg_penalty);
  ADRANK_CHECK_VALUE(rules.max_per_advertiser >= 0, "max_per_advertiser must be >= 0, got ",
                     rules.max_per_advertiser);
  ADRANK_CHECK_VALUE(rules.frequency_cap >= 1, "frequency_cap must be >= 1, got ",
                     rules.frequency_cap);
  ADRANK_CHECK_VALUE(candidates.size == 0 || candidates.p_ctr.present(),
                     "p_ctr is required for every candidate");
  for (std::size_t i = 0; i < candidates.size; ++i) {
    const std::int64_t row = candidates.rows[i];
    ADRANK_CHECK_INDEX(row >= 0 && static_cast<std::uint64_t>(row) < catalog.size(), "rows[", i,
                       "] = ", row, " is outside the catalog of ", catalog.size(), " rows");
  }
}

void auction(const PackedCatalog& catalog, const AuctionCandidates& candidates,
             const AuctionRules& rules, AuctionResult& result) {
  validate_auction(catalog, candidates, rules);
  auction_unchecked(catalog, candidates, rules, result);
}

void auction_unchecked(const PackedCatalog& catalog, const AuctionCandidates& candidates,
                       const AuctionRules& rules, AuctionResult& result) {
  Scratch& s = thread_scratch();
  const std::size_t n = candidates.size;
  result.winners.clear();
  result.ecpm.clear();
  result.price.clear();

  s.blocked.assign(rules.blocked_categories, rules.blocked_categories + rules.num_blocked);
  std::sort(s.blocked.begin(), s.blocked.end());
  over_cap_ids(rules, s.seen, s.over_cap);
  const bool any_blocked = !s.blocked.empty();
  const bool any_over_cap = !s.over_cap.empty();

  // Gather, score, filter.
  s.ecpm.resize(n);
  s.penalty.resize(n);
  s.pacing.resize(n);
  s.scores.resize(n);
  s.advertiser.resize(n);
  s.eligible.resize(n);
  const double penalty_per_neg = rules.neg_penalty * 1000.0;
  const bool has_cvr = candidates.p_cvr.present();
  const bool has_neg = candidates.p_neg.present();
  // Plain pointers in the loop: a thread_local's address is a call in a shared library, and
  // byte stores (eligible) would make the compiler reload every vector's data pointer.
  double* const ecpm_out = s.ecpm.data();
  double* const penalty_out = s.penalty.data();
  double* const pacing_out = s.pacing.data();
  float* const scores_out = s.scores.data();
  std::int64_t* const advertiser_out = s.advertiser.data();
  std::uint8_t* const eligible_out = s.eligible.data();
  const std::vector<std::int64_t>& blocked = s.blocked;
  const std::vector<std::int64_t>& over_cap = s.over_cap;
  const AuctionRow* const table = catalog.rows();
  constexpr std::size_t kPrefetch = 8;  // rows ahead: the loads of a row are all misses
  for (std::size_t i = 0; i < n; ++i) {
    if (i + kPrefetch < n) __builtin_prefetch(table + candidates.rows[i + kPrefetch]);
    const AuctionRow& row = table[candidates.rows[i]];
    const std::int8_t objective = row.objective;
    const double ctr = candidates.p_ctr.at(i);
    const double cvr = has_cvr ? candidates.p_cvr.at(i) : 0.0;
    // All three formulas, then the objective's by index: objectives come mixed in any order,
    // and a branch on each would be mispredicted about half the time.
    const double by_objective[3] = {row.bid, row.bid * ctr * 1000.0,
                                    row.target_cpa * ctr * cvr * 1000.0};
    const double value = by_objective[objective];
    const double pacing = candidates.pacing == nullptr ? 1.0 : candidates.pacing[i];
    const double penalty = penalty_per_neg * (has_neg ? candidates.p_neg.at(i) : 0.0);
    const double ecpm = value * pacing - penalty;
    ecpm_out[i] = ecpm;
    penalty_out[i] = penalty;
    pacing_out[i] = pacing;
    scores_out[i] = static_cast<float>(ecpm);
    advertiser_out[i] = row.advertiser_id;

    // Bitwise, not short-circuit: each rule costs a few instructions, a mispredicted branch more.
    const std::uint64_t mask = row.region_mask;
    bool eligible = (row.active != 0) & (pacing > 0) &
                    ((mask == kAllRegions) | ((mask & rules.region_bit) != 0)) &
                    (has_cvr | (objective != static_cast<std::int8_t>(Objective::kOcpm)));
    if (candidates.killed != nullptr) eligible &= candidates.killed[i] == 0;
    if (eligible && any_blocked) eligible = !contains(blocked, row.category);
    if (eligible && any_over_cap) eligible = !contains(over_cap, row.creative_id);
    eligible_out[i] = eligible ? 1 : 0;
  }

  // Select k + 1: the runner-up sets the last winner's second price.
  if (rules.k == 0) return;
  const std::size_t slots = std::min(rules.k + 1, std::max<std::size_t>(n, 1));
  ScoreRows score_rows;
  score_rows.scores = s.scores.data();
  score_rows.size = n;
  score_rows.num_rows = 1;
  score_rows.row_length = n;
  GroupCap caps[2] = {{s.advertiser.data(), rules.max_per_advertiser}, {nullptr, 1}};
  std::size_t num_caps = 1;
  if (catalog.has_ads()) {  // a second group: one creative per ad (no ad ids: no such group)
    s.ad.resize(n);
    for (std::size_t i = 0; i < n; ++i) s.ad[i] = table[candidates.rows[i]].ad_id;
    caps[1].ids = s.ad.data();
    num_caps = 2;
  }
  SelectConstraints constraints;
  constraints.groups = caps;
  constraints.num_groups = num_caps;
  constraints.eligible = s.eligible.data();
  constraints.min_score = float32_floor(rules.reserve_ecpm);
  s.chosen_values.resize(slots);
  s.chosen.resize(slots);
  select_unchecked(score_rows, slots, constraints, s.chosen_values.data(), s.chosen.data());
  std::size_t taken = 0;
  while (taken < slots && s.chosen[taken] >= 0) ++taken;
  const std::size_t won = std::min(taken, rules.k);

  // Price the winners.
  result.winners.assign(s.chosen.begin(), s.chosen.begin() + won);
  result.ecpm.resize(won);
  result.price.resize(won);
  for (std::size_t j = 0; j < won; ++j) result.ecpm[j] = s.ecpm[s.chosen[j]];
  for (std::size_t j = 0; j < won; ++j) {
    const auto i = static_cast<std::size_t>(s.chosen[j]);
    const AuctionRow& row = table[candidates.rows[i]];
    const auto objective = static_cast<Objective>(row.objective);
    const double next = j + 1 < taken ? s.ecpm[s.chosen[j + 1]] : rules.reserve_ecpm;
    const double ctr = candidates.p_ctr.at(i);
    const double cvr = has_cvr ? candidates.p_cvr.at(i) : 0.0;
    double per_unit;
    if (objective == Objective::kCpm) {
      per_unit = 1.0;
    } else if (objective == Objective::kCpc) {
      per_unit = ctr * 1000.0;
    } else {
      per_unit = ctr * cvr * 1000.0;
    }
    const double factor = per_unit * s.pacing[i];
    const double target = nan_max(next, rules.reserve_ecpm) + s.penalty[i];
    const double least = factor > 0 ? target / factor : kInf;
    const double own_bid = objective == Objective::kOcpm ? row.target_cpa : row.bid;
    result.price[j] = nan_min(own_bid, least);
  }
}

}  // namespace adrank
