#include "segment.h"

#include <algorithm>
#include <cmath>

#include <ATen/ATen.h>

namespace fastadl {

FittedSize fitted_size(int h, int w, int H, int W) {
  if (h <= H && w <= W) return {h, w};
  double scale = std::min(static_cast<double>(H) / h, static_cast<double>(W) / w);
  auto side = [scale](int n, int limit) {
    return std::clamp(static_cast<int>(std::floor(n * scale + 0.5)), 1, limit);
  };
  return {side(h, H), side(w, W)};
}

std::vector<uint8_t> segment(ModelPackage& model, const RgbImage& image) {
  const ModelInfo& info = model.info();
  const int h = image.height, w = image.width;
  // The float32 operations of fastadl.data.transforms.to_tensors: (x - 255·mean) / (255·std).
  at::Tensor x = at::from_blob(const_cast<uint8_t*>(image.pixels.data()), {h, w, 3}, at::kByte)
                     .permute({2, 0, 1})
                     .to(at::kFloat);
  auto channels = [](const std::vector<double>& v) {
    return at::tensor(std::vector<float>(v.begin(), v.end())).view({3, 1, 1});
  };
  at::Tensor mean = channels(info.mean), stdev = channels(info.std);
  x = ((x - mean * 255.0) / (stdev * 255.0)).unsqueeze(0);

  // Fit: downscale (antialiased bilinear) if larger than the input; pad bottom/right with
  // zeros, i.e. with the mean colour.
  FittedSize fit = fitted_size(h, w, info.input_height, info.input_width);
  if (fit.height != h || fit.width != w) {
    x = at::_upsample_bilinear2d_aa(x, {fit.height, fit.width}, /*align_corners=*/false);
  }
  x = at::constant_pad_nd(x, {0, info.input_width - fit.width, 0, info.input_height - fit.height},
                          0.0);

  at::Tensor logits = model.run(x.contiguous());
  logits = logits.slice(2, 0, fit.height).slice(3, 0, fit.width);
  if (fit.height != h || fit.width != w) {
    logits = at::upsample_bilinear2d(logits, {h, w}, /*align_corners=*/false);
  }
  // softmax before argmax as predict does (MultiScaleInference averages probabilities), so
  // near-ties resolve the same way.
  at::Tensor ids = logits.softmax(1).argmax(1)[0].to(at::kByte).contiguous();
  const uint8_t* data = ids.data_ptr<uint8_t>();
  return std::vector<uint8_t>(data, data + static_cast<size_t>(h) * w);
}

RgbImage overlay(const RgbImage& image, const std::vector<uint8_t>& ids,
                 const std::vector<Rgb>& palette, double alpha) {
  // float32 arithmetic and round-half-even, as fastadl/deploy/predictor.py::overlay (numpy).
  const float keep = static_cast<float>(1.0 - alpha), mix = static_cast<float>(alpha);
  RgbImage out = image;
  for (size_t p = 0; p < ids.size(); ++p) {
    const Rgb& c = palette[ids[p]];
    for (int ch = 0; ch < 3; ++ch) {
      float v = keep * static_cast<float>(image.pixels[3 * p + ch]) +
                mix * static_cast<float>(c[ch]);
      out.pixels[3 * p + ch] = static_cast<uint8_t>(std::clamp(std::nearbyint(v), 0.0f, 255.0f));
    }
  }
  return out;
}

}  // namespace fastadl
