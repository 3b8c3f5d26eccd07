// One SGD step over the flat buffers in one kernel: the segment table (offsets, lr and decay
// multipliers) rides in the kernel's arguments and each element finds its segment by binary
// search. Rules and the frozen-segment skip as in cpp/sgd.cpp.
#include "common.cuh"
#include "ops.cuh"

namespace pcn {
namespace cuda {
namespace {

constexpr int kMaxSeg = 64;  // segments per launch (kernel arguments stay under 4 KiB)

struct Segments {
  int64_t off[kMaxSeg + 1];
  float a[kMaxSeg];  // lr * lr_mult
  float d[kMaxSeg];  // wd * wd_mult
  int n;
};

__global__ void sgd_kernel(float* w, float* v, const float* g, Segments t, float mu, bool nesterov,
                           int rule) {
  const int64_t b = t.off[0], n = t.off[t.n] - b;
  PCN_GRID_LOOP(j, n) {
    const int64_t i = b + j;
    int lo = 0, hi = t.n - 1;  // the last segment s with off[s] <= i (skips empty segments)
    while (lo < hi) {
      int mid = (lo + hi + 1) / 2;
      if (t.off[mid] <= i) lo = mid; else hi = mid - 1;
    }
    const float a = t.a[lo], d = t.d[lo];
    if (a == 0.f) continue;  // frozen: neither weights nor velocity move
    if (rule == 1) {
      float vi = mu * v[i] - d * a * w[i] - a * g[i];
      v[i] = vi;
      w[i] += vi;
    } else {
      float gi = g[i] + d * w[i];
      float vi = mu * v[i] + gi;
      v[i] = vi;
      w[i] -= a * (nesterov ? gi + mu * vi : vi);
    }
  }
}

}  // namespace

void sgd_step(float* w, float* v, const float* g, const int64_t* off, const float* lr_mult,
              const float* wd_mult, int nseg, float lr, float momentum, float wd, bool nesterov,
              int rule) {
  for (int s0 = 0; s0 < nseg; s0 += kMaxSeg) {
    Segments t;
    t.n = std::min(kMaxSeg, nseg - s0);
    for (int s = 0; s < t.n; ++s) {
      t.off[s] = off[s0 + s];
      t.a[s] = lr * lr_mult[s0 + s];
      t.d[s] = wd * wd_mult[s0 + s];
    }
    t.off[t.n] = off[s0 + t.n];
    const int64_t n = t.off[t.n] - t.off[0];
    if (n <= 0) continue;
    sgd_kernel<<<blocks_for(n), kThreads>>>(w, v, g, t, momentum, nesterov, rule);
    CUDA_LAUNCH_CHECK("sgd_kernel");
  }
}

}  // namespace cuda
}  // namespace pcn
