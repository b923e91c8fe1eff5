// PNG through libpng, JPEG through libjpeg(-turbo). Both report errors by longjmp from C code:
// each decoder below keeps only plain C data alive between its setjmp and the library calls
// that may jump, and turns a jump into a FileError once it is back in C++.
#include "image_io.h"

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>

#include <jpeglib.h>
#include <jerror.h>  // after jpeglib.h: JWRN_JPEG_EOF
#include <png.h>

namespace fastadl {
namespace {

struct File {
  std::FILE* f;
  explicit File(const std::string& path, const char* mode) : f(std::fopen(path.c_str(), mode)) {}
  ~File() {
    if (f) std::fclose(f);
  }
};

// libpng's error handler: keep the message, jump back to the decoder's setjmp.
struct PngErrors {
  char message[256] = "";
};

void png_error_to_jump(png_structp png, png_const_charp msg) {
  auto* errors = static_cast<PngErrors*>(png_get_error_ptr(png));
  std::snprintf(errors->message, sizeof errors->message, "%s", msg);
  png_longjmp(png, 1);
}

void png_ignore_warning(png_structp, png_const_charp) {}

// Returns false (with errors->message set) if libpng gave up on the file.
bool decode_png(std::FILE* f, RgbImage& out, PngErrors* errors) {
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, errors, png_error_to_jump, png_ignore_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    std::snprintf(errors->message, sizeof errors->message, "out of memory");
    png_destroy_read_struct(&png, nullptr, nullptr);
    return false;
  }
  std::vector<png_bytep>* rows = new std::vector<png_bytep>();  // freed on both exits
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    delete rows;
    return false;
  }
  png_init_io(png, f);
  png_read_info(png, info);
  // What PIL's convert("RGB") does for 8-bit files (no gamma correction, alpha dropped).
  png_set_expand(png);  // palette → RGB, grey < 8 bits → 8 bits, tRNS → alpha
  png_set_strip_16(png);
  png_set_strip_alpha(png);
  png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  out.width = static_cast<int>(png_get_image_width(png, info));
  out.height = static_cast<int>(png_get_image_height(png, info));
  if (png_get_rowbytes(png, info) != static_cast<size_t>(out.width) * 3) {
    png_error(png, "unexpected pixel layout after conversion to RGB");
  }
  out.pixels.resize(static_cast<size_t>(out.height) * out.width * 3);
  rows->resize(out.height);
  for (int y = 0; y < out.height; ++y) (*rows)[y] = out.pixels.data() + size_t(y) * out.width * 3;
  png_read_image(png, rows->data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  delete rows;
  return true;
}

struct JpegErrors {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = "";
};

void jpeg_error_to_jump(j_common_ptr cinfo) {
  auto* errors = reinterpret_cast<JpegErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, errors->message);
  std::longjmp(errors->jump, 1);
}

// Warnings (corrupt-data notes) are ignored, as PIL does, except a premature end of file:
// PIL refuses truncated files, so the runner does too rather than decode grey rows.
void jpeg_fail_on_truncation(j_common_ptr cinfo, int msg_level) {
  if (msg_level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_error_to_jump(cinfo);
}

bool decode_jpeg(std::FILE* f, RgbImage& out, JpegErrors* errors) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&errors->mgr);
  errors->mgr.error_exit = jpeg_error_to_jump;
  errors->mgr.emit_message = jpeg_fail_on_truncation;
  jpeg_create_decompress(&cinfo);
  if (setjmp(errors->jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_stdio_src(&cinfo, f);
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = JCS_RGB;  // grey and YCbCr → RGB; CMYK files fail with a message
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_components != 3) {
    std::snprintf(errors->message, sizeof errors->message, "unsupported JPEG colour space");
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  out.width = static_cast<int>(cinfo.output_width);
  out.height = static_cast<int>(cinfo.output_height);
  out.pixels.resize(static_cast<size_t>(out.height) * out.width * 3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out.pixels.data() + size_t(cinfo.output_scanline) * out.width * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

// Writes `rows` (height pointers to width·channels bytes) as a PNG of `color_type`.
bool encode_png(std::FILE* f, int height, int width, int color_type, const png_color* palette,
                int palette_size, const std::vector<const uint8_t*>& rows, PngErrors* errors) {
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, errors, png_error_to_jump, png_ignore_warning);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    std::snprintf(errors->message, sizeof errors->message, "out of memory");
    png_destroy_write_struct(&png, nullptr);
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, width, height, 8, color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (palette) png_set_PLTE(png, info, palette, palette_size);
  png_write_info(png, info);
  for (const uint8_t* row : rows) png_write_row(png, row);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

void write_png(const std::string& path, int height, int width, int channels, int color_type,
               const uint8_t* data, const png_color* palette, int palette_size) {
  File file(path, "wb");
  if (!file.f) throw FileError("cannot write " + path + ": " + std::strerror(errno));
  std::vector<const uint8_t*> rows(height);
  for (int y = 0; y < height; ++y) rows[y] = data + size_t(y) * width * channels;
  PngErrors errors;
  if (!encode_png(file.f, height, width, color_type, palette, palette_size, rows, &errors) ||
      std::fflush(file.f) != 0) {
    throw FileError("cannot write " + path + ": " + errors.message);
  }
}

}  // namespace

RgbImage read_image(const std::string& path) {
  File file(path, "rb");
  if (!file.f) {
    if (errno == ENOENT) throw FileError("missing image file: " + path);
    throw FileError("cannot open image file " + path + ": " + std::strerror(errno));
  }
  unsigned char magic[8] = {0};
  size_t n = std::fread(magic, 1, sizeof magic, file.f);
  std::rewind(file.f);
  RgbImage image;
  if (n == 8 && png_sig_cmp(magic, 0, 8) == 0) {
    PngErrors errors;
    if (!decode_png(file.f, image, &errors)) {
      throw FileError("cannot decode image file " + path + ": " + errors.message);
    }
  } else if (n >= 3 && magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF) {
    auto errors = std::make_unique<JpegErrors>();
    if (!decode_jpeg(file.f, image, errors.get())) {
      throw FileError("cannot decode image file " + path + ": " + errors->message);
    }
  } else {
    throw FileError("cannot decode image file " + path + ": not a PNG or JPEG file");
  }
  if (image.height < 1 || image.width < 1) {
    throw FileError("cannot decode image file " + path + ": empty image");
  }
  return image;
}

void write_palette_png(const std::string& path, int height, int width,
                       const std::vector<uint8_t>& ids, const std::vector<Rgb>& palette) {
  std::vector<png_color> colours;
  for (const Rgb& c : palette) colours.push_back(png_color{c[0], c[1], c[2]});
  write_png(path, height, width, 1, PNG_COLOR_TYPE_PALETTE, ids.data(), colours.data(),
            static_cast<int>(colours.size()));
}

void write_rgb_png(const std::string& path, const RgbImage& image) {
  write_png(path, image.height, image.width, 3, PNG_COLOR_TYPE_RGB, image.pixels.data(), nullptr,
            0);
}

}  // namespace fastadl
