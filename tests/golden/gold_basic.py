"""gold_basic.py - golden cases for the elementwise, shape, reduction and matmul ops."""
import torch
import torch.nn.functional as F

from goldens import rand


def cases(g):
    c = []
    c.append(("add_bcast", [rand(4, 3, 5, gen=g), rand(3, 1, gen=g)], lambda a, b: a + b))
    c.append(("sub_bcast", [rand(2, 1, 6, gen=g), rand(5, 6, gen=g)], lambda a, b: a - b))
    c.append(("mul_bcast", [rand(3, 7, gen=g), rand(7, gen=g)], lambda a, b: a * b))
    c.append(("div", [rand(4, 6, gen=g), rand(4, 6, lo=0.5, hi=2.0, gen=g)], lambda a, b: a / b))
    c.append(("affine", [rand(5, 9, gen=g)], lambda x: 1.7 * x - 0.3))
    c.append(("exp", [rand(5, 9, gen=g)], torch.exp))
    c.append(("log", [rand(5, 9, lo=0.2, hi=3.0, gen=g)], torch.log))
    c.append(("sqrt", [rand(5, 9, lo=0.2, hi=3.0, gen=g)], torch.sqrt))
    c.append(("relu", [rand(5, 9, gen=g)], torch.relu))
    c.append(("gelu_tanh", [rand(5, 9, lo=-3, hi=3, gen=g)], lambda x: F.gelu(x, approximate="tanh")))
    c.append(("gelu_erf", [rand(5, 9, lo=-3, hi=3, gen=g)], F.gelu))
    c.append(("sigmoid", [rand(5, 9, lo=-4, hi=4, gen=g)], torch.sigmoid))
    c.append(("tanh", [rand(5, 9, lo=-2, hi=2, gen=g)], torch.tanh))
    c.append(("sum_axis1", [rand(3, 8, 5, gen=g)], lambda x: x.sum(1)))
    c.append(("mean_axis2_keep", [rand(3, 4, 6, gen=g)], lambda x: x.mean(2, keepdim=True)))
    c.append(("max_axis0", [rand(7, 5, gen=g)], lambda x: x.max(0).values))
    c.append(("sum_all", [rand(6, 7, gen=g)], lambda x: x.sum().reshape(1)))
    c.append(("permute", [rand(2, 3, 4, 5, gen=g)], lambda x: x.permute(2, 0, 3, 1)))
    c.append(("slice", [rand(4, 9, 3, gen=g)], lambda x: x[:, 2:7, :]))
    c.append(("reshape_mul", [rand(4, 6, gen=g), rand(3, 8, gen=g)],
              lambda a, b: a.reshape(3, 8) * b))
    c.append(("matmul", [rand(5, 7, gen=g), rand(7, 4, gen=g)], lambda a, b: a @ b))
    c.append(("matmul_ta", [rand(7, 5, gen=g), rand(7, 4, gen=g)], lambda a, b: a.t() @ b))
    c.append(("matmul_tb", [rand(5, 7, gen=g), rand(4, 7, gen=g)], lambda a, b: a @ b.t()))
    c.append(("matmul_tab", [rand(7, 5, gen=g), rand(4, 7, gen=g)], lambda a, b: a.t() @ b.t()))
    c.append(("bmm", [rand(3, 5, 6, gen=g), rand(3, 6, 4, gen=g)], torch.bmm))
    c.append(("bmm_bcast", [rand(3, 5, 6, gen=g), rand(6, 4, gen=g)], lambda a, b: a @ b))
    c.append(("linear", [rand(2, 5, 12, gen=g), rand(7, 12, gen=g), rand(7, gen=g)], F.linear))
    c.append(("linear_nobias", [rand(6, 12, gen=g), rand(3, 12, gen=g)], F.linear))
    return c
