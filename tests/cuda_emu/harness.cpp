// Every kernel entry point of cuda/ops.cuh, run on the CPU under cuda_emu.h, against the CPU kernel
// of cpp/ops.h (or, where cpp/ has none, the contract written in ops.cuh) on the same inputs.
// Outputs start as poison (0xFFFFFFFF, a NaN no kernel computes: an element still holding it was
// never written); parameter gradients start random (they accumulate). One line per check.
//   usage: harness [group ...]   groups: gemm conv local linear pool lrn eltwise dropout softmax sgd
#include <bit>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>
#include "cuda_emu.h"
#include "harness_device.h"
#include "ops.cuh"
#include "ops.h"

namespace {

using pcn::Geom;
namespace gpu = pcn::cuda;
using V = std::vector<float>;
const float kNaN = std::numeric_limits<float>::quiet_NaN(), kInf = std::numeric_limits<float>::infinity();
const float kPoison = std::bit_cast<float>(0xFFFFFFFFu);  // device_alloc's fill: never computed
int checks = 0, fails = 0;
std::mt19937 rng(20240611);

// A "device" array: emulated device memory from device_alloc (aligned, poisoned, guarded).
template <class T>
struct Dev {
  std::shared_ptr<gpu::Block> blk;
  size_t n;
  explicit Dev(size_t n_) : blk(gpu::device_alloc(std::max<size_t>(n_, 1) * sizeof(T))), n(n_) {}
  Dev(const std::vector<T>& v) : Dev(v.size()) { std::memcpy(p(), v.data(), v.size() * sizeof(T)); }
  T* p() const { return static_cast<T*>(blk->ptr); }
  std::vector<T> vec() const { return std::vector<T>(p(), p() + n); }
};
using DF = Dev<float>;

V rnd(size_t n, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  V v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
V ints(size_t n, int lo, int hi) {  // small integers: many ties
  std::uniform_int_distribution<int> d(lo, hi);
  V v(n);
  for (auto& x : v) x = (float)d(rng);
  return v;
}
bool poison(float v) { return std::bit_cast<uint32_t>(v) == 0xFFFFFFFFu; }

void report(const std::string& what, bool ok, const std::string& detail) {
  ++checks;
  fails += !ok;
  std::printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what.c_str(), detail.empty() ? "" : ": ", detail.c_str());
  std::fflush(stdout);
}

// |got - want| <= tol * (1 + |want|) elementwise; NaN only where the reference has NaN.
void close(const std::string& what, const V& got, const V& want, double tol = 1e-5) {
  double worst = 0;
  char buf[200] = "";
  bool ok = got.size() == want.size();
  for (size_t i = 0; ok && i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    if (std::isnan(w) ? std::isnan(g) : g == w || std::fabs(g - w) <= tol * (1 + std::fabs(w))) {
      if (std::isfinite(w)) worst = std::max(worst, std::fabs(g - w) / (1 + std::fabs(w)));
      continue;
    }
    ok = false;
    std::snprintf(buf, sizeof buf, "[%zu] = %.8g%s, expected %.8g", i, g, poison(got[i]) ? " (never written)" : "", w);
  }
  if (got.size() != want.size()) std::snprintf(buf, sizeof buf, "%zu elements, expected %zu", got.size(), want.size());
  if (ok) std::snprintf(buf, sizeof buf, "max rel err %.2g", worst);
  report(what, ok, buf);
}
template <class T>
void same(const std::string& what, const std::vector<T>& got, const std::vector<T>& want) {  // bit for bit
  bool ok = got.size() == want.size() && !std::memcmp(got.data(), want.data(), got.size() * sizeof(T));
  std::string d;
  for (size_t i = 0; !ok && i < std::min(got.size(), want.size()); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(T))) {
      d = "first difference at [" + std::to_string(i) + "]: " + std::to_string((double)got[i]) + ", expected " + std::to_string((double)want[i]);
      break;
    }
  report(what, ok, d);
}

// Runs one call of a CUDA entry point: it must not throw, fail a launch or write past a buffer.
template <class F>
bool call(const std::string& what, F f) {
  const long bad = emu::bad_launches;
  std::string err;
  try {
    f();
  } catch (const std::exception& e) {
    err = std::string("threw: ") + e.what();
  }
  if (err.empty() && emu::bad_launches != bad) err = "a launch had a bad configuration";
  if (err.empty() && cudaGetLastError() != cudaSuccess) err = "left a CUDA error set";
  if (err.empty() && !emu::all_guards_intact()) err = "wrote outside a device buffer";
  if (!err.empty()) report(what, false, err);
  return err.empty();
}

