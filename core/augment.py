"""Augmentation on the device, in batch: affine / perspective warps, noise, interference lines (AUGMENT and friends)."""
import torch
import torch.nn.functional as F


class Augment:
    """Random training-time changes of a float batch (B, C, H, W) in [-1, 1], all on its device, in batch.

    affine: shift / scale / rotation / shear (1.0 = a few px and degrees); perspective: corners move by up to
    6 % x strength; blur: probability of a Gaussian blur (sigma 0.3-1.2); noise: std of Gaussian pixel noise;
    contrast: contrast / brightness (and, for colour, per-channel gain) jitter; lines: probability that an
    image is crossed by a random interference curve drawn in its own ink colour. 0 switches a part off.
    Geometry is one homography and one grid_sample, so affine + perspective cost one resampling.
    """

    def __init__(self, affine=0.0, perspective=0.0, blur=0.0, noise=0.0, contrast=0.0, lines=0.0):
        self.affine, self.perspective, self.blur, self.noise, self.contrast = affine, perspective, blur, noise, contrast
        self.lines = lines

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.AUGMENT, cfg.PERSPECTIVE, cfg.BLUR, cfg.NOISE, cfg.CONTRAST, cfg.LINES)

    def __bool__(self):
        return any((self.affine, self.perspective, self.blur, self.noise, self.contrast, self.lines))

    def __repr__(self):
        parts = [f"{k} {v:g}" for k, v in vars(self).items() if v]
        return ", ".join(parts) or "off"

    def __call__(self, x):
        if not len(x):  # a batch left empty (every row of an online step read confidently, say): nothing to change
            return x
        if self.affine or self.perspective:
            x = self.warp(x)
        if self.lines:
            x = self.draw_lines(x)
        if self.contrast:
            x = self.jitter_contrast(x)
        if self.blur:
            x = self.gaussian_blur(x)
        if self.noise:
            x = (x + torch.randn_like(x) * self.noise).clamp_(-1, 1)
        return x

    def warp(self, x):
        b, dev = x.shape[0], x.device
        r = torch.rand(b, 5, device=dev) * 2 - 1  # uniform in [-1, 1]
        s = self.affine
        angle, shear = r[:, 0] * 0.05 * s, r[:, 1] * 0.1 * s  # radians
        scale = 1 + r[:, 2] * 0.05 * s
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        zero, one = torch.zeros(b, device=dev), torch.ones(b, device=dev)
        m = torch.stack([torch.stack([cos, -sin + shear, r[:, 3] * 0.06 * s], 1),
                         torch.stack([sin, cos, r[:, 4] * 0.1 * s], 1),
                         torch.stack([zero, zero, one], 1)], 1)  # (B, 3, 3): output -> input coordinates
        if self.perspective:
            m = m @ _random_homography(b, 0.12 * self.perspective, dev)  # 0.12 of the [-1, 1] span = 6 %
        h, w = x.shape[2:]
        ys, xs = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=dev), torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=dev)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        pts = torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(1, -1, 3)  # (1, HW, 3)
        src = pts @ m.transpose(1, 2)  # (B, HW, 3)
        grid = (src[..., :2] / src[..., 2:].clamp(min=1e-3)).reshape(b, h, w, 2)
        return F.grid_sample(x, grid, padding_mode="border", align_corners=False)

    def draw_lines(self, x):
        """Cross a `lines` share of the images with one quadratic Bezier curve, 1-2 px thick, from the left
        third to the right third at random heights (the interference lines captchas draw through their text),
        in each image's ink: its darkest colour, or its lightest where the background is dark."""
        b, c, h, w = x.shape
        dev = x.device
        r = torch.rand(b, 7, device=dev)
        t = torch.linspace(0, 1, 2 * w, device=dev)[None]  # (1, T): dense enough to leave no gaps
        x0, x2 = r[:, :1] * w / 3, w - 1 - r[:, 1:2] * w / 3
        y0, y1, y2 = r[:, 2:3] * (h - 1), (r[:, 3:4] * 1.5 - 0.25) * (h - 1), r[:, 4:5] * (h - 1)  # bends stay near
        xs = (1 - t) ** 2 * x0 + 2 * (1 - t) * t * (x0 + x2) / 2 + t ** 2 * x2  # (B, T)
        ys = (1 - t) ** 2 * y0 + 2 * (1 - t) * t * y1 + t ** 2 * y2
        thick = 1 + (r[:, 5:6] < 0.5).long()  # 1 or 2 px
        mask = torch.zeros(b, h * w + 1, dtype=torch.bool, device=dev)  # the last column takes off-image points
        xi = xs.round().long().clamp(0, w - 1)
        for dy in (0, 1):
            yy = ys.round().long() + dy
            keep = (yy >= 0) & (yy < h) & (dy < thick) & (r[:, 6:7] < self.lines)
            mask.scatter_(1, torch.where(keep, yy.clamp(0, h - 1) * w + xi, h * w), True)
        mask = mask[:, :-1]
        flat_x = x.reshape(b, c, h * w)
        lo, hi = flat_x.amin(2, keepdim=True), flat_x.amax(2, keepdim=True)
        ink = torch.where(flat_x.mean(2, keepdim=True) > (lo + hi) / 2, lo, hi)  # (B, C, 1)
        return torch.where(mask[:, None], ink, flat_x).reshape(b, c, h, w)

    def jitter_contrast(self, x):
        b, c = x.shape[:2]
        s = self.contrast
        r = torch.rand(b, 2 + c, 1, 1, device=x.device) * 2 - 1
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        gain = 1 + 0.4 * s * r[:, :1]  # contrast
        shift = 0.2 * s * r[:, 1:2]    # brightness
        if c > 1:
            gain = gain * (1 + 0.15 * s * r[:, 2:])  # colour: per-channel gain
        return ((x - mean) * gain + mean + shift).clamp_(-1, 1)

    def gaussian_blur(self, x, size=5):
        b, c, h, w = x.shape
        sigma = 0.3 + 0.9 * torch.rand(b, device=x.device)
        t = torch.arange(size, device=x.device, dtype=x.dtype) - size // 2
        k = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None] ** 2))
        k = k / k.sum(1, keepdim=True)  # (B, size)
        delta = (t == 0).to(x.dtype).expand(b, size)
        k = torch.where((torch.rand(b, 1, device=x.device) < self.blur), k, delta)
        k = k.repeat_interleave(c, 0)  # (B*C, size): one kernel per sample, all its channels
        y = F.pad(x.reshape(1, b * c, h, w), (size // 2,) * 4, mode="replicate")
        y = F.conv2d(y, k[:, None, None, :], groups=b * c)
        y = F.conv2d(y, k[:, None, :, None], groups=b * c)
        return y.reshape(b, c, h, w)


def _random_homography(b, amount, device):
    """(B, 3, 3) homographies mapping the [-1, 1] square to one with corners moved by up to `amount`."""
    corners = torch.tensor([[-1., -1.], [1., -1.], [1., 1.], [-1., 1.]], device=device).expand(b, 4, 2)
    moved = corners + (torch.rand(b, 4, 2, device=device) * 2 - 1) * amount
    # solve for h (8 unknowns, h33 = 1) mapping corners -> moved
    x, y = corners[..., 0], corners[..., 1]
    u, v = moved[..., 0], moved[..., 1]
    zero, one = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)
    a = torch.cat([rows_u, rows_v], 1)  # (B, 8, 8)
    rhs = torch.cat([u, v], 1)[..., None]  # (B, 8, 1)
    h = torch.linalg.solve(a, rhs)[..., 0]
    return torch.cat([h, torch.ones(b, 1, device=device)], 1).reshape(b, 3, 3)
