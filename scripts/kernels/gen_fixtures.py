#!/usr/bin/env python3
"""Generate the quantization fixtures of tern-kernels' tests.

Writes crates/kernels/tests/fixtures/manifest.json (what each case is, where its arrays
are) and crates/kernels/tests/fixtures/data.bin (the arrays, little-endian, back to back).
Deterministic: the same seeds and the same libraries give the same bytes.

Two references are used:

* gguf-py (`gguf.quants`, pinned in requirements-test.txt) quantizes and dequantizes
  random data for the types it can quantize (F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)
  and dequantizes random but valid K-quant blocks (finite f16 scales) for Q2_K..Q6_K.
  gguf-py cannot quantize K-quants or produce Q8_1 / Q8_K.

* ggml itself, the libraries of the reference llama.cpp build, through ctypes:
  `ggml_quantize_chunk` quantizes real data to K-quants (what llama-quantize runs,
  without an importance matrix), the reference quantizers (`from_float_ref`) give the
  Q8_0 / Q8_1 / Q8_K activation blocks bit for bit, and the CPU backend's own
  `vec_dot` (the SIMD code llama.cpp runs on this machine) gives the dot products that
  tern's scalar kernels are compared with. The script also reports how often the CPU
  backend's activation quantizer (`from_float`, SIMD) differs from the reference one.

Usage: .cache/venv/bin/python scripts/kernels/gen_fixtures.py [--ggml-lib-dir DIR]
(DIR defaults to $LLAMACPP_BIN or /root/.cache/llama.cpp-reference/build/bin).
"""

import argparse
import ctypes
import json
import os
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import quants

ROOT = Path(__file__).resolve().parent.parent.parent
OUT = ROOT / "crates" / "kernels" / "tests" / "fixtures"
DEFAULT_LIB_DIR = os.environ.get("LLAMACPP_BIN", "/root/.cache/llama.cpp-reference/build/bin")

# Shapes (rows, cols): one block, a few blocks, and a row count / block count that is
# not a multiple of anything convenient.
SHAPES_32 = [(1, 32), (3, 224), (2, 608)]
SHAPES_256 = [(1, 256), (2, 1280)]
ACTIVATION_ROWS = 2

GGUF_PY_TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
K_TYPES = [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
VEC_DOT_TYPE = {
    T.F32: T.F32, T.F16: T.F16, T.BF16: T.BF16,
    T.Q4_0: T.Q8_0, T.Q5_0: T.Q8_0, T.Q8_0: T.Q8_0,
    T.Q4_1: T.Q8_1, T.Q5_1: T.Q8_1,
    T.Q2_K: T.Q8_K, T.Q3_K: T.Q8_K, T.Q4_K: T.Q8_K, T.Q5_K: T.Q8_K, T.Q6_K: T.Q8_K,
}
# Byte offsets of the f16 fields of each K-quant block (ggml-common.h), which must hold
# finite values in a valid block; every other byte may be anything.
K_F16_OFFSETS = {
    T.Q2_K: [80, 82],   # d, dmin after scales[16] and qs[64]
    T.Q3_K: [108],      # d after hmask[32], qs[64], scales[12]
    T.Q4_K: [0, 2],     # d, dmin first
    T.Q5_K: [0, 2],
    T.Q6_K: [208],      # d after ql[128], qh[64], scales[16]
}


# --- ggml through ctypes ------------------------------------------------------------

FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
VEC_DOT = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t,
                           ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                           ctypes.c_size_t, ctypes.c_int)


class TypeTraits(ctypes.Structure):  # struct ggml_type_traits (ggml.h)
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]


class InitParams(ctypes.Structure):  # struct ggml_init_params (ggml.h)
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p),
                ("no_alloc", ctypes.c_bool)]


class TypeTraitsCpu(ctypes.Structure):  # struct ggml_type_traits_cpu (ggml-cpu.h)
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p),
                ("vec_dot_type", ctypes.c_int), ("nrows", ctypes.c_int64)]


