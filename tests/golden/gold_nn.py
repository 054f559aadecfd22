"""gold_nn.py - golden cases for the neural-network ops: concat, convolution, pooling,
upsampling, normalisation, softmax, L2 normalisation, embedding, attention and the losses."""
import torch
import torch.nn.functional as F

from goldens import rand


def spaced(*shape, gen=None):
    """Distinct values 0.03 apart in random order, for max pooling: finite differences of
    step 0.01 never change which element is the maximum."""
    n = 1
    for s in shape:
        n *= s
    perm = torch.randperm(n, generator=gen).float()
    x = ((perm - n / 2) * 0.03).reshape(*shape)
    return x.requires_grad_(True)


def away_from(a, gen=None):
    """A target that differs from a by 0.1..0.5 in either direction (|a - b| has no kink nearby)."""
    d = torch.rand(a.shape, generator=gen) * 0.4 + 0.1
    s = torch.where(torch.rand(a.shape, generator=gen) < 0.5, -1.0, 1.0)
    return (a.detach() + s * d).requires_grad_(True)


def bn_train(x, w, b, rm, rv):
    # clones: write() stores the inputs after calling fn, so they must stay untouched
    return F.batch_norm(x, rm.clone(), rv.clone(), w, b, training=True, momentum=0.1, eps=1e-5)


def bn_eval(x, w, b, rm, rv):
    return F.batch_norm(x, rm, rv, w, b, training=False, momentum=0.1, eps=1e-5)


def bn_running(x, rm, rv):
    """The running statistics after one training step, concatenated (mean then var)."""
    rm2, rv2 = rm.clone(), rv.clone()
    F.batch_norm(x, rm2, rv2, None, None, training=True, momentum=0.1, eps=1e-5)
    return torch.cat([rm2, rv2])


def kl(log_q, p):
    return F.kl_div(log_q, p, reduction="batchmean").reshape(1)


