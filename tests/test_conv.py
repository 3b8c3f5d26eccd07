"""conv2d: the _core kernels, ops and the Conv2d layer against the float64 oracle, forward and
backward, on awkward geometries; the gradient rule; workspace chunking and thread counts; torch."""
import numpy as np
import pytest

import pyconvnet
from pyconvnet import _core, ops
from pyconvnet.nn import Conv2d

import reference as ref
from reference import assert_close, nan_like, randn

# N, C, H, W, OC, kernel, stride, padding, groups
CASES = [
    (2, 3, 7, 6, 4, (3, 3), (1, 1), (0, 0), 1),
    (3, 3, 9, 8, 5, (3, 2), (2, 2), (1, 1), 1),    # stride 2, padding, non-square kernel
    (1, 1, 5, 7, 2, (2, 3), (2, 1), (1, 0), 1),    # N=1, C=1, mixed stride/padding
    (2, 4, 6, 6, 6, (3, 3), (1, 1), (1, 1), 2),    # groups 2
    (3, 8, 5, 7, 4, (1, 3), (1, 2), (0, 1), 4),    # groups 4, 1x3 kernel
    (2, 4, 5, 5, 4, (3, 3), (2, 2), (1, 1), 4),    # depthwise
    (2, 3, 4, 5, 5, (1, 1), (1, 1), (0, 0), 1),    # pointwise fast path (no im2col)
    (3, 4, 4, 5, 6, (1, 1), (1, 1), (0, 0), 2),    # pointwise, grouped
    (2, 3, 5, 5, 2, (1, 1), (2, 2), (0, 0), 1),    # 1x1 but strided: im2col path
    (1, 2, 3, 3, 3, (5, 5), (1, 1), (1, 1), 1),    # kernel == padded input: 1x1 output
    (5, 2, 6, 5, 3, (3, 3), (3, 3), (2, 2), 1),    # stride 3, padding 2, odd batch
    (2, 2, 1, 1, 3, (3, 3), (1, 1), (1, 1), 1),    # 1x1 image, padded
]
IDS = ["N{}C{}H{}W{}OC{}k{}s{}p{}g{}".format(*c).replace(" ", "") for c in CASES]


def make(rng, case, bias=True):
    N, C, H, W, OC, k, s, p, g = case
    x = randn(rng, N, C, H, W)
    w = randn(rng, OC, C // g, *k)
    b = randn(rng, OC) if bias else None
    return x, w, b, s, p, g


def core_forward(x, w, b, s, p, g, slots=1):
    slot = _core.conv2d_slot_floats(x, w, s, p, g)
    ws = nan_like(slot * slots)                       # the kernel must not rely on a clean workspace
    y = nan_like((x.shape[0], w.shape[0], ref.out_size(x.shape[2], w.shape[2], s[0], p[0]),
                  ref.out_size(x.shape[3], w.shape[3], s[1], p[1])))
    _core.conv2d_forward(y, x, w, b, s, p, g, ws)
    return y


def core_backward(dx, dw, db, dy, x, w, s, p, g, slots=1):
    slot = _core.conv2d_slot_floats(x, w, s, p, g)
    _core.conv2d_backward(dx, dw, db, dy, x, w, s, p, g, nan_like(slot * slots))


@pytest.mark.parametrize("slots", [1, 2, 3])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_core_forward(rng, case, slots):
    x, w, b, s, p, g = make(rng, case)
    assert_close(core_forward(x, w, b, s, p, g, slots), ref.conv2d_forward(x, w, b, s, p, g))
    assert_close(core_forward(x, w, None, s, p, g, slots), ref.conv2d_forward(x, w, None, s, p, g))


@pytest.mark.parametrize("slots", [1, 2, 3])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_core_backward_accumulates_params_overwrites_dx(rng, case, slots):
    x, w, b, s, p, g = make(rng, case)
    dy = randn(rng, *ref.conv2d_forward(x, w, b, s, p, g).shape)
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, w, s, p, g)
    dx, dw0, db0 = nan_like(x.shape), randn(rng, *w.shape), randn(rng, *b.shape)
    dw, db = dw0.copy(), db0.copy()
    core_backward(dx, dw, db, dy, x, w, s, p, g, slots)
    assert_close(dx, rdx, msg="dx")
    assert_close(dw, dw0 + rdw, msg="dw")
    assert_close(db, db0 + rdb, msg="db")
    dx.fill(123.0)                                    # garbage in dx: must be overwritten
    core_backward(dx, dw, db, dy, x, w, s, p, g, slots)
    assert_close(dx, rdx, msg="dx (second call)")
    assert_close(dw, dw0 + 2 * rdw, msg="dw (second call)")
    assert_close(db, db0 + 2 * rdb, msg="db (second call)")


