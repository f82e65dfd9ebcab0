"""Drop-in torch.nn.Conv2d, and ConvReLUPool2d: Conv2d -> ReLU -> MaxPool2d(2, 2) as one fused
layer whose parameters are a Conv2d's.

Both subclass torch.nn.Conv2d, so the constructor, the parameters (weight, bias), their
initialisation, ``repr`` and ``state_dict`` are torch's own: a checkpoint of a torch.nn.Conv2d
loads into either, and theirs into it. Padding modes other than 'zeros' pad in Python with
torch.nn.functional.pad first, as torch.nn.Conv2d itself does.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import functional as _F
from ._scripting import refuse_script

__all__ = ["Conv2d", "ConvReLUPool2d"]


class Conv2d(torch.nn.Conv2d):
    """torch.nn.Conv2d running fastrnn's convolution kernels."""

    _conv_function = staticmethod(_F.conv2d)

    __prepare_scriptable__ = refuse_script

    def _conv_forward(self, input: Tensor, weight: Tensor, bias):  # noqa: A002 - torch's name
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)  # noqa: A001
            # (0, 0) as torch.nn.Conv2d passes it: torch's type errors list the arguments' types
            return self._conv_function(input, weight, bias, self.stride, (0, 0), self.dilation, self.groups)
        return self._conv_function(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class ConvReLUPool2d(Conv2d):
    """max_pool2d(relu(conv2d(x)), 2, 2) in one fused pass and one backward. Takes
    torch.nn.Conv2d's arguments; ``weight`` and ``bias`` are a Conv2d's."""

    _conv_function = staticmethod(_F.conv_relu_pool2d)
