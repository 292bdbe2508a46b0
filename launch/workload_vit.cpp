#include <algorithm>
#include <array>

#include "core/data/cifar10.h"
#include "core/data/fashion_mnist.h"
#include "core/data/synthetic.h"
#include "models/vit.h"

#include "core/ops/ops.h"
#include "launch/workload_util.h"

namespace dtrain::launch {

namespace {

// ---- ViT on images: cross entropy over classes, top-1 accuracy.
class VitWorkload : public Workload {
 public:
  VitWorkload(const TrainConfig& c, Device device) {
    models::VitConfig m = models::VitConfig::preset(c.model_size);
    if (c.dataset == "fashion-mnist") {
      std::string dir = c.data_dir.empty() ? data::kFashionMnistDefaultDir : c.data_dir;
      auto train = std::make_shared<data::FashionMnist>(
          data::Split::train, dir, data::FashionMnistOptions{.augment = c.augment});
      auto eval = std::make_shared<data::FashionMnist>(data::Split::test, dir);
      for (const data::FashionMnist* split : {train.get(), eval.get()}) {
        DTRAIN_CHECK(split->height() == 28 && split->width() == 28, "Fashion-MNIST images in ", dir,
                     " are ", split->height(), "x", split->width(),
                     " pixels, not 28x28: check --data-dir");
      }
      train_set = train, eval_set = eval;
      m.image_size = 28, m.in_channels = 1, m.num_classes = 10;
    } else if (c.dataset == "cifar10") {
      DTRAIN_CHECK(!c.data_dir.empty(),
                   "--dataset cifar10 needs --data-dir with the CIFAR-10 binary files");
      train_set = std::make_shared<data::Cifar10>(data::Split::train, c.data_dir,
                                                  data::Cifar10Options{.augment = c.augment});
      eval_set = std::make_shared<data::Cifar10>(data::Split::test, c.data_dir);
      m.image_size = 32, m.in_channels = 3, m.num_classes = 10;
    } else if (c.dataset == "synthetic") {
      // Random images of the preset's shape (fm: 28x28x1, 10 classes; tiny/small/base: 224x224x3,
      // 1000 classes), for benchmarks.
      const int64_t n = std::max<int64_t>(1024, c.batch_size);
      train_set = std::make_shared<data::SyntheticImages>(n, m.in_channels, m.image_size,
                                                          m.num_classes, c.seed);
      eval_set = std::make_shared<data::SyntheticImages>(256, m.in_channels, m.image_size,
                                                         m.num_classes, c.seed + 1);
    } else {
      throw Error("model vit trains on fashion-mnist, cifar10 or synthetic, not '" + c.dataset +
                  "'");
    }
    override_sizes(c, m);
    if (c.depth) m.depth = c.depth;
    if (c.patch) m.patch_size = c.patch;
    m.stem = c.stem;
    model_ = std::make_shared<models::VisionTransformer>(m);
    model_->checkpoint_activations = c.checkpoint_activations;
    model_->to(device);
    label_smoothing_ = c.label_smoothing;
    dataset_ = c.dataset;
    device_ = device;
  }
  std::shared_ptr<nn::Module> shared_model() override { return model_; }
  const char* unit() const override { return "images"; }
  int64_t items(const data::Batch& b) const override { return b.size(); }
  void check_batch(const data::Batch& b) const override {
    check_ids(b.target, model_->config().num_classes, -100, "class");
  }
  Tensor loss(const data::Batch& b) override {
    return cross_entropy(model_->forward(b.input).to(DType::f32), b.target, -100, label_smoothing_);
  }
  std::vector<double> eval_sums(const data::Batch& b) override {
    return classification_sums(model_->forward(b.input), b.target);
  }
  nlohmann::json eval_metrics(const std::vector<double>& s) const override {
    return classification_metrics(s);
  }
  std::string headline_metric() const override { return "accuracy"; }
  std::map<std::string, std::string> checkpoint_metadata() const override {
    const models::VitConfig& m = model_->config();
    return {{"model", "vit"},
            {"image_size", std::to_string(m.image_size)},
            {"in_channels", std::to_string(m.in_channels)},
            {"num_classes", std::to_string(m.num_classes)},
            {"patch_size", std::to_string(m.patch_size)},
            {"dim", std::to_string(m.dim)},
            {"depth", std::to_string(m.depth)},
            {"heads", std::to_string(m.heads)},
            {"mlp_dim", std::to_string(m.mlp_dim)},
            {"stem", m.stem},
            {"stem_channels", std::to_string(m.stem_channels)}};
  }
  double train_flops_per_item() const override {
    return 3.0 * models::vit_forward_flops(model_->config());
  }
  std::vector<std::string> predict(const PredictInput& input) override;

 private:
  std::shared_ptr<models::VisionTransformer> model_;
  double label_smoothing_ = 0.0;
  std::string dataset_;
  Device device_;
};

// The image normalised as the dataset normalises its own, the model's class probabilities, and the
// five likeliest classes, likeliest first.
std::vector<std::string> VitWorkload::predict(const PredictInput& input) {
  const models::VitConfig& m = model_->config();
  const bool gray = dataset_ == "fashion-mnist";
  const std::string wanted = std::to_string(m.image_size) + "x" + std::to_string(m.image_size) +
                             (m.in_channels == 1 ? " grayscale" : " RGB");
  DTRAIN_CHECK(input.image.has_value(), "this checkpoint holds a vit model for ", dataset_, " (",
               wanted, " images): give --image FILE");
  const data::Image& image = *input.image;
  DTRAIN_CHECK(image.width == m.image_size && image.height == m.image_size &&
                   image.channels == m.in_channels,
               input.image_name, " is a ", image.description(), " image but this ", dataset_,
               " model takes ", wanted, " images; dtrain does not resize or convert: give a ",
               wanted, " image");
  const std::array<float, 1> fm_mean = {data::kFashionMnistMean}, fm_std = {data::kFashionMnistStd};
  const int64_t plane = image.width * image.height;
  Tensor pixels = Tensor::empty({1, image.channels, image.height, image.width}, DType::f32);
  data::normalize_pixels(image.pixels.data(), image.channels, plane,
                         gray ? fm_mean.data() : data::kCifar10Mean.data(),
                         gray ? fm_std.data() : data::kCifar10Std.data(), pixels.data<float>());
  const std::vector<double> p =
      eval_probabilities(*model_, [&] { return model_->forward(pixels.to(device_)); });
  const auto& names = gray ? data::FashionMnist::class_names() : data::Cifar10::class_names();
  return top_class_lines(
      p, [&](size_t c) { return c < names.size() ? names[c] : "class " + std::to_string(c); });
}

}  // namespace

std::unique_ptr<Workload> make_vit_workload(const TrainConfig& config, Device device) {
  return std::make_unique<VitWorkload>(config, device);
}

}  // namespace dtrain::launch
