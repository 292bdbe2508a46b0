// The message of an expected error, for tests that check what an error says:
//   EXPECT_NE(error_of([&] { op(bad); }).find("what to do"), std::string::npos);
#pragma once
#include <string>

#include "core/error.h"

namespace dtrain::testing {

// The message of the dtrain::Error that `f` throws; "(no error)" when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace dtrain::testing
