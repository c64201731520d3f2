"""Conv4: the four-block convolutional backbone of MAML and Prototypical Networks.

Finn, Abbeel and Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
ICML 2017; Snell, Swersky and Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017;
Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016.

Each block is a 3x3 convolution (padding 1), normalisation, ReLU and 2x2 max-pooling (computed
as pooling then ReLU, which is the same function, see :meth:`Conv4.features`). The
standard widths are 64 filters for Omniglot (28x28) and 32 for mini-ImageNet (84x84).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearn.models.heads import Backbone
from metalearn.models.norm import BatchStatNorm, check_norm, make_norm


def supports_channels_last(x: Tensor) -> bool:
    """False inside ``torch.func`` transforms: ``vmap`` cannot change memory formats."""
    peek = getattr(torch._C._functorch, "peek_interpreter_stack", None)
    if peek is not None:
        return peek() is None
    try:
        x.is_contiguous(memory_format=torch.channels_last)
    except RuntimeError:  # "NYI: querying is_contiguous inside of vmap"
        return False
    return True


def unfold3x3(x: Tensor) -> Tensor:
    """``F.unfold(x, 3, padding=1)``: the 3x3 patches of ``x`` ``(N, C, H, W)`` as columns
    ``(N, C*9, H*W)``, made by one strided copy of the zero-padded input (about 9x faster than
    ``unfold``'s im2col on CPU for 1-3 channels)."""
    n, c, h, w = x.shape
    xp = F.pad(x, (1, 1, 1, 1))
    s0, s1, s2, s3 = xp.stride()
    return xp.as_strided((n, c, 3, 3, h, w), (s0, s1, s2, s3, s2, s3)).reshape(n, c * 9, h * w)


def conv3x3_matmul(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """3x3 convolution (padding 1) as one batched matrix product, with a channels-last result.

    For the few input channels of the first layer (1 for Omniglot, 3 for RGB) oneDNN's direct
    convolution is slow on CPU and its output is NCHW; unfolding the small input and
    multiplying gives the channels-last output directly, about 2x faster forward + backward.
    The unfolded patches ``(N, C_in*9, H*W)`` enter the product transposed, never copied.

    Shapes:
        ``x``: ``(N, C_in, H, W)``; ``weight``: ``(C_out, C_in, 3, 3)`` -> ``(N, C_out, H, W)``.
    """
    n, c_in, h, w = x.shape
    c_out = weight.shape[0]
    cols = unfold3x3(x).transpose(1, 2)
    w2d = weight.reshape(c_out, c_in * 9).t().expand(n, c_in * 9, c_out)
    y = torch.bmm(cols, w2d) if bias is None else torch.baddbmm(bias, cols, w2d)
    return y.view(n, h, w, c_out).permute(0, 3, 1, 2)


class _MaxPool2x2(torch.autograd.Function):
    """2x2 max-pooling that keeps only the argmax indices for its backward.

    ``F.max_pool2d`` saves its whole input as well, although its gradient needs the indices
    alone (the input tensor only gives the shape and memory format): here the backward gets an
    uninitialised stand-in of the same shape and strides, which it never reads, so a task's
    graph holds a third of the pooling memory. Used for the first block only, whose activation
    is 4x the next one's, when its normalisation is not folded into :class:`_MatmulPoolReLU`
    (group norm or none); elsewhere the Python overhead of a custom function outweighs the
    saving (measured 2-9% slower on first-order MAML with it in every block). The backward is
    itself differentiable (it is ``max_pool2d_with_indices_backward``, linear in the incoming
    gradient), as second-order MAML needs.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out, indices = torch.ops.aten.max_pool2d_with_indices(x, [2, 2], [2, 2])
        ctx.save_for_backward(indices)
        ctx.like = (x.shape, x.stride())
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (indices,) = ctx.saved_tensors
        like = torch.empty_strided(*ctx.like, dtype=grad.dtype, device=grad.device)
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad, like, [2, 2], [2, 2], [0, 0], [1, 1], False, indices)


class _MatmulPoolReLU(torch.autograd.Function):
    """``relu(max_pool2d(cols^T @ weight + shift, 2))`` for ``n`` images of ``h x w`` pixels given
    as unfolded patches ``cols`` ``(n, k, h*w)``, a few images at a time; channels-last result.

    The first block's full-resolution output is the largest tensor of Conv4 (16 MiB for a
    5-way 1-shot episode of 80 Omniglot images); written whole, every pass over it (the product,
    pooling, the pooling's zero-filled gradient, the weight gradient's product) goes to main
    memory. Chunks of about :data:`CHUNK_BYTES` stay in the cores' caches, and only the pooled
    output, its argmax indices and ``cols`` are kept for the backward (the full-resolution
    output is never stored). The backward is made of differentiable operations (it is linear
    in the incoming gradient for fixed argmax indices), so second-order gradients flow through
    it. ReLU after pooling is the textbook conv, norm, ReLU, pool: both are monotone.
    """

    @staticmethod
    def forward(ctx, cols: Tensor, weight: Tensor, shift: Tensor, h: int, w: int) -> Tensor:
        n, k, _ = cols.shape
        c = weight.shape[1]
        out = cols.new_empty(n, h // 2, w // 2, c).permute(0, 3, 1, 2)
        idx = torch.empty(n, h // 2, w // 2, c, dtype=torch.long, device=cols.device).permute(0, 3, 1, 2)
        step = _chunk_images(h * w * c * cols.element_size())
        buf = cols.new_empty(min(step, n), h * w, c)  # reused: stays in cache
        wb = weight.expand(min(step, n), k, c)
        for a in range(0, n, step):
            b = min(n, a + step)
            y = torch.baddbmm(shift, cols[a:b].transpose(1, 2), wb[: b - a], out=buf[: b - a])
            y = y.view(b - a, h, w, c).permute(0, 3, 1, 2)
            torch.ops.aten.max_pool2d_with_indices.out(y, [2, 2], [2, 2], [0, 0], [1, 1], False,
                                                       out=out[a:b], indices=idx[a:b])
            out[a:b].clamp_min_(0)
        ctx.save_for_backward(cols, weight, idx, out)
        ctx.dims = (h, w)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        cols, weight, idx, out = ctx.saved_tensors
        h, w = ctx.dims
        n, k, _ = cols.shape
        c = weight.shape[1]
        need_cols, need_weight, need_shift = ctx.needs_input_grad[:3]
        grad = torch.ops.aten.threshold_backward(grad, out, 0)
        step = _chunk_images(h * w * c * cols.element_size())
        # pooling's backward only moves values: the shift's gradient is the pooled gradient's sum
        d_shift = grad.sum((0, 2, 3)) if need_shift else None
        d_weight = None
        d_cols = []
        for a in range(0, n, step):
            b = min(n, a + step)
            like = grad.new_empty(b - a, h, w, c).permute(0, 3, 1, 2)  # shape and strides only
            g = torch.ops.aten.max_pool2d_with_indices_backward(
                grad[a:b], like, [2, 2], [2, 2], [0, 0], [1, 1], False, idx[a:b])
            g = g.permute(0, 2, 3, 1).reshape(b - a, h * w, c)  # a view: g is channels-last
            if need_weight:
                part = torch.bmm(cols[a:b], g).sum(0)
                d_weight = part if d_weight is None else d_weight + part
            if need_cols:
                d_cols.append(torch.bmm(weight.expand(b - a, k, c), g.transpose(1, 2)))
        return (torch.cat(d_cols) if need_cols else None), d_weight, d_shift, None, None


CHUNK_BYTES = 2 << 20
"""Size of the full-resolution slice that :class:`_MatmulPoolReLU` computes at once: about
the L2 cache of a core; 1-4 MiB measured alike on Conv4's first block."""


def _chunk_images(image_bytes: int) -> int:
    return max(1, CHUNK_BYTES // image_bytes)


def conv3x3_norm_pool_relu(x: Tensor, weight: Tensor, bias: Tensor | None, norm: BatchStatNorm,
                           n_support: int | None = None) -> Tensor:
    """A whole first block: 3x3 convolution (padding 1), batch-statistics normalisation, ReLU and
    2x2 max-pooling, the convolution and normalisation as one matrix product.

    The convolution is linear in the unfolded input patches ``p`` (``C_in * 9`` values each), so
    the batch mean and (biased) variance of output channel ``c`` are ``w_c . mean(p) + b_c``
    and ``w_c^T Cov(p) w_c``: they come from the patches' small mean vector and covariance
    matrix, and the normalisation folds into the weights and bias of the product. The result is
    the function ``norm(conv(x))`` (statistics of all rows, or of the support rows with
    ``norm="task"``), gradients of any order included, without the normalisation's passes over
    the full-resolution output. The product, pooling and ReLU then run a few images at a time
    (:class:`_MatmulPoolReLU`), so that output is never stored whole.

    Shapes:
        ``x``: ``(N, C_in, H, W)``; ``weight``: ``(C_out, C_in, 3, 3)`` ->
        ``(N, C_out, H // 2, W // 2)`` (channels-last).
    """
    n, c_in, h, w = x.shape
    c_out, k = weight.shape[0], c_in * 9
    cols = unfold3x3(x)  # (n, k, h*w): each pixel's patch is a column
    rows = n if not (norm.support_stats and n_support is not None and n_support < n) else n_support
    stats = cols[:rows]
    mu = stats.mean((0, 2))
    centred = stats - mu[:, None]
    cov = torch.bmm(centred, centred.transpose(1, 2)).sum(0) / (rows * h * w)
    w2d = weight.reshape(c_out, k)
    mean = w2d @ mu if bias is None else w2d @ mu + bias
    var = ((w2d @ cov) * w2d).sum(1)
    scale = norm.weight * torch.rsqrt(var + norm.eps)
    # (bias - mean) keeps the conv bias in the graph: its gradient is 0, as through batch norm
    shift = norm.bias + ((bias - mean) if bias is not None else -mean) * scale
    return _MatmulPoolReLU.apply(cols, (w2d * scale[:, None]).t(), shift, h, w)


class Conv4(Backbone):
    """Four conv blocks, flattened, optionally followed by a linear head.

    Args:
        in_channels: Input channels (1 for Omniglot, 3 for mini-ImageNet).
        hidden: Filters per block (64 for 28x28 inputs, 32 for 84x84).
        out_features: Size of the linear head, or ``None`` to return flat features.
        norm: One of ``"transductive"``, ``"task"``, ``"group"``, ``"none"``
            (see :mod:`metalearn.models.norm`).
        image_size: Input height and width; fixes ``out_dim``.
        n_blocks: Number of blocks (4 in the papers).
        channels_last: Run the convolutions in channels-last memory format (same results,
            faster with oneDNN); ``None`` means on CPU only.

    Shapes:
        ``x``: ``(N, in_channels, image_size, image_size)`` -> ``(N, out_features)``, or
        ``(N, out_dim)`` when ``out_features`` is None. ``out_dim = hidden * s * s`` with
        ``s = image_size // 2**n_blocks`` (64 for 28x28, 800 for 84x84 with 32 filters).

    Examples:
        >>> import torch
        >>> net = Conv4(in_channels=1, hidden=8, out_features=5)
        >>> net(torch.randn(3, 1, 28, 28)).shape
        torch.Size([3, 5])
        >>> Conv4(in_channels=3, hidden=32, image_size=84).out_dim
        800
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64, out_features: int | None = None,
                 norm: str = "transductive", image_size: int = 28, n_blocks: int = 4,
                 channels_last: bool | None = None):
        super().__init__()
        self.norm = check_norm(norm)
        self.channels_last = channels_last
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        size = image_size
        for i in range(n_blocks):
            self.convs.append(nn.Conv2d(in_channels if i == 0 else hidden, hidden, 3, padding=1))
            self.norms.append(make_norm(norm, hidden))
            size //= 2
        if size < 1:
            raise ValueError(f"image_size {image_size} is too small for {n_blocks} pooling blocks")
        self.out_dim = hidden * size * size
        self._init_head(out_features)

    def features(self, x: Tensor, n_support: int | None = None) -> Tensor:
        cl = self.channels_last
        cl = (cl or (cl is None and x.device.type == "cpu")) and supports_channels_last(x)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            first = cl and i == 0 and conv.in_channels <= 4
            if first and isinstance(norm, BatchStatNorm):
                # conv, norm, pooling and ReLU in one, a few images at a time
                x = conv3x3_norm_pool_relu(x, conv.weight, conv.bias, norm, n_support)
                continue
            x = conv3x3_matmul(x, conv.weight, conv.bias) if first else conv(x)
            if cl:
                # oneDNN picks the layout from the input's; a 1-channel input is ambiguous
                # and would keep the whole network in NCHW, where pooling and batch norm
                # are ~10x slower on CPU. A no-op once the activations are channels-last.
                x = x.contiguous(memory_format=torch.channels_last)
            x = norm(x, n_support)
            # ReLU after the pooling: relu and max commute (relu is monotone), so output and
            # gradients (first and second order) are those of normalise-ReLU-pool, with the ReLU
            # and its backward on a 4x smaller tensor (about 1.25x on Conv4's forward+backward)
            # the first block's activation is by far the largest: keep only its pooling indices
            x = F.relu(_MaxPool2x2.apply(x) if cl and i == 0 else F.max_pool2d(x, 2))
        return x.flatten(1)