std::string backend_name() {
  return std::string(emu::use_cublas ? "cublas" : "ours") + " sms" + std::to_string(emu::sm_count);
}
// The GEMM backends the layer checks run under: ours at a big and a 1-SM device (small tiles and
// split K vs big tiles and the float4 path), then the reference cuBLAS (the operand swap).
template <class F>
void each_backend(F f) {
  for (int b = 0; b < 3; ++b) {
    emu::use_cublas = b == 2;
    emu::sm_count = b == 1 ? 1 : 132;
    f();
  }
  emu::use_cublas = false;
  emu::sm_count = 132;
}

// ---- gemm ----
void gemm_case(bool ta, bool tb, int M, int N, int K, int batch, float alpha, float beta, int pad, int off) {
  const int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
  const int64_t sA = (int64_t)(ta ? K : M) * lda + 4 * pad, sB = (int64_t)(tb ? N : K) * ldb + 4 * pad,
                sC = (int64_t)M * ldc + 4 * pad;
  const V A = rnd(sA * batch + off), B = rnd(sB * batch + off);
  V C = beta == 0.f ? V(sC * batch + off, kPoison) : rnd(sC * batch + off);  // beta 0: C is never read
  DF dA(A), dB(B), dC(C);
  for (int b = 0; b < batch; ++b) {  // outside the M x N matrices C must stay as it was
    float* c = C.data() + off + b * sC;
    if (beta == 0.f)
      for (int i = 0; i < M; ++i) std::fill(c + (int64_t)i * ldc, c + (int64_t)i * ldc + N, 0.f);
    pcn::sgemm(ta, tb, M, N, K, alpha, A.data() + off + b * sA, lda, B.data() + off + b * sB, ldb, beta, c, ldc);
  }
  char what[160];
  std::snprintf(what, sizeof what, "sgemm%s %s ta%d tb%d M%d N%d K%d batch%d alpha%g beta%g pad%d off%d",
                batch == 1 ? "" : "_batched", backend_name().c_str(), ta, tb, M, N, K, batch, alpha, beta, pad, off);
  if (call(what, [&] {
        if (batch == 1) gpu::sgemm(ta, tb, M, N, K, alpha, dA.p() + off, lda, dB.p() + off, ldb, beta, dC.p() + off, ldc);
        else gpu::sgemm_batched(ta, tb, M, N, K, alpha, dA.p() + off, lda, sA, dB.p() + off, ldb, sB, beta,
                                dC.p() + off, ldc, sC, batch);
      }))
    close(what, dC.vec(), C, 2e-5 * std::sqrt((double)K + 1));
}

void test_gemm() {
  emu::sm_count = 7;
  report("sm_count follows the device attribute", gpu::sm_count() == 7,
         gpu::sm_count() == 7 ? "" : "cached: update the sm_count rewrite in test_cuda_emu.py");
  struct Case { int M, N, K, batch; float alpha, beta; int pad, off; };
  const Case cases[] = {
      {37, 45, 19, 1, 1.f, 0.f, 0, 0},     // one ragged tile, K not a multiple of 8
      {70, 65, 520, 1, 0.5f, 1.f, 1, 1},   // split K, beta, odd leading dimensions
      {128, 128, 64, 2, 1.f, 0.f, 0, 0},   // full 128-tiles (1 SM): the float4 path
      {128, 128, 524, 1, 1.f, 0.7f, 0, 0}, // split K (1 SM: a float4 split, then a checked one)
      {64, 64, 1040, 1, 1.f, 0.f, 0, 0},   // four splits on 132 SMs
      {129, 128, 20, 1, 1.f, 0.f, 4, 4},   // ragged M, padded rows still 16-byte aligned
      {128, 128, 16, 2, 1.f, 0.f, 0, 2},   // misaligned operands: full tiles on the checked path
      {5, 7, 0, 2, 1.f, 0.5f, 0, 0},       // K = 0: C = beta C
      {3, 1, 9, 3, 2.f, 0.f, 0, 0},        // a column vector, batch 3
  };
  each_backend([&] {
    for (const Case& c : cases)
      for (int t = 0; t < 4; ++t) gemm_case(t & 1, t & 2, c.M, c.N, c.K, c.batch, c.alpha, c.beta, c.pad, c.off);
  });
  report("the reference cuBLAS was called", emu::cublas_calls > 0, "");
}

