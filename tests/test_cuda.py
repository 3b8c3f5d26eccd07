"""The CUDA backend. Tests that need a GPU skip by a RUNTIME check (pyconvnet.cuda.is_available(),
which counts devices through the driver), never by the build flag; they compare every _cuda kernel
with the _core kernel on the same random inputs, forward and backward, plus device arrays, both
GEMM backends, argument errors, device mixing, training and checkpoints across devices.

What runs everywhere: the module and availability checks, and the device-agnostic orchestration
(dispatch, Sequential.to, SGD, the train loop, checkpoints) on a SIMULATED device: arrays that wrap
numpy but refuse implicit conversion to numpy, served by the _core kernels. It proves that nothing
in pyconvnet/ converts a device array to numpy behind the user's back."""
import json
from pathlib import Path

import numpy as np
import pytest

import pyconvnet
from pyconvnet import _core, cli, cuda, models, nn, ops, optim
from pyconvnet.train import CKPT, Run

import reference as ref
from reference import assert_close, randn

F32 = np.float32
GPU = pytest.mark.skipif(not cuda.is_available(),
                         reason=f"no usable CUDA device at run time: {cuda.why_unavailable()}")
NO_GPU = pytest.mark.skipif(cuda.is_available(), reason="a CUDA device is present")
TRAIN = {"model": "lenet5", "data": "digits", "epochs": 1, "batch_size": 64, "lr": 0.05,
         "momentum": 0.9, "weight_decay": 5e-4, "rule": "torch", "schedule": "cosine",
         "seed": 3, "workers": 0}


# ------------------------------------------------------------------ everywhere
def test_cuda_module_has_every_core_kernel():
    if cuda._cuda is None:
        pytest.skip(f"pyconvnet._cuda is not built here: {cuda.why_unavailable()}")
    kernels = {n for n in dir(_core)
               if n.endswith(("_forward", "_backward", "_slot_floats")) or n == "sgd_step"}
    missing = kernels - set(dir(cuda._cuda))
    assert not missing, f"kernels of _core without a CUDA version: {sorted(missing)}"
    ok, why = cuda._cuda.device_usable()
    assert isinstance(ok, bool) and isinstance(why, str) and ok == (why == "")


def test_is_available_is_a_bool_and_never_raises():
    assert isinstance(cuda.is_available(), bool)
    assert isinstance(cuda.device_count(), int)
    why = cuda.why_unavailable()
    assert (why is None) == cuda.is_available()
    if why is not None:
        assert isinstance(why, str) and why


def test_to_numpy_keeps_0d_results():
    # a 0-d host result (the CPU's loss) stays 0-d, as a device scalar's .numpy() does; found when
    # the GPU tests first ran (on the emulated module) and compared the two
    assert ops.to_numpy(np.float32(2.5)).shape == () and ops.to_numpy(1.5).shape == ()
    t = np.zeros((2, 3), F32).T
    assert ops.to_numpy(t).flags.c_contiguous and ops.to_numpy(t).shape == (3, 2)


@NO_GPU
def test_without_a_gpu_device_arrays_raise_clearly():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        cuda.asarray(np.zeros(3, F32))
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        models.lenet5().to("cuda")


@NO_GPU
def test_cli_refuses_cuda_without_a_gpu(tmp_path):
    with pytest.raises(SystemExit, match="--device cuda is not available"):
        cli.main(["train", "--device", "cuda", "--epochs", "1", "--out", str(tmp_path), "--no-progress"])


# ------------------------------------------------------------------ the simulated device
class SimArray:
    """A stand-in for pyconvnet._cuda.DeviceArray over a numpy array: the same API, views
    included, and no implicit conversion to numpy."""
    device = "cuda"

    def __init__(self, a):
        assert a.flags.c_contiguous
        self._a = a

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)

    def __len__(self):
        return len(self._a)

    def reshape(self, *shape):
        return SimArray(self._a.reshape(*shape))

    def __getitem__(self, key):
        assert isinstance(key, int) or (isinstance(key, slice) and key.step in (None, 1))
        return SimArray(self._a[key])

    def numpy(self):
        return self._a.copy()

    def to(self, device):
        return self.numpy() if device == "cpu" else self

    def fill(self, v):
        self._a.fill(v)

    def copy_from(self, src):
        src = src._a if isinstance(src, SimArray) else np.ascontiguousarray(src, self.dtype)
        assert src.shape == self.shape
        np.copyto(self._a, src)

    def __float__(self):
        return float(self._a.item())

    def __int__(self):
        return int(self._a.item())

    def __imul__(self, s):
        self._a *= s
        return self

    def __array__(self, *args, **kwargs):
        raise TypeError("implicit conversion of a device array to numpy")


