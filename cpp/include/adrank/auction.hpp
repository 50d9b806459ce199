// The auction of one request: its candidates' catalog columns gathered, scored, filtered by
// the business rules, selected under the per-advertiser cap and priced by GSP, in one pass.
//
// Glossary: R creatives in the catalog; C candidates of the request (catalog rows, request
// order); k creatives asked for; k' <= k winners. Money is in the account currency, eCPM per
// thousand impressions. All arithmetic is float64 in the order written below, so the results
// are those of the reference formulas in python/adrank/orchestrator/scoring.py and pricing.py
// bit for bit (built as ISO C++17, where GCC never contracts a * b + c into an FMA).
//
// Per candidate i, with r = rows[i] (objective: 0 CPM, 1 CPC, 2 oCPM):
//   value[i]   = bid[r]                                   CPM
//              = bid[r] * p_ctr[i] * 1000                 CPC
//              = target_cpa[r] * p_ctr[i] * p_cvr[i] * 1000   oCPM (p_cvr absent: 0)
//   penalty[i] = (neg_penalty * 1000) * p_neg[i]          (p_neg absent: 0)
//   ecpm[i]    = value[i] * pacing[i] - penalty[i]        (pacing absent: 1)
//   eligible[i] = active[r] and pacing[i] > 0 and not killed[i]
//                 and (region_mask[r] == ALL or region_mask[r] & region_bit)
//                 and category[r] not in blocked_categories
//                 and creative_id[r] seen fewer than frequency_cap times in recently_seen
//                 and not (objective oCPM and p_cvr absent)
// Selection: select() of topk.hpp over float32(ecpm) for min(k + 1, max(C, 1)) slots, with
// eligible, at most max_per_advertiser per advertiser_id[r], at most one per ad_id[r] (when the
// catalog has ad ids: an ad's creatives compete for one slot), and min_score = the least float32
// >= reserve_ecpm. The first k taken win; the next one, if any, is the runner-up.
// Pricing of winner j (rank order), w = winners:
//   next    = ecpm[w[j + 1]], or for the last: ecpm[runner-up], or reserve_ecpm if none
//   factor  = pacing * (1, p_ctr * 1000, p_ctr * p_cvr * 1000 by objective)
//   least   = factor > 0 ? (max(next, reserve_ecpm) + penalty) / factor : +inf
//   price   = min(own_bid, least), own_bid = target_cpa for oCPM, bid otherwise
// (max and min propagate NaN, as numpy's maximum and minimum do).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace adrank {

constexpr std::uint64_t kAllRegions = ~std::uint64_t{0};  // an untargeted campaign's mask

enum class Objective : std::int8_t { kCpm = 0, kCpc = 1, kOcpm = 2 };

// The catalog's columns, [R] each, as the catalog snapshot keeps them.
struct AuctionCatalog {
  std::size_t num_rows = 0;
  const std::int64_t* creative_id = nullptr;
  const std::int64_t* advertiser_id = nullptr;
  const std::int64_t* category = nullptr;
  const std::int8_t* objective = nullptr;  // values of Objective
  const double* bid = nullptr;
  const double* target_cpa = nullptr;
  const std::uint64_t* region_mask = nullptr;
  const std::uint8_t* active = nullptr;  // 0 or 1
  const std::int64_t* ad_id = nullptr;   // the ad (ad group) of each creative; nullptr: none
};

// One creative's auction fields in one cache line: a request's candidates are random rows of
// the catalog, and a row per line costs one miss per candidate where eight columns cost eight.
struct alignas(64) AuctionRow {
  std::int64_t creative_id;
  std::int64_t advertiser_id;
  std::int64_t category;
  double bid;
  double target_cpa;
  std::uint64_t region_mask;
  std::int64_t ad_id;  // the creative id when the catalog has no ad ids (unused then)
  std::int8_t objective;
  std::uint8_t active;
};

// The catalog packed row by row, once per snapshot. Throws ValueError for an objective code
// outside 0..2.
class PackedCatalog {
 public:
  explicit PackedCatalog(const AuctionCatalog& columns);
  const AuctionRow* rows() const { return rows_.data(); }
  std::size_t size() const { return rows_.size(); }
  bool has_ads() const { return has_ads_; }  // at most one creative per ad wins

 private:
  std::vector<AuctionRow> rows_;
  bool has_ads_ = false;
};

// A predicted rate per candidate: float32 or float64 (as the model answers), or absent.
struct RateColumn {
  const float* f32 = nullptr;
  const double* f64 = nullptr;

  bool present() const { return f32 != nullptr || f64 != nullptr; }
  double at(std::size_t i) const { return f32 != nullptr ? f32[i] : f64[i]; }
};

// The request's candidates, [C] each.
struct AuctionCandidates {
  std::size_t size = 0;
  const std::int64_t* rows = nullptr;    // catalog rows, in [0, R)
  RateColumn p_ctr;                      // required
  RateColumn p_cvr;                      // absent: no conversion head (oCPM not eligible)
  RateColumn p_neg;                      // absent: no negative-feedback head (no penalty)
  const double* pacing = nullptr;        // nullptr: 1.0 for every candidate
  const std::uint8_t* killed = nullptr;  // nullptr: nothing killed
};

struct AuctionRules {
  std::size_t k = 0;                    // winners asked for
  double reserve_ecpm = 0.0;            // finite, >= 0
  double neg_penalty = 0.0;             // finite, >= 0
  std::int64_t max_per_advertiser = 1;  // >= 0
  std::uint64_t region_bit = 0;         // the request region's bit; 0: no region
  const std::int64_t* blocked_categories = nullptr;
  std::size_t num_blocked = 0;
  const std::int64_t* recently_seen = nullptr;  // creative ids, once per impression
  std::size_t num_seen = 0;
  std::int64_t frequency_cap = 1;  // >= 1
};

// Winners in rank order, [k'] each.
struct AuctionResult {
  std::vector<std::int64_t> winners;  // positions among the candidates
  std::vector<double> ecpm;
  std::vector<double> price;
};

// Throws IndexError for a row outside the catalog, ValueError for bad rules or candidates
// without p_ctr.
void validate_auction(const PackedCatalog& catalog, const AuctionCandidates& candidates,
                      const AuctionRules& rules);

// The pass above; `result` is overwritten (its buffers reused). auction_unchecked skips
// validate_auction, so that a caller (the Python binding) can validate with the GIL held.
void auction(const PackedCatalog& catalog, const AuctionCandidates& candidates,
             const AuctionRules& rules, AuctionResult& result);
void auction_unchecked(const PackedCatalog& catalog, const AuctionCandidates& candidates,
                       const AuctionRules& rules, AuctionResult& result);

// The least float32 >= value (+inf above the float32 range; NaN stays NaN): then
// float32 score >= it exactly when score >= value.
float float32_floor(double value);

}  // namespace adrank