@pytest.mark.parametrize("which", ["dx", "dw", "db", "dx+db", "dw+db"])
@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[6]], ids=[IDS[1], IDS[3], IDS[6]])
def test_core_backward_subsets(rng, case, which):
    """A None gradient is skipped; the others are still right."""
    x, w, b, s, p, g = make(rng, case)
    dy = randn(rng, *ref.conv2d_forward(x, w, b, s, p, g).shape)
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, w, s, p, g)
    dx = nan_like(x.shape) if "dx" in which else None
    dw = np.zeros_like(w) if "dw" in which else None
    db = np.zeros_like(b) if "db" in which else None
    core_backward(dx, dw, db, dy, x, w, s, p, g, slots=2)
    for got, want in ((dx, rdx), (dw, rdw), (db, rdb)):
        if got is not None:
            assert_close(got, want)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_layer(rng, case):
    N, C, H, W, OC, k, s, p, g = case
    layer = Conv2d(C, OC, k, stride=s, padding=p, groups=g)
    layer.bias = randn(rng, OC)
    x = randn(rng, N, C, H, W)
    y = layer(x)
    assert y.dtype == np.float32
    assert_close(y, ref.conv2d_forward(x, layer.weight, layer.bias, s, p, g))
    dy = randn(rng, *y.shape)
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, layer.weight, s, p, g)
    dx = layer.backward(dy)
    assert_close(dx, rdx)
    assert_close(layer.weight_grad, rdw)
    assert_close(layer.bias_grad, rdb)
    dx2 = layer.backward(dy)                          # parameter grads accumulate, dx does not
    assert_close(dx2, rdx)
    assert_close(layer.weight_grad, 2 * rdw)
    assert_close(layer.bias_grad, 2 * rdb)
    layer.zero_grad()
    assert not layer.weight_grad.any() and not layer.bias_grad.any()


def test_layer_no_bias_and_no_input_grad(rng):
    layer = Conv2d(3, 4, (3, 2), stride=2, padding=1, bias=False)
    assert "bias" not in dict((n, p) for n, p, _ in layer.named_parameters())
    x = randn(rng, 2, 3, 7, 6)
    y = layer(x)
    assert_close(y, ref.conv2d_forward(x, layer.weight, None, 2, 1))
    layer.need_input_grad = False
    dy = randn(rng, *y.shape)
    assert layer.backward(dy) is None
    assert_close(layer.weight_grad, ref.conv2d_backward(dy, x, layer.weight, 2, 1)[1])


def test_ops_functional(rng):
    x, w, b, s, p, g = make(rng, CASES[3])
    y = ops.conv2d_forward(x, w, b, s, p, g)
    assert_close(y, ref.conv2d_forward(x, w, b, s, p, g))
    dy = randn(rng, *y.shape)
    dw, db = np.zeros_like(w), np.zeros_like(b)
    dx = ops.conv2d_backward(dy, x, w, dw, db, s, p, g)
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, w, s, p, g)
    assert_close(dx, rdx)
    assert_close(dw, rdw)
    assert_close(db, rdb)
    assert ops.conv2d_backward(dy, x, w, None, None, s, p, g, need_dx=False) is None


def _run_ops(x, w, b, dy, s, p, g):
    y = ops.conv2d_forward(x, w, b, s, p, g)
    dw, db = np.zeros_like(w), np.zeros_like(b)
    dx = ops.conv2d_backward(dy, x, w, dw, db, s, p, g)
    return y, dx, dw, db


CHUNK_CASES = [CASES[1], CASES[3], CASES[4], CASES[7], CASES[10]]


@pytest.mark.parametrize("case", CHUNK_CASES, ids=[IDS[CASES.index(c)] for c in CHUNK_CASES])
def test_workspace_limit_and_threads_give_same_results(rng, case, restore_settings):
    x, w, b, s, p, g = make(rng, case)
    x = np.concatenate([x, randn(rng, 4, *x.shape[1:])])     # at least 5 images: several chunks
    dy = randn(rng, *ref.conv2d_forward(x, w, b, s, p, g).shape)
    pyconvnet.set_num_threads(2)
    base = _run_ops(x, w, b, dy, s, p, g)
    want = (ref.conv2d_forward(x, w, b, s, p, g), *ref.conv2d_backward(dy, x, w, s, p, g))
    for got, r in zip(base, want):
        assert_close(got, r)
    for threads, limit in [(2, 4), (1, None), (1, 4), (2, None)]:
        pyconvnet.set_num_threads(threads)
        pyconvnet.set_workspace_limit(limit or 256 << 20)
        for name, got, b0 in zip(("y", "dx", "dw", "db"), _run_ops(x, w, b, dy, s, p, g), base):
            np.testing.assert_allclose(got, b0, rtol=1e-5, atol=1e-5 * np.abs(b0).max(),
                                       err_msg=f"{name} threads={threads} limit={limit}")