class SimBackend:
    """The _core kernels on SimArrays; a numpy array where a device array belongs is an error,
    as in _cuda (sgd_step's segment table excepted: it is host data there too)."""
    name = "cuda"

    def __getattr__(self, name):
        kernel = getattr(_core, name)

        def call(*args):
            for i, a in enumerate(args):
                if isinstance(a, np.ndarray) and not (name == "sgd_step" and i in (3, 4, 5)):
                    raise TypeError(f"{name}: argument {i} is a host array")
            return kernel(*[a._a if isinstance(a, SimArray) else a for a in args])
        return call

    empty = staticmethod(lambda shape, dtype=F32: SimArray(np.empty(shape, dtype)))
    zeros = staticmethod(lambda shape, dtype=F32: SimArray(np.zeros(shape, dtype)))
    empty_like = staticmethod(lambda a, dtype=None: SimArray(np.empty(a.shape, dtype or a.dtype)))
    zeros_like = staticmethod(lambda a, dtype=None: SimArray(np.zeros(a.shape, dtype or a.dtype)))

    def softmax_xent_forward(self, prob, logits, labels):
        return SimArray(np.array(self.__getattr__("softmax_xent_forward")(prob, logits, labels), F32))

    @staticmethod
    def top1_count(logits, labels):
        return SimArray(np.array((logits._a.argmax(axis=1) == labels._a).sum(), np.int64))


@pytest.fixture
def sim(monkeypatch):
    be = SimBackend()
    # the per-thread workspace cache is keyed by backend name: keep the simulated device's
    # workspace out of the cache that a real device would use afterwards
    from pyconvnet import _workspace
    monkeypatch.setattr(_workspace._local, "bufs", {}, raising=False)
    monkeypatch.setattr(cuda, "is_device_array", lambda a: isinstance(a, SimArray))
    monkeypatch.setattr(cuda, "backend", lambda: be)
    monkeypatch.setattr(cuda, "why_unavailable", lambda: None)
    monkeypatch.setattr(cuda, "asarray", lambda a, dtype=None: a if isinstance(a, SimArray)
                        else SimArray(np.array(a, dtype=dtype, order="C")))
    return be


def test_sim_training_equals_cpu_and_stays_on_the_device(sim):
    cpu, dev = Run(TRAIN), Run(TRAIN, device="cuda")
    assert dev.model.device == "cuda" and isinstance(dev.opt.velocity, SimArray)
    a = cpu.train_epoch(progress=False)
    b = dev.train_epoch(progress=False)   # reads the loss back every 10 steps
    # the device loss is a float32 scalar, as on the GPU
    assert np.array_equal(np.float32(a["step_losses"]), b["step_losses"]) and a["acc"] == b["acc"]
    assert np.array_equal(cpu.model.flat_params, dev.model.flat_params.numpy())
    for layer in dev.model.layers:        # every parameter is still a view of the flat buffer
        for _, p, g in layer.named_parameters():
            assert isinstance(p, SimArray) and isinstance(g, SimArray)
            assert np.shares_memory(p._a, dev.model.flat_params._a)
    from pyconvnet.train import evaluate
    e_cpu, e_dev = evaluate(cpu.model, cpu.test_set), evaluate(dev.model, dev.test_set)
    assert e_cpu["top1"] == e_dev["top1"] and e_cpu["loss"] == pytest.approx(e_dev["loss"], rel=1e-6)


def test_sim_checkpoints_cross_devices(sim, tmp_path):
    dev = Run(TRAIN, device="cuda")
    dev.fit(str(tmp_path), progress=False, log=lambda s: None)
    on_cpu = Run.load(str(tmp_path / CKPT))
    assert on_cpu.model.device == "cpu"
    assert np.array_equal(on_cpu.model.flat_params, dev.model.flat_params.numpy())
    assert np.array_equal(on_cpu.opt.velocity, dev.opt.velocity.numpy())
    back = Run.load(str(tmp_path / CKPT), device="cuda")
    assert np.array_equal(back.model.flat_params.numpy(), on_cpu.model.flat_params)


def test_sim_load_state_dict_takes_device_arrays(sim, rng):
    """Device arrays load as they are, into a model on either device (no np.asarray on them)."""
    src = models.lenet5()
    dev_state = {k: cuda.asarray(v) for k, v in src.state_dict().items()}
    for device in ("cpu", "cuda"):
        m = models.lenet5()
        nn.init.seed(1)
        m.to(device)
        m.load_state_dict(dev_state)
        for k, v in m.state_dict().items():
            np.testing.assert_array_equal(v, src.state_dict()[k], err_msg=f"{k} on {device}")


