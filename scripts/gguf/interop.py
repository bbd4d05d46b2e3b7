#!/usr/bin/env python3
"""GGUF interop between tern-gguf and gguf-py (llama.cpp's own Python package).

Two commands, both printing one canonical JSON document on stdout:

  interop.py write OUT.gguf   write a file with gguf-py's GGUFWriter (every scalar type,
                              typed and nested arrays, F32/F16/Q8_0/Q4_0 tensors, a custom
                              alignment) and print what was written, from the spec itself;
  interop.py dump IN.gguf     read a file with gguf-py's GGUFReader and print what it read;
  interop.py sizes            print gguf-py's ggml type table: {id: [name, block, bytes]};
  interop.py file_types       print gguf-py's general.file_type names: {id: name};
  interop.py ggml IN.gguf     read a file with ggml's own C reader (`gguf_init_from_file` in
                              libggml-base.so of the reference llama.cpp build, through
                              ctypes) and print its header view, or {"error": ...}.

tern's tests (crates/gguf/tests/interop_gguf_py.rs) build the same canonical form from
tern-gguf's view of the file and compare. Canonical form:
  {"version": 3, "alignment": N,
   "metadata": [[key, value], ...],            # file order
   "tensors": [{"name", "dims" (ggml order), "type" (ggml id), "offset", "data" (hex)}]}
with each value {"type": "u32", "value": ...}; floats as the hex of their little-endian
bytes (exact, NaN-safe); arrays {"type": "array", "items": [value, ...], "elem": type}.
"""

import json
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import quantize

TYPE_NAMES = {
    GGUFValueType.UINT8: "u8",
    GGUFValueType.INT8: "i8",
    GGUFValueType.UINT16: "u16",
    GGUFValueType.INT16: "i16",
    GGUFValueType.UINT32: "u32",
    GGUFValueType.INT32: "i32",
    GGUFValueType.FLOAT32: "f32",
    GGUFValueType.BOOL: "bool",
    GGUFValueType.STRING: "string",
    GGUFValueType.ARRAY: "array",
    GGUFValueType.UINT64: "u64",
    GGUFValueType.INT64: "i64",
    GGUFValueType.FLOAT64: "f64",
}
FLOAT_FORMATS = {GGUFValueType.FLOAT32: "<f4", GGUFValueType.FLOAT64: "<f8"}


def canon_scalar(vtype, value):
    """Canonical form of a scalar given as a Python value."""
    name = TYPE_NAMES[vtype]
    if vtype in FLOAT_FORMATS:
        return {"type": name, "value": np.array(value, dtype=FLOAT_FORMATS[vtype]).tobytes().hex()}
    if vtype == GGUFValueType.BOOL:
        return {"type": name, "value": bool(value)}
    if vtype == GGUFValueType.STRING:
        return {"type": name, "value": value}
    return {"type": name, "value": int(value)}


def canon_spec(vtype, value, sub_type=None):
    """Canonical form of a value as handed to GGUFWriter.add_key_value."""
    if vtype != GGUFValueType.ARRAY:
        return canon_scalar(vtype, value)
    elem = sub_type if sub_type is not None else GGUFValueType.get_type(value[0])
    return {
        "type": "array",
        "elem": TYPE_NAMES[elem],
        "items": [canon_spec(elem, v) for v in value],
    }


# (key, value, type, array element type). gguf-py infers nested arrays' inner element
# types from the Python values: int -> i32, str -> string.
METADATA = [
    ("test.u8", 250, GGUFValueType.UINT8, None),
    ("test.i8", -120, GGUFValueType.INT8, None),
    ("test.u16", 65000, GGUFValueType.UINT16, None),
    ("test.i16", -32000, GGUFValueType.INT16, None),
    ("test.u32", 4_000_000_000, GGUFValueType.UINT32, None),
    ("test.i32", -2_000_000_000, GGUFValueType.INT32, None),
    ("test.u64", 2**64 - 1, GGUFValueType.UINT64, None),
    ("test.i64", -(2**63), GGUFValueType.INT64, None),
    ("test.f32", 0.1, GGUFValueType.FLOAT32, None),
    ("test.f64", -2.5e-300, GGUFValueType.FLOAT64, None),
    ("test.bool", True, GGUFValueType.BOOL, None),
    ("test.string", "héllo ▁wörld 😀", GGUFValueType.STRING, None),
    ("test.empty_string", "", GGUFValueType.STRING, None),
    ("test.arr_u8", [0, 1, 255], GGUFValueType.ARRAY, GGUFValueType.UINT8),
    ("test.arr_i16", [-1, 2, -3], GGUFValueType.ARRAY, GGUFValueType.INT16),
    ("test.arr_u32", [1, 2**32 - 1], GGUFValueType.ARRAY, GGUFValueType.UINT32),
    ("test.arr_i32", [-7, 0, 7], GGUFValueType.ARRAY, GGUFValueType.INT32),
    ("test.arr_u64", [2**64 - 1], GGUFValueType.ARRAY, GGUFValueType.UINT64),
    ("test.arr_i64", [-(2**63), 5], GGUFValueType.ARRAY, GGUFValueType.INT64),
    ("test.arr_f32", [0.5, -1e-30, 3.25], GGUFValueType.ARRAY, GGUFValueType.FLOAT32),
    ("test.arr_f64", [1e300], GGUFValueType.ARRAY, GGUFValueType.FLOAT64),
    ("test.arr_bool", [True, False, True], GGUFValueType.ARRAY, GGUFValueType.BOOL),
    ("test.arr_string", ["a", "", "Ġthe"], GGUFValueType.ARRAY, GGUFValueType.STRING),
    ("test.nested_i32", [[1, 2], [3]], GGUFValueType.ARRAY, GGUFValueType.ARRAY),
    ("test.nested_string", [["x"], ["y", "z"]], GGUFValueType.ARRAY, GGUFValueType.ARRAY),
    ("llama.context_length", 2048, GGUFValueType.UINT32, None),
]
ALIGNMENT = 64


