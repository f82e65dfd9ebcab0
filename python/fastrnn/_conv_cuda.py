"""CUDA Conv2d kernels on torch tensors: the calls fastrnn's conv custom ops make for CUDA inputs.

Private. Arguments are assumed validated by the caller (shapes, dtypes, one device); tensors are
made contiguous here. Everything runs on the current stream of the input's device; outputs and
workspaces come from ``fastrnn.ops._empty`` (torch's caching allocator). float32 takes the TF32
tensor cores when ``torch.backends.cudnn.allow_tf32`` is set, as cuDNN convolutions do.

* ``forward(x, weight, bias, stride, padding, dilation, groups, relu=False) -> y``
* ``backward(dy, x, weight, stride, padding, dilation, groups, needs, has_bias) -> (dx, dw, db)``
* ``conv_relu_pool_forward(x, weight, bias, stride, padding, dilation, groups) -> (y, argmax)``:
  ``max_pool2d(relu(conv2d(x, weight, bias)), 2)`` without writing the full-size convolution;
  argmax (uint8) holds each window's winner as ``2 * dp + dq``.
* ``conv_relu_pool_backward(dy, y, argmax, x, weight, stride, padding, dilation, groups, needs,
  has_bias) -> (dx, dw, db)``.
"""

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.utils.dlpack import to_dlpack

from . import _C, ops

__all__ = ["forward", "backward", "conv_relu_pool_forward", "conv_relu_pool_backward"]


def _pair(v) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _view(t: Optional[Tensor]):
    return None if t is None else to_dlpack(t)


def _geometry(x: Tensor, stride, padding, dilation, groups):
    if x.device.type != "cuda":
        raise ValueError(f"fastrnn._conv_cuda expects CUDA tensors, got a tensor on {x.device}")
    return dict(stride=_pair(stride), padding=_pair(padding), dilation=_pair(dilation), groups=int(groups),
                allow_tf32=x.dtype == torch.float32 and bool(torch.backends.cudnn.allow_tf32))


def _output_size(x: Tensor, weight: Tensor, g) -> Tuple[int, int]:
    (sh, sw), (ph, pw), (dh, dw) = g["stride"], g["padding"], g["dilation"]
    P = (x.shape[2] + 2 * ph - dh * (weight.shape[2] - 1) - 1) // sh + 1
    Q = (x.shape[3] + 2 * pw - dw * (weight.shape[3] - 1) - 1) // sw + 1
    return P, Q


def _stream(x: Tensor) -> int:
    return torch.cuda.current_stream(x.device).cuda_stream


def forward(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride, padding, dilation, groups,
            relu: bool = False) -> Tensor:
    g = _geometry(x, stride, padding, dilation, groups)
    x, weight = x.contiguous(), weight.contiguous()
    bias = None if bias is None else bias.contiguous()
    P, Q = _output_size(x, weight, g)
    y = ops._empty((x.shape[0], weight.shape[0], P, Q), x)
    _C.conv2d_cuda_forward(to_dlpack(x), to_dlpack(weight), _view(bias), to_dlpack(y), relu=relu,
                           stream=_stream(x), **g)
    return y


def _weight_grads(x, weight, needs, has_bias, g):
    dw = ops._empty(weight.shape, weight) if needs[1] else None
    db = ops._empty((weight.shape[0],), weight) if needs[2] and has_bias else None
    workspace = None
    if dw is not None:
        size = _C.conv2d_cuda_backward_weight_workspace_bytes(to_dlpack(x), to_dlpack(weight), **g)
        workspace = ops._empty((size,), x, torch.uint8)
    return dw, db, workspace


def backward(dy: Tensor, x: Tensor, weight: Tensor, stride, padding, dilation, groups,
             needs: Sequence[bool] = (True, True, True), has_bias: bool = True):
    """Gradients of conv2d: (dx, dweight, dbias), None where ``needs`` is False (or no bias)."""
    g = _geometry(x, stride, padding, dilation, groups)
    dy, x, weight = dy.contiguous(), x.contiguous(), weight.contiguous()
    dx = ops._empty(x.shape, x) if needs[0] else None
    dw, db, workspace = _weight_grads(x, weight, needs, has_bias, g)
    stream = _stream(x)
    if dx is not None:
        _C.conv2d_cuda_backward_input(to_dlpack(dy), to_dlpack(x), to_dlpack(weight), to_dlpack(dx), stream=stream, **g)
    if dw is not None or db is not None:
        _C.conv2d_cuda_backward_weight(to_dlpack(dy), to_dlpack(x), to_dlpack(weight), _view(dw), _view(db),
                                       _view(workspace), stream=stream, **g)
    return dx, dw, db


def conv_relu_pool_forward(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride, padding, dilation,
                           groups) -> Tuple[Tensor, Tensor]:
    g = _geometry(x, stride, padding, dilation, groups)
    x, weight = x.contiguous(), weight.contiguous()
    bias = None if bias is None else bias.contiguous()
    P, Q = _output_size(x, weight, g)
    shape = (x.shape[0], weight.shape[0], P // 2, Q // 2)
    y = ops._empty(shape, x)
    argmax = ops._empty(shape, x, torch.uint8)
    _C.conv_relu_pool2d_cuda_forward(to_dlpack(x), to_dlpack(weight), _view(bias), to_dlpack(y), to_dlpack(argmax),
                                     stream=_stream(x), **g)
    return y, argmax


def conv_relu_pool_backward(dy: Tensor, y: Tensor, argmax: Tensor, x: Tensor, weight: Tensor, stride, padding,
                            dilation, groups, needs: Sequence[bool] = (True, True, True), has_bias: bool = True):
    """Gradients of the fused block from the pooled gradient dy, its output y and argmax."""
    g = _geometry(x, stride, padding, dilation, groups)
    dy, y, argmax = dy.contiguous(), y.contiguous(), argmax.contiguous()
    x, weight = x.contiguous(), weight.contiguous()
    dx = ops._empty(x.shape, x) if needs[0] else None
    dw, db, workspace = _weight_grads(x, weight, needs, has_bias, g)
    if dx is None and dw is None and db is None:
        return dx, dw, db
    _C.conv_relu_pool2d_cuda_backward(to_dlpack(dy), to_dlpack(y), to_dlpack(argmax), to_dlpack(x), to_dlpack(weight),
                                      _view(dx), _view(dw), _view(db), _view(workspace), stream=_stream(x), **g)
    return dx, dw, db