def test_sim_model_to_and_back(sim, rng):
    m = models.lenet5()
    x = randn(rng, 2, 1, 28, 28)
    y0 = m(x)
    assert m.to("cuda") is m and m.device == "cuda"
    y1 = m(cuda.asarray(x))
    assert isinstance(y1, SimArray) and np.array_equal(y1.numpy(), y0)
    m[0].weight = np.ones(m[0].weight.shape, F32)        # assignment copies into device storage
    assert np.all(m.flat_params.numpy()[:m[0].weight.size] == 1)
    state = m.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    m.to("cpu")
    assert isinstance(m.flat_params, np.ndarray) and np.shares_memory(m[0].weight, m.flat_params)
    assert all(np.array_equal(state[n], p) for n, p, _ in m.named_parameters())


def test_sim_mixing_devices_raises(sim, rng):
    x, w = randn(rng, 2, 3, 5, 5), randn(rng, 4, 3, 3, 3)
    with pytest.raises(ValueError, match="cpu and cuda"):
        ops.conv2d_forward(x, cuda.asarray(w))
    layer = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="cuda and cpu"):
        layer(cuda.asarray(randn(rng, 4, 3)))


# ------------------------------------------------------------------ GPU: device arrays
@GPU
def test_device_array_basics(rng):
    x = randn(rng, 4, 3, 5)
    a = cuda.asarray(x)
    assert a.shape == (4, 3, 5) and a.dtype == F32 and a.size == 60 and a.ndim == 3 and len(a) == 4
    assert np.array_equal(a.numpy(), x) and np.array_equal(a.to("cpu"), x) and a.to("cuda") is a
    v = a.reshape(-1)
    assert v.shape == (60,) and v.ptr == a.ptr
    assert np.array_equal(a[1].numpy(), x[1]) and np.array_equal(a[1:3].numpy(), x[1:3])
    assert np.array_equal(v[7:19].numpy(), x.reshape(-1)[7:19]) and v[7:19].ptr == a.ptr + 28
    v[7:19] = 0.5                         # writes through the view
    x.reshape(-1)[7:19] = 0.5
    assert np.array_equal(a.numpy(), x)
    b = cuda.empty((4, 3, 5))
    b.copy_from(a)
    assert np.array_equal(b.numpy(), x)
    b.fill(2.0)
    assert np.all(b.numpy() == 2.0)
    b.copy_from(np.ones((4, 3, 5)))       # host data, converted to float32
    assert np.all(b.numpy() == 1.0)
    assert float(cuda.asarray(np.array([3.5], F32))) == 3.5
    with pytest.raises(TypeError, match="numpy"):
        np.asarray(a)
    with pytest.raises(ValueError, match="step 1"):
        a[::2]
    with pytest.raises(ValueError, match="cannot reshape"):
        a.reshape(7, -1)
    with pytest.raises(ValueError, match="shape"):
        b.copy_from(cuda.empty((3, 4, 5)))
    for dt in (np.int64, np.int32, np.uint8, np.float64):
        h = (rng.random(10) * 100).astype(dt)
        assert np.array_equal(cuda.asarray(h).numpy(), h)