// ---- conv2d / local2d (Geom from C, H, W, kernel, stride, padding) ----
Geom geom(int C, int H, int W, int KH, int KW, int SH, int SW, int PH, int PW) {
  Geom g{C, H, W, KH, KW, SH, SW, PH, PW, 0, 0};
  g.OH = pcn::conv_out_size(H, KH, SH, PH);
  g.OW = pcn::conv_out_size(W, KW, SW, PW);
  return g;
}
std::string gname(const char* op, int N, const Geom& g, int OC) {
  char b[160];
  std::snprintf(b, sizeof b, "%s N%d C%d %dx%d OC%d k%dx%d s%dx%d p%dx%d", op, N, g.C, g.H, g.W, OC, g.KH, g.KW,
                g.SH, g.SW, g.PH, g.PW);
  return b;
}

// local = false: conv2d with groups; true: local2d. slots: images the CUDA workspace holds.
void layer_case(bool local, int N, const Geom& g, int OC, int groups, int slots, bool bias) {
  const int64_t P = (int64_t)g.OH * g.OW, nx = (int64_t)N * g.C * g.H * g.W, ny = N * OC * P;
  const int64_t nw = local ? P * OC * g.C * g.KH * g.KW : (int64_t)OC * (g.C / groups) * g.KH * g.KW;
  const int64_t nb = local ? OC * P : OC;
  const int64_t cslot = local ? pcn::local2d_slot_floats(g, OC) : pcn::conv2d_slot_floats(g, OC);
  const int64_t gslot = local ? gpu::local2d_slot_floats(g, OC) : gpu::conv2d_slot_floats(g, OC);
  const int64_t cws_n = cslot * N, gws_n = gslot * slots + 3;
  const V x = rnd(nx), w = rnd(nw), b = rnd(nb), dy = rnd(ny), dw0 = rnd(nw), db0 = rnd(nb);
  V y(ny), cws(cws_n), dx(nx), dw = dw0, db = db0;
  DF gx(x), gw(w), gb(b), gdy(dy), gy(ny), gws(gws_n), gdx(nx), gdw(dw0), gdb(db0), gdx2(nx), gdw2(dw0);
  const float* bp = bias ? b.data() : nullptr;
  const float* gbp = bias ? gb.p() : nullptr;
  std::string what = gname(local ? "local2d" : "conv2d", N, g, OC) + (local ? "" : " groups" + std::to_string(groups)) +
                     " slots" + std::to_string(slots) + (bias ? "" : " nobias") + " " + backend_name();
  if (local) {
    pcn::local2d_forward(y.data(), x.data(), w.data(), bp, N, g, OC, cws.data(), cws_n);
    pcn::local2d_backward(dx.data(), dw.data(), bias ? db.data() : nullptr, dy.data(), x.data(), w.data(), N, g, OC, cws.data(), cws_n);
  } else {
    pcn::conv2d_forward(y.data(), x.data(), w.data(), bp, N, g, OC, groups, cws.data(), cws_n);
    pcn::conv2d_backward(dx.data(), dw.data(), bias ? db.data() : nullptr, dy.data(), x.data(), w.data(), N, g, OC, groups, cws.data(), cws_n);
  }
  const double tol = 2e-5 * std::sqrt((double)g.C * g.KH * g.KW + N * P);
  if (call(what + " forward", [&] {
        if (local) gpu::local2d_forward(gy.p(), gx.p(), gw.p(), gbp, N, g, OC, gws.p(), gws_n);
        else gpu::conv2d_forward(gy.p(), gx.p(), gw.p(), gbp, N, g, OC, groups, gws.p(), gws_n);
      }))
    close(what + " forward y", gy.vec(), y, tol);
  if (call(what + " backward", [&] {
        if (local) gpu::local2d_backward(gdx.p(), gdw.p(), bias ? gdb.p() : nullptr, gdy.p(), gx.p(), gw.p(), N, g, OC, gws.p(), gws_n);
        else gpu::conv2d_backward(gdx.p(), gdw.p(), bias ? gdb.p() : nullptr, gdy.p(), gx.p(), gw.p(), N, g, OC, groups, gws.p(), gws_n);
      })) {
    close(what + " backward dx", gdx.vec(), dx, tol);
    close(what + " backward dw", gdw.vec(), dw, tol);
    if (bias) close(what + " backward db", gdb.vec(), db, tol);
  }
  if (local || emu::use_cublas) return;
  // null pointers skip gradients: dx alone, then dw alone
  if (call(what + " backward dx only", [&] {
        gpu::conv2d_backward(gdx2.p(), nullptr, nullptr, gdy.p(), gx.p(), gw.p(), N, g, OC, groups, gws.p(), gws_n);
        gpu::conv2d_backward(nullptr, gdw2.p(), nullptr, gdy.p(), gx.p(), gw.p(), N, g, OC, groups, gws.p(), gws_n);
      })) {
    close(what + " backward dx only", gdx2.vec(), dx, tol);
    close(what + " backward dw only", gdw2.vec(), dw, tol);
  }
}

