// dtrain::Error is the one exception type of the project. The command line catches it and prints its
// message as a single line, so a message says what was wrong and what to do about it.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace dtrain {

class Error : public std::runtime_error {
 public:
  // The message is kept one printable line whatever it quotes (a file name, a damaged file's bytes):
  // control characters and DEL are shown as \xNN.
  explicit Error(const std::string& what) : std::runtime_error(printable(what)) {}

  static std::string printable(const std::string& text) {
    std::string out;
    out.reserve(text.size());
    for (unsigned char ch : text) {
      if (ch < 0x20 || ch == 0x7f) {
        const char* digits = "0123456789abcdef";
        out += {'\\', 'x', digits[ch >> 4], digits[ch & 15]};
      } else {
        out += static_cast<char>(ch);
      }
    }
    return out;
  }
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
#define DTRAIN_CHECK(cond, ...)                                                \
  do {                                                                         \
    if (!(cond)) throw ::dtrain::Error(::dtrain::detail::concat(__VA_ARGS__)); \
  } while (0)
