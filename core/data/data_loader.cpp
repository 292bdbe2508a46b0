#include "core/data/data_loader.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/data/seeding.h"
#include "core/error.h"
#include "core/profiler/trace.h"

namespace dtrain::data {

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset,
                       std::shared_ptr<const Sampler> sampler, DataLoaderOptions options)
    : dataset_(std::move(dataset)), sampler_(std::move(sampler)), options_(options) {
  DTRAIN_CHECK(dataset_ != nullptr && sampler_ != nullptr,
               "DataLoader: dataset and sampler must be set");
  DTRAIN_CHECK(options_.batch_size > 0, "DataLoader: batch_size ", options_.batch_size,
               " must be positive");
  DTRAIN_CHECK(options_.prefetch >= 0, "DataLoader: prefetch ", options_.prefetch, " must be >= 0");
}

DataLoader::~DataLoader() { stop(); }

int64_t DataLoader::batches_for(int64_t num_indices) const {
  const int64_t b = options_.batch_size;
  return options_.drop_last ? num_indices / b : (num_indices + b - 1) / b;
}

void DataLoader::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (producer_.joinable()) producer_.join();
  std::lock_guard<std::mutex> lock(mutex_);
  ready_.clear();
  started_ = false;
}

void DataLoader::start_epoch(int64_t epoch, int64_t first_batch) {
  stop();
  order_ = sampler_->epoch_indices(epoch);
  for (int64_t i : order_) {
    DTRAIN_CHECK(i >= 0 && i < dataset_->size(), "DataLoader: the sampler gave index ", i,
                 " in epoch ", epoch, " but the dataset has ", dataset_->size(),
                 " samples; build the sampler for this dataset");
  }
  const int64_t n = batches_for(static_cast<int64_t>(order_.size()));
  DTRAIN_CHECK(first_batch >= 0 && first_batch <= n, "DataLoader: cannot start epoch ", epoch,
               " at batch ", first_batch, ": it has ", n, " batches of ", options_.batch_size, " (",
               order_.size(),
               " samples); the checkpoint was saved with another batch size or dataset");
  epoch_ = epoch;
  num_batches_ = n;
  next_batch_ = first_batch;
  failed_ = nullptr;
  stopping_ = false;
  started_ = true;
  if (options_.prefetch > 0 && first_batch < n)
    producer_ = std::thread(&DataLoader::produce, this, first_batch);
}

nlohmann::json DataLoader::batch_args(int64_t k) const {
  if (!profiler::recording()) return nullptr;
  return {{"epoch", epoch_}, {"batch", k}};
}

Batch DataLoader::make_batch(int64_t k) const {
  const int64_t b = options_.batch_size;
  const int64_t begin = k * b;
  const int64_t end = std::min<int64_t>(begin + b, static_cast<int64_t>(order_.size()));
  const std::vector<int64_t> indices(order_.begin() + begin, order_.begin() + end);
  return dataset_->get_batch(indices, combine_seed(options_.seed, static_cast<uint64_t>(epoch_)));
}

void DataLoader::produce(int64_t first_batch) {
  profiler::name_this_thread("data-loader");
  for (int64_t k = first_batch; k < num_batches_; ++k) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] {
        return stopping_ || static_cast<int64_t>(ready_.size()) < options_.prefetch;
      });
      if (stopping_) return;
    }
    Ready item;
    try {
      profiler::Scope scope("data", "load batch", batch_args(k));
      item.batch = make_batch(k);
    } catch (...) {
      item.error = std::current_exception();
    }
    const bool failed = item.error != nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.push_back(std::move(item));
    }
    changed_.notify_all();
    if (failed) return;  // the consumer rethrows it; nothing after it is wanted
  }
}

std::optional<Batch> DataLoader::next() {
  if (failed_) std::rethrow_exception(failed_);
  if (!started_ || next_batch_ >= num_batches_) return std::nullopt;
  // The training thread's wait for data: the whole load without prefetching, else the wait for the
  // background thread (short when it keeps ahead).
  profiler::Scope wait("data", options_.prefetch == 0 ? "load batch" : "wait for batch",
                       batch_args(next_batch_));
  Ready item;
  if (options_.prefetch == 0) {
    try {
      item.batch = make_batch(next_batch_);
    } catch (...) {
      item.error = std::current_exception();
    }
  } else {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return !ready_.empty(); });
    item = std::move(ready_.front());
    ready_.pop_front();
    lock.unlock();
    changed_.notify_all();
  }
  if (item.error) {
    failed_ = item.error;
    std::rethrow_exception(item.error);
  }
  ++next_batch_;
  return std::move(item.batch);
}

}  // namespace dtrain::data
