#include <gtest/gtest.h>

#include "core/backend/backend.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  dtrain::set_num_threads(1);  // ctest runs tests side by side; one thread each keeps them fair
  return RUN_ALL_TESTS();
}