class Ggml:
    def __init__(self, lib_dir: Path):
        mode = ctypes.RTLD_GLOBAL
        self.base = ctypes.CDLL(str(lib_dir / "libggml-base.so"), mode=mode)
        self.cpu = ctypes.CDLL(str(lib_dir / "libggml-cpu.so"), mode=mode)
        self.base.ggml_get_type_traits.restype = ctypes.POINTER(TypeTraits)
        self.base.ggml_get_type_traits.argtypes = [ctypes.c_int]
        self.base.ggml_quantize_chunk.restype = ctypes.c_size_t
        self.base.ggml_quantize_chunk.argtypes = [
            ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
            ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        self.cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(TypeTraitsCpu)
        self.cpu.ggml_get_type_traits_cpu.argtypes = [ctypes.c_int]
        self.cpu.ggml_cpu_init()
        vp = ctypes.c_void_p
        for name, res, args in [
                ("ggml_init", vp, [InitParams]), ("ggml_free", None, [vp]),
                ("ggml_new_tensor_2d", vp, [vp, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]),
                ("ggml_get_data", vp, [vp]), ("ggml_mul_mat", vp, [vp, vp, vp]),
                ("ggml_new_graph", vp, [vp]), ("ggml_build_forward_expand", None, [vp, vp])]:
            f = getattr(self.base, name)
            f.restype, f.argtypes = res, args
        self.cpu.ggml_vec_soft_max_f32.restype = ctypes.c_double
        self.cpu.ggml_vec_soft_max_f32.argtypes = [ctypes.c_int, vp, vp, ctypes.c_float]
        self.cpu.ggml_graph_compute_with_ctx.restype = ctypes.c_int
        self.cpu.ggml_graph_compute_with_ctx.argtypes = [vp, vp, ctypes.c_int]

    def row_bytes(self, ty, cols):
        t = self.base.ggml_get_type_traits(int(ty)).contents
        assert cols % t.blck_size == 0
        return cols // t.blck_size * t.type_size

    def quantize_chunk(self, ty, x):
        rows, cols = x.shape
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.zeros(rows * self.row_bytes(ty, cols), dtype=np.uint8)
        n = self.base.ggml_quantize_chunk(int(ty), x.ctypes.data, out.ctypes.data, 0,
                                          rows, cols, None)
        assert n == out.size
        return out.reshape(rows, -1)

    def _from_float(self, fn_ptr, ty, x):
        rows, cols = x.shape
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.zeros((rows, self.row_bytes(ty, cols)), dtype=np.uint8)
        fn = FROM_FLOAT(fn_ptr)
        for r in range(rows):
            fn(x[r].ctypes.data, out[r].ctypes.data, cols)
        return out

    def quantize_ref(self, ty, x):
        """ggml's reference quantizer (`from_float_ref`, ggml-quants.c). Q8_K has no
        entry in the type table; its reference is the exported `quantize_row_q8_K_ref`."""
        if ty == T.Q8_K:
            fn_ptr = ctypes.cast(self.base.quantize_row_q8_K_ref, ctypes.c_void_p).value
        else:
            fn_ptr = self.base.ggml_get_type_traits(int(ty)).contents.from_float_ref
        return self._from_float(fn_ptr, ty, x)

    def quantize_cpu(self, ty, x):
        """The CPU backend's quantizer (`from_float`, SIMD on this machine)."""
        return self._from_float(self.cpu.ggml_get_type_traits_cpu(int(ty)).contents.from_float, ty, x)

    def dequantize(self, ty, q, cols):
        fn = TO_FLOAT(self.base.ggml_get_type_traits(int(ty)).contents.to_float)
        q = np.ascontiguousarray(q)
        out = np.zeros((q.shape[0], cols), dtype=np.float32)
        for r in range(q.shape[0]):
            fn(q[r].ctypes.data, out[r].ctypes.data, cols)
        return out

    def graph_mul_mat(self, wty, w, x):
        """llama.cpp's CPU matmul as its graphs run it: `ggml_mul_mat(w, x)` computed by
        the CPU backend on one thread, which picks the kernel itself (for Q6_K on x86:
        `vec_dot` token by token below 8 tokens, the tiled K-quant matmul from 8 on).
        Returns out[t, r] = row r of w times row t of x (f32 activations)."""
        rows, cols = w.shape[0], x.shape[1]
        n = x.shape[0]
        ctx = self.base.ggml_init(InitParams(64 * 1024 * 1024, None, False))
        assert ctx
        try:
            wt = self.base.ggml_new_tensor_2d(ctx, int(wty), cols, rows)
            xt = self.base.ggml_new_tensor_2d(ctx, int(T.F32), cols, n)
            w = np.ascontiguousarray(w)
            x = np.ascontiguousarray(x, dtype=np.float32)
            ctypes.memmove(self.base.ggml_get_data(wt), w.ctypes.data, w.nbytes)
            ctypes.memmove(self.base.ggml_get_data(xt), x.ctypes.data, x.nbytes)
            yt = self.base.ggml_mul_mat(ctx, wt, xt)
            gf = self.base.ggml_new_graph(ctx)
            self.base.ggml_build_forward_expand(gf, yt)
            assert self.cpu.ggml_graph_compute_with_ctx(ctx, gf, 1) == 0
            out = np.zeros((n, rows), dtype=np.float32)
            ctypes.memmove(out.ctypes.data, self.base.ggml_get_data(yt), out.nbytes)
            return out
        finally:
            self.base.ggml_free(ctx)

    def soft_max(self, x, mx):
        """llama.cpp's `ggml_vec_soft_max_f32(n, y, x, max)`: y = exp(x - max) and the
        f64 sum of y, as its CPU backend computes them."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.zeros_like(x)
        total = self.cpu.ggml_vec_soft_max_f32(x.size, y.ctypes.data, x.ctypes.data, float(mx))
        return y, total

    def vec_dot(self, wty, w, a, cols):
        """llama.cpp's CPU dot product of every weight row with every activation row:
        out[t, r] = dot(w[r], a[t])."""
        traits = self.cpu.ggml_get_type_traits_cpu(int(wty)).contents
        assert traits.vec_dot_type == int(VEC_DOT_TYPE[wty]), (wty, traits.vec_dot_type)
        fn = VEC_DOT(traits.vec_dot)
        out = np.zeros((a.shape[0], w.shape[0]), dtype=np.float32)
        s = ctypes.c_float()
        for t in range(a.shape[0]):
            for r in range(w.shape[0]):
                fn(cols, ctypes.byref(s), 0, w[r].ctypes.data, 0, a[t].ctypes.data, 0, 1)
                out[t, r] = s.value
        return out


# --- data ---------------------------------------------------------------------------

def weights_like(rng, rows, cols):
    """Roughly like trained weights: normal values with a few outliers per row."""
    x = rng.standard_normal((rows, cols)).astype(np.float32) * np.float32(0.05)
    n_out = max(1, cols // 64)
    for r in range(rows):
        idx = rng.choice(cols, n_out, replace=False)
        x[r, idx] *= np.float32(8.0)
    return x


def activations_like(rng, rows, cols):
    """Roughly like hidden states: heavier tails, varying scale across the row."""
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    x *= np.exp(rng.standard_normal(cols) * 0.5).astype(np.float32)
    return x


def random_k_blocks(rng, ty, rows, cols):
    block_size, type_size = gguf.GGML_QUANT_SIZES[ty]
    n_blocks = rows * cols // block_size
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in K_F16_OFFSETS[ty]:
        # Scales of the magnitude real files have; positive and negative both occur.
        v = (rng.uniform(-1, 1, n_blocks) * 2.0 ** rng.integers(-14, -4, n_blocks)).astype(np.float16)
        raw[:, off:off + 2] = v.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(rows, -1)


class Writer:
    def __init__(self):
        self.chunks = []
        self.offset = 0

    def add(self, arr):
        arr = np.ascontiguousarray(arr)
        if arr.dtype == np.float32:
            dtype = "f32"
        elif arr.dtype == np.uint8:
            dtype = "u8"
        else:
            raise TypeError(arr.dtype)
        data = arr.tobytes()
        entry = {"offset": self.offset, "bytes": len(data), "dtype": dtype}
        self.chunks.append(data)
        self.offset += len(data)
        return entry


def as_bytes(q):
    q = np.ascontiguousarray(q)
    return q.view(np.uint8).reshape(q.shape[0], -1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ggml-lib-dir", type=Path, default=Path(DEFAULT_LIB_DIR))
    args = ap.parse_args()
    if not (args.ggml_lib_dir / "libggml-base.so").exists():
        sys.exit(f"gen_fixtures: no libggml-base.so in {args.ggml_lib_dir} "
                 "(build the reference llama.cpp or pass --ggml-lib-dir)")
    ggml = Ggml(args.ggml_lib_dir)
    w = Writer()
    cases = []
    mismatch_report = {}

    def activation_side(wty, rng, cols, case):
        aty = VEC_DOT_TYPE[wty]
        x = activations_like(rng, ACTIVATION_ROWS, cols)
        if aty == T.F32:
            a = as_bytes(x)
        elif aty in (T.F16, T.BF16):
            # What ggml-cpu's `from_float` for F16 / BF16 does (round to nearest even).
            a = ggml.quantize_cpu(aty, x)
        else:
            a = ggml.quantize_ref(aty, x)
            cpu = ggml.quantize_cpu(aty, x)
            n_bad = int(np.count_nonzero(np.any(cpu != a, axis=1)))
            key = aty.name
            stats = mismatch_report.setdefault(key, [0, 0])
            stats[0] += n_bad
            stats[1] += a.shape[0]
            if aty == T.Q8_0:
                # gguf-py's Q8_0 claims bit-exactness with ggml's reference: hold it to it.
                assert np.array_equal(as_bytes(quants.quantize(x, T.Q8_0)), a), "gguf-py q8_0"
        case["activation_type"] = aty.name
        case["activation_input"] = w.add(x)
        case["activation_quantized"] = w.add(a)
        return a

    for ty in GGUF_PY_TYPES:
        for shape_i, (rows, cols) in enumerate(SHAPES_32):
            rng = np.random.default_rng(1000 * int(ty) + shape_i)
            x = weights_like(rng, rows, cols)
            q = as_bytes(quants.quantize(x, ty))
            deq = quants.dequantize(q, ty).astype(np.float32).reshape(rows, cols)
            if ty not in (T.F32, T.F16):
                # gguf-py's quantizers mirror ggml's reference ones; check it here so a
                # gguf-py bug cannot become a fixture.
                assert np.array_equal(ggml.quantize_chunk(ty, x), q), f"gguf-py vs ggml {ty.name}"
            if ty != T.F32:  # ggml has no to_float for F32
                assert np.array_equal(ggml.dequantize(ty, q, cols), deq), f"dequantize {ty.name}"
            case = {"name": f"{ty.name.lower()}_{rows}x{cols}", "type": ty.name, "rows": rows,
                    "cols": cols, "source": "gguf-py quantize", "input": w.add(x),
                    "quantized": w.add(q), "dequantized": w.add(deq)}
            a = activation_side(ty, rng, cols, case)
            case["llamacpp_dot"] = w.add(ggml.vec_dot(ty, q, a, cols))
            cases.append(case)

    for ty in K_TYPES:
        for shape_i, (rows, cols) in enumerate(SHAPES_256):
            rng = np.random.default_rng(2000 * int(ty) + shape_i)
            # Random valid blocks, dequantized by gguf-py.
            q = random_k_blocks(rng, ty, rows, cols)
            deq = quants.dequantize(q, ty).astype(np.float32).reshape(rows, cols)
            assert np.array_equal(ggml.dequantize(ty, q, cols), deq), f"dequantize {ty.name}"
            cases.append({"name": f"{ty.name.lower()}_random_{rows}x{cols}", "type": ty.name,
                          "rows": rows, "cols": cols, "source": "random blocks, gguf-py dequantize",
                          "quantized": w.add(q), "dequantized": w.add(deq)})
            # Real data quantized by ggml (llama-quantize's code path, no imatrix).
            x = weights_like(rng, rows, cols)
            q = ggml.quantize_chunk(ty, x)
            deq = quants.dequantize(q, ty).astype(np.float32).reshape(rows, cols)
            case = {"name": f"{ty.name.lower()}_{rows}x{cols}", "type": ty.name, "rows": rows,
                    "cols": cols, "source": "ggml_quantize_chunk, gguf-py dequantize",
                    "input": w.add(x), "quantized": w.add(q), "dequantized": w.add(deq)}
            a = activation_side(ty, rng, cols, case)
            case["llamacpp_dot"] = w.add(ggml.vec_dot(ty, q, a, cols))
            cases.append(case)

    # Whole matmuls through llama.cpp's graph, for the types whose CPU matmul changes
    # its summation order with the number of tokens (and that it does not repack: a
    # plain graph tensor is never repacked, so Q4_K is not here). One weight matrix, the
    # first n of 20 activation rows for each n; 8 is where the tiled matmul starts and
    # 16 where it switches from its narrow to its standard path.
    matmul_cases = []
    for ty in [T.Q6_K]:
        rows, cols, n_max = 40, 768, 20
        rng = np.random.default_rng(3000 * int(ty))
        q = ggml.quantize_chunk(ty, weights_like(rng, rows, cols))
        x = activations_like(rng, n_max, cols)
        case = {"name": f"{ty.name.lower()}_matmul_{rows}x{cols}", "type": ty.name,
                "rows": rows, "cols": cols, "source": "ggml_quantize_chunk; ggml_mul_mat graph, 1 thread",
                "quantized": w.add(q), "activation_input": w.add(x), "outputs": []}
        for n in [1, 7, 8, 9, 16, 17, 20]:
            out = ggml.graph_mul_mat(ty, q, x[:n])
            case["outputs"].append({"tokens": n, "llamacpp_matmul": w.add(out)})
        matmul_cases.append(case)

    # The softmax of a 64-key tile of ggml's tiled flash attention, by llama.cpp itself
    # (`ggml_vec_soft_max_f32`: its SIMD `ggml_v_expf` and the f64 sum of its lane
    # reductions): scores of several magnitudes, some masked (-inf), the maximum either
    # the row's or a larger running one.
    softmax_cases = []
    rng = np.random.default_rng(4000)
    for i in range(12):
        x = (rng.standard_normal(64) * [0.5, 4.0, 30.0][i % 3]).astype(np.float32)
        x[rng.random(64) < [0.0, 0.2, 0.6][i % 3]] = -np.inf
        mx = np.float32(x.max() + (0.0 if i % 2 == 0 else abs(rng.standard_normal()) * 3))
        y, total = ggml.soft_max(x, mx)
        softmax_cases.append({"max": float(mx), "input": w.add(x), "output": w.add(y),
                              "sum_f64": w.add(np.array([total], dtype=np.float64).view(np.uint8))})

    OUT.mkdir(parents=True, exist_ok=True)
    data = b"".join(w.chunks)
    (OUT / "data.bin").write_bytes(data)
    manifest = {
        "generator": "scripts/kernels/gen_fixtures.py",
        "gguf_py": getattr(gguf, "__version__", None) or "0.19.0",
        "numpy": np.__version__,
        "activation_rows": ACTIVATION_ROWS,
        "cpu_activation_quantizer_rows_differing_from_reference": {
            k: {"differing": v[0], "rows": v[1]} for k, v in sorted(mismatch_report.items())},
        "cases": cases,
        "matmul_cases": matmul_cases,
        "softmax_cases": softmax_cases,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"{len(cases)} cases, {len(data)} bytes of data in {OUT.relative_to(ROOT)}")
    for k, v in sorted(mismatch_report.items()):
        print(f"llama.cpp's CPU {k} activation quantizer differs from the reference on "
              f"{v[0]} of {v[1]} rows")


if __name__ == "__main__":
    main()
