"""What a trained net's units respond to: layer-1 filters as an image grid, and for a conv layer
the top 9 dataset patches per filter (after Zeiler & Fergus 2013: "each 3x3 block shows the top
9 patches for one filter"), cropped by receptive fields computed from the layer geometry.

Conv layers are counted from 1 (1 = the model's first Conv2d). A unit's activation is the conv
output before its ReLU; the ranking is the same after it for every positive activation.
"""
import math
import os

import numpy as np

from . import nn

GEOMETRY = (nn.Conv2d, nn.LocallyConnected2d, nn.MaxPool2d, nn.AvgPool2d)
POINTWISE = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.LocalResponseNorm, nn.Dropout)
FILL = np.array([0.55, 0.65, 0.8], np.float32)        # pixels outside the image, in a patch
BACKGROUND = np.array([0.85, 0.75, 0.55], np.float32)  # between patches: not a grey level


class ReceptiveField:
    """The input window of one output unit, per axis (rows, cols): output (i, j) sees input rows
    start[0] + i*jump[0] ... + size[0] - 1 (likewise columns). start < 0 means padding."""

    def __init__(self, size, jump, start):
        self.size, self.jump, self.start = tuple(size), tuple(jump), tuple(start)

    def box(self, i, j, image_hw=None):
        """(top, left, bottom, right), half-open, of output (i, j); clipped to image_hw (H, W)."""
        top, left = self.start[0] + i * self.jump[0], self.start[1] + j * self.jump[1]
        box = [top, left, top + self.size[0], left + self.size[1]]
        if image_hw is not None:
            h, w = image_hw
            box = [min(max(box[0], 0), h), min(max(box[1], 0), w), min(max(box[2], 0), h),
                   min(max(box[3], 0), w)]
        return tuple(box)

    def __repr__(self):
        return f"ReceptiveField(size={self.size}, jump={self.jump}, start={self.start})"


def receptive_field(model, upto):
    """Receptive field of the units after layer `upto` (an index into model.layers) in input
    pixels. Per axis, through a layer with kernel k, stride s, padding p:
    size += (k - 1) * jump;  start -= p * jump;  jump *= s."""
    layers = list(model.layers if hasattr(model, "layers") else model)
    if not -len(layers) <= upto < len(layers):
        raise ValueError(f"receptive_field: layer {upto} does not exist; the model has {len(layers)} layers")
    size, jump, start = [1, 1], [1, 1], [0, 0]
    for i, layer in enumerate(layers[: upto % len(layers) + 1]):
        if isinstance(layer, GEOMETRY):
            for a in range(2):
                k, s, p = layer.kernel_size[a], layer.stride[a], layer.padding[a]
                size[a] += (k - 1) * jump[a]
                start[a] -= p * jump[a]
                jump[a] *= s
        elif not isinstance(layer, POINTWISE):
            raise ValueError(f"receptive_field: layer {i} ({layer!r}) has no spatial geometry; "
                             "a receptive field is defined only up to the last conv/pool layer")
    return ReceptiveField(size, jump, start)


def conv_index(model, k):
    """Index in model.layers of the k-th Conv2d (k counts from 1)."""
    convs = [i for i, layer in enumerate(model.layers) if isinstance(layer, nn.Conv2d)]
    if not 1 <= int(k) <= len(convs):
        raise ValueError(f"conv layer {k} does not exist: the model has {len(convs)} Conv2d layers "
                         f"(count from 1)")
    return convs[int(k) - 1]


