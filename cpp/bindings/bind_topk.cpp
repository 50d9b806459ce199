// Bindings for the top-k kernels (cpp/include/adrank/topk.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "adrank/check.hpp"
#include "adrank/topk.hpp"
#include "arrays.hpp"
#include "module.hpp"

namespace adrank::bindings {
namespace {

// An array argument passed as an object (None allowed elsewhere). No conversion: casting
// through numpy's PyArray_FromAny would cost more than a small request's whole selection.
py::array array_argument(const py::object& value, const char* name) {
  ADRANK_CHECK_TYPE(py::isinstance<py::array>(value), name, " must be a numpy array, got ",
                    Py_TYPE(value.ptr())->tp_name);
  return py::reinterpret_borrow<py::array>(value);
}

// scores: [N] or [B, N] dense, or [total] with offsets [B + 1].
ScoreRows score_rows(const py::array& scores, const py::object& offsets) {
  ScoreRows rows;
  rows.size = static_cast<std::size_t>(scores.size());
  if (!offsets.is_none()) {
    ADRANK_CHECK_VALUE(scores.ndim() == 1, "scores must be 1-D with offsets, got ", scores.ndim(),
                       "-D");
    rows.scores = checked_data<float>(scores, "scores", 1);
    const auto array = array_argument(offsets, "offsets");
    rows.offsets = checked_data<std::int64_t>(array, "offsets", 1);
    ADRANK_CHECK_VALUE(array.size() >= 1, "offsets must hold at least one entry");
    rows.num_rows = static_cast<std::size_t>(array.size() - 1);
    return rows;
  }
  ADRANK_CHECK_VALUE(scores.ndim() == 1 || scores.ndim() == 2, "scores must be 1-D or 2-D, got ",
                     scores.ndim(), "-D");
  const bool batched = scores.ndim() == 2;
  rows.scores = checked_data<float>(scores, "scores", batched ? 2 : 1);
  rows.num_rows = batched ? static_cast<std::size_t>(scores.shape(0)) : 1;
  rows.row_length = static_cast<std::size_t>(batched ? scores.shape(1) : scores.shape(0));
  return rows;
}

// An output array: the caller's, or a new one shaped [K] or [B, K].
template <class T>
py::array output_array(const py::object& given, const char* name, const ScoreRows& rows,
                       bool batched, std::size_t k) {
  if (!given.is_none()) return array_argument(given, name);
  if (batched)
    return py::array_t<T>({static_cast<py::ssize_t>(rows.num_rows), static_cast<py::ssize_t>(k)});
  return py::array_t<T>(static_cast<py::ssize_t>(k));
}

// The answer's arrays, checked. Members are built in the initializer list: a default-built
// py::array is a new (empty) numpy array, which would cost two allocations a call.
struct Answer {
  py::array values;
  py::array indices;
  float* value_data;
  std::int64_t* index_data;

  Answer(const ScoreRows& rows, bool batched, std::size_t k, const py::object& values_out,
         const py::object& indices_out)
      : values(output_array<float>(values_out, "values_out", rows, batched, k)),
        indices(output_array<std::int64_t>(indices_out, "indices_out", rows, batched, k)),
        value_data(checked_output<float>(values, "values_out", rows.num_rows * k)),
        index_data(checked_output<std::int64_t>(indices, "indices_out", rows.num_rows * k)) {}

  py::tuple pair() const { return py::make_tuple(values, indices); }
};

// Arrays laid out like the scores: the same shape, not just as many items.
bool same_shape(const py::array& a, const py::array& scores) {
  if (a.ndim() != scores.ndim()) return false;
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    if (a.shape(d) != scores.shape(d)) return false;
  }
  return true;
}

// A shape as Python prints it: (3,) or (2, 5).
std::string shape_text(const py::array& a) {
  return py::str(py::tuple(py::cast(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()))))
      .cast<std::string>();
}

