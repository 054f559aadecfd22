"""gold_ssim.py - golden cases for the SSIM op: a transcription of 3DGS's ssim()
(graphdeco-inria/gaussian-splatting, utils/loss_utils.py): 11x11 Gaussian window, sigma 1.5,
conv2d with padding 5 and groups = channels, C1 = 0.01^2, C2 = 0.03^2, mean of the map."""
from math import exp

import torch
import torch.nn.functional as F

from goldens import rand


def gaussian(window_size, sigma):
    gauss = torch.Tensor([exp(-(x - window_size // 2) ** 2 / float(2 * sigma ** 2))
                          for x in range(window_size)])
    return gauss / gauss.sum()


def create_window(window_size, channel):
    _1d = gaussian(window_size, 1.5).unsqueeze(1)
    _2d = _1d.mm(_1d.t()).float().unsqueeze(0).unsqueeze(0)
    return _2d.expand(channel, 1, window_size, window_size).contiguous()


def ssim(img1, img2, window_size=11):
    channel = img1.size(-3)
    window = create_window(window_size, channel).type_as(img1)
    mu1 = F.conv2d(img1, window, padding=window_size // 2, groups=channel)
    mu2 = F.conv2d(img2, window, padding=window_size // 2, groups=channel)
    mu1_sq, mu2_sq, mu1_mu2 = mu1.pow(2), mu2.pow(2), mu1 * mu2
    sigma1_sq = F.conv2d(img1 * img1, window, padding=window_size // 2, groups=channel) - mu1_sq
    sigma2_sq = F.conv2d(img2 * img2, window, padding=window_size // 2, groups=channel) - mu2_sq
    sigma12 = F.conv2d(img1 * img2, window, padding=window_size // 2, groups=channel) - mu1_mu2
    C1, C2 = 0.01 ** 2, 0.03 ** 2
    ssim_map = ((2 * mu1_mu2 + C1) * (2 * sigma12 + C2)) / (
        (mu1_sq + mu2_sq + C1) * (sigma1_sq + sigma2_sq + C2))
    return ssim_map.mean().reshape(1)


def pair(*shape, gen, grad2=True):
    """An image and a noisy, darker copy of it, so SSIM sits well inside (0, 1)."""
    a = rand(*shape, lo=0.0, hi=1.0, gen=gen)
    n = rand(*shape, lo=0.0, hi=1.0, grad=False, gen=gen)
    b = (0.7 * a.detach() + 0.3 * n).requires_grad_(grad2)
    return [a, b]


def cases(g):
    c = []
    c.append(("ssim_chw", pair(3, 21, 27, gen=g), ssim))
    c.append(("ssim_nchw_nograd2", pair(2, 3, 17, 14, gen=g, grad2=False), ssim))
    c.append(("ssim_tiny", pair(1, 5, 4, gen=g), ssim))
    c.append(("ssim_large", pair(3, 48, 64, gen=g), ssim))
    return c
