"""Float64 numpy oracles for every pyconvnet kernel, written for clarity, not speed.

Shapes follow cpp/ops.h: x (N, C, H, W); conv2d weight (OC, C/groups, KH, KW); local2d weight
(OH, OW, OC, C, KH, KW) and bias (OC, OH, OW); linear weight (OUT, IN). Backward functions return
the gradients themselves (dx, dw, db), never accumulated: tests apply the accumulate rule.

The end of the file holds a few small helpers shared by the tests (tolerant comparison, poisoned
buffers), since tests/ only imports this module and conftest fixtures.
"""
import numpy as np


def pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def out_size(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def _pad(x, ph, pw, value=0.0):
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _windows(H, W, k, s, p):
    """(oh, ow, rows slice, cols slice) of each window, in padded coordinates."""
    (KH, KW), (SH, SW), (PH, PW) = pair(k), pair(s), pair(p)
    for oh in range(out_size(H, KH, SH, PH)):
        for ow in range(out_size(W, KW, SW, PW)):
            yield oh, ow, slice(oh * SH, oh * SH + KH), slice(ow * SW, ow * SW + KW)


# ---------------------------------------------------------------- convolution
def conv2d_forward(x, w, b=None, stride=1, padding=0, groups=1):
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    N, C, H, W = x.shape
    OC, Cg, KH, KW = w.shape
    (SH, SW), (PH, PW) = pair(stride), pair(padding)
    assert Cg * groups == C and OC % groups == 0
    OCg = OC // groups
    xp = _pad(x, PH, PW)
    y = np.zeros((N, OC, out_size(H, KH, SH, PH), out_size(W, KW, SW, PW)))
    for oh, ow, rs, cs in _windows(H, W, (KH, KW), stride, padding):
        for g in range(groups):
            patch = xp[:, g * Cg:(g + 1) * Cg, rs, cs]              # (N, Cg, KH, KW)
            y[:, g * OCg:(g + 1) * OCg, oh, ow] = np.einsum("nckl,ockl->no", patch, w[g * OCg:(g + 1) * OCg])
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def conv2d_backward(dy, x, w, stride=1, padding=0, groups=1):
    """(dx, dw, db) of sum(y * dy)."""
    dy, x, w = (np.asarray(a, np.float64) for a in (dy, x, w))
    N, C, H, W = x.shape
    OC, Cg, KH, KW = w.shape
    (PH, PW) = pair(padding)
    OCg = OC // groups
    xp = _pad(x, PH, PW)
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for oh, ow, rs, cs in _windows(H, W, (KH, KW), stride, padding):
        for g in range(groups):
            cin, cout = slice(g * Cg, (g + 1) * Cg), slice(g * OCg, (g + 1) * OCg)
            d = dy[:, cout, oh, ow]                                  # (N, OCg)
            dxp[:, cin, rs, cs] += np.einsum("no,ockl->nckl", d, w[cout])
            dw[cout] += np.einsum("no,nckl->ockl", d, xp[:, cin, rs, cs])
    dx = dxp[:, :, PH:PH + H, PW:PW + W]
    return dx, dw, dy.sum(axis=(0, 2, 3))


# ---------------------------------------------------------------- locally connected
def local2d_forward(x, w, b=None, stride=1, padding=0):
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    N, C, H, W = x.shape
    OH, OW, OC, C2, KH, KW = w.shape
    (PH, PW) = pair(padding)
    assert C2 == C
    xp = _pad(x, PH, PW)
    y = np.zeros((N, OC, OH, OW))
    for oh, ow, rs, cs in _windows(H, W, (KH, KW), stride, padding):
        y[:, :, oh, ow] = np.einsum("nckl,ockl->no", xp[:, :, rs, cs], w[oh, ow])
    if b is not None:
        y += np.asarray(b, np.float64)[None]
    return y


def local2d_backward(dy, x, w, stride=1, padding=0):
    dy, x, w = (np.asarray(a, np.float64) for a in (dy, x, w))
    N, C, H, W = x.shape
    OH, OW, OC, _, KH, KW = w.shape
    (PH, PW) = pair(padding)
    xp = _pad(x, PH, PW)
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for oh, ow, rs, cs in _windows(H, W, (KH, KW), stride, padding):
        d = dy[:, :, oh, ow]
        dxp[:, :, rs, cs] += np.einsum("no,ockl->nckl", d, w[oh, ow])
        dw[oh, ow] = np.einsum("no,nckl->ockl", d, xp[:, :, rs, cs])
    return dxp[:, :, PH:PH + H, PW:PW + W], dw, dy.sum(axis=0)


# ---------------------------------------------------------------- linear
def linear_forward(x, w, b=None):
    y = np.asarray(x, np.float64) @ np.asarray(w, np.float64).T
    return y if b is None else y + np.asarray(b, np.float64)


def linear_backward(dy, x, w):
    dy, x, w = (np.asarray(a, np.float64) for a in (dy, x, w))
    return dy @ w, dy.T @ x, dy.sum(axis=0)


# ---------------------------------------------------------------- pooling
def maxpool2d_forward(x, kernel_size, stride, padding=0):
    """(y, argmax): padding is -inf; argmax indexes the unpadded H*W plane (first max wins)."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    (KH, KW), (PH, PW) = pair(kernel_size), pair(padding)
    xp = _pad(x, PH, PW, -np.inf)
    OH, OW = out_size(H, KH, pair(stride)[0], PH), out_size(W, KW, pair(stride)[1], PW)
    y, am = np.zeros((N, C, OH, OW)), np.zeros((N, C, OH, OW), np.int64)
    for oh, ow, rs, cs in _windows(H, W, kernel_size, stride, padding):
        for n in range(N):
            for c in range(C):
                win = xp[n, c, rs, cs]
                i, j = np.unravel_index(np.argmax(win), win.shape)
                y[n, c, oh, ow] = win[i, j]
                am[n, c, oh, ow] = (rs.start + i - PH) * W + (cs.start + j - PW)
    return y, am


def maxpool2d_backward(dy, x, kernel_size, stride, padding=0):
    dy = np.asarray(dy, np.float64)
    N, C, H, W = x.shape
    _, am = maxpool2d_forward(x, kernel_size, stride, padding)
    dx = np.zeros((N, C, H * W))
    for n in range(N):
        for c in range(C):
            np.add.at(dx[n, c], am[n, c].ravel(), dy[n, c].ravel())
    return dx.reshape(N, C, H, W)


def avgpool2d_forward(x, kernel_size, stride, padding=0):
    """Zero padding counted: every window divides by KH*KW (count_include_pad)."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    (KH, KW), (PH, PW) = pair(kernel_size), pair(padding)
    xp = _pad(x, PH, PW)
    y = np.zeros((N, C, out_size(H, KH, pair(stride)[0], PH), out_size(W, KW, pair(stride)[1], PW)))
    for oh, ow, rs, cs in _windows(H, W, kernel_size, stride, padding):
        y[:, :, oh, ow] = xp[:, :, rs, cs].sum(axis=(2, 3)) / (KH * KW)
    return y


def avgpool2d_backward(dy, x_shape, kernel_size, stride, padding=0):
    dy = np.asarray(dy, np.float64)
    N, C, H, W = x_shape
    (KH, KW), (PH, PW) = pair(kernel_size), pair(padding)
    dxp = np.zeros((N, C, H + 2 * PH, W + 2 * PW))
    for oh, ow, rs, cs in _windows(H, W, kernel_size, stride, padding):
        dxp[:, :, rs, cs] += dy[:, :, oh, ow][:, :, None, None] / (KH * KW)
    return dxp[:, :, PH:PH + H, PW:PW + W]


# ---------------------------------------------------------------- local response normalization
def _lrn_window(c, C, size):
    return range(max(0, c - size // 2), min(C - 1, c + (size - 1) // 2) + 1)


def lrn_forward(x, size, alpha, beta, k):
    """PyTorch's convention: scale_c = k + alpha/size * sum_{c' in [c - size//2, c + (size-1)//2]} x_c'^2,
    y_c = x_c * scale_c^-beta. Returns (y, scale)."""
    x = np.asarray(x, np.float64)
    C = x.shape[1]
    scale = np.empty_like(x)
    for c in range(C):
        scale[:, c] = k + alpha / size * sum(x[:, cc] ** 2 for cc in _lrn_window(c, C, size))
    return x * scale ** -beta, scale


def lrn_backward(dy, x, size, alpha, beta, k):
    """Exact gradient by the chain rule over every (c, c') pair:
    dy_c'/dx_c = [c == c'] s_c'^-beta - beta x_c' s_c'^(-beta-1) * 2 alpha/size x_c [c in win(c')]."""
    dy, x = np.asarray(dy, np.float64), np.asarray(x, np.float64)
    C = x.shape[1]
    _, s = lrn_forward(x, size, alpha, beta, k)
    dx = np.zeros_like(x)
    for cp in range(C):               # output channel c'
        dx[:, cp] += dy[:, cp] * s[:, cp] ** -beta
        for c in _lrn_window(cp, C, size):
            dx[:, c] -= dy[:, cp] * beta * x[:, cp] * s[:, cp] ** (-beta - 1) * 2 * alpha / size * x[:, c]
    return dx


# ---------------------------------------------------------------- pointwise
def relu_forward(x):
    x = np.asarray(x, np.float64)
    return np.where(x > 0, x, 0.0)


def relu_backward(dy, x):
    return np.where(np.asarray(x) > 0, np.asarray(dy, np.float64), 0.0)


def sigmoid_forward(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))  # 1/(1+e^-x), overflow-free


def sigmoid_backward(dy, x):
    s = sigmoid_forward(x)
    return np.asarray(dy, np.float64) * s * (1 - s)


def tanh_forward(x):
    return np.tanh(np.asarray(x, np.float64))


def tanh_backward(dy, x):
    return np.asarray(dy, np.float64) * (1 - np.tanh(np.asarray(x, np.float64)) ** 2)


# ---------------------------------------------------------------- softmax
def softmax_forward(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_backward(dy, x):
    """J^T dy with J = diag(p) - p p^T, row by row."""
    p, dy = softmax_forward(x), np.asarray(dy, np.float64)
    return np.stack([(np.diag(pr) - np.outer(pr, pr)).T @ d for pr, d in zip(p, dy)])


def softmax_xent_forward(x, labels):
    """(mean over the batch of -log softmax(x)[label], softmax(x))."""
    x = np.asarray(x, np.float64)
    m = x.max(axis=1, keepdims=True)
    logp = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    N = x.shape[0]
    return -logp[np.arange(N), labels].mean(), np.exp(logp)


def softmax_xent_backward(x, labels):
    _, p = softmax_xent_forward(x, labels)
    N = x.shape[0]
    onehot = np.zeros_like(p)
    onehot[np.arange(N), labels] = 1.0
    return (p - onehot) / N


# ---------------------------------------------------------------- dropout
def dropout_forward(x, mask, p):
    return np.where(mask, np.asarray(x, np.float64) / (1 - p), 0.0)


# ---------------------------------------------------------------- SGD
def sgd_step(w, v, g, offsets, lr_mult, wd_mult, lr, momentum, wd, nesterov, rule):
    """One step; returns new (w, v) in float64. rule "torch"/0: d = g + wd*w; v = mu*v + d;
    w -= lr*(nesterov ? d + mu*v : v). rule "paper"/1: v = mu*v - wd*lr*w - lr*g; w += v.
    lr and wd are multiplied per segment [off[s], off[s+1]); a segment whose effective lr is 0 is
    frozen (weights AND velocity unchanged, as cpp/sgd.cpp documents). Elements outside every
    segment are untouched."""
    w, v, g = (np.array(a, np.float64) for a in (w, v, g))
    rule = {"torch": 0, "paper": 1}.get(rule, rule)
    for s in range(len(offsets) - 1):
        a, d, mu = lr * lr_mult[s], wd * wd_mult[s], momentum
        if a == 0:
            continue
        i = slice(offsets[s], offsets[s + 1])
        if rule == 1:
            v[i] = mu * v[i] - d * a * w[i] - a * g[i]
            w[i] += v[i]
        else:
            di = g[i] + d * w[i]
            v[i] = mu * v[i] + di
            w[i] -= a * (di + mu * v[i] if nesterov else v[i])
    return w, v


# ---------------------------------------------------------------- test helpers
def assert_close(actual, expected, rtol=1e-4, atol=1e-5, msg=""):
    """float32 result vs float64 oracle: |a - e| <= atol * max|e| + rtol * |e| elementwise, plus
    exact shape match and no NaN where the oracle has none (catches unwritten poisoned output)."""
    actual, expected = np.asarray(actual), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{msg} shape {actual.shape} != {expected.shape}"
    assert not np.isnan(actual[~np.isnan(expected)]).any(), f"{msg} NaN in output (unwritten?)"
    scale = max(np.abs(expected[np.isfinite(expected)]).max(initial=0.0), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=msg)


def nan_like(shape):
    """A float32 output buffer poisoned with NaN, so an element the kernel forgets shows up."""
    return np.full(shape, np.nan, np.float32)


def randn(rng, *shape, lo=0.1):
    """float32 normal values with |v| >= lo (never zero, away from the ReLU kink)."""
    v = rng.standard_normal(shape)
    v = np.where(np.abs(v) < lo, np.copysign(lo, v) + v, v)
    return v.astype(np.float32)
