// A Dataset turns a list of sample indices into one Batch of CPU tensors. Datasets keep their samples in
// memory in compact form (u8 pixels, i32 token ids) and build the f32/i64 tensors a model wants only
// for the batch asked for, so a DataLoader thread can prepare the next batch while the model trains.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor/tensor.h"

namespace dtrain::data {

// Which part of a dataset with a fixed train/test division to load.
enum class Split { train, test };
const char* split_name(Split s);  // "train", "test"

struct Batch {
  // Images f32 [B, C, H, W]; token ids i64 [B, T] (a text window, or a translation's source).
  Tensor input;
  // Class labels i64 [B]; next-token ids i64 [B, T]; or a translation's target ids followed by eos.
  Tensor target;
  // Translation only: bos followed by the target ids, the decoder's input under teacher forcing
  // (target shifted right by one). Undefined for other datasets.
  Tensor decoder_input;
  // Which dataset samples these are, in batch order.
  std::vector<int64_t> indices;

  int64_t size() const { return static_cast<int64_t>(indices.size()); }
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // The samples `indices` (each in [0, size())) as one batch. `seed` drives any random augmentation:
  // a dataset augments sample i from combine_seed(seed, i) (core/data/seeding.h), so a sample's
  // augmentation does not depend on which batch, batch position or rank it lands in. The DataLoader
  // passes combine_seed(its seed, epoch): a resumed run, or one on another number of ranks, augments
  // every sample as the uninterrupted single-process run did. Datasets without augmentation ignore it.
  // Must be safe to call from another thread than the one that built the dataset (it is const).
  virtual Batch get_batch(const std::vector<int64_t>& indices, uint64_t seed) const = 0;
};

// Throws a dtrain::Error naming `dataset` when `indices` is empty or an index is outside [0, size).
void check_batch_indices(const std::vector<int64_t>& indices, int64_t size, const char* dataset);

}  // namespace dtrain::data
