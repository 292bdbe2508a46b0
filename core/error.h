// dtrain::Error is the one exception type of the project. The command line catches it and prints its
// message as a single line, so a message says what was wrong and what to do about it.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace dtrain {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <class... Args>
std::string concat(const Args&... args) {
  std::ostringstream s;
  (s << ... << args);
  return s.str();
}
}  // namespace detail

}  // namespace dtrain

// DTRAIN_CHECK(cond, parts...) throws dtrain::Error with the parts streamed together.
#define DTRAIN_CHECK(cond, ...)                                          \
  do {                                                                   \
    if (!(cond)) throw ::dtrain::Error(::dtrain::detail::concat(__VA_ARGS__)); \
  } while (0)
