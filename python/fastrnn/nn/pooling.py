"""Drop-in torch.nn.MaxPool2d and AvgPool2d running fastrnn's kernels: the same constructor,
attributes, repr and (empty) state_dict, since they are torch's classes with another forward."""

import torch

from .. import functional as _F
from ._scripting import refuse_script

__all__ = ["MaxPool2d", "AvgPool2d"]


class MaxPool2d(torch.nn.MaxPool2d):
    """torch.nn.MaxPool2d (kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
    ceil_mode=False), computed by fastrnn."""

    __prepare_scriptable__ = refuse_script

    def forward(self, input):
        return _F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                             ceil_mode=self.ceil_mode, return_indices=self.return_indices)


class AvgPool2d(torch.nn.AvgPool2d):
    """torch.nn.AvgPool2d (kernel_size, stride=None, padding=0, ceil_mode=False,
    count_include_pad=True, divisor_override=None), computed by fastrnn."""

    __prepare_scriptable__ = refuse_script

    def forward(self, input):
        return _F.avg_pool2d_by_position(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                                         self.count_include_pad, self.divisor_override)