void test_conv() {
  report("conv2d_slot_floats holds the bias partial sums", gpu::conv2d_slot_floats(geom(1, 1, 1, 1, 1, 1, 1, 0, 0), 5) >= 10, "");
  each_backend([] {
    layer_case(false, 3, geom(4, 7, 6, 3, 3, 1, 1, 1, 1), 6, 1, 2, true);   // two chunks, the last short
    layer_case(false, 5, geom(6, 9, 7, 5, 3, 2, 1, 2, 1), 8, 2, 2, true);   // groups 2, uneven stride and padding
    layer_case(false, 4, geom(8, 5, 5, 3, 3, 1, 1, 0, 0), 4, 4, 3, false);  // depthwise-like groups 4, no bias
    layer_case(false, 2, geom(3, 11, 11, 7, 7, 3, 3, 2, 2), 5, 1, 1, true); // big kernel, stride 3, one image a chunk
    layer_case(false, 10, geom(2, 4, 3, 3, 3, 1, 1, 1, 1), 3, 1, 8, true);  // chunks of 8 (a multiple of 4) and 2
  });
}

void test_local() {
  each_backend([] {
    layer_case(true, 3, geom(3, 6, 5, 3, 3, 1, 1, 1, 1), 5, 1, 2, true);
    layer_case(true, 5, geom(2, 7, 7, 4, 3, 2, 2, 1, 0), 4, 1, 5, false);
  });
}

void test_linear() {
  each_backend([] {
    const int shapes[][3] = {{7, 33, 19}, {16, 520, 70}, {1, 1, 1}};
    for (auto& s : shapes) {
      const int N = s[0], IN = s[1], OUT = s[2];
      const V x = rnd((size_t)N * IN), w = rnd((size_t)OUT * IN), b = rnd(OUT), dy = rnd((size_t)N * OUT);
      const V dw0 = rnd(w.size()), db0 = rnd(OUT);
      V y(N * OUT), dx(x.size()), dw = dw0, db = db0;
      DF gx(x), gw(w), gb(b), gdy(dy), gy(N * OUT), gdx(x.size()), gdw(dw0), gdb(db0);
      pcn::linear_forward(y.data(), x.data(), w.data(), b.data(), N, IN, OUT);
      pcn::linear_backward(dx.data(), dw.data(), db.data(), dy.data(), x.data(), w.data(), N, IN, OUT);
      char what[120];
      std::snprintf(what, sizeof what, "linear N%d IN%d OUT%d %s", N, IN, OUT, backend_name().c_str());
      const double tol = 2e-5 * std::sqrt((double)IN + N);
      if (call(std::string(what) + " forward", [&] { gpu::linear_forward(gy.p(), gx.p(), gw.p(), gb.p(), N, IN, OUT); }))
        close(std::string(what) + " forward y", gy.vec(), y, tol);
      if (call(std::string(what) + " backward", [&] {
            gpu::linear_backward(gdx.p(), gdw.p(), gdb.p(), gdy.p(), gx.p(), gw.p(), N, IN, OUT);
          })) {
        close(std::string(what) + " backward dx", gdx.vec(), dx, tol);
        close(std::string(what) + " backward dw", gdw.vec(), dw, tol);
        close(std::string(what) + " backward db", gdb.vec(), db, tol);
      }
    }
  });
}

