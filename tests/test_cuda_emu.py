"""The CUDA kernels of cuda/*.cu, run on the CPU by a host emulation and compared with the CPU kernels.

No GPU is needed: tests/cuda_emu/cuda_emu.h emulates the CUDA subset the kernels use (one fiber per
CUDA thread of a block, switched at __syncthreads and warp shuffles, float4 __ldg with an alignment
check, launch limits, guarded device memory and the runtime API), harness_device.h adds exact-size
device blocks and a column-major reference cuBLAS, and
tests/cuda_emu/harness.cpp calls every entry point of cuda/ops.cuh next to its cpp/ops.h kernel.
The .cu files are used unmodified: they are copied to a temporary directory with each
`kernel<<<grid, block>>>(args)` rewritten into a call of emu::launch, then compiled with the system
C++ compiler (C++20) and linked with the cpp/ kernels (OpenBLAS from scipy-openblas32).

It checks index arithmetic, barriers, shuffles, chunking and NaN rules; not the GPU's memory model
(blocks run one at a time), warp scheduling, the bindings, real cuBLAS, or speed.
Run by hand: python tests/test_cuda_emu.py [group ...] (builds into a temporary directory).
"""
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CUDA, CPP, EMU = ROOT / "cuda", ROOT / "cpp", HERE / "cuda_emu"
GROUPS = ["gemm", "conv", "local", "linear", "pool", "lrn", "eltwise", "dropout", "softmax", "sgd"]
# ops.cuh functions that are not kernels: cuBLAS loading and selection live in cuda/cublas.cpp
# (dlopen), which the emulation replaces with its reference cuBLAS.
NOT_KERNELS = {"load_cublas", "gemm_backend", "set_gemm_backend"}