def cases(g):
    c = []
    # concat on a middle axis
    c.append(("concat_axis1", [rand(2, 3, 4, gen=g), rand(2, 5, 4, gen=g), rand(2, 1, 4, gen=g)],
              lambda a, b, d: torch.cat([a, b, d], 1)))
    # convolution
    c.append(("conv3x3_pad1", [rand(2, 3, 7, 6, gen=g), rand(4, 3, 3, 3, gen=g), rand(4, gen=g)],
              lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=1)))
    c.append(("conv3x3_s2", [rand(2, 3, 9, 8, gen=g), rand(5, 3, 3, 3, gen=g), rand(5, gen=g)],
              lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1)))
    c.append(("conv1x1", [rand(2, 6, 5, 5, gen=g), rand(4, 6, 1, 1, gen=g), rand(4, gen=g)],
              lambda x, w, b: F.conv2d(x, w, b)))
    c.append(("conv1x1_s2", [rand(2, 4, 6, 7, gen=g), rand(3, 4, 1, 1, gen=g)],
              lambda x, w: F.conv2d(x, w, None, stride=2)))
    c.append(("conv_nobias", [rand(1, 2, 6, 6, gen=g), rand(3, 2, 3, 2, gen=g)],
              lambda x, w: F.conv2d(x, w, None, stride=1, padding=0)))
    c.append(("conv5x5_pad1", [rand(2, 3, 8, 9, gen=g), rand(4, 3, 5, 5, gen=g), rand(4, gen=g)],
              lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=1)))
    c.append(("conv3x3_pad0", [rand(1, 5, 6, 9, gen=g), rand(6, 5, 3, 3, gen=g)],
              lambda x, w: F.conv2d(x, w, None, stride=1, padding=0)))
    c.append(("conv_depthwise", [rand(2, 4, 7, 7, gen=g), rand(4, 1, 3, 3, gen=g), rand(4, gen=g)],
              lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=1, groups=4)))
    c.append(("conv_depthwise_s2_m2", [rand(1, 3, 8, 7, gen=g), rand(6, 1, 3, 3, gen=g)],
              lambda x, w: F.conv2d(x, w, None, stride=2, padding=1, groups=3)))
    # pooling
    c.append(("maxpool_k2", [spaced(2, 3, 6, 6, gen=g)], lambda x: F.max_pool2d(x, 2, 2)))
    c.append(("maxpool_k3_s2_p1", [spaced(1, 2, 7, 7, gen=g)],
              lambda x: F.max_pool2d(x, 3, 2, 1)))
    c.append(("avgpool_k2", [rand(2, 3, 6, 6, gen=g)], lambda x: F.avg_pool2d(x, 2, 2)))
    c.append(("avgpool_k3_s2_p1", [rand(2, 2, 7, 8, gen=g)],
              lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=True)))
    c.append(("global_avgpool", [rand(2, 5, 4, 3, gen=g)], lambda x: x.mean((2, 3))))
    # upsampling
    c.append(("upsample_x2", [rand(2, 3, 4, 5, gen=g)],
              lambda x: F.interpolate(x, size=(8, 10), mode="bilinear", align_corners=False)))
    c.append(("upsample_odd", [rand(1, 2, 5, 3, gen=g)],
              lambda x: F.interpolate(x, size=(7, 11), mode="bilinear", align_corners=False)))
    c.append(("downsample_odd", [rand(1, 2, 9, 8, gen=g)],
              lambda x: F.interpolate(x, size=(4, 5), mode="bilinear", align_corners=False)))
    # normalisation
    c.append(("batchnorm_train", [rand(4, 3, 5, 5, gen=g), rand(3, lo=0.5, hi=1.5, gen=g),
                                  rand(3, gen=g), rand(3, grad=False, gen=g),
                                  rand(3, lo=0.5, hi=2.0, grad=False, gen=g)], bn_train))
    c.append(("batchnorm_eval", [rand(3, 4, 3, 3, gen=g), rand(4, lo=0.5, hi=1.5, gen=g),
                                 rand(4, gen=g), rand(4, grad=False, gen=g),
                                 rand(4, lo=0.5, hi=2.0, grad=False, gen=g)], bn_eval))
    c.append(("batchnorm_running", [rand(5, 3, 4, 2, grad=False, gen=g), rand(3, grad=False, gen=g),
                                    rand(3, lo=0.5, hi=2.0, grad=False, gen=g)], bn_running))
    c.append(("layernorm", [rand(2, 3, 16, gen=g), rand(16, lo=0.5, hi=1.5, gen=g),
                            rand(16, gen=g)], lambda x, w, b: F.layer_norm(x, (16,), w, b, 1e-5)))
    c.append(("layernorm_odd", [rand(7, 19, gen=g), rand(19, lo=0.5, hi=1.5, gen=g),
                                rand(19, gen=g)], lambda x, w, b: F.layer_norm(x, (19,), w, b, 1e-5)))
    # softmax family
    c.append(("softmax_axis1", [rand(3, 5, 4, lo=-3, hi=3, gen=g)], lambda x: F.softmax(x, 1)))
    c.append(("log_softmax_axis1", [rand(3, 5, 4, lo=-3, hi=3, gen=g)],
              lambda x: F.log_softmax(x, 1)))
    c.append(("log_softmax_last", [rand(5, 11, lo=-3, hi=3, gen=g)],
              lambda x: F.log_softmax(x, -1)))
    c.append(("softmax_last", [rand(6, 9, lo=-3, hi=3, gen=g)], lambda x: F.softmax(x, -1)))
    c.append(("l2norm", [rand(5, 8, gen=g)], lambda x: F.normalize(x, dim=-1, eps=1e-12)))
    # embedding
    idx = torch.randint(0, 7, (3, 4), generator=g, dtype=torch.int32)
    c.append(("embedding", [rand(7, 5, gen=g), idx], lambda t, i: F.embedding(i.long(), t)))
    # attention with an additive mask
    c.append(("attention", [rand(2, 4, 8, gen=g), rand(2, 6, 8, gen=g), rand(2, 6, 5, gen=g),
                            rand(4, 6, grad=False, gen=g)],
              lambda q, k, v, m: torch.softmax(q @ k.transpose(1, 2) * 0.35 + m, -1) @ v))
    # losses
    labels = torch.randint(0, 10, (6,), generator=g, dtype=torch.int32)
    c.append(("cross_entropy", [rand(6, 10, lo=-3, hi=3, gen=g), labels],
              lambda x, y: F.cross_entropy(x, y.long()).reshape(1)))
    labels_r = torch.randint(4, 9, (5,), generator=g, dtype=torch.int32)
    c.append(("cross_entropy_range", [rand(5, 12, lo=-3, hi=3, gen=g), labels_r],
              lambda x, y: F.cross_entropy(x[:, 4:9], y.long() - 4).reshape(1)))
    a = rand(4, 7, gen=g)
    c.append(("mse", [a, rand(4, 7, gen=g)], lambda x, y: F.mse_loss(x, y).reshape(1)))
    a = rand(3, 8, gen=g)
    c.append(("l1", [a, away_from(a, gen=g)], lambda x, y: F.l1_loss(x, y).reshape(1)))
    c.append(("bce", [rand(5, 6, lo=0.05, hi=0.95, gen=g), rand(5, 6, lo=0, hi=1, grad=False, gen=g)],
              lambda p, t: F.binary_cross_entropy(p, t).reshape(1)))
    p = torch.softmax(rand(4, 6, lo=-2, hi=2, grad=False, gen=g), -1)
    p[0, 2] = 0.0  # a zero probability: its p log p term is 0
    c.append(("kl_div", [torch.log_softmax(rand(4, 6, lo=-2, hi=2, grad=False, gen=g), -1)
                         .requires_grad_(True), p], kl))
    return c + large_cases(g)  # last, so the earlier cases keep their random draws


def large_cases(g):
    """Shapes past the Vulkan kernels' small-case thresholds (test_ops_vk_large.c): softmax
    lines longer than 64 (work-group path) and layernorm rows wider than 256."""
    return [
        ("vkl_softmax_r300_axis1", [rand(3, 300, 2, lo=-3, hi=3, gen=g)], lambda x: F.softmax(x, 1)),
        ("vkl_log_softmax_r700_last", [rand(2, 700, lo=-3, hi=3, gen=g)],
         lambda x: F.log_softmax(x, -1)),
        ("vkl_layernorm_d300", [rand(4, 300, lo=-2, hi=2, gen=g), rand(300, lo=0.5, hi=1.5, gen=g),
                                rand(300, gen=g)],
         lambda x, w, b: F.layer_norm(x, (300,), w, b, 1e-5)),
    ]
