"""gold_attention.py - golden cases for the fused attention op: pk_attention (one head, with and
without an additive mask, Tq != Tk), pk_attention_heads (several heads, a per-batch key mask
with -inf entries, d != dv; one tensor as q, k and v at once) and pk_attention_qkv (timm's
fused qkv layout). Masks carry no gradient (the op treats them as constants)."""
import torch

from goldens import rand


def heads_ref(q, k, v, m, heads, scale):
    """timm-style multi-head attention on (B, T, H*d) tensors; m broadcastable to (B, Tq, Tk)."""
    b, tq, _ = q.shape
    tk = k.shape[1]
    qh = q.reshape(b, tq, heads, -1).transpose(1, 2)  # (B, H, Tq, d)
    kh = k.reshape(b, tk, heads, -1).transpose(1, 2)  # (B, H, Tk, d)
    vh = v.reshape(b, tk, heads, -1).transpose(1, 2)  # (B, H, Tk, dv)
    s = qh @ kh.transpose(-2, -1) * scale
    if m is not None:
        s = s + m.reshape(*([1] * (3 - m.dim())), *m.shape).unsqueeze(1)
    o = torch.softmax(s, -1) @ vh  # (B, H, Tq, dv)
    return o.transpose(1, 2).reshape(b, tq, -1)


def qkv_ref(qkv, heads, scale):
    """timm's Attention.forward after the qkv projection: (B, T, 3*H*d) -> (B, T, H*d)."""
    b, t, c3 = qkv.shape
    x = qkv.reshape(b, t, 3, heads, c3 // (3 * heads)).permute(2, 0, 3, 1, 4)
    q, k, v = x.unbind(0)  # (B, H, T, d) each
    o = torch.softmax(q @ k.transpose(-2, -1) * scale, -1) @ v
    return o.transpose(1, 2).reshape(b, t, c3 // 3)


def key_mask(b, tk, gen):
    """(B, 1, Tk) additive mask: random values, and -inf on the last key of each batch."""
    m = rand(b, 1, tk, grad=False, gen=gen)
    m[:, :, -1] = float("-inf")
    return m


def cases(g):
    c = []
    c.append(("att_mask", [rand(2, 4, 8, gen=g), rand(2, 6, 8, gen=g), rand(2, 6, 5, gen=g),
                           rand(4, 6, grad=False, gen=g)],
              lambda q, k, v, m: heads_ref(q, k, v, m, 1, 0.35)))
    c.append(("att_square", [rand(1, 5, 3, gen=g), rand(1, 5, 3, gen=g), rand(1, 5, 7, gen=g)],
              lambda q, k, v: heads_ref(q, k, v, None, 1, 0.5)))
    c.append(("att_heads_mask", [rand(2, 5, 12, gen=g), rand(2, 7, 12, gen=g),
                                 rand(2, 7, 6, gen=g), key_mask(2, 7, g)],
              lambda q, k, v, m: heads_ref(q, k, v, m, 3, 0.5)))
    c.append(("att_heads", [rand(1, 3, 8, gen=g), rand(1, 9, 8, gen=g), rand(1, 9, 6, gen=g)],
              lambda q, k, v: heads_ref(q, k, v, None, 2, 0.7)))
    c.append(("att_qkv", [rand(2, 5, 24, gen=g)], lambda x: qkv_ref(x, 2, 0.5)))
    c.append(("att_qkv_h3", [rand(1, 7, 45, lo=-2, hi=2, gen=g)],
              lambda x: qkv_ref(x, 3, 5 ** -0.5)))
    # self-attention on one tensor: its gradient sums the q, k and v parts
    c.append(("att_self", [rand(2, 6, 8, gen=g)], lambda x: heads_ref(x, x, x, None, 2, 0.6)))
    return c