// Runs a kernel over `scores` scores with the GIL released, except for requests so small that
// releasing and retaking it would cost more than the kernel (numpy draws the same line, see
// NPY_BEGIN_THREADS_THRESHOLDED).
template <class Kernel>
void run_kernel(std::size_t scores, Kernel&& kernel) {
  constexpr std::size_t kReleaseGilFrom = 2048;
  if (scores < kReleaseGilFrom) {
    kernel();
    return;
  }
  py::gil_scoped_release release;
  kernel();
}

std::size_t checked_k(std::int64_t k) {
  ADRANK_CHECK_VALUE(k >= 0, "k must be >= 0, got ", k);
  return static_cast<std::size_t>(k);
}

bool is_batched(const py::array& scores, const py::object& offsets) {
  return !offsets.is_none() || scores.ndim() == 2;
}

}  // namespace

void bind_topk(py::module_& m) {
  m.def(
      "topk",
      [](const py::array& scores, const py::object& offsets, std::int64_t k,
         const py::object& values_out, const py::object& indices_out) {
        const std::size_t slots = checked_k(k);
        const ScoreRows rows = score_rows(scores, offsets);
        validate_topk(rows, slots);  // before the answer is allocated: k is bounded there
        const Answer answer(rows, is_batched(scores, offsets), slots, values_out, indices_out);
        run_kernel(rows.size,
                   [&] { topk_unchecked(rows, slots, answer.value_data, answer.index_data); });
        return answer.pair();
      },
      py::arg("scores").noconvert(), py::arg("offsets").none(true), py::arg("k"),
      py::arg("values_out").none(true), py::arg("indices_out").none(true));

  m.def(
      "select",
      [](const py::array& scores, const py::object& offsets, std::int64_t k,
         const std::vector<py::array>& group_ids, const std::vector<std::int64_t>& caps,
         const py::object& eligible, float min_score, const py::object& values_out,
         const py::object& indices_out) {
        const std::size_t slots = checked_k(k);
        const ScoreRows rows = score_rows(scores, offsets);
        ADRANK_CHECK_VALUE(group_ids.size() == caps.size(), "group_ids and caps must pair up, got ",
                           group_ids.size(), " and ", caps.size());
        std::vector<GroupCap> groups(caps.size());
        for (std::size_t g = 0; g < groups.size(); ++g) {
          const std::string name = "groups[" + std::to_string(g) + "] ids";
          groups[g].ids = checked_data<std::int64_t>(group_ids[g], name.c_str(), scores.ndim());
          ADRANK_CHECK_VALUE(same_shape(group_ids[g], scores), name,
                             " must have the shape of scores ", shape_text(scores),
                             ": one id per score, got ", shape_text(group_ids[g]));
          groups[g].cap = caps[g];
        }
        SelectConstraints constraints;
        constraints.groups = groups.data();
        constraints.num_groups = groups.size();
        constraints.min_score = min_score;
        if (!eligible.is_none()) {
          const auto mask = array_argument(eligible, "eligible");
          ADRANK_CHECK_TYPE(mask.dtype().kind() == 'b', "eligible must have dtype bool, got ",
                            dtype_name(mask));
          ADRANK_CHECK_VALUE(mask.ndim() == scores.ndim() && mask.flags() & py::array::c_style,
                             "eligible must be a C-contiguous ", scores.ndim(), "-D array");
          ADRANK_CHECK_VALUE(same_shape(mask, scores), "eligible must have the shape of scores ",
                             shape_text(scores), ": one flag per score, got ", shape_text(mask));
          constraints.eligible = static_cast<const std::uint8_t*>(mask.data());
        }
        validate_select(rows, slots, constraints);
        const Answer answer(rows, is_batched(scores, offsets), slots, values_out, indices_out);
        run_kernel(rows.size, [&] {
          select_unchecked(rows, slots, constraints, answer.value_data, answer.index_data);
        });
        return answer.pair();
      },
      py::arg("scores").noconvert(), py::arg("offsets").none(true), py::arg("k"),
      py::arg("group_ids"), py::arg("caps"), py::arg("eligible").none(true), py::arg("min_score"),
      py::arg("values_out").none(true), py::arg("indices_out").none(true));
}

}  // namespace adrank::bindings