@GPU
def test_uploads_in_flight_keep_their_data(rng):
    # Uploads go through two pinned buffers without waiting for the GPU: many back to back, of
    # growing and shrinking sizes, each followed by a kernel that reads it and with the host
    # array overwritten at once (the copy must have taken it), must all arrive intact; one above
    # the staging limit (128 MiB) takes the synchronous path.
    host = np.empty(1 << 20, F32)
    sent, outs = [], []
    for i, n in enumerate([10, 1 << 20, 3, 5000, 1 << 19, 1 << 20, 7, 1 << 20]):
        host[:n] = rng.standard_normal(n, dtype=F32)
        sent.append(host[:n].copy())
        a = cuda.asarray(host[:n])
        host[:n] = np.nan
        outs.append(ops.relu_forward(a))
    for s, o in zip(sent, outs):
        assert np.array_equal(o.numpy(), np.maximum(s, 0))
    big = np.arange((129 << 20) // 4, dtype=F32)
    assert np.array_equal(cuda.asarray(big).numpy()[-5:], big[-5:])


def _dltensor(capsule):
    """(data, (device type, id), shape, strides, (code, bits, lanes)) of a "dltensor" capsule,
    read with ctypes as a consumer would; the capsule stays unconsumed (its destructor frees it)."""
    import ctypes

    class DLTensor(ctypes.Structure):
        _fields_ = [("data", ctypes.c_void_p), ("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32),
                    ("ndim", ctypes.c_int32), ("code", ctypes.c_uint8), ("bits", ctypes.c_uint8),
                    ("lanes", ctypes.c_uint16), ("shape", ctypes.POINTER(ctypes.c_int64)),
                    ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]

    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    t = DLTensor.from_address(get(capsule, b"dltensor"))  # DLManagedTensor starts with its DLTensor
    return (t.data + t.byte_offset, (t.device_type, t.device_id), tuple(t.shape[:t.ndim]),
            tuple(t.strides[:t.ndim]), (t.code, t.bits, t.lanes))


@GPU
def test_cuda_array_interface_and_dlpack():
    a = cuda.asarray(np.arange(12, dtype=F32).reshape(3, 4))
    cai = a.__cuda_array_interface__
    assert cai["version"] == 3 and cai["shape"] == (3, 4) and cai["typestr"] == "<f4"
    assert cai["data"] == (a.ptr, False) and cai["strides"] is None
    assert a.__dlpack_device__() == (2, 0)
    view = a[1:]
    data, device, shape, strides, dtype = _dltensor(view.__dlpack__())
    assert (data, device, shape, strides, dtype) == (a.ptr + 16, (2, 0), (2, 4), (4, 1), (2, 32, 1))
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():     # a CPU build of torch (or the emulated device)
        pytest.skip("torch has no CUDA: the zero-copy exchange with torch is not checked")
    t = torch.from_dlpack(a)              # no copy: same memory
    assert t.device.type == "cuda" and t.data_ptr() == a.ptr and tuple(t.shape) == (3, 4)
    t.mul_(2)
    torch.cuda.synchronize()
    assert np.array_equal(a.numpy(), 2 * np.arange(12, dtype=F32).reshape(3, 4))
    view = a[1:]
    t2 = torch.from_dlpack(view)
    del a, view                           # the capsule keeps the block alive
    assert t2.data_ptr() != 0 and torch.equal(t2.cpu(), torch.tensor([[8., 10, 12, 14], [16, 18, 20, 22]]))


@GPU
def test_caching_allocator_stops_mallocs_after_the_first_step(rng):
    m = models.lenet5().to("cuda")
    opt = optim.SGD(m, 0.01)
    crit = nn.SoftmaxCrossEntropy()
    x, y = randn(rng, 16, 1, 28, 28), rng.integers(0, 10, 16).astype(np.int64)

    def step():
        loss = crit(m(cuda.asarray(x)), cuda.asarray(y))
        m.zero_grad()
        m.backward(crit.backward())
        opt.step()
        return loss
    for _ in range(2):
        step()
    before = cuda.memory_stats()["mallocs"]
    for _ in range(5):
        step()
    cuda.synchronize()
    assert cuda.memory_stats()["mallocs"] == before


# ------------------------------------------------------------------ GPU: GEMM
@GPU
@pytest.mark.parametrize("backend", ["ours", "cublas"])
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (7, 5, 3), (130, 129, 17), (64, 300, 0),
                                   (128, 64, 5000), (257, 3, 1031),
                                   # enough 128-tiles to fill an H100/H200: the big-tile kernel,
                                   # its float4 fast path (aligned, K % 8 == 0) and its edges
                                   (1536, 1536, 64), (1537, 1540, 37)])
def test_sgemm(rng, backend, ta, tb, M, N, K):
    if backend == "cublas" and cuda.why_no_cublas():
        pytest.skip(f"cuBLAS not loadable: {cuda.why_no_cublas()}")
    was = cuda.gemm_backend()
    cuda.set_gemm_backend(backend)
    try:
        a = randn(rng, *((K, M) if ta else (M, K)))
        b = randn(rng, *((N, K) if tb else (K, N)))
        c0 = randn(rng, M, N)
        want = (a.T if ta else a) @ (b.T if tb else b)
        for alpha, beta in [(1.0, 0.0), (0.5, 2.0)]:
            c = cuda.asarray(c0 if beta else np.full((M, N), np.nan, F32))
            cuda.sgemm(c, cuda.asarray(a), cuda.asarray(b), ta, tb, alpha, beta)
            assert_close(c.numpy(), alpha * want.astype(np.float64) + beta * c0, msg=f"{backend} alpha={alpha}")
    finally:
        cuda.set_gemm_backend(was)


@GPU
def test_gemm_backend_switch():
    assert cuda.gemm_backend() in ("ours", "cublas")
    with pytest.raises(ValueError, match="'ours' or 'cublas'"):
        cuda.set_gemm_backend("magma")


# ------------------------------------------------------------------ GPU: every op, CUDA vs CPU
def _unpack(r):
    """A result or a tuple of results as a tuple of numpy arrays (None stays None)."""
    if isinstance(r, tuple):
        return tuple(_unpack(t)[0] for t in r)
    return (None if r is None else ops.to_numpy(r),)