def top_activations(model, x, index, k=9, mode="image", batch_size=64):
    """For every channel of layer `index`'s output, the k highest activations over the images
    x (N, C, H, W): values (F, k), image numbers (F, k) and output positions (F, k, 2) as
    (row, col), best first (ties: earlier image first); image -1 where fewer than k exist.
    mode "image": one entry per image, at its maximum over positions (Zeiler & Fergus);
    mode "position": the top k (image, position) pairs, an image may appear more than once."""
    if mode not in ("image", "position"):
        raise ValueError(f"top_activations: mode must be 'image' or 'position', got {mode!r}")
    was_training = model.training
    model.eval()
    vals = imgs = pos = None
    try:
        for b0 in range(0, len(x), batch_size):
            a = np.asarray(model.features(np.ascontiguousarray(x[b0:b0 + batch_size]), index))
            bn, f, oh, ow = a.shape
            if mode == "image":  # per image: max over positions -> (F, B)
                flat = a.reshape(bn, f, oh * ow)
                arg = flat.argmax(axis=2)
                v, n, p = np.take_along_axis(flat, arg[..., None], 2)[..., 0].T, np.tile(np.arange(bn), (f, 1)), arg.T
            else:                # every (image, position) of a channel -> (F, B*P)
                flat = a.transpose(1, 0, 2, 3).reshape(f, -1)
                v, n, p = flat, np.tile(np.arange(bn).repeat(oh * ow), (f, 1)), np.tile(np.arange(oh * ow), (f, bn))
            cand = (v, n + b0, np.stack([p // ow, p % ow], -1))
            if vals is None:
                vals = np.full((f, k), -np.inf, np.float32)
                imgs, pos = np.full((f, k), -1, np.int64), np.zeros((f, k, 2), np.int64)
            allv = np.concatenate([vals, cand[0]], 1)
            alln, allp = np.concatenate([imgs, cand[1]], 1), np.concatenate([pos, cand[2]], 1)
            order = np.argsort(-allv, axis=1, kind="stable")[:, :k]  # running entries come first
            vals = np.take_along_axis(allv, order, 1)
            imgs = np.take_along_axis(alln, order, 1)
            pos = np.take_along_axis(allp, order[..., None], 1)
    finally:
        model.train(was_training)
    imgs[~np.isfinite(vals)] = -1
    return vals, imgs, pos


def crop_patch(img, rf, i, j):
    """The receptive-field window (C, size_h, size_w) of output (i, j) in img (C, H, W);
    pixels outside the image are NaN."""
    c, h, w = img.shape
    top, left, bottom, right = rf.box(i, j)
    out = np.full((c, rf.size[0], rf.size[1]), np.nan, np.float32)
    t, l_, b, r = rf.box(i, j, (h, w))
    out[:, t - top:b - top, l_ - left:r - left] = img[:, t:b, l_:r]
    return out


def _to_rgb(p):
    """Patch (C, h, w) -> (h, w, 3) in [0, 1], min-max over its finite pixels; NaN -> FILL."""
    finite = np.isfinite(p)
    lo, hi = (np.nanmin(p), np.nanmax(p)) if finite.any() else (0.0, 1.0)
    q = (p - lo) / (hi - lo if hi > lo else 1.0)
    q = np.repeat(q, 3, axis=0) if q.shape[0] == 1 else q[:3]
    q = q.transpose(1, 2, 0)
    return np.where(np.isfinite(q), q, FILL).astype(np.float32)


def tile(blocks, gap=1, block_gap=4, background=BACKGROUND):
    """blocks (F, R, S, C, h, w): F blocks of R x S patches -> one (H, W, 3) image; blocks in a
    near-square grid, patches min-max normalised one by one."""
    f, r, s, _, h, w = blocks.shape
    cols = int(math.ceil(math.sqrt(f)))
    rows = int(math.ceil(f / cols))
    bh, bw = r * h + (r - 1) * gap, s * w + (s - 1) * gap
    out = np.full((rows * bh + (rows - 1) * block_gap, cols * bw + (cols - 1) * block_gap, 3),
                  background, np.float32)
    for b in range(f):
        y0, x0 = (b // cols) * (bh + block_gap), (b % cols) * (bw + block_gap)
        for u in range(r):
            for v in range(s):
                y, x = y0 + u * (h + gap), x0 + v * (w + gap)
                out[y:y + h, x:x + w] = _to_rgb(blocks[b, u, v])
    return out


def save_png(grid, path, title, min_pixels=640):
    """Write an (H, W, 3) grid, magnified by an integer factor to at least min_pixels wide."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    z = max(1, int(math.ceil(min_pixels / grid.shape[1])))
    big = grid.repeat(z, axis=0).repeat(z, axis=1)
    head = 16 * (title.count("\n") + 1) + 10  # pixels of title above the grid
    fig = plt.figure(figsize=(big.shape[1] / 100, (big.shape[0] + head) / 100), dpi=100)
    ax = fig.add_axes([0, 0, 1, big.shape[0] / (big.shape[0] + head)])
    ax.imshow(big, interpolation="nearest")
    ax.axis("off")
    fig.suptitle(title, fontsize=9, y=1 - 4 / (big.shape[0] + head), va="top")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def filter_grid(model, path, max_filters=64):
    """The first Conv2d's weights (OC, C, KH, KW), C = 1 (grey) or 3 (RGB), as a PNG grid."""
    w = model[conv_index(model, 1)].weight[:max_filters]
    if w.shape[1] not in (1, 3):
        raise ValueError(f"filter_grid: layer-1 weights {w.shape} have {w.shape[1]} input channels; "
                         "only grey (1) or RGB (3) filters can be drawn")
    return save_png(tile(w[:, None, None], block_gap=1), path,
                    f"layer 1: {w.shape[0]} filters {w.shape[2]}x{w.shape[3]}")


def top_patch_grid(model, x, layer, path, mode="image", max_filters=64, batch_size=64):
    """PNG of the top 9 patches of each filter of conv layer `layer` (counted from 1) over the
    images x (N, C, H, W); one 3x3 block per filter, best patch top left."""
    index = conv_index(model, layer)
    rf = receptive_field(model, index)
    _, imgs, pos = top_activations(model, x, index, 9, mode, batch_size)
    imgs, pos = imgs[:max_filters], pos[:max_filters]
    blocks = np.full((len(imgs), 9, x.shape[1], *rf.size), np.nan, np.float32)
    for f in range(len(imgs)):
        for t in range(9):
            if imgs[f, t] >= 0:
                blocks[f, t] = crop_patch(x[imgs[f, t]], rf, *pos[f, t])
    title = (f"conv{layer}: top 9 patches of each of {len(imgs)} filters ({mode} mode, {len(x)} images)\n"
             f"receptive field {rf.size[0]}x{rf.size[1]}, jump {rf.jump[0]}; blue = outside the image")
    return save_png(tile(blocks.reshape(len(imgs), 3, 3, *blocks.shape[2:])), path, title)


def visualize(checkpoint, out, data=None, layers=None, n_images=500, mode="image",
              max_filters=64, seed=0):
    """layer1_filters.png and convK_top9.png for K in layers (default 1, 2, 3 or as many conv
    layers as the net has), from a seeded sample of n_images test images of `data` (default:
    the checkpoint's data set, preprocessed as in its training). The images are held in
    memory: n_images * C * H * W floats."""
    from . import sources, transfer
    from .data import make_batch
    model, config, stats = transfer.load_model(checkpoint)
    if layers is None:
        layers = range(1, 1 + min(3, sum(isinstance(m, nn.Conv2d) for m in model.layers)))
    for k in layers:
        conv_index(model, k)  # fail before loading any data
    _, test_set, _, test_tf, _ = sources.resolve(data or config["data"], config["model"],
                                                 tuple(config["input_shape"]), config["seed"], stats)
    idx = np.sort(np.random.default_rng(seed).permutation(len(test_set))[:n_images])
    x, _, _ = make_batch(test_set, idx, test_tf, seed, 0)
    if x is None:
        raise ValueError(f"visualize: none of the {len(idx)} sampled images of {data} could be read")
    os.makedirs(out, exist_ok=True)
    paths = [filter_grid(model, os.path.join(out, "layer1_filters.png"), max_filters)]
    for k in layers:
        paths.append(top_patch_grid(model, x, k, os.path.join(out, f"conv{k}_top9.png"), mode,
                                    max_filters))
    return paths