def test_small_workspace_fixture_matches_reference(rng, small_workspace):
    x, w, b, s, p, g = make(rng, CASES[3])
    y, dx, dw, db = _run_ops(x, w, b, randn(rng, 2, 6, 6, 6), s, p, g)
    assert_close(y, ref.conv2d_forward(x, w, b, s, p, g))


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[5], CASES[4]], ids=[IDS[1], IDS[3], IDS[5], IDS[4]])
def test_against_torch(rng, case):
    torch = pytest.importorskip("torch")
    x, w, b, s, p, g = make(rng, case)
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tw = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p, groups=g)
    y = ops.conv2d_forward(x, w, b, s, p, g)
    assert_close(y, ty.detach().numpy())
    dy = randn(rng, *y.shape)
    ty.backward(torch.tensor(dy, dtype=torch.float64))
    dw, db = np.zeros_like(w), np.zeros_like(b)
    dx = ops.conv2d_backward(dy, x, w, dw, db, s, p, g)
    assert_close(dx, tx.grad.numpy())
    assert_close(dw, tw.grad.numpy())
    assert_close(db, tb.grad.numpy())


def test_backward_when_the_runtime_grants_fewer_threads():
    """OpenMP may run a region with fewer threads than num_threads(S) asks for (OMP_THREAD_LIMIT,
    OMP_DYNAMIC under load, nesting). conv2d_backward must still sum only the weight-gradient
    slots that threads actually filled. Run in a child: the limit is read when libgomp loads."""
    from conftest import run_python
    code = """
import numpy as np
import reference as ref, pyconvnet
from pyconvnet import _core
pyconvnet.set_num_threads(2)
r = np.random.default_rng(0)
x = r.standard_normal((4, 2, 5, 5)).astype(np.float32)
for k in ((3, 3), (1, 1)):
    w = r.standard_normal((3, 2) + k).astype(np.float32)
    dy = r.standard_normal((4, 3, 6 - k[0], 6 - k[1])).astype(np.float32)
    slot = _core.conv2d_slot_floats(x, w, (1, 1), (0, 0), 1)
    dw = np.zeros_like(w)
    _core.conv2d_backward(None, dw, None, dy, x, w, (1, 1), (0, 0), 1, np.full(4 * slot, np.nan, np.float32))
    np.testing.assert_allclose(dw, ref.conv2d_backward(dy, x, w)[1], rtol=1e-4, atol=1e-4)
"""
    res = run_python(code, env={"OMP_THREAD_LIMIT": "1"})
    assert res.returncode == 0, res.stderr[-1500:]


def test_concurrent_python_threads(rng):
    """Kernels release the GIL and each Python thread has its own workspace: concurrent calls from
    several threads give the single-threaded results."""
    import threading
    x, w, b, s, p, g = make(rng, CASES[3])
    dy = randn(rng, *ref.conv2d_forward(x, w, b, s, p, g).shape)
    want = _run_ops(x, w, b, dy, s, p, g)
    errors = []

    def work():
        try:
            for _ in range(10):
                for got, w0 in zip(_run_ops(x, w, b, dy, s, p, g), want):
                    np.testing.assert_allclose(got, w0, rtol=1e-5, atol=1e-5 * np.abs(w0).max())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


@pytest.mark.parametrize("threads", [1, 2])
def test_thin_products_of_a_small_conv(rng, threads, restore_settings):
    """3 maps of 1x3x3 over 12 images of 27x27 (8,748 columns, not a multiple of 16): the forward
    and the input gradient take the thin-product kernel (few rows, many columns; its last partial
    strip too), the weight gradient the split-K dot products. All must match the reference and
    not depend on the thread count."""
    pyconvnet.set_num_threads(threads)
    x, w, b = randn(rng, 12, 1, 27, 27), randn(rng, 3, 1, 3, 3), randn(rng, 3)
    dy = randn(rng, 12, 3, 27, 27)
    dw0 = randn(rng, *w.shape)
    y = ops.conv2d_forward(x, w, b, 1, 1)
    dw, db = dw0.copy(), np.zeros_like(b)
    dx = ops.conv2d_backward(dy, x, w, dw, db, 1, 1)
    rdx, rdw, rdb = ref.conv2d_backward(dy, x, w, 1, 1, 1)
    assert_close(y, ref.conv2d_forward(x, w, b, 1, 1, 1))
    assert_close(dx, rdx)
    assert_close(dw, dw0 + rdw)
    assert_close(db, rdb)
    pyconvnet.set_num_threads(3 - threads)
    dw2 = dw0.copy()
    dx2 = ops.conv2d_backward(dy, x, w, dw2, np.zeros_like(b), 1, 1)
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(dx2, dx)
