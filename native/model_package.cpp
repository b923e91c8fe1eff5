#include "model_package.h"

#include <sys/stat.h>

#include <cstdlib>
#include <sstream>

#include <c10/util/Exception.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

namespace fastadl {
namespace {

// Must match FORMAT_VERSION and RESIZE_RULE in fastadl/deploy/exporter.py.
constexpr const char* kFormat = "1";
constexpr const char* kResizeRule = "fit-pad";

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, sep)) parts.push_back(part);
  return parts;
}

// The first line of a torch error, without the C++ backtrace.
std::string first_line(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  std::string text = c10_error ? c10_error->what_without_backtrace() : e.what();
  return text.substr(0, text.find('\n'));
}

struct FieldReader {
  const std::unordered_map<std::string, std::string>& metadata;
  const std::string& path;

  [[noreturn]] void bad(const std::string& key, const std::string& why) const {
    throw FileError("model package " + path + ": metadata field " + key + " " + why);
  }

  const std::string& get(const std::string& key) const {
    auto it = metadata.find(key);
    if (it == metadata.end()) bad(key, "is missing");
    return it->second;
  }

  double number(const std::string& key, const std::string& text) const {
    char* end = nullptr;
    double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0') bad(key, "holds " + text + ", not a number");
    return v;
  }

  std::vector<double> numbers(const std::string& key, char sep, size_t count) const {
    std::vector<double> values;
    for (const std::string& part : split(get(key), sep)) values.push_back(number(key, part));
    if (count && values.size() != count) bad(key, "needs " + std::to_string(count) + " numbers");
    return values;
  }
};

}  // namespace

ModelInfo parse_model_info(const std::unordered_map<std::string, std::string>& metadata,
                           const std::string& path) {
  if (!metadata.count("fastadl.format")) {
    throw FileError("model package " + path +
                    " is not a fastadl model package (no fastadl.* metadata): export one with "
                    "python -m fastadl.export");
  }
  FieldReader read{metadata, path};
  if (read.get("fastadl.format") != kFormat) {
    read.bad("fastadl.format", "is " + read.get("fastadl.format") + "; this runner reads " +
                                   kFormat + " (rebuild fastadl-infer or re-export)");
  }
  if (read.get("fastadl.resize") != kResizeRule) {
    read.bad("fastadl.resize", "names an unknown rule " + read.get("fastadl.resize"));
  }
  ModelInfo info;
  std::vector<double> size = read.numbers("fastadl.input_size", 'x', 2);
  info.input_height = static_cast<int>(size[0]);
  info.input_width = static_cast<int>(size[1]);
  if (info.input_height < 1 || info.input_width < 1) read.bad("fastadl.input_size", "is empty");
  info.class_names = split(read.get("fastadl.class_names"), '\n');
  size_t k = info.class_names.size();
  if (k < 1 || k > 256) read.bad("fastadl.class_names", "must name 1..256 classes");
  for (const std::string& colour : split(read.get("fastadl.palette"), ';')) {
    std::vector<std::string> rgb = split(colour, ',');
    if (rgb.size() != 3) read.bad("fastadl.palette", "holds " + colour + ", not r,g,b");
    Rgb c;
    for (int i = 0; i < 3; ++i) {
      double v = read.number("fastadl.palette", rgb[i]);
      if (v < 0 || v > 255) read.bad("fastadl.palette", "has a value outside 0..255");
      c[i] = static_cast<uint8_t>(v);
    }
    info.palette.push_back(c);
  }
  if (info.palette.size() != k) read.bad("fastadl.palette", "needs one colour per class");
  info.mean = read.numbers("fastadl.mean", ',', 3);
  info.std = read.numbers("fastadl.std", ',', 3);
  for (double s : info.std) {
    if (s <= 0) read.bad("fastadl.std", "must be positive");
  }
  info.overlay_alpha = read.number("fastadl.overlay_alpha", read.get("fastadl.overlay_alpha"));
  auto device = metadata.find("AOTI_DEVICE_KEY");
  if (device != metadata.end()) info.device = device->second;
  return info;
}

ModelPackage::ModelPackage(const std::string& path) : path_(path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) throw FileError("missing model package: " + path);
  if (!S_ISREG(st.st_mode)) throw FileError("model package " + path + " is not a file");
  std::unordered_map<std::string, std::string> metadata;
  try {
    metadata = torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(path, "model");
  } catch (const std::exception& e) {
    throw FileError("cannot read model package " + path + " (corrupt or not a .pt2 package): " +
                    first_line(e));
  }
  info_ = parse_model_info(metadata, path);
  try {
    loader_ = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, "model");
  } catch (const std::exception& e) {
    throw FileError("cannot load model package " + path + ": " + first_line(e));
  }
}

ModelPackage::~ModelPackage() = default;

at::Tensor ModelPackage::run(const at::Tensor& x) {
  std::vector<at::Tensor> outputs;
  try {
    outputs = loader_->run({x.to(c10::Device(info_.device))});
  } catch (const std::exception& e) {
    throw FileError("model package " + path_ + " failed to run: " + first_line(e));
  }
  if (outputs.size() != 1) {
    throw FileError("model package " + path_ + " returned " + std::to_string(outputs.size()) +
                    " outputs, expected the logits only");
  }
  return outputs[0].to(at::kCPU, at::kFloat);
}

}  // namespace fastadl
