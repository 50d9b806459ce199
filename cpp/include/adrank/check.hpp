// Argument checks for the kernels. Every kernel validates its inputs before it runs and throws a
// standard exception whose message names the argument; the binding layer maps them to Python:
//   adrank::type_error     -> TypeError
//   std::invalid_argument  -> ValueError
//   std::out_of_range      -> IndexError
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace adrank {

class type_error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {
template <class Exception, class... Parts>
[[noreturn]] void throw_message(const Parts&... parts) {
  std::ostringstream message;
  (message << ... << parts);
  throw Exception(message.str());
}
}  // namespace detail

}  // namespace adrank

#define ADRANK_CHECK(cond, Exception, ...)                                \
  do {                                                                    \
    if (!(cond)) ::adrank::detail::throw_message<Exception>(__VA_ARGS__); \
  } while (0)

#define ADRANK_CHECK_TYPE(cond, ...) ADRANK_CHECK(cond, ::adrank::type_error, __VA_ARGS__)
#define ADRANK_CHECK_VALUE(cond, ...) ADRANK_CHECK(cond, std::invalid_argument, __VA_ARGS__)
#define ADRANK_CHECK_INDEX(cond, ...) ADRANK_CHECK(cond, std::out_of_range, __VA_ARGS__)
