#!/usr/bin/python3
"""make_golden_safetensors.py - writes golden/torch_small.safetensors with PyTorch as the
independent reference for test_safetensors.c: random values stored as F16/BF16/F32/I64/U8,
plus the F32 values PyTorch itself gets by converting the F16/BF16 tensors back to float32.
The safetensors layout is written by hand (8-byte LE header length, JSON header, data) since
the python `safetensors` package is not installed. Run: /usr/bin/python3 make_golden_safetensors.py"""
import json
import os
import struct

import torch

torch.manual_seed(4)
x = torch.randn(3, 5) * 4
x[0, 0] = 65504.0  # largest half
x[0, 1] = 1e-6  # half subnormal
x[0, 2] = -0.0
tensors = {
    "x_f32": x.float(),
    "x_f16": x.half(),
    "x_bf16": x.bfloat16(),
    "x_f16_as_f32": x.half().float(),
    "x_bf16_as_f32": x.bfloat16().float(),
    "idx_i64": torch.arange(-3, 4, dtype=torch.int64),
    "mask_u8": torch.tensor([[0, 1, 255]], dtype=torch.uint8),
    "count_i32": torch.tensor([7, -9], dtype=torch.int32),
}
names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
         torch.int64: "I64", torch.uint8: "U8", torch.int32: "I32"}
header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
for k, t in tensors.items():
    raw = t.contiguous().view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 \
        else t.contiguous().numpy().tobytes()
    header[k] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
    blobs.append(raw)
    off += len(raw)
h = json.dumps(header).encode()
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "torch_small.safetensors")
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
print(out)
