"""Shared helpers for the scripts that generate PyTorch reference values (Debian's python3-torch).

Fixtures are safetensors files written here by hand (the format is small: an 8-byte little-endian
header length, a JSON header, then the packed tensors), so generating them needs only torch.
"""
import json
import os
import struct

import torch

DTYPES = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int32: "I32",
    torch.int64: "I64",
}

HERE = os.path.dirname(os.path.abspath(__file__))


def save_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} to `path` in the safetensors format (names sorted, data packed)."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        # reshape(-1): torch 1.13 cannot view a 0-dim tensor as bytes
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
