// Bindings for the auction pass (cpp/include/adrank/auction.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>

#include "adrank/auction.hpp"
#include "adrank/check.hpp"
#include "arrays.hpp"
#include "module.hpp"

namespace adrank::bindings {
namespace {

// The catalog's columns, checked and packed row by row once per snapshot.
class CatalogColumns {
 public:
  CatalogColumns(const py::array& creative_id, const py::array& advertiser_id,
                 const py::array& category, const py::array& objective, const py::array& bid,
                 const py::array& target_cpa, const py::array& region_mask, const py::array& active,
                 const py::object& ad_id)
      : packed_(columns(creative_id, advertiser_id, category, objective, bid, target_cpa,
                        region_mask, active, ad_id)) {}

  const PackedCatalog& packed() const { return packed_; }
  std::size_t size() const { return packed_.size(); }

 private:
  static AuctionCatalog columns(const py::array& creative_id, const py::array& advertiser_id,
                                const py::array& category, const py::array& objective,
                                const py::array& bid, const py::array& target_cpa,
                                const py::array& region_mask, const py::array& active,
                                const py::object& ad_id) {
    AuctionCatalog c;
    c.num_rows = static_cast<std::size_t>(creative_id.size());
    c.creative_id = column<std::int64_t>(creative_id, "creative_id", c.num_rows);
    c.advertiser_id = column<std::int64_t>(advertiser_id, "advertiser_id", c.num_rows);
    c.category = column<std::int64_t>(category, "category", c.num_rows);
    c.objective = column<std::int8_t>(objective, "objective", c.num_rows);
    c.bid = column<double>(bid, "bid", c.num_rows);
    c.target_cpa = column<double>(target_cpa, "target_cpa", c.num_rows);
    c.region_mask = column<std::uint64_t>(region_mask, "region_mask", c.num_rows);
    c.active = reinterpret_cast<const std::uint8_t*>(column<bool>(active, "active", c.num_rows));
    if (!ad_id.is_none()) {
      ADRANK_CHECK_TYPE(py::isinstance<py::array>(ad_id), "ad_id must be a numpy array, got ",
                        Py_TYPE(ad_id.ptr())->tp_name);
      c.ad_id = column<std::int64_t>(py::reinterpret_borrow<py::array>(ad_id), "ad_id", c.num_rows);
    }
    return c;
  }

  template <class T>
  static const T* column(const py::array& a, const char* name, std::size_t rows) {
    const T* data = checked_data<T>(a, name, 1);
    ADRANK_CHECK_VALUE(static_cast<std::size_t>(a.size()) == rows, name,
                       " must hold one value per creative (", rows, "), got ", a.size());
    return data;
  }