// ---- pooling: max pool ties and NaN (the first maximum, a NaN wins) bit for bit ----
void pool_case(int N, const Geom& g, int nan_every) {
  const int64_t nx = (int64_t)N * g.C * g.H * g.W, ny = (int64_t)N * g.C * g.OH * g.OW;
  V x = ints(nx, -3, 3);
  if (nan_every) for (int64_t i = 1; i < nx; i += nan_every) x[i] = kNaN;
  const V dy = rnd(ny);
  V y(ny), dx(nx), ay(ny), adx(nx);
  std::vector<int32_t> am(ny);
  pcn::maxpool2d_forward(y.data(), am.data(), x.data(), N, g);
  pcn::maxpool2d_backward(dx.data(), dy.data(), am.data(), N, g);
  pcn::avgpool2d_forward(ay.data(), x.data(), N, g);
  pcn::avgpool2d_backward(adx.data(), dy.data(), N, g);
  const std::string what = gname("pool", N, g, g.C) + (nan_every ? " with NaN" : "");
  DF gx(x), gdy(dy), gy(ny), gdx(nx), gay(ny), gadx(nx);
  Dev<int32_t> gam(ny), cam(am);
  if (call("max" + what + " forward", [&] { gpu::maxpool2d_forward(gy.p(), gam.p(), gx.p(), N, g); })) {
    same("max" + what + " forward y", gy.vec(), y);
    same("max" + what + " forward argmax", gam.vec(), am);
  }
  if (call("max" + what + " backward", [&] { gpu::maxpool2d_backward(gdx.p(), gdy.p(), cam.p(), N, g); }))
    same("max" + what + " backward dx", gdx.vec(), dx);
  if (call("avg" + what + " forward", [&] { gpu::avgpool2d_forward(gay.p(), gx.p(), N, g); }))
    close("avg" + what + " forward y", gay.vec(), ay);
  if (call("avg" + what + " backward", [&] { gpu::avgpool2d_backward(gadx.p(), gdy.p(), N, g); }))
    close("avg" + what + " backward dx", gadx.vec(), adx);
}

void test_pool() {
  pool_case(2, geom(3, 7, 7, 3, 3, 2, 2, 0, 0), 0);
  pool_case(2, geom(3, 9, 9, 3, 3, 2, 2, 0, 0), 7);
  pool_case(1, geom(2, 6, 5, 2, 2, 2, 2, 1, 1), 0);
  pool_case(2, geom(1, 5, 6, 3, 2, 1, 2, 1, 1), 5);
  pool_case(1, geom(1, 1, 1, 1, 1, 1, 1, 0, 0), 0);
  pool_case(1, geom(3, 13, 20, 5, 4, 1, 3, 2, 2), 5);
  pool_case(11, geom(2, 3, 3, 2, 2, 1, 1, 0, 0), 0);  // 22 planes: the y grid strides over them
  // ops.cuh: an argmax entry outside the plane is never dereferenced and adds nothing
  const int N = 2;
  const Geom g = geom(2, 5, 5, 2, 2, 2, 2, 0, 0);
  const int64_t ny = (int64_t)N * g.C * g.OH * g.OW, nx = (int64_t)N * g.C * g.H * g.W;
  V x = rnd(nx), dy = rnd(ny), y(ny), dx(nx);
  std::vector<int32_t> am(ny);
  pcn::maxpool2d_forward(y.data(), am.data(), x.data(), N, g);
  std::vector<int32_t> bad = am;
  bad[0] = -1, bad[3] = g.H * g.W, bad[ny - 1] = 1 << 30;
  DF gdy(dy), gdx(nx);
  Dev<int32_t> gam(bad);
  for (int64_t i : {(int64_t)0, (int64_t)3, ny - 1}) dy[i] = 0.f;  // the CPU reference gets no term for them
  pcn::maxpool2d_backward(dx.data(), dy.data(), am.data(), N, g);
  if (call("maxpool backward, argmax entries outside the plane", [&] { gpu::maxpool2d_backward(gdx.p(), gdy.p(), gam.p(), N, g); }))
    close("maxpool backward, argmax entries outside the plane", gdx.vec(), dx, 0);
}

// ---- lrn ----
void test_lrn() {
  const int shapes[][5] = {{2, 7, 12, 5, 0}, {1, 3, 25, 4, 1}, {2, 6, 6, 3, 2}, {1, 1, 9, 5, 0}, {3, 5, 1, 1, 3}, {1, 10, 17, 6, 3}};
  const float betas[] = {0.75f, 0.5f, 0.6f, 1.3f};
  for (auto& s : shapes) {
    const int N = s[0], C = s[1], HW = s[2], size = s[3];
    const float beta = betas[s[4]];
    const size_t n = (size_t)N * C * HW;
    const V x = rnd(n, -3, 3), dy = rnd(n);
    V y(n), sc(n), dx(n);
    pcn::lrn_forward(y.data(), sc.data(), x.data(), N, C, HW, size, 0.1f, beta, 1.5f);
    pcn::lrn_backward(dx.data(), dy.data(), x.data(), y.data(), sc.data(), N, C, HW, size, 0.1f, beta);
    DF gx(x), gdy(dy), gy(n), gsc(n), gdx(n), cy(y), csc(sc);
    char what[100];
    std::snprintf(what, sizeof what, "lrn N%d C%d HW%d size%d beta%g", N, C, HW, size, beta);
    if (call(std::string(what) + " forward", [&] { gpu::lrn_forward(gy.p(), gsc.p(), gx.p(), N, C, HW, size, 0.1f, beta, 1.5f); })) {
      close(std::string(what) + " forward y", gy.vec(), y);
      close(std::string(what) + " forward scale", gsc.vec(), sc);
    }
    if (call(std::string(what) + " backward", [&] { gpu::lrn_backward(gdx.p(), gdy.p(), gx.p(), cy.p(), csc.p(), N, C, HW, size, 0.1f, beta); }))
      close(std::string(what) + " backward dx", gdx.vec(), dx, 1e-4);
  }
}

