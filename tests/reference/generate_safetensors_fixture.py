"""Writes fixtures/python_safetensors.safetensors with the Python `safetensors` package itself (not
common.py's writer), so tests/core/io/test_safetensors.cpp checks that dtrain reads what the reference
implementation writes: its tensor order (by alignment, then name), header padding and metadata.

    pip install --target /tmp/st safetensors
    PYTHONPATH=/tmp/st /usr/bin/python3 tests/reference/generate_safetensors_fixture.py

The values are exact in every dtype; the C++ test spells out the same values.
"""
import os

import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "python_safetensors.safetensors")


def main():
    tensors = {
        # [-0.5, -0.25, 0, 0.25, 0.5, 0.75] as [2, 3]
        "f32": (torch.arange(6, dtype=torch.float32) * 0.25 - 0.5).reshape(2, 3),
        "f64": torch.tensor([1.0 / 3.0, -1e300, 2.5], dtype=torch.float64),
        # largest f16, smallest normal f16, smallest subnormal f16
        "f16": torch.tensor([1.0, -2.5, 65504.0, 2.0 ** -14, 2.0 ** -24, 0.0], dtype=torch.float16),
        "bf16": torch.tensor([1.0, -3.0, 2.0 ** -7, 256.0], dtype=torch.bfloat16).reshape(2, 2),
        "i32": torch.tensor([[-2147483648, 0, 2147483647]], dtype=torch.int32),
        "i64": torch.tensor([2 ** 53 + 1, -1, -(2 ** 63)], dtype=torch.int64),
        "scalar": torch.tensor(7.0, dtype=torch.float32),
        "empty": torch.zeros(0, 4, dtype=torch.float32),
        "layer.0.weight": torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float32),
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT, metadata={"format": "pt", "producer": "python-safetensors"})
    back = load_file(OUT)
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t), name
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
