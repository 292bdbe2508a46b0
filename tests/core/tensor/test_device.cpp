// core/tensor/device: parsing and printing devices, and what makes two devices equal.
#include <gtest/gtest.h>

#include "core/error.h"
#include "core/tensor/device.h"

namespace dtrain {
namespace {

TEST(DeviceNames, ParseAndPrint) {
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_EQ(Device::parse("cuda"), Device::cuda(0));
  EXPECT_EQ(Device::parse("cuda:3").index, 3);
  EXPECT_TRUE(Device::parse("cuda:3").is_cuda());
  EXPECT_EQ(Device::cuda(2).str(), "cuda:2");
  EXPECT_EQ(Device::cpu().str(), "cpu");
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:1x", "cuda:-1", "CPU"}) {
    EXPECT_THROW(Device::parse(bad), Error) << bad;
  }
  EXPECT_NE(Device::cuda(0), Device::cuda(1));
  EXPECT_NE(Device::cpu(), Device::cuda(0));
  EXPECT_EQ((Device{Device::Kind::cpu, 5}), Device::cpu());  // a cpu device has no index
}

}  // namespace
}  // namespace dtrain