def tensors():
    """(name, raw bytes as uint8 numpy, ggml type, ggml-order dims)."""
    rng = np.random.default_rng(7)
    out = []
    f32 = rng.standard_normal((3, 5)).astype(np.float32)
    out.append(("f32.weight", f32, None))
    f16 = rng.standard_normal((2, 8)).astype(np.float16)
    out.append(("f16.weight", f16, None))
    q8 = quantize(rng.standard_normal((4, 64)).astype(np.float32), GGMLQuantizationType.Q8_0)
    out.append(("q8_0.weight", q8, GGMLQuantizationType.Q8_0))
    q4 = quantize(rng.standard_normal((2, 32)).astype(np.float32), GGMLQuantizationType.Q4_0)
    out.append(("q4_0.weight", q4, GGMLQuantizationType.Q4_0))
    return out


def write(path):
    writer = GGUFWriter(path, "llama")
    writer.add_custom_alignment(ALIGNMENT)
    for key, value, vtype, sub_type in METADATA:
        writer.add_key_value(key, value, vtype, sub_type=sub_type)
    for name, array, raw_dtype in tensors():
        writer.add_tensor(name, array, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    metadata = [
        ["general.architecture", canon_scalar(GGUFValueType.STRING, "llama")],
        ["general.alignment", canon_scalar(GGUFValueType.UINT32, ALIGNMENT)],
    ]
    metadata += [[k, canon_spec(t, v, s)] for k, v, t, s in METADATA]
    # Dims and offsets follow from the spec: numpy shape reversed, offsets packed.
    canon_tensors = []
    offset = 0
    for name, array, raw_dtype in tensors():
        data = array.tobytes()
        if raw_dtype is None:
            dims = list(reversed(array.shape))
            type_id = {np.float32: 0, np.float16: 1}[array.dtype.type]
        else:
            # Quantized rows: the byte shape's last axis holds whole blocks of 32.
            block_bytes = {GGMLQuantizationType.Q8_0: 34, GGMLQuantizationType.Q4_0: 18}[raw_dtype]
            dims = [array.shape[-1] // block_bytes * 32] + list(reversed(array.shape[:-1]))
            type_id = int(raw_dtype)
        canon_tensors.append(
            {"name": name, "dims": dims, "type": type_id, "offset": offset, "data": data.hex()}
        )
        offset += -(-len(data) // ALIGNMENT) * ALIGNMENT
    return {"version": 3, "alignment": ALIGNMENT, "metadata": metadata, "tensors": canon_tensors}


def canon_parts(parts, i, vtype):
    """Canonical value whose parts start at parts[i]; returns (value, next index).

    Walks GGUFReader's flattened parts (scalar: [value]; string: [len, bytes];
    array: [elem type, len, elements' parts...]) so nested arrays keep their shape.
    """
    if vtype == GGUFValueType.STRING:
        return canon_scalar(vtype, parts[i + 1].tobytes().decode("utf-8")), i + 2
    if vtype == GGUFValueType.ARRAY:
        elem = GGUFValueType(int(parts[i][0]))
        count = int(parts[i + 1][0])
        i += 2
        items = []
        for _ in range(count):
            item, i = canon_parts(parts, i, elem)
            items.append(item)
        return {"type": "array", "elem": TYPE_NAMES[elem], "items": items}, i
    value = parts[i][0]
    if vtype in FLOAT_FORMATS:
        return {"type": TYPE_NAMES[vtype], "value": parts[i].tobytes().hex()}, i + 1
    return canon_scalar(vtype, value.item()), i + 1


def dump(path):
    reader = GGUFReader(path, "r")
    version = int(reader.fields["GGUF.version"].parts[0][0])
    metadata = []
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        # parts: key length, key bytes, value type, then the value's parts.
        vtype = GGUFValueType(int(field.parts[2][0]))
        value, end = canon_parts(field.parts, 3, vtype)
        assert end == len(field.parts), f"{name}: {len(field.parts) - end} parts left over"
        metadata.append([name, value])
    data_start = min((t.data_offset for t in reader.tensors), default=0)
    canon_tensors = []
    for t in reader.tensors:
        raw = bytes(reader.data[t.data_offset : t.data_offset + t.n_bytes])
        canon_tensors.append(
            {
                "name": t.name,
                "dims": [int(d) for d in t.shape],
                "type": int(t.tensor_type),
                "offset": int(t.field.parts[-1][0]),
                "data": raw.hex(),
            }
        )
        assert t.data_offset - data_start <= int(t.field.parts[-1][0])
    return {
        "version": version,
        "alignment": int(reader.alignment),
        "metadata": metadata,
        "tensors": canon_tensors,
    }


def sizes():
    from gguf.constants import GGML_QUANT_SIZES

    return {str(int(t)): [t.name, b, n] for t, (b, n) in GGML_QUANT_SIZES.items()}


def file_types():
    from gguf.constants import LlamaFileType

    return {str(int(f)): f.name for f in LlamaFileType}


def ggml_lib_path():
    import os

    from pathlib import Path

    # scripts/fetch-test-data.py builds it into the repository's .cache (the test command
    # runs that first); TERN_GGML_LIB points elsewhere, e.g. at a full llama.cpp build.
    default = Path(__file__).resolve().parents[2] / ".cache/llama.cpp/ggml-base/libggml-base.so"
    return os.environ.get("TERN_GGML_LIB", str(default))


def ggml(path):
    """The header as llama.cpp sees it: keys and value types, tensors, offsets."""
    import ctypes

    lib = ctypes.CDLL(ggml_lib_path())

    class InitParams(ctypes.Structure):
        _fields_ = [("no_alloc", ctypes.c_bool), ("ctx", ctypes.c_void_p)]

    lib.gguf_init_from_file.restype = ctypes.c_void_p
    lib.gguf_init_from_file.argtypes = [ctypes.c_char_p, InitParams]
    for name, restype in [
        ("gguf_get_version", ctypes.c_uint32),
        ("gguf_get_alignment", ctypes.c_size_t),
        ("gguf_get_data_offset", ctypes.c_size_t),
        ("gguf_get_n_kv", ctypes.c_int64),
        ("gguf_get_n_tensors", ctypes.c_int64),
        ("gguf_free", None),
    ]:
        getattr(lib, name).restype = restype
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    for name, restype in [
        ("gguf_get_key", ctypes.c_char_p),
        ("gguf_get_kv_type", ctypes.c_int),
        ("gguf_get_arr_type", ctypes.c_int),
        ("gguf_get_tensor_name", ctypes.c_char_p),
        ("gguf_get_tensor_offset", ctypes.c_size_t),
        ("gguf_get_tensor_type", ctypes.c_int),
        ("gguf_get_tensor_size", ctypes.c_size_t),
    ]:
        getattr(lib, name).restype = restype
        getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_int64]

    ctx = lib.gguf_init_from_file(str(path).encode(), InitParams(True, None))
    if not ctx:
        return {"error": "gguf_init_from_file failed"}
    try:
        keys = []
        for i in range(lib.gguf_get_n_kv(ctx)):
            vtype = lib.gguf_get_kv_type(ctx, i)
            name = TYPE_NAMES[GGUFValueType(vtype)]
            if vtype == GGUFValueType.ARRAY:
                name += " of " + TYPE_NAMES[GGUFValueType(lib.gguf_get_arr_type(ctx, i))]
            keys.append([lib.gguf_get_key(ctx, i).decode(), name])
        tensors = [
            {
                "name": lib.gguf_get_tensor_name(ctx, i).decode(),
                "type": lib.gguf_get_tensor_type(ctx, i),
                "offset": lib.gguf_get_tensor_offset(ctx, i),
                "n_bytes": lib.gguf_get_tensor_size(ctx, i),
            }
            for i in range(lib.gguf_get_n_tensors(ctx))
        ]
        return {
            "version": lib.gguf_get_version(ctx),
            "alignment": lib.gguf_get_alignment(ctx),
            "data_offset": lib.gguf_get_data_offset(ctx),
            "keys": keys,
            "tensors": tensors,
        }
    finally:
        lib.gguf_free(ctx)


def main():
    if sys.argv[1:] == ["sizes"]:
        doc = sizes()
    elif sys.argv[1:] == ["file_types"]:
        doc = file_types()
    elif len(sys.argv) == 3 and sys.argv[1] in ("write", "dump", "ggml"):
        command, path = sys.argv[1], sys.argv[2]
        doc = {"write": write, "dump": dump, "ggml": ggml}[command](path)
    else:
        sys.exit("usage: interop.py write OUT.gguf | dump IN.gguf | ggml IN.gguf | sizes | file_types")
    json.dump(doc, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