def both(fn, *arrays):
    """fn on the host arrays and on device copies of them (made first: fn may accumulate into
    its arguments); the device results come back as numpy."""
    dev_args = [cuda.asarray(a) if isinstance(a, np.ndarray) else a for a in arrays]
    host = fn(*arrays)
    dev = fn(*dev_args)
    return _unpack(host), _unpack(dev)


def close_all(host, dev, rtol=1e-4, atol=1e-5):
    for i, (h, d) in enumerate(zip(host, dev)):
        if h is None:
            assert d is None
        elif np.ndim(h) == 0:
            assert abs(float(d) - float(h)) <= atol + rtol * abs(float(h)), f"output {i}"
        else:
            assert_close(d, h, rtol=rtol, atol=atol, msg=f"output {i}")


CONV = [  # N, C, H, W, OC, kernel, stride, padding, groups
    (2, 3, 7, 6, 4, (3, 3), (1, 1), (0, 0), 1),
    (3, 3, 9, 8, 5, (3, 2), (2, 2), (1, 1), 1),
    (1, 1, 5, 7, 2, (2, 3), (2, 1), (1, 0), 1),
    (2, 4, 6, 6, 6, (3, 3), (1, 1), (1, 1), 2),
    (3, 8, 5, 7, 4, (1, 3), (1, 2), (0, 1), 4),
    (2, 3, 4, 5, 5, (1, 1), (1, 1), (0, 0), 1),
    (1, 2, 3, 3, 3, (5, 5), (1, 1), (1, 1), 1),
    (5, 2, 6, 5, 3, (3, 3), (3, 3), (2, 2), 1),
    (4, 3, 23, 23, 16, (11, 11), (4, 4), (0, 0), 1),  # conv1-like
    (3, 8, 13, 13, 12, (3, 3), (1, 1), (1, 1), 2),
]


