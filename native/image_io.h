// Image files for fastadl-infer: PNG / JPEG decoding to 8-bit RGB, PNG encoding (palette, RGB).
#pragma once

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastadl {

// A user-facing failure about one file: the message names the file, main() prints it as is.
struct FileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// 8-bit RGB pixels, row-major (height, width, 3).
struct RgbImage {
  int height = 0;
  int width = 0;
  std::vector<uint8_t> pixels;
};

using Rgb = std::array<uint8_t, 3>;

// Decode a PNG or JPEG file (told apart by their signatures) to RGB, as PIL's
// Image.convert("RGB") does for 8-bit files: palette and grey expanded, alpha dropped
// (not composited), 16-bit samples cut to their high byte. Throws FileError naming the file.
RgbImage read_image(const std::string& path);

// A palette PNG: pixel values are class ids (height, width), shown in `palette`'s colours.
void write_palette_png(const std::string& path, int height, int width,
                       const std::vector<uint8_t>& ids, const std::vector<Rgb>& palette);

// An 8-bit RGB PNG.
void write_rgb_png(const std::string& path, const RgbImage& image);

}  // namespace fastadl