// ---- eltwise (in place, as layers call them), fills, scale ----
void test_eltwise() {
  using F = void (*)(float*, const float*, int64_t);
  using B = void (*)(float*, const float*, const float*, int64_t);
  const char* names[] = {"relu", "sigmoid", "tanh"};
  const F cf[] = {pcn::relu_forward, pcn::sigmoid_forward, pcn::tanh_forward};
  const F gf[] = {gpu::relu_forward, gpu::sigmoid_forward, gpu::tanh_forward};
  const B cb[] = {pcn::relu_backward, pcn::sigmoid_backward, pcn::tanh_backward};
  const B gb[] = {gpu::relu_backward, gpu::sigmoid_backward, gpu::tanh_backward};
  for (int64_t n : {1, 300, 1000}) {
    V x = rnd(n, -6, 6);
    const V dy = rnd(n);
    x[0] = kNaN;
    if (n > 2) x[1] = kInf, x[2] = -kInf;
    for (int k = 0; k < 3; ++k) {
      V y(n), dx(n);
      cf[k](y.data(), x.data(), n);
      cb[k](dx.data(), dy.data(), y.data(), n);
      DF gy(x), gdx(dy), cy(y);
      const std::string what = std::string(names[k]) + " n" + std::to_string(n);
      if (call(what + " forward in place", [&] { gf[k](gy.p(), gy.p(), n); })) close(what + " forward in place", gy.vec(), y, 1e-6);
      if (call(what + " backward in place", [&] { gb[k](gdx.p(), gdx.p(), cy.p(), n); })) close(what + " backward in place", gdx.vec(), dx, 1e-6);
    }
  }
  const int64_t n = 777;
  Dev<float> f(n + 1);
  Dev<int32_t> i32(n + 1);
  Dev<int64_t> i64(n + 1);
  Dev<uint8_t> u8(n + 1);
  if (call("fill_f32/fill_i32/fill_i64/fill_u8 n777", [&] {
        gpu::fill_f32(f.p(), -2.5f, n);
        gpu::fill_i32(i32.p(), -7, n);
        gpu::fill_i64(i64.p(), (int64_t)1 << 40, n);
        gpu::fill_u8(u8.p(), 200, n);
      })) {
    V wf(n + 1, -2.5f);
    std::memset(&wf[n], 0xFF, 4);  // one past the end: untouched poison
    same("fill_f32 n777", f.vec(), wf);
    std::vector<int32_t> wi(n + 1, -7);
    wi[n] = -1;
    same("fill_i32 n777", i32.vec(), wi);
    std::vector<int64_t> wl(n + 1, (int64_t)1 << 40);
    wl[n] = -1;
    same("fill_i64 n777", i64.vec(), wl);
    std::vector<uint8_t> wu(n + 1, 200);
    wu[n] = 255;
    same("fill_u8 n777", u8.vec(), wu);
  }
  V s = rnd(n);
  DF gs(s);
  for (auto& v : s) v *= 0.25f;
  if (call("scale_f32 n777", [&] { gpu::scale_f32(gs.p(), 0.25f, n); })) same("scale_f32 n777", gs.vec(), s);
}

// ---- dropout: the CPU's mask and outputs bit for bit, NaN/inf inputs included ----
void test_dropout() {
  const int64_t n = 3000;
  for (float p : {0.f, 0.3f, 0.999f})
    for (uint64_t seed : {(uint64_t)1, ((uint64_t)1 << 63) + 5}) {
      V x = rnd(n), dy = rnd(n), y(n), dx(n);
      x[3] = kNaN, x[4] = kInf, x[5] = -kInf, dy[6] = kNaN;
      std::vector<uint8_t> m(n);
      pcn::dropout_forward(y.data(), m.data(), x.data(), n, p, seed);
      pcn::dropout_backward(dx.data(), dy.data(), m.data(), n, p);
      DF gx(x), gy(n), gdy(dy), gdx(n);
      Dev<uint8_t> gm(n), cm(m);
      char what[80];
      std::snprintf(what, sizeof what, "dropout n%" PRId64 " p%g seed%" PRIu64, n, p, seed);
      if (call(std::string(what) + " forward", [&] { gpu::dropout_forward(gy.p(), gm.p(), gx.p(), n, p, seed); })) {
        same(std::string(what) + " forward mask", gm.vec(), m);
        same(std::string(what) + " forward y", gy.vec(), y);
      }
      if (call(std::string(what) + " backward", [&] { gpu::dropout_backward(gdx.p(), gdy.p(), cm.p(), n, p); }))
        same(std::string(what) + " backward dx", gdx.vec(), dx);
    }
}

