// Image → label map with an exported package, step for step what fastadl/deploy/fixed_size.py
// does in Python (so the runner and `python -m fastadl.predict --size HxW` agree).
#pragma once

#include <vector>

#include "image_io.h"
#include "model_package.h"

namespace fastadl {

struct FittedSize {
  int height;
  int width;
};

// The size an (h, w) image is resized to inside an (H, W) input: unchanged if it fits,
// otherwise scaled down to fit with its aspect ratio kept (sides rounded half up).
FittedSize fitted_size(int h, int w, int H, int W);

// Class ids (height · width, row-major) of `image` at its own size.
std::vector<uint8_t> segment(ModelPackage& model, const RgbImage& image);

// The image blended with the coloured label map: (1 - alpha) · image + alpha · colour.
RgbImage overlay(const RgbImage& image, const std::vector<uint8_t>& ids,
                 const std::vector<Rgb>& palette, double alpha);

}  // namespace fastadl
