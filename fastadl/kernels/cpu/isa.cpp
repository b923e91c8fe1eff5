// The vector registers the library was compiled for (FASTADL_CPU_ISA, fastadl/kernels/cpu/__init__.py).
//
// The kernels use no intrinsics: dwconv.cpp's 64-byte GCC vectors and pointwise.cpp's 32-byte
// ones are lowered to whatever the target has (one zmm, two ymm, four xmm), and the plain loops
// are auto-vectorised to the target's width, so this is what their vector code runs on.

extern "C" {

int fastadl_vector_floats() {
#if defined(__AVX512F__)
  return 16;
#elif defined(__AVX__)
  return 8;
#elif defined(__SSE2__) || defined(__ARM_NEON) || defined(__ALTIVEC__)
  return 4;
#else
  return 1;
#endif
}

}  // extern "C"