// ---- softmax, fused cross-entropy, top-1 ----
int first_max(const float* r, int K) {  // numpy's argmax: the first NaN, else the first maximum
  for (int j = 0; j < K; ++j) if (std::isnan(r[j])) return j;
  int a = 0;
  for (int j = 1; j < K; ++j) if (r[j] > r[a]) a = j;
  return a;
}

void softmax_case(int N, int K, bool special) {
  const size_t n = (size_t)N * K;
  V x = rnd(n, -5, 5), dy = rnd(n), y(n), dx(n), prob(n), dxe(n);
  if (special) {  // a NaN row, an inf row, an all -inf row (NaN on the CPU too)
    x[1] = kNaN;
    x[K + K / 2] = kInf;
    for (int j = 0; j < K; ++j) x[2 * K + j] = -kInf;
  }
  std::vector<int64_t> lab(N);
  for (auto& l : lab) l = std::uniform_int_distribution<int>(0, K - 1)(rng);
  pcn::softmax_forward(y.data(), x.data(), N, K);
  pcn::softmax_backward(dx.data(), dy.data(), y.data(), N, K);
  const std::string what = "softmax N" + std::to_string(N) + " K" + std::to_string(K) + (special ? " NaN/inf rows" : "");
  DF gx(x), gy(n), gdy(dy), gdx(n), cy(y), gprob(n), gdxe(n), gloss(1);
  Dev<double> rows(N);
  Dev<int64_t> glab(lab);
  if (call(what + " forward", [&] { gpu::softmax_forward(gy.p(), gx.p(), N, K); })) close(what + " forward y", gy.vec(), y);
  if (call(what + " backward", [&] { gpu::softmax_backward(gdx.p(), gdy.p(), cy.p(), N, K); })) close(what + " backward dx", gdx.vec(), dx);
  if (special) return;  // the CPU loss of a non-finite row is not a contract
  const double loss = pcn::softmax_xent_forward(prob.data(), x.data(), lab.data(), N, K);
  pcn::softmax_xent_backward(dxe.data(), prob.data(), lab.data(), N, K);
  DF cprob2(prob);
  if (call("softmax_xent" + what.substr(7) + " forward", [&] { gpu::softmax_xent_forward(gloss.p(), gprob.p(), gx.p(), glab.p(), N, K, rows.p()); })) {
    close("softmax_xent" + what.substr(7) + " forward loss", gloss.vec(), V{(float)loss});
    close("softmax_xent" + what.substr(7) + " forward prob", gprob.vec(), prob);
  }
  if (call("softmax_xent" + what.substr(7) + " backward", [&] { gpu::softmax_xent_backward(gdxe.p(), cprob2.p(), glab.p(), N, K); }))
    close("softmax_xent" + what.substr(7) + " backward dx", gdxe.vec(), dxe, 1e-6);
  // ops.cuh: a label outside [0, K) makes the loss NaN and adds no one-hot term
  std::vector<int64_t> bad = lab;
  bad[0] = K;
  bad[N - 1] = -1;
  Dev<int64_t> gbad(bad);
  V want = dxe;
  for (int j = 0; j < K; ++j) want[j] = prob[j] / N, want[(size_t)(N - 1) * K + j] = prob[(size_t)(N - 1) * K + j] / N;
  if (call("softmax_xent" + what.substr(7) + " labels outside [0, K)", [&] {
        gpu::softmax_xent_forward(gloss.p(), gprob.p(), gx.p(), gbad.p(), N, K, rows.p());
        gpu::softmax_xent_backward(gdxe.p(), cprob2.p(), gbad.p(), N, K);
      })) {
    close("softmax_xent" + what.substr(7) + " labels outside [0, K): loss NaN", gloss.vec(), V{kNaN});
    close("softmax_xent" + what.substr(7) + " labels outside [0, K): dx", gdxe.vec(), want, 1e-6);
  }
}