@GPU
@pytest.mark.parametrize("limit", [256 << 20, 4])   # whole batch, then one image per chunk
@pytest.mark.parametrize("case", CONV)
def test_conv2d(rng, case, limit, restore_settings):
    pyconvnet.set_workspace_limit(limit)
    N, C, H, W, OC, k, s, p, g = case
    x, w, b = randn(rng, N, C, H, W), randn(rng, OC, C // g, *k), randn(rng, OC)
    host, dev = both(lambda x, w, b: ops.conv2d_forward(x, w, b, s, p, g), x, w, b)
    close_all(host, dev)
    dy = randn(rng, *host[0].shape)
    dw0, db0 = randn(rng, *w.shape), randn(rng, OC)     # gradients accumulate onto these

    def bw(dy, x, w, dw, db):
        dx = ops.conv2d_backward(dy, x, w, dw, db, s, p, g)
        return dx, dw, db
    host, dev = both(bw, dy, x, w, dw0.copy(), db0.copy())
    close_all(host, dev)


LOCAL = [(2, 3, 6, 5, 4, (3, 3), (1, 1), (0, 0)), (3, 2, 7, 7, 3, (3, 2), (2, 2), (1, 1)),
         (1, 1, 4, 4, 2, (4, 4), (1, 1), (0, 0))]


@GPU
@pytest.mark.parametrize("limit", [256 << 20, 4])
@pytest.mark.parametrize("case", LOCAL)
def test_local2d(rng, case, limit, restore_settings):
    pyconvnet.set_workspace_limit(limit)
    N, C, H, W, OC, k, s, p = case
    OH, OW = ref.out_size(H, k[0], s[0], p[0]), ref.out_size(W, k[1], s[1], p[1])
    x, w, b = randn(rng, N, C, H, W), randn(rng, OH, OW, OC, C, *k), randn(rng, OC, OH, OW)
    host, dev = both(lambda x, w, b: ops.local2d_forward(x, w, b, s, p), x, w, b)
    close_all(host, dev)

    def bw(dy, x, w, dw, db):
        return ops.local2d_backward(dy, x, w, dw, db, s, p), dw, db
    host, dev = both(bw, randn(rng, N, OC, OH, OW), x, w, randn(rng, *w.shape), randn(rng, *b.shape))
    close_all(host, dev)


@GPU
@pytest.mark.parametrize("N,IN,OUT", [(1, 1, 1), (5, 7, 3), (16, 300, 129), (128, 1024, 64)])
def test_linear(rng, N, IN, OUT):
    x, w, b = randn(rng, N, IN), randn(rng, OUT, IN), randn(rng, OUT)
    close_all(*both(ops.linear_forward, x, w, b))

    def bw(dy, x, w, dw, db):
        return ops.linear_backward(dy, x, w, dw, db), dw, db
    close_all(*both(bw, randn(rng, N, OUT), x, w, randn(rng, OUT, IN), randn(rng, OUT)))


POOL = [((2, 3, 7, 7), 3, 2, 0), ((1, 2, 6, 5), 2, 2, 1), ((2, 1, 5, 6), (3, 2), (1, 2), (1, 1)),
        ((3, 4, 13, 13), 3, 2, 0), ((1, 1, 1, 1), 1, 1, 0)]


@GPU
@pytest.mark.parametrize("shape,k,s,p", POOL)
def test_pooling(rng, shape, k, s, p):
    x = randn(rng, *shape)
    x[0, 0, 0, :2] = 7.0                           # ties: the first maximum wins on both devices
    host, dev = both(lambda x: ops.maxpool2d_forward(x, k, s, p), x)
    assert np.array_equal(host[0], dev[0]) and np.array_equal(host[1], dev[1])
    dy = randn(rng, *host[0].shape)
    h = ops.maxpool2d_backward(dy, host[1], shape, k, s, p)
    d = ops.maxpool2d_backward(cuda.asarray(dy), cuda.asarray(host[1]), shape, k, s, p)
    assert np.array_equal(h, d.numpy())           # gathered in the CPU's order: bit-equal
    close_all(*both(lambda x: ops.avgpool2d_forward(x, k, s, p), x))
    close_all(*both(lambda dy: ops.avgpool2d_backward(dy, shape, k, s, p), dy))


@GPU
@pytest.mark.parametrize("shape,size,alpha,beta,k", [((2, 7, 3, 4), 5, 5e-4, 0.75, 2.0),
                                                     ((1, 3, 5, 5), 4, 1e-2, 0.5, 1.0),
                                                     ((2, 6, 2, 3), 3, 1e-1, 0.6, 1.5)])
def test_lrn(rng, shape, size, alpha, beta, k):
    x = randn(rng, *shape) * 3
    host, dev = both(lambda x: ops.lrn_forward(x, size, alpha, beta, k), x)
    close_all(host, dev)
    dy = randn(rng, *shape)
    close_all(*both(lambda dy, x, y, sc: ops.lrn_backward(dy, x, y, sc, size, alpha, beta),
                    dy, x, host[0], host[1]))


@GPU
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_pointwise(rng, name):
    fw, bw = getattr(ops, name + "_forward"), getattr(ops, name + "_backward")
    x = randn(rng, 3, 5, 7) * 3
    host, dev = both(fw, x)
    close_all(host, dev)
    close_all(*both(bw, randn(rng, 3, 5, 7), host[0]))


@GPU
def test_dropout_masks_equal_the_cpu(rng):
    x = randn(rng, 4, 1000)
    for p, seed in [(0.5, 1), (0.1, 2**63 + 5), (0.0, 7)]:
        host, dev = both(lambda x: ops.dropout_forward(x, p, seed), x)
        assert np.array_equal(host[1], dev[1]) and np.array_equal(host[0], dev[0])
        close_all(*both(lambda dy, m: ops.dropout_backward(dy, m, p), randn(rng, 4, 1000), host[1]))


@GPU
@pytest.mark.parametrize("N,K", [(1, 1), (3, 10), (128, 1000), (5, 4099)])
def test_softmax_and_cross_entropy(rng, N, K):
    x = randn(rng, N, K) * 5
    labels = rng.integers(0, K, N).astype(np.int64)
    host, dev = both(ops.softmax_forward, x)
    close_all(host, dev)
    close_all(*both(ops.softmax_backward, randn(rng, N, K), host[0]))
    host, dev = both(ops.softmax_xent_forward, x, labels)
    close_all(host, dev, rtol=1e-5)
    close_all(*both(ops.softmax_xent_backward, host[1], labels))
    assert int(ops.top1_count(cuda.asarray(x), cuda.asarray(labels))) == ops.top1_count(x, labels)


@GPU
def test_cross_entropy_bad_label_on_device_is_nan_not_a_crash(rng):
    loss, _ = ops.softmax_xent_forward(cuda.asarray(randn(rng, 3, 4)), cuda.asarray(np.array([0, 9, 1])))
    assert np.isnan(float(loss))


@GPU
@pytest.mark.parametrize("rule,nesterov", [(0, False), (0, True), (1, False)])
def test_sgd_step(rng, rule, nesterov):
    n = 1000
    w, v, g = randn(rng, n), randn(rng, n), randn(rng, n)
    off = np.array([0, 100, 100, 600, 1000], np.int64)    # an empty segment, a frozen one
    lr_mult, wd_mult = np.array([1, 2, 0, 0.5], F32), np.array([1, 0, 1, 2], F32)
    hw, hv = w.copy(), v.copy()
    _core.sgd_step(hw, hv, g, off, lr_mult, wd_mult, 0.1, 0.9, 1e-3, nesterov, rule)
    dw, dv = cuda.asarray(w), cuda.asarray(v)
    cuda._cuda.sgd_step(dw, dv, cuda.asarray(g), off, lr_mult, wd_mult, 0.1, 0.9, 1e-3, nesterov, rule)
    assert_close(dw.numpy(), hw, rtol=1e-6)
    assert_close(dv.numpy(), hv, rtol=1e-6)


# ------------------------------------------------------------------ GPU: errors and mixing
def _same_error(call_core, call_cuda, upto=None):
    """Both raise the same error type with the same message (its first `upto` characters)."""
    with pytest.raises((ValueError, TypeError)) as a:
        call_core()
    with pytest.raises((ValueError, TypeError)) as b:
        call_cuda()
    assert type(a.value) is type(b.value) and str(a.value)[:upto] == str(b.value)[:upto]


@GPU
def test_bad_input_gets_the_same_errors(rng):
    x, w, b = randn(rng, 2, 3, 5, 5), randn(rng, 4, 2, 3, 3), randn(rng, 4)
    X, Wt, B = cuda.asarray(x), cuda.asarray(w), cuda.asarray(b)
    y, Y = np.empty((2, 4, 3, 3), F32), cuda.empty((2, 4, 3, 3))
    ws, WS = np.empty(10**5, F32), cuda.empty(10**5)
    _same_error(lambda: _core.conv2d_forward(y, x, w, b, (1, 1), (0, 0), 1, ws),      # channels
                lambda: cuda._cuda.conv2d_forward(Y, X, Wt, B, (1, 1), (0, 0), 1, WS))
    w3 = randn(rng, 4, 3, 3, 3)
    _same_error(lambda: _core.conv2d_forward(y, x, w3, b, (0, 1), (0, 0), 1, ws),     # stride 0
                lambda: cuda._cuda.conv2d_forward(Y, X, cuda.asarray(w3), B, (0, 1), (0, 0), 1, WS))
    _same_error(lambda: _core.conv2d_forward(y, x, w3, b, (1, 1), (0, 0), 1, ws[:3]),  # workspace
                lambda: cuda._cuda.conv2d_forward(Y, X, cuda.asarray(w3), B, (1, 1), (0, 0), 1, WS[:3]),
                upto=len("conv2d_forward: workspace holds 3 floats, needs at least"))  # slots differ
    with pytest.raises(ValueError, match="workspace must start 16-byte aligned"):  # CUDA only
        cuda._cuda.conv2d_forward(Y, X, cuda.asarray(w3), B, (1, 1), (0, 0), 1, WS[1:])
    _same_error(lambda: _core.relu_forward(np.empty(3, F32), x.astype(np.float64)),    # dtype
                lambda: cuda._cuda.relu_forward(cuda.empty(3), cuda.asarray(x.astype(np.float64))))
    _same_error(lambda: _core.maxpool2d_forward(y, y.astype(np.int32), x, (2, 2), (1, 1), (2, 2)),
                lambda: cuda._cuda.maxpool2d_forward(Y, cuda.empty(Y.shape, np.int32), X, (2, 2), (1, 1), (2, 2)))
    _same_error(lambda: _core.dropout_forward(x, x.astype(np.uint8), x, 1.5, 0),
                lambda: cuda._cuda.dropout_forward(X, cuda.empty(x.shape, np.uint8), X, 1.5, 0))
    lab = np.zeros(3, np.int64)
    _same_error(lambda: _core.softmax_xent_forward(np.empty((2, 4), F32), randn(rng, 2, 4), lab),
                lambda: cuda._cuda.softmax_xent_forward(cuda.empty(()), cuda.empty((2, 4)),
                                                        cuda.asarray(randn(rng, 2, 4)), cuda.asarray(lab)))
    # and through the layers
    for layer in (nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.LocalResponseNorm(3), nn.Linear(6, 4)):
        with pytest.raises((ValueError, TypeError)) as a:
            layer(randn(rng, 2, 5, 3))
        with pytest.raises((ValueError, TypeError)) as b:
            layer(cuda.asarray(randn(rng, 2, 5, 3)))
        assert str(a.value) == str(b.value)


@GPU
def test_arrays_on_two_devices_raise(rng):
    x, w = randn(rng, 2, 3, 5, 5), randn(rng, 4, 3, 3, 3)
    with pytest.raises(ValueError, match="cpu and cuda"):
        ops.conv2d_forward(x, cuda.asarray(w))
    with pytest.raises(ValueError, match="cuda and cpu"):
        ops.linear_backward(cuda.asarray(randn(rng, 2, 4)), cuda.asarray(randn(rng, 2, 3)),
                            cuda.asarray(randn(rng, 4, 3)), dw=np.zeros((4, 3), F32))
    with pytest.raises(TypeError, match="device array"):
        cuda._cuda.relu_forward(cuda.empty(3), np.zeros(3, F32))


# ------------------------------------------------------------------ GPU: training
def _steps(model, device, k, rng_seed=0, batch=8, shape=(1, 28, 28), classes=10):
    rng = np.random.default_rng(rng_seed)
    model.to(device)
    opt, crit = optim.SGD(model, 0.01, momentum=0.9, weight_decay=5e-4), nn.SoftmaxCrossEntropy()
    losses = []
    for _ in range(k):
        x = rng.standard_normal((batch, *shape)).astype(F32)
        y = rng.integers(0, classes, batch).astype(np.int64)
        loss = crit(model(ops.to_device(x, device)), ops.to_device(y, device))
        model.zero_grad()
        model.backward(crit.backward())
        opt.step()
        losses.append(loss)
    return [float(l) for l in losses], ops.to_numpy(model.flat_params)


@GPU
@pytest.mark.parametrize("backend", ["ours", "cublas"])
@pytest.mark.parametrize("name", ["lenet5", "alexnet_small"])
def test_training_cpu_vs_gpu(name, backend):
    if backend == "cublas" and cuda.why_no_cublas():
        pytest.skip(f"cuBLAS not loadable: {cuda.why_no_cublas()}")
    build = (lambda: models.lenet5()) if name == "lenet5" else (lambda: models.alexnet_small(10, 32))
    shape = (1, 28, 28) if name == "lenet5" else (3, 32, 32)
    nn.init.seed(1)
    cpu = _steps(build(), "cpu", 5, shape=shape)
    was = cuda.gemm_backend()
    cuda.set_gemm_backend(backend)  # every product of the steps: conv, local and linear
    try:
        nn.init.seed(1)
        gpu = _steps(build(), "cuda", 5, shape=shape)  # same init, data and dropout masks
    finally:
        cuda.set_gemm_backend(was)
    np.testing.assert_allclose(gpu[0], cpu[0], rtol=1e-4)
    assert_close(gpu[1], cpu[1], rtol=1e-3, atol=1e-4)


@GPU
def test_bench_models_on_the_gpu(tmp_path):
    # each step is checked first (loss, gradients and the SGD update against float64 PyTorch on
    # the CPU, when torch is installed), then timed with a synchronize before each clock stop
    cli.main(["bench", "models", "--device", "cuda", "--quick", "--repeat", "1", "--out", str(tmp_path),
              "--no-progress"])
    result = json.loads((tmp_path / "models.json").read_text())
    assert result["device"] == "cuda" and [r["model"] for r in result["rows"]] == ["lenet5", "alexnet_small"]
    assert all(r["ms"] > 0 and r["images_per_s"] > 0 for r in result["rows"])


@GPU
def test_bench_ops_on_the_gpu(tmp_path, monkeypatch):
    # every timed op is first checked (against PyTorch when installed, else numpy); the AlexNet
    # pooling, LRN and softmax cases, and a small grouped conv (conv3 is minutes under emulation)
    from pyconvnet import bench_cli
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))  # an installed package
    shapes = bench_cli._alexnet_shapes()
    monkeypatch.setitem(shapes.CASES, "conv_small", lambda: shapes.Conv("conv_small", 4, 9, 6, 3, padding=1, groups=2))
    monkeypatch.setattr(bench_cli, "QUICK_OPS", ("conv_small", "maxpool", "lrn", "softmax_xent"))
    cli.main(["bench", "ops", "--device", "cuda", "--quick", "--repeat", "1", "--out", str(tmp_path), "--no-progress"])
    rows = json.loads((tmp_path / "ops.json").read_text())["rows"]
    assert [(r["op"], r["pass"]) for r in rows[:2]] == [("conv_small", "fwd"), ("conv_small", "fwd+bwd")]
    assert len(rows) == 8 and all(r["ms"] > 0 for r in rows)


@GPU
def test_run_on_gpu_and_checkpoints_both_ways(tmp_path):
    cpu = Run(TRAIN).train_epoch(progress=False)
    dev = Run(TRAIN, device="cuda")
    got = dev.train_epoch(progress=False)
    np.testing.assert_allclose(got["step_losses"], cpu["step_losses"], rtol=1e-2)
    dev.epoch = 1
    dev.save(str(tmp_path))
    on_cpu = Run.load(str(tmp_path / CKPT))
    assert np.array_equal(on_cpu.model.flat_params, dev.model.flat_params.numpy())
    back = Run.load(str(tmp_path / CKPT), device="cuda")
    assert np.array_equal(back.model.flat_params.numpy(), on_cpu.model.flat_params)
    cli.main(["train", "--device", "cuda", "--epochs", "1", "--data", "digits", "--out",
              str(tmp_path / "cli"), "--no-progress"])