def _split_top(text):
    """Splits at the commas outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch in "([{") - (ch in ")]}")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def rewrite_launches(src, name):
    """kernel<<<grid, block>>>(args) -> ::emu::launch(dim3(grid), dim3(block), "kernel", kernel, args),
    keeping every newline (line numbers and macro continuations stay as they were)."""
    out, pos, i = [], 0, -1
    while (i := src.find("<<<", i + 1)) >= 0:
        if "//" in src[src.rfind("\n", 0, i) + 1:i] or src.rfind("/*", 0, i) > src.rfind("*/", 0, i):
            continue  # in a comment
        m = re.search(r"([A-Za-z_][\w:]*(?:<[^<>;()]*>)?)\s*$", src[max(pos, i - 300):i])
        j = src.find(">>>", i)
        k = j + 3 + len(src[j + 3:]) - len(src[j + 3:].lstrip())
        if not m or j < 0 or src[k:k + 1] != "(":
            raise ValueError(f"{name}: cannot parse the launch at offset {i}")
        cfg = _split_top(src[i + 3:j])
        if len(cfg) > 2 and any(c.strip() not in ("0", "nullptr", "0, 0") for c in cfg[2:]):
            raise ValueError(f"{name}: dynamic shared memory or streams are not emulated: {src[i:j + 3]}")
        depth, e = 0, k
        while True:  # the matching parenthesis
            depth += {"(": 1, ")": -1}.get(src[e], 0)
            if depth == 0:
                break
            e += 1
        kernel, args = m.group(1), src[k + 1:e]
        out.append(src[pos:max(pos, i - 300) + m.start(1)])
        out.append(f'::emu::launch(dim3({cfg[0].strip()}), dim3({cfg[1].strip()}), "{kernel}", {kernel}'
                   + (f", {args}" if args.strip() else "") + ")")
        pos = i = e + 1
    return "".join(out) + src[pos:]


def transform(path):
    """The emulated source of cuda/<path>: the emulation header first, launches rewritten,
    sm_count() not cached (the checks vary the device's SM count)."""
    src = path.read_text()
    src = re.sub(r"#include\s*<cuda_runtime\.h>", '#include "cuda_emu.h"', src)
    src = re.sub(r"\bstatic int n = \[\]", "int n = []", src)
    return f'#include "cuda_emu.h"\n#line 1 "{path}"\n' + rewrite_launches(src, path.name)


def find_compiler():
    for cand in [os.environ.get("CXX"), "g++", "c++", "clang++"]:
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def _run(cmd, what):
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode:
        raise RuntimeError(f"{what} failed:\n{r.stderr[-6000:]}")


def _compile(cxx, flags, units, out):
    """The object files of units, compiled in parallel into out."""
    def one(path):
        obj = out / f"{path.parent.name}_{path.name}.o"
        _run([cxx, *flags, "-c", str(path), "-o", str(obj)], f"compiling {path}")
        return obj

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return list(pool.map(one, units))


def _emulated_sources(src, files):
    """Writes the emulated cuda/*.cuh and files into src; returns the translation units."""
    src.mkdir(parents=True, exist_ok=True)
    for h in sorted(CUDA.glob("*.cuh")):  # headers with kernels (patches.cuh) or helpers
        (src / h.name).write_text(transform(h))
    units = [src / f"{f.name}.cpp" for f in files]
    for f, unit in zip(files, units):
        unit.write_text(transform(f))
    return units


def build(out):
    """Compiles the harness into out/harness; returns its path, or raises pytest's Skipped."""
    cxx = find_compiler()
    if cxx is None:
        pytest.skip("no C++ compiler found (set CXX): the CUDA emulation test needs one")
    if not (CUDA / "ops.cuh").exists() or not (CPP / "ops.h").exists():
        pytest.skip(f"no cuda/ and cpp/ sources next to the tests (looked in {ROOT})")
    openblas = pytest.importorskip("scipy_openblas32")
    out = Path(out)
    probe = out / "probe.cpp"
    probe.write_text("#include <atomic>\n#include <omp.h>\n#include <ucontext.h>\nint main() { float f = 0;\n"
                     "  std::atomic_ref<float>(f).fetch_add(1.f); ucontext_t c; return getcontext(&c); }\n")
    r = subprocess.run([cxx, "-std=c++20", "-fopenmp", "-pthread", str(probe), "-o", str(out / "probe")],
                       capture_output=True, text=True, check=False)
    if r.returncode:
        pytest.skip(f"{cxx} cannot build C++20 atomic_ref with OpenMP and ucontext: {r.stderr.strip()[:300]}")
    src = out / "src"
    units = _emulated_sources(src, sorted(CUDA.glob("*.cu")))
    units += [p for p in sorted(CPP.glob("*.cpp")) if p.name != "bind.cpp"]  # the references (bind.cpp: pybind11)
    units.append(EMU / "harness.cpp")
    flags = ["-std=c++20", "-O2", "-fopenmp", "-pthread", "-Wno-unknown-pragmas", f"-I{src}", f"-I{EMU}",
             f"-I{CUDA}", f"-I{CPP}", f"-I{openblas.get_include_dir()}"]
    objs = _compile(cxx, flags, units, out)
    exe, lib = out / "harness", openblas.get_lib_dir()
    _run([cxx, "-fopenmp", "-pthread", *map(str, objs), "-o", str(exe), f"-L{lib}",
          f"-l{openblas.get_library()}", f"-Wl,-rpath,{lib}"], "linking the CUDA emulation harness")
    return exe


def build_module(out):
    """Compiles the whole _cuda module (cuda/*.cpp bindings, allocator, DLPack, cuBLAS loading, and
    the kernels) against the emulation into out/_cuda.so, and the reference cuBLAS into
    out/libcublas_emu.so; returns both paths."""
    cxx = find_compiler()
    pybind11 = pytest.importorskip("pybind11")
    if cxx is None or not (CUDA / "bind.cpp").exists():
        pytest.skip("no C++ compiler or no cuda/ sources")
    out = Path(out)
    src = out / "src"
    units = _emulated_sources(src, sorted(CUDA.glob("*.cu")) + sorted(CUDA.glob("*.cpp")))
    # fmaf is a libm call without -mfma: a third of the run time of the kernels
    fma = ["-mfma"] if "fma" in Path("/proc/cpuinfo").read_text(errors="replace").split() else []
    flags = ["-std=c++20", "-O2", *fma, "-fPIC", "-pthread", "-fvisibility=hidden", "-Wno-unknown-pragmas",
             f"-I{src}", f"-I{EMU}", f"-I{CUDA}", f"-I{CPP}", f"-I{sysconfig.get_paths()['include']}",
             f"-I{pybind11.get_include()}"]
    objs = _compile(cxx, flags, units, out)
    lib, cublas = out / "_cuda.so", out / "libcublas_emu.so"
    _run([cxx, "-shared", "-pthread", *map(str, objs), "-o", str(lib), "-ldl"], "linking _cuda.so")
    _run([cxx, "-shared", *map(str, _compile(cxx, flags, [EMU / "cublas_emu.cpp"], out)), "-o", str(cublas)],
         "linking libcublas_emu.so")
    return lib, cublas


@pytest.fixture(scope="session")
def harness(tmp_path_factory):
    return build(tmp_path_factory.mktemp("cuda_emu"))


@pytest.mark.parametrize("group", GROUPS)
def test_cuda_kernels_match_cpu_under_emulation(harness, group):
    r = subprocess.run([str(harness), group], capture_output=True, text=True, timeout=900, check=False)
    out = r.stdout + r.stderr
    failed = "\n".join(line for line in out.splitlines() if not line.startswith("ok"))
    assert r.returncode == 0, f"{group}: exit status {r.returncode}\n{failed}\n--- full output ---\n{out}"


def test_gpu_tests_pass_on_the_emulated_module(tmp_path):
    """tests/test_cuda.py, GPU tests included, with the emulated build standing in for
    pyconvnet._cuda: the bindings, argument checks, device arrays, caching allocator, upload
    staging, training and checkpoints on the device, beside the kernels checked above."""
    lib, cublas = build_module(tmp_path)
    # The child imports the pyconvnet this process imported (installed, or an in-tree build); cwd
    # is not the checkout, whose pyconvnet/ (no compiled _core in CI) `python -m` would put first.
    import pyconvnet
    path = os.pathsep.join([str(Path(pyconvnet.__file__).parent.parent), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path, PYCONVNET_TEST_CUDA_MODULE=str(lib), PYCONVNET_TEST_CUBLAS=str(cublas))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                        str(HERE / "test_cuda.py")], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=1200, check=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-12000:]
    passed = re.search(r"(\d+) passed", out)
    assert passed and int(passed.group(1)) >= 120, f"too few GPU tests ran under emulation:\n{out[-6000:]}"


def test_harness_calls_every_cuda_entry_point():
    if not (CUDA / "ops.cuh").exists():
        pytest.skip(f"no cuda/ sources next to the tests (looked in {ROOT})")
    decl = re.findall(r"^[A-Za-z_][\w:<>, ]*?[\s*&](\w+)\(", (CUDA / "ops.cuh").read_text(), re.MULTILINE)
    harness_src = (EMU / "harness.cpp").read_text()
    missing = [f for f in decl if f not in NOT_KERNELS and not re.search(rf"\bgpu::{f}\b", harness_src)]
    assert decl and not missing, f"cuda/ops.cuh entry points with no check in tests/cuda_emu/harness.cpp: {missing}"


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        sys.exit(subprocess.run([str(build(d)), *sys.argv[1:]], check=False).returncode)
