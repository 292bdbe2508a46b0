// Elementwise arithmetic with NumPy/PyTorch broadcasting. Differentiable unless noted.
#pragma once
#include "core/tensor/tensor.h"

namespace dtrain {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, double exponent);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
Tensor rsub(double s, const Tensor& a);  // s - a
Tensor rdiv(double s, const Tensor& a);  // s / a
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor square(const Tensor& x);
Tensor maximum(const Tensor& a, const Tensor& b);  // gradient goes to the larger (a on ties)
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor clamp(const Tensor& x, double lo, double hi);

// Comparisons: not differentiable; the result has a's dtype, 1 where true and 0 elsewhere.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);

// Sums `grad` over broadcast dims so it has `shape` (the backward of broadcasting).
Tensor sum_to(const Tensor& grad, const Shape& shape);
// The shape a and b broadcast to; an error naming `op` and both shapes when they do not.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// In place, never recorded (optimizer updates, accumulation). `dst` must not need a gradient while
// grad mode is on. b broadcasts to dst's shape.
Tensor& add_(Tensor& dst, const Tensor& b, double alpha = 1.0);  // dst += alpha * b
Tensor& mul_(Tensor& dst, const Tensor& b);
Tensor& mul_(Tensor& dst, double s);
Tensor& div_(Tensor& dst, const Tensor& b);
Tensor& addcmul_(Tensor& dst, const Tensor& a, const Tensor& b, double value);  // dst += value*a*b
Tensor& addcdiv_(Tensor& dst, const Tensor& a, const Tensor& b, double value);  // dst += value*a/b

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double s) { return add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return add(a, -s); }
inline Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return mul(a, 1.0 / s); }
inline Tensor operator+(double s, const Tensor& a) { return add(a, s); }
inline Tensor operator-(double s, const Tensor& a) { return rsub(s, a); }
inline Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
inline Tensor operator/(double s, const Tensor& a) { return rdiv(s, a); }

}  // namespace dtrain
