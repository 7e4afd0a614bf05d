// C++ support for models written in C++ (TFLM kernels), without exceptions, RTTI or a heap.
// No <cstddef>: the RISC-V toolchain ships no libstdc++ headers; decltype(sizeof(0)) is size_t.

#include "bsp.h"

// Virtual destructors reference the deleting operator delete even when nothing is ever
// allocated on the heap. Defining them here keeps libstdc++'s versions, which call free() and
// so pull in malloc, out of the link. They are never called.
void operator delete(void* pointer) noexcept { static_cast<void>(pointer); }
void operator delete(void* pointer, decltype(sizeof(0)) size) noexcept {
  static_cast<void>(pointer);
  static_cast<void>(size);
}

// Called if a pure virtual function is ever invoked: a bug, so stop.
extern "C" void __cxa_pure_virtual() { bsp_exit(134); }
