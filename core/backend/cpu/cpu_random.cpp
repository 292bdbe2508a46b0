// CPU random fills (uniform, normal, bernoulli) of any dtype, drawn from a seeded Generator.
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/backend/cpu/cpu_backend.h"
#include "core/backend/cpu/cpu_loops.h"
#include "core/tensor/random.h"

namespace dtrain {

using namespace cpu_detail;

namespace {

// The next representable value towards -infinity.
template <class T>
T step_down(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    return std::nextafter(v, -std::numeric_limits<T>::infinity());
  } else {
    // f16/bf16 are sign-magnitude: a positive pattern steps down by -1, a negative one by +1.
    uint16_t bits = v.bits;
    if ((bits & 0x7fffu) == 0)
      bits = 0x8001u;  // below +-0 is the smallest negative subnormal
    else if (bits & 0x8000u)
      ++bits;
    else
      --bits;
    return T{bits};
  }
}

}  // namespace

void CpuBackend::random(RandomKind kind, double a, double b, Generator& gen, const Tensor& dst) {
  DTRAIN_CHECK(dst.is_contiguous(), "cpu random: the destination of shape ", shape_str(dst.shape()),
               " must be contiguous");
  // Drawn in order on one thread: the values depend only on the generator's state, never on the
  // number of threads.
  dispatch_all(dst.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = dst.data<T>();
    const int64_t n = dst.numel();
    switch (kind) {
      case RandomKind::uniform: {
        // Rounding a + (b - a) u to the storage type can land on b; clamp to the largest value
        // below b so the interval stays half-open.
        T top = convert<T>(b);
        if constexpr (!std::is_integral_v<T>) {
          while (b > a && static_cast<double>(widen(top)) >= b) top = step_down(top);
        }
        for (int64_t i = 0; i < n; ++i) {
          T v = convert<T>(a + (b - a) * gen.next_double());
          if constexpr (!std::is_integral_v<T>) {
            if (b > a && static_cast<double>(widen(v)) >= b) v = top;
          }
          p[i] = v;
        }
        break;
      }
      case RandomKind::normal:
        for (int64_t i = 0; i < n; ++i) p[i] = convert<T>(a + b * gen.next_normal());
        break;
      case RandomKind::bernoulli:
        for (int64_t i = 0; i < n; ++i) p[i] = convert<T>(gen.next_double() < a ? 1.0 : 0.0);
        break;
    }
  });
}

}  // namespace dtrain