  PackedCatalog packed_;
};

// An optional [C] array: None, or the dtype T with one item per candidate.
template <class T>
const T* candidate_column(const py::object& value, const char* name, std::size_t size) {
  if (value.is_none()) return nullptr;
  ADRANK_CHECK_TYPE(py::isinstance<py::array>(value), name, " must be a numpy array, got ",
                    Py_TYPE(value.ptr())->tp_name);
  const auto array = py::reinterpret_borrow<py::array>(value);
  const T* data = checked_data<T>(array, name, 1);
  ADRANK_CHECK_VALUE(static_cast<std::size_t>(array.size()) == size, name,
                     " must hold one value per candidate (", size, "), got ", array.size());
  return data;
}

// A rate column: float32 or float64, or None.
RateColumn rate_column(const py::object& value, const char* name, std::size_t size) {
  RateColumn rate;
  if (value.is_none()) return rate;
  ADRANK_CHECK_TYPE(py::isinstance<py::array>(value), name, " must be a numpy array, got ",
                    Py_TYPE(value.ptr())->tp_name);
  const auto array = py::reinterpret_borrow<py::array>(value);
  if (array.dtype().is(py::dtype::of<double>())) {
    rate.f64 = candidate_column<double>(value, name, size);
  } else {
    ADRANK_CHECK_TYPE(array.dtype().is(py::dtype::of<float>()), name,
                      " must have dtype float32 or float64, got ", dtype_name(array));
    rate.f32 = candidate_column<float>(value, name, size);
  }
  return rate;
}

// A 1-D int64 array of any length (or None: empty), as pointer and size.
std::pair<const std::int64_t*, std::size_t> id_list(const py::object& value, const char* name) {
  if (value.is_none()) return {nullptr, 0};
  ADRANK_CHECK_TYPE(py::isinstance<py::array>(value), name, " must be a numpy array, got ",
                    Py_TYPE(value.ptr())->tp_name);
  const auto array = py::reinterpret_borrow<py::array>(value);
  return {checked_data<std::int64_t>(array, name, 1), static_cast<std::size_t>(array.size())};
}

template <class T>
py::array_t<T> to_array(const std::vector<T>& values) {
  py::array_t<T> array(static_cast<py::ssize_t>(values.size()));
  if (!values.empty()) std::memcpy(array.mutable_data(), values.data(), values.size() * sizeof(T));
  return array;
}

}  // namespace

void bind_auction(py::module_& m) {
  py::class_<CatalogColumns>(m, "AuctionCatalog")
      .def(py::init<const py::array&, const py::array&, const py::array&, const py::array&,
                    const py::array&, const py::array&, const py::array&, const py::array&,
                    const py::object&>(),
           py::arg("creative_id").noconvert(), py::arg("advertiser_id").noconvert(),
           py::arg("category").noconvert(), py::arg("objective").noconvert(),
           py::arg("bid").noconvert(), py::arg("target_cpa").noconvert(),
           py::arg("region_mask").noconvert(), py::arg("active").noconvert(),
           py::arg("ad_id").none(true) = py::none())
      .def("__len__", &CatalogColumns::size);

  m.def(
      "auction",
      [](const CatalogColumns& catalog, const py::array& rows, const py::object& p_ctr,
         const py::object& p_cvr, const py::object& p_neg, const py::object& pacing,
         const py::object& killed, std::int64_t k, double reserve_ecpm, double neg_penalty,
         std::int64_t max_per_advertiser, std::uint64_t region_bit,
         const py::object& blocked_categories, const py::object& recently_seen,
         std::int64_t frequency_cap) {
        ADRANK_CHECK_VALUE(k >= 0, "k must be >= 0, got ", k);
        AuctionCandidates candidates;
        candidates.rows = checked_data<std::int64_t>(rows, "rows", 1);
        candidates.size = static_cast<std::size_t>(rows.size());
        const std::size_t n = candidates.size;
        candidates.p_ctr = rate_column(p_ctr, "p_ctr", n);
        candidates.p_cvr = rate_column(p_cvr, "p_cvr", n);
        candidates.p_neg = rate_column(p_neg, "p_neg", n);
        candidates.pacing = candidate_column<double>(pacing, "pacing", n);
        if (!killed.is_none()) {
          ADRANK_CHECK_TYPE(py::isinstance<py::array>(killed) &&
                                py::reinterpret_borrow<py::array>(killed).dtype().kind() == 'b',
                            "killed must be a numpy array of dtype bool");
          candidates.killed =
              reinterpret_cast<const std::uint8_t*>(candidate_column<bool>(killed, "killed", n));
        }
        AuctionRules rules;
        rules.k = static_cast<std::size_t>(k);
        rules.reserve_ecpm = reserve_ecpm;
        rules.neg_penalty = neg_penalty;
        rules.max_per_advertiser = max_per_advertiser;
        rules.region_bit = region_bit;
        rules.frequency_cap = frequency_cap;
        std::tie(rules.blocked_categories, rules.num_blocked) =
            id_list(blocked_categories, "blocked_categories");
        std::tie(rules.recently_seen, rules.num_seen) = id_list(recently_seen, "recently_seen");
        validate_auction(catalog.packed(), candidates, rules);
        thread_local AuctionResult result;
        // As the top-k bindings: small requests keep the GIL, releasing and retaking it would
        // cost more than the pass (and up to a switch interval under contention).
        constexpr std::size_t kReleaseGilFrom = 2048;
        if (n < kReleaseGilFrom) {
          auction_unchecked(catalog.packed(), candidates, rules, result);
        } else {
          py::gil_scoped_release release;
          auction_unchecked(catalog.packed(), candidates, rules, result);
        }
        return py::make_tuple(to_array(result.winners), to_array(result.ecpm),
                              to_array(result.price));
      },
      py::arg("catalog"), py::arg("rows").noconvert(), py::arg("p_ctr").none(true),
      py::arg("p_cvr").none(true), py::arg("p_neg").none(true), py::arg("pacing").none(true),
      py::arg("killed").none(true), py::arg("k"), py::arg("reserve_ecpm"), py::arg("neg_penalty"),
      py::arg("max_per_advertiser"), py::arg("region_bit"),
      py::arg("blocked_categories").none(true), py::arg("recently_seen").none(true),
      py::arg("frequency_cap"));
}

}  // namespace adrank::bindings
