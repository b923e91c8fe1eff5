// fastadl-infer: segment one image with a model package from `python -m fastadl.export`.
//
//   fastadl-infer model.pt2 image.png --out mask.png [--overlay overlay.png] [--threads N]
//
// Writes the label map as a palette PNG (pixel values are class ids, shown in the package's
// colours) at the image's own size, and optionally the image blended with the coloured map.
// Every failure is one line on stderr naming the file; exit status 2 for a bad command line,
// 1 for a file that cannot be read or written.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include <ATen/Parallel.h>

#include "image_io.h"
#include "model_package.h"
#include "segment.h"

namespace {

constexpr const char* kUsage =
    "usage: fastadl-infer MODEL.pt2 IMAGE --out MASK.png [--overlay OVERLAY.png] [--threads N]\n";

constexpr const char* kHelp =
    "Segment IMAGE (PNG or JPEG) with a model package written by python -m fastadl.export.\n"
    "\n"
    "The image is scaled down to fit the package's input size if it is larger (aspect ratio\n"
    "kept), padded bottom/right with the mean colour, normalised with the package's mean/std\n"
    "and run; the class scores are cropped and resized back to the image's size.\n"
    "\n"
    "arguments:\n"
    "  MODEL.pt2            an AOTInductor model package from python -m fastadl.export\n"
    "  IMAGE                the image to segment (PNG or JPEG)\n"
    "  --out MASK.png       write the label map: a palette PNG whose pixel values are class ids\n"
    "  --overlay FILE.png   also write the image blended with the coloured label map\n"
    "  --threads N          CPU threads (default: libtorch's default, one per core)\n"
    "  -h, --help           show this help\n";

struct Args {
  std::string model, image, out, overlay;
  int threads = 0;
};

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

Args parse_args(int argc, char** argv) {
  Args args;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(a + " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::fputs("\n", stdout);
      std::fputs(kHelp, stdout);
      std::exit(0);
    } else if (a == "--out") {
      args.out = value();
    } else if (a == "--overlay") {
      args.overlay = value();
    } else if (a == "--threads") {
      std::string v = value();
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 1) {
        throw UsageError("--threads needs a positive integer, got " + v);
      }
      args.threads = static_cast<int>(n);
    } else if (a.size() > 1 && a[0] == '-') {
      throw UsageError("unknown option " + a);
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2) throw UsageError("expected MODEL.pt2 and IMAGE");
  if (args.out.empty()) throw UsageError("--out MASK.png is required");
  args.model = positional[0];
  args.image = positional[1];
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = parse_args(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "fastadl-infer: error: %s (usage: fastadl-infer --help)\n", e.what());
    return 2;
  }
  try {
    if (args.threads > 0) at::set_num_threads(args.threads);
    // The image first: a bad path fails in milliseconds, before the package is loaded.
    fastadl::RgbImage image = fastadl::read_image(args.image);
    fastadl::ModelPackage model(args.model);
    std::vector<uint8_t> ids = fastadl::segment(model, image);
    const fastadl::ModelInfo& info = model.info();
    fastadl::write_palette_png(args.out, image.height, image.width, ids, info.palette);
    std::printf("wrote %s (%dx%d, %zu classes)\n", args.out.c_str(), image.height, image.width,
                info.class_names.size());
    if (!args.overlay.empty()) {
      fastadl::write_rgb_png(args.overlay,
                             fastadl::overlay(image, ids, info.palette, info.overlay_alpha));
      std::printf("wrote %s\n", args.overlay.c_str());
    }
  } catch (const fastadl::FileError& e) {
    std::fprintf(stderr, "fastadl-infer: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {  // anything else: still one line, never a backtrace
    std::string text = e.what();
    std::fprintf(stderr, "fastadl-infer: error: %s\n", text.substr(0, text.find('\n')).c_str());
    return 1;
  }
  return 0;
}
