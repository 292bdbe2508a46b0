// DataLoader: batches of a Dataset in the order a Sampler gives, prepared ahead of time by one
// background thread. The sequence of batches is a function of (sampler, batch size, seed, epoch) only:
// it is the same with or without prefetching, and a run restarted at (epoch, batch) from a checkpoint
// sees exactly the batches, augmentation included, that the uninterrupted run would have seen.
//
//   DataLoader loader(dataset, std::make_shared<RandomSampler>(dataset->size(), seed), {.batch_size = 64});
//   for (int64_t epoch = start.epoch; epoch < epochs; ++epoch) {
//     loader.start_epoch(epoch, epoch == start.epoch ? start.batch : 0);
//     while (auto batch = loader.next()) { ... }
//   }
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/data/dataset.h"
#include "core/data/sampler.h"

namespace dtrain::data {

struct DataLoaderOptions {
  int64_t batch_size = 32;
  bool drop_last = false;  // leave out an epoch's final, smaller batch
  // Epoch e's batches get the augmentation seed combine_seed(seed, e) (see Dataset::get_batch).
  uint64_t seed = 0;
  // How many ready batches the background thread may hold; 0 prepares each batch inside next().
  int64_t prefetch = 2;
};

// Where a loader stands: `batch` is the index within `epoch` of the batch next() returns next. Saved
// in a checkpoint, it is what start_epoch takes to resume.
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t batch = 0;
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, std::shared_ptr<const Sampler> sampler,
             DataLoaderOptions options = {});
  ~DataLoader();  // stops and joins the prefetch thread
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Begins `epoch` at batch `first_batch` (0 for a whole epoch). Abandons whatever an earlier epoch
  // had left, stopping its thread first. first_batch may equal batches_in_epoch() (nothing left).
  void start_epoch(int64_t epoch, int64_t first_batch = 0);
  // The next batch of the epoch, or nullopt once it is over. An exception thrown while preparing a
  // batch is rethrown here, in place of that batch, and again on later calls until start_epoch.
  std::optional<Batch> next();
  // Stops the prefetch thread; next() then returns nullopt until start_epoch.
  void stop();

  LoaderPosition position() const { return {epoch_, next_batch_}; }
  int64_t batches_in_epoch() const { return num_batches_; }  // of the epoch started last
  // How many batches an epoch of `num_indices` samples has under these options.
  int64_t batches_for(int64_t num_indices) const;
  const DataLoaderOptions& options() const { return options_; }
  const Dataset& dataset() const { return *dataset_; }

 private:
  struct Ready {
    Batch batch;
    std::exception_ptr error;
  };
  Batch make_batch(int64_t k) const;
  nlohmann::json batch_args(
      int64_t k) const;  // batch k's args in the trace (null when not recording)
  void produce(int64_t first_batch);

  std::shared_ptr<const Dataset> dataset_;
  std::shared_ptr<const Sampler> sampler_;
  DataLoaderOptions options_;

  // The current epoch; written only while no producer thread runs.
  int64_t epoch_ = 0;
  std::vector<int64_t> order_;
  int64_t num_batches_ = 0;
  int64_t next_batch_ = 0;  // consumer side
  bool started_ = false;
  std::exception_ptr failed_;

  // Producer -> consumer queue, guarded by mutex_.
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Ready> ready_;
  bool stopping_ = false;
  std::thread producer_;
};

}  // namespace dtrain::data
