"""CPU kernels for Conv4's first block: conv 3x3, normalisation, ReLU and 2x2 max-pooling.

The first block works on the full-resolution input and its activation is 4x the next block's,
so it dominates Conv4's time and memory on CPU. :func:`fused_first_block` computes the block
``max_pool2d(relu(norm(conv(x))), 2)`` with channels-last output:

- with few input channels (1 for Omniglot, 3 for RGB) the convolution is a matrix product of
  the unfolded input (:func:`conv3x3_matmul`), about 2x faster than oneDNN's direct
  convolution forward + backward;
- a batch-statistics norm (:class:`FoldableNorm`) folds into that product, and the product,
  pooling and ReLU run a few images at a time (:class:`_MatmulPoolReLU`), so the
  full-resolution output is never stored;
- otherwise pooling keeps only its argmax indices for the backward (:class:`_MaxPool2x2`).

Everything here is differentiable to any order (second-order MAML) and tested against the
textbook block in float64 (tests/test_models.py). None of it runs inside ``torch.func``
transforms (:func:`supports_channels_last`): ``vmap`` cannot change memory formats.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@runtime_checkable
class FoldableNorm(Protocol):
    """A batch-statistics norm that a convolution can absorb: it names the rows its
    statistics come from and the affine map those statistics give
    (:class:`metalearn.models.norm.BatchStatNorm`)."""

    def stat_rows(self, n: int, n_support: int | None = None) -> int: ...

    def scale_shift(self, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]: ...


def supports_channels_last(x: Tensor) -> bool:
    """False inside ``torch.func`` transforms: ``vmap`` cannot change memory formats."""
    # private, but the only way to ask without trying: the fallback below works on any torch
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
    it. ReLU after pooling is the textbook conv, norm, ReLU, pool: both are monotone, so they
    commute, and the ReLU runs on the 4x smaller pooled tensor.
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


def conv3x3_norm_pool_relu(x: Tensor, weight: Tensor, bias: Tensor | None, norm: FoldableNorm,
                           n_support: int | None = None) -> Tensor:
    """A whole first block: 3x3 convolution (padding 1), batch-statistics normalisation, ReLU and
    2x2 max-pooling, the convolution and normalisation as one matrix product.

    The convolution is linear in the unfolded input patches ``p`` (``C_in * 9`` values each), so
    the batch mean and (biased) variance of output channel ``c`` are ``w_c . mean(p) + b_c``
    and ``w_c^T Cov(p) w_c``: they come from the patches' small mean vector and covariance
    matrix, and the normalisation folds into the weights and bias of the product. The result is
    the function ``norm(conv(x))`` (statistics of the rows ``norm.stat_rows`` names: all rows,
    or the support rows with ``norm="task"``), gradients of any order included, without the
    normalisation's passes over the full-resolution output. The product, pooling and ReLU then
    run a few images at a time (:class:`_MatmulPoolReLU`), so that output is never stored whole.

    Shapes:
        ``x``: ``(N, C_in, H, W)``; ``weight``: ``(C_out, C_in, 3, 3)`` ->
        ``(N, C_out, H // 2, W // 2)`` (channels-last).
    """
    n, c_in, h, w = x.shape
    c_out, k = weight.shape[0], c_in * 9
    cols = unfold3x3(x)  # (n, k, h*w): each pixel's patch is a column
    rows = norm.stat_rows(n, n_support)
    stats = cols[:rows]
    mu = stats.mean((0, 2))
    centred = stats - mu[:, None]
    cov = torch.bmm(centred, centred.transpose(1, 2)).sum(0) / (rows * h * w)
    w2d = weight.reshape(c_out, k)
    mean = w2d @ mu if bias is None else w2d @ mu + bias
    var = ((w2d @ cov) * w2d).sum(1)
    # the conv bias cancels in the normalisation; (mean - bias) keeps it in the graph, with
    # gradient 0 as through batch norm
    scale, shift = norm.scale_shift(mean if bias is None else mean - bias, var)
    return _MatmulPoolReLU.apply(cols, (w2d * scale[:, None]).t(), shift, h, w)


def fused_first_block(x: Tensor, conv: nn.Conv2d, norm: nn.Module,
                      n_support: int | None = None) -> Tensor:
    """``max_pool2d(relu(norm(conv(x), n_support)), 2)`` for Conv4's first block, with the
    kernels above, on channels-last tensors (CPU; not inside ``torch.func`` transforms, see
    :func:`supports_channels_last`).

    ``conv`` is a 3x3 convolution with padding 1 and ``norm`` takes ``(x, n_support)``. With at
    most 4 input channels the convolution is a matrix product, into which a
    :class:`FoldableNorm` folds (:func:`conv3x3_norm_pool_relu`); any other norm (group norm,
    none) runs on the product's channels-last output.

    Shapes:
        ``x``: ``(N, C_in, H, W)`` -> ``(N, C_out, H // 2, W // 2)`` (channels-last).
    """
    if conv.in_channels <= 4:
        if isinstance(norm, FoldableNorm):
            # conv, norm, pooling and ReLU in one, a few images at a time
            return conv3x3_norm_pool_relu(x, conv.weight, conv.bias, norm, n_support)
        x = conv3x3_matmul(x, conv.weight, conv.bias)
    else:
        x = conv(x)
    x = norm(x.contiguous(memory_format=torch.channels_last), n_support)
    # ReLU after the pooling: they commute (relu is monotone), so output and gradients are
    # those of ReLU-then-pool, with the ReLU on the 4x smaller tensor; the pooling keeps only
    # its indices, as this activation is by far the largest
    return F.relu(_MaxPool2x2.apply(x))
