// An exported fastadl model package (python -m fastadl.export): the AOTInductor model and the
// metadata the runner needs, read from the package itself.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <ATen/Tensor.h>

#include "image_io.h"

namespace torch::inductor {
class AOTIModelPackageLoader;
}

namespace fastadl {

// What fastadl/deploy/exporter.py writes into the package's metadata (keys "fastadl.*").
struct ModelInfo {
  int input_height = 0;
  int input_width = 0;
  std::vector<std::string> class_names;
  std::vector<Rgb> palette;        // one colour per class
  std::vector<double> mean, std;   // per RGB channel, on the 0..1 scale
  double overlay_alpha = 0.5;      // weight of the mask colour in the overlay
  std::string device = "cpu";      // where the compiled model runs (AOTI_DEVICE_KEY)
};

// Parse and check the metadata; throws FileError naming `path` for a package it cannot use.
ModelInfo parse_model_info(const std::unordered_map<std::string, std::string>& metadata,
                           const std::string& path);

class ModelPackage {
 public:
  // Throws FileError naming the file if it is missing, corrupt or not a fastadl package.
  explicit ModelPackage(const std::string& path);
  ~ModelPackage();

  const ModelInfo& info() const { return info_; }

  // x: (1, 3, input_height, input_width) float32 normalised → (1, K, same) float32 logits.
  at::Tensor run(const at::Tensor& x);

 private:
  std::string path_;
  ModelInfo info_;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader_;
};

}  // namespace fastadl
