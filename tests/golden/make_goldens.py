#!/usr/bin/python3
"""make_goldens.py - writes every golden file under tests/golden/ops/ with PyTorch (Debian's
python3-torch). `make goldens` runs it; the files are committed so CI needs no PyTorch.
Each gold_<family>.py module defines cases(gen) -> [(prefix, inputs, fn)]."""
import importlib
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import goldens  # noqa: E402

torch.manual_seed(0)
families = sorted(f[5:-3] for f in os.listdir(here) if f.startswith("gold_") and f.endswith(".py"))
for fam in families:
    mod = importlib.import_module("gold_" + fam)
    gen = torch.Generator().manual_seed(1234)
    path = os.path.join(here, "ops", fam + ".bin")
    goldens.write(path, mod.cases(gen))
    print("wrote", os.path.relpath(path, here))