void top1_case(int N, int K) {
  V x = ints((size_t)N * K, -2, 2);  // ties
  std::uniform_int_distribution<int> pick(0, K - 1);
  for (int r = 0; r < N; ++r) {
    float* row = x.data() + (size_t)r * K;
    switch (r % 6) {
      case 1: row[pick(rng)] = kNaN; break;
      case 2: row[pick(rng)] = kNaN, row[pick(rng)] = kNaN; break;
      case 3: std::fill(row, row + K, -kInf); break;
      case 4: std::fill(row, row + K, kNaN); break;
      case 5: std::fill(row, row + K, 1.f); break;
    }
  }
  DF gx(x);
  Dev<int64_t> count(1);
  // every label value once for every row: the count at label t is the number of rows whose argmax is t
  const std::string what = "top1_count N" + std::to_string(N) + " K" + std::to_string(K) + " ties, NaN, -inf rows";
  std::string d;
  for (int t = 0; t < K && d.empty(); ++t) {
    std::vector<int64_t> lab(N, t);
    Dev<int64_t> glab(lab);
    int64_t want = 0;
    for (int r = 0; r < N; ++r) want += first_max(x.data() + (size_t)r * K, K) == t;
    if (!call(what, [&] { gpu::top1_count(count.p(), gx.p(), glab.p(), N, K); })) return;
    if (count.p()[0] != want)
      d = "label " + std::to_string(t) + ": " + std::to_string(count.p()[0]) + " rows, expected " + std::to_string(want);
  }
  report(what, d.empty(), d);
}

void test_softmax() {
  softmax_case(1, 1, false);
  softmax_case(3, 10, false);
  softmax_case(9, 33, true);
  softmax_case(17, 70, false);  // 3 blocks, the last with idle warps
  softmax_case(300, 3, false);  // xent_mean: threads sum rows t, t + 256
  for (int K : {1, 5, 32, 33, 70}) top1_case(K == 70 ? 13 : 24, K);
}

// ---- sgd: both rules, nesterov, frozen and empty segments, > 64 segments (two launches) ----
void test_sgd() {
  for (int rule : {0, 1})
    for (bool nest : {false, true})
      for (int nseg : {4, 1, 150}) {
        if (rule == 1 && nest) continue;
        std::vector<int64_t> off(nseg + 1);
        V lm(nseg), wm(nseg);
        std::uniform_int_distribution<int> len(0, 40);
        off[0] = nseg == 1 ? 3 : 0;
        for (int s = 0; s < nseg; ++s) {
          off[s + 1] = off[s] + (s == 1 ? 0 : len(rng));
          lm[s] = s % 5 == 2 ? 0.f : 0.5f + s % 3;
          wm[s] = (float)(s % 2);
        }
        const int64_t n = off[nseg] + 5;
        V w = rnd(n), v = rnd(n);
        const V g = rnd(n);
        DF gw(w), gv(v), gg(g);
        pcn::sgd_step(w.data(), v.data(), g.data(), off.data(), lm.data(), wm.data(), nseg, 0.1f, 0.9f, 1e-3f, nest, rule);
        char what[80];
        std::snprintf(what, sizeof what, "sgd_step rule%d nesterov%d segments%d", rule, nest, nseg);
        if (call(what, [&] {
              gpu::sgd_step(gw.p(), gv.p(), gg.p(), off.data(), lm.data(), wm.data(), nseg, 0.1f, 0.9f, 1e-3f, nest, rule);
            })) {
          close(std::string(what) + " w", gw.vec(), w, 1e-6);
          close(std::string(what) + " v", gv.vec(), v, 1e-6);
        }
      }
}

}  // namespace

int main(int argc, char** argv) {
  pcn::set_num_threads(1);  // the references single-threaded: the emulated blocks take the cores
  const struct { const char* name; void (*run)(); } groups[] = {
      {"gemm", test_gemm}, {"conv", test_conv}, {"local", test_local}, {"linear", test_linear},
      {"pool", test_pool}, {"lrn", test_lrn}, {"eltwise", test_eltwise}, {"dropout", test_dropout},
      {"softmax", test_softmax}, {"sgd", test_sgd}};
  int ran = 0;
  for (const auto& g : groups) {
    bool want = argc == 1;
    for (int i = 1; i < argc; ++i) want |= !std::strcmp(argv[i], g.name);
    if (!want) continue;
    ++ran;
    g.run();
  }
  if (ran != argc - 1 && argc > 1) {
    std::printf("unknown group among the arguments\n");
    return 2;
  }
  std::printf("%d checks, %d failed, %ld kernel launches\n", checks, fails, emu::launches);
  return fails ? 1 : 0;
}
