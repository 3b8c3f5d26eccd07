// One SGD step over the model's flat buffers; segments carry per-layer lr/decay multipliers
// (Caffe's lr_mult/decay_mult: 0 freezes a layer for fine-tuning).
#include "ops.h"

namespace pcn {

void sgd_step(float* w, float* v, const float* g, const int64_t* off, const float* lr_mult,
              const float* wd_mult, int nseg, float lr, float momentum, float wd, bool nesterov,
              int rule) {
  for (int s = 0; s < nseg; ++s) {
    const float a = lr * lr_mult[s], d = wd * wd_mult[s], mu = momentum;
    if (a == 0.f) continue;  // frozen: neither weights nor velocity move
    const int64_t b = off[s], e = off[s + 1];
    if (rule == 1) {
#pragma omp parallel for simd schedule(static)
      for (int64_t i = b; i < e; ++i) { v[i] = mu * v[i] - d * a * w[i] - a * g[i]; w[i] += v[i]; }
    } else {
#pragma omp parallel for simd schedule(static)
      for (int64_t i = b; i < e; ++i) {
        float gi = g[i] + d * w[i];
        v[i] = mu * v[i] + gi;
        w[i] -= a * (nesterov ? gi + mu * v[i] : v[i]);
      }
    }
  }
}

}  // namespace pcn
