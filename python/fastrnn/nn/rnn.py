"""Drop-in torch.nn.RNN, LSTM, GRU and their cells, running fastrnn's fused kernels.

Each class subclasses its torch.nn counterpart, so the constructor, the parameters (names,
shapes, registration order, initialisation), ``state_dict``, ``repr``, pickling, ``.to()`` and
``flatten_parameters()`` are torch's own; only ``forward`` is replaced. Shape errors come from
torch's own checks (``check_forward_args``), so they carry torch's exception types and messages;
what ATen refuses past those (a state's count or dtype, an empty sequence) is raised by torch.nn's
own forward run on the same arguments.

Each layer and direction is one kernel call over the whole sequence (no Python loop over time);
a PackedSequence goes to the kernels as it is, so padding is never computed on.

RNN, LSTM and GRU also take two keyword-only arguments torch's layers lack, both active only in
training mode (Gal & Ghahramani's variational dropout: one mask per sequence, the same at every
step, scaled by 1/(1-p)):

* ``input_dropout``: each layer's input x_t is multiplied by a (batch, features) mask, drawn per
  layer and shared by a bidirectional layer's two directions (they read one x in the kernel);
* ``recurrent_dropout``: h_{t-1} is multiplied by a (batch, hidden) mask where it enters the
  recurrent product W_hh h_{t-1}, inside the fused kernel, one mask per layer and direction.

The masks come from torch's default generator, so ``torch.manual_seed`` reproduces them.
"""

import numbers
import threading
from typing import NoReturn, Optional

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from .. import functional as _F
from .. import ops
from ..ops import CPU_DTYPES, DIRECT, FUNCTION, any_requires_grad, choose, contiguous, dtype_name
from ._scripting import refuse_script

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"]

_CELL_NAMES = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}  # by module.mode
_MISSING = object()


def _check_dtype(input: Tensor, what: str) -> None:  # noqa: A002
    if input.dtype in CPU_DTYPES and input.is_cpu:  # (the common case, quickly)
        return
    supported = ops.supported_dtypes(input)
    if input.dtype not in supported:
        names = " and ".join(", ".join(dtype_name(d) for d in supported).rsplit(", ", 1))
        raise RuntimeError(f"{what}: fastrnn's kernels support {names}, got {dtype_name(input.dtype)}")


def _check_devices(input: Tensor, hidden, params) -> None:  # noqa: A002
    """torch.nn's RNN device checks (hidden states first, then parameters), in its words."""
    if input.is_cpu and all(t is None or t.is_cpu for t in hidden) and all(t is None or t.is_cpu for t in params):
        return  # (a device object per tensor costs a batch-1 call microseconds)
    device = input.device
    for kind, tensors in (("hidden", hidden), ("parameter", params)):
        for t in tensors:
            if t is not None and t.device != device:
                raise RuntimeError(f"Input and {kind} tensors are not at the same device, found input tensor at "
                                   f"{device} and {kind} tensor at {t.device}")


class _ZeroStates(threading.local):
    """Zero initial states, kept per thread and handed to every CPU call that has no hx.

    The kernels only read h0 and c0, and a zero state is never returned to the caller, so one
    tensor per (shape, dtype, device) serves every layer, direction and call: a batch-1 call
    then allocates nothing for its absent state (each allocation costs it microseconds). States
    over 1 MiB, whose allocation a call does not notice, are not kept.
    """

    def __init__(self):
        self.kept = {}

    def get(self, like: Tensor, batch: int, width: int) -> Tensor:
        key = (batch, width, like.dtype, like.device)
        zeros = self.kept.get(key)
        if zeros is None:
            # Made outside inference mode even when called in it: an inference tensor kept here
            # would reach a later training call, and autograd refuses to save one.
            with torch.inference_mode(False):
                zeros = like.new_zeros(batch, width)
            if zeros.nbytes <= 1 << 20:
                if len(self.kept) >= 16:
                    self.kept.clear()
                self.kept[key] = zeros
        return zeros


_zero_states = _ZeroStates()


def _zero_state(like: Tensor, batch: int, width: int) -> Tensor:
    """A (batch, width) zero initial state like `like`: kept zeros for a plain eager CPU call;
    fresh ones on CUDA (kept zeros made on one stream could be read on another too early) and
    under tracing or functorch (a kept tensor must not outlive the transform that made it)."""
    if like.is_cpu and choose(like, False) == DIRECT:
        return _zero_states.get(like, batch, width)
    return like.new_zeros(batch, width)


def _probability(name: str, p) -> float:
    """A dropout probability checked as torch.nn checks `dropout`: float() first (its TypeError
    for None or a complex, its ValueError for a string that is no number), then a number in
    [0, 1] that is not a bool, in torch's words with this argument's name."""
    value = float(p)
    if not isinstance(p, numbers.Number) or isinstance(p, bool) or not 0 <= p <= 1:
        raise ValueError(f"{name} should be a number in range [0, 1] representing the probability of an element "
                         f"being zeroed")
    return value


def _two_states(hx) -> bool:
    """hx is what ATen's LSTM takes: a tuple or list of two tensors."""
    return isinstance(hx, (tuple, list)) and len(hx) == 2 and isinstance(hx[0], Tensor) and isinstance(hx[1], Tensor)


def _raise_torchs_error(module, given: tuple, refusal: str) -> NoReturn:
    """Raises torch's own error for arguments fastrnn refuses past torch.nn's Python checks,
    where ATen raises it (a state's count or dtype, an empty sequence): torch.nn's forward runs
    on the same arguments, so the type and words are torch's, whichever ATen path words them
    (oneDNN's LSTM words a state's dtype its own way). Only arguments torch refuses before
    computing much, and never crashes on, come here. Should torch take them after all, fastrnn's
    kernels still cannot: RuntimeError with the refusal."""
    module._torch_forward(*given)
    raise RuntimeError(f"{type(module).__name__}: {refusal}")


def _empty_results(like: Tensor, shapes, inputs) -> list:
    """Zeros of these shapes, each with no element (a batch of 0, a cell's hidden size of 0),
    attached to the graph as torch.nn's are: backward through them gives each input that
    requires grad a zero gradient (torch's answer: zeros, not None), and those gradients depend
    on every input in turn, as torch's do, so a second derivative (create_graph, torch.func)
    finds a graph and gives zeros."""
    results = [like.new_zeros(shape) for shape in shapes]
    if torch.is_grad_enabled():
        attached = [t.narrow(0, 0, 0).sum() for t in inputs if t is not None and t.requires_grad]
        if attached:
            total = sum(attached)  # a 0 whose gradient reaches every input
            anchor = total * total + total  # still 0; its gradient (2 total + 1) keeps a graph
            results = [r + anchor for r in results]
    return results


def _dropout_mask(shape, p: float, like: Tensor) -> Tensor:
    """A variational dropout mask: 0 with probability p, else 1/(1-p) (all zeros when p is 1)."""
    if p == 1:
        return like.new_zeros(shape)
    return like.new_empty(shape).bernoulli_(1 - p).div_(1 - p)


class _FusedRNNBase:
    """forward() for RNN, LSTM and GRU; mixed in before the torch.nn class."""

    __prepare_scriptable__ = refuse_script

    def __init__(self, *args, input_dropout: float = 0.0, recurrent_dropout: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.input_dropout = _probability("input_dropout", input_dropout)
        self.recurrent_dropout = _probability("recurrent_dropout", recurrent_dropout)
        # The masks of the last training forward, per layer (input mask, [mask per direction]),
        # in the kernels' batch order (a PackedSequence's sorted order); for tests.
        self._dropout_masks = []

    def extra_repr(self) -> str:
        s = super().extra_repr()
        for name in ("input_dropout", "recurrent_dropout"):
            if getattr(self, name, 0.0) != 0:
                s += f", {name}={getattr(self, name)}"
        return s

    def forward(self, input, hx=None):  # noqa: A002 - torch's argument name
        self._sync_flat_weights()
        lstm = self.mode == "LSTM"
        name = type(self).__name__
        packed = isinstance(input, PackedSequence)
        batch_sizes = sorted_indices = unsorted_indices = None
        batched = True
        given = (input, hx)  # for torch.nn's own forward, which words what ATen refuses (_raise_torchs_error)
        if packed:
            input, batch_sizes, sorted_indices, unsorted_indices = input  # noqa: A001
            if hx is not None:  # torch.nn permutes a packed input's state before any check of it
                hx = self.permute_hidden(hx, sorted_indices)
            if lstm:  # torch.nn checks none of a packed LSTM's arguments
                self._check_packed_lstm_args(input, hx, batch_sizes, given)
            elif hx is None:  # zero states: only the input needs checking (_run_layers makes them)
                self.check_input(input, batch_sizes)
            else:
                self.check_forward_args(input, hx, batch_sizes)
        else:
            if input.dim() not in (2, 3):
                # torch.nn.RNN words it with "tensor", LSTM and GRU without.
                got = f"{input.dim()}D tensor" if self.mode.startswith("RNN") else f"{input.dim()}D"
                raise ValueError(f"{name}: Expected input to be 2D or 3D, got {got} instead")
            batched = input.dim() == 3
            if not batched:
                input = input.unsqueeze(1 if not self.batch_first else 0)  # noqa: A001
            if hx is None:
                self.check_input(input, batch_sizes)
            else:
                hx = self._check_hidden_rank(hx, batched, lstm)
                self.check_forward_args(input, hx, batch_sizes)
                if lstm and not _two_states(hx):  # ATen's first check ("lstm expects two hidden states")
                    _raise_torchs_error(self, given, "expected hx to be a tuple of two tensors (h_0, c_0)")
        batch = int(batch_sizes[0]) if packed else input.size(0 if self.batch_first else 1)
        _check_devices(input, () if hx is None else hx if lstm else (hx,), self._flat_weights)
        refusal = self._kernel_refusal(input, hx, batch_sizes)
        if refusal is not None:
            _raise_torchs_error(self, given, refusal)
        _check_dtype(input, name)

        if self.batch_first and not packed:
            input = input.transpose(0, 1)  # noqa: A001 - the kernels take (T, B, I)
        output, hidden = self._run_layers(input, hx, batch_sizes, batch)
        if self.batch_first and not packed:
            output = output.transpose(0, 1)

        if packed:
            return PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices), \
                self.permute_hidden(hidden, unsorted_indices)
        if not batched:
            output = output.squeeze(1 if not self.batch_first else 0)
            hidden = tuple(h.squeeze(1) for h in hidden) if lstm else hidden.squeeze(1)
        return output, self.permute_hidden(hidden, unsorted_indices)

    def _sync_flat_weights(self) -> None:
        """torch.nn's _update_flat_weights: weights swapped in since the last call (as
        torch.func.functional_call does) are picked up. Reads the registered parameters directly,
        which gives torch's answer at a fraction of its getattr walk's cost (a batch-1 call
        notices); a weight that is not a registered parameter (a parametrization) takes torch's walk."""
        params = self._parameters
        for ref, name in zip(self._flat_weight_refs, self._flat_weights_names):
            weight = params.get(name, _MISSING)
            if weight is _MISSING:
                self._update_flat_weights()
                return
            if weight is not None and ref is not None and ref() is not weight:
                self._init_flat_weights()
                return

    def _torch_forward(self, input, hx):  # noqa: A002
        return super().forward(input, hx)  # torch.nn's own

    def _check_packed_lstm_args(self, data: Tensor, hx, batch_sizes: Tensor, given) -> None:
        """A packed LSTM's checks. torch.nn makes none; ATen refuses a state that is no pair of
        tensors, or of rank below 3, before it computes (its own error, from torch.nn's forward),
        but a state of another shape only where the shapes first clash mid-computation, and some
        ranks and layer counts crash it or are taken (extra c layers): such a state gets
        torch.nn's message for the same state with the input unpacked."""
        if hx is not None:
            if not _two_states(hx) or hx[0].dim() < 3 or hx[1].dim() < 3:
                _raise_torchs_error(self, given, "expected hx to be a tuple of two 3-D tensors (h_0, c_0)")
            self._check_hidden_rank(hx, True, True)
            self.check_hidden_size(hx[0], self.get_expected_hidden_size(data, batch_sizes),
                                   "Expected hidden[0] size {}, got {}")
            self.check_hidden_size(hx[1], self.get_expected_cell_size(data, batch_sizes),
                                   "Expected hidden[1] size {}, got {}")
        if data.dtype == self._flat_weights[0].dtype:  # (another dtype: ATen's error, _kernel_refusal)
            self.check_input(data, batch_sizes)

    def _kernel_refusal(self, input: Tensor, hx, batch_sizes: Optional[Tensor]) -> Optional[str]:  # noqa: A002
        """Why ATen refuses arguments that passed torch.nn's checks (an empty sequence, a state or a
        packed LSTM's data of another dtype than the weights, a flag that is no bool), or None."""
        if not (type(self.bias) is bool and type(self.batch_first) is bool and type(self.bidirectional) is bool):
            return "expected bias, batch_first and bidirectional to be bools"  # as ATen takes them
        if batch_sizes is None and input.size(1 if self.batch_first else 0) == 0:
            return "Expected sequence length to be larger than 0 in RNN"
        dtype = self._flat_weights[0].dtype
        name = dtype_name
        if input.dtype != dtype:
            return f"expected input of dtype {name(dtype)} like the weights, got {name(input.dtype)}"
        if hx is None:
            return None
        for k, state in enumerate(hx if self.mode == "LSTM" else (hx,)):
            if state.dtype != dtype:
                return f"expected hx[{k}] of dtype {name(dtype)} like the input, got {name(state.dtype)}"
        return None

    def _check_hidden_rank(self, hx, batched: bool, lstm: bool):
        """torch.nn's rank checks on a given hx; unbatched states gain their batch dimension."""
        rank = 3 if batched else 2
        kind = "batched 3-D" if batched else "unbatched 2-D"
        if lstm:
            if hx[0].dim() != rank or hx[1].dim() != rank:
                raise RuntimeError(f"For {kind} input, hx and cx should also be {rank}-D but got "
                                   f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors")
            return hx if batched else (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        if hx.dim() != rank:
            raise RuntimeError(f"For {kind} input, hx should also be {rank}-D but got {hx.dim()}-D tensor")
        return hx if batched else hx.unsqueeze(1)

    def _run_layers(self, x: Tensor, hx, batch_sizes: Optional[Tensor], batch: int):
        """Every layer, one kernel call each (both directions in one): (output, h_n) or (output, (h_n, c_n)).
        hx None: zero initial states."""
        lstm = self.mode == "LSTM"
        cell = _CELL_NAMES[self.mode]
        num_directions = 2 if self.bidirectional else 1
        out_size = self.proj_size if self.proj_size > 0 else self.hidden_size
        if batch == 0:  # nothing to compute: torch.nn returns empty results too
            states = (self.num_layers * num_directions, 0)
            out, *hidden = _empty_results(x, [x.shape[:-1] + (num_directions * out_size,), states + (out_size,),
                                              *([states + (self.hidden_size,)] if lstm else [])],
                                          (x, *(() if hx is None else hx if lstm else (hx,)), *self._flat_weights))
            return out, (tuple(hidden) if lstm else hidden[0])
        if hx is None:
            # Every layer and direction starts from the same zeros (the kernels only read them).
            h0 = [_zero_state(x, batch, out_size)] * (self.num_layers * num_directions)
            c0 = [_zero_state(x, batch, self.hidden_size)] * len(h0) if lstm else None
        else:
            h0, c0 = hx if lstm else (hx, None)
        weights = self._flat_weights
        per_direction = len(weights) // (self.num_layers * num_directions)
        projected = self.proj_size > 0

        def direction(k):
            """(h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, weight_hr) of layer-direction k."""
            w = weights[k * per_direction:(k + 1) * per_direction]
            biases = (w[2], w[3]) if self.bias else (None, None)
            return (h0[k], c0[k] if lstm else None, w[0], w[1], *biases, w[-1] if projected else None)

        training = self.training
        p_in = getattr(self, "input_dropout", 0.0) if training else 0.0
        p_rec = getattr(self, "recurrent_dropout", 0.0) if training else 0.0
        if p_in > 0 and batch_sizes is not None:  # the batch row of each packed row
            row_batch = torch.cat([torch.arange(int(n), device=x.device) for n in batch_sizes])
        if getattr(self, "_dropout_masks", None) != []:  # (nn.Module.__setattr__ costs microseconds a call)
            self._dropout_masks = []
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            masks = (None, None)
            if p_in > 0 or p_rec > 0:
                input_mask = _dropout_mask((batch, x.shape[-1]), p_in, x) if p_in > 0 else None
                if input_mask is not None:
                    x = x * (input_mask[row_batch] if batch_sizes is not None else input_mask)
                masks = tuple(_dropout_mask((batch, out_size), p_rec, x) if p_rec > 0 else None
                              for _ in range(num_directions))
                self._dropout_masks.append((input_mask, list(masks)))
            if num_directions == 1:
                x, h, c = _F.run_layer(cell, x, *direction(layer), batch_sizes, recurrent_mask=masks[0])
                h_n.append(h)
                c_n.append(c)
            else:  # both directions side by side, writing the halves of one output
                x, (h, c), (h_r, c_r) = _F.run_bidirectional_layer(cell, x, direction(2 * layer),
                                                                   direction(2 * layer + 1), batch_sizes,
                                                                   recurrent_masks=masks)
                h_n += [h, h_r]
                c_n += [c, c_r]
            if self.dropout > 0 and training and layer < self.num_layers - 1:
                x = torch.nn.functional.dropout(x, self.dropout, training=True)
        # One layer and direction: its fresh h_n as a view, which costs less than stack's copy.
        stack = (lambda ts: ts[0].unsqueeze(0)) if len(h_n) == 1 else torch.stack
        hidden_h = stack(h_n)
        return x, ((hidden_h, stack(c_n)) if lstm else hidden_h)


class RNN(_FusedRNNBase, torch.nn.RNN):
    """torch.nn.RNN (tanh or relu) on fastrnn's kernels."""


class LSTM(_FusedRNNBase, torch.nn.LSTM):
    """torch.nn.LSTM (with proj_size) on fastrnn's kernels."""


class GRU(_FusedRNNBase, torch.nn.GRU):
    """torch.nn.GRU on fastrnn's kernels."""


# ---- Cells --------------------------------------------------------------------------------------

class _FusedCellBase:
    """forward() for the cells: one step of the same kernels, (B, I) or unbatched (I)."""

    __prepare_scriptable__ = refuse_script

    def forward(self, input: Tensor, hx=None):  # noqa: A002
        name = type(self).__name__
        lstm = isinstance(self, torch.nn.LSTMCell)
        given = (input, hx)  # for torch.nn's own forward, which words what ATen refuses (_raise_torchs_error)
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None:
            for k, s in enumerate(hx if lstm else (hx,)):  # (torch.nn iterates whatever an LSTM's hx is)
                if s.dim() not in (1, 2):
                    what = f"hx[{k}]" if lstm else "hidden"
                    raise ValueError(f"{name}: Expected {what} to be 1D or 2D, got {s.dim()}D instead")
        batched = input.dim() == 2
        if not batched:
            input = input.unsqueeze(0)  # noqa: A001
        batch = input.size(0)
        if hx is None:
            zeros = _zero_state(input, batch, self.hidden_size)
            states = (zeros, zeros) if lstm else (zeros,)
        elif batched:
            states = hx if lstm else (hx,)
        else:
            states = (hx[0].unsqueeze(0), hx[1].unsqueeze(0)) if lstm else (hx.unsqueeze(0),)
        if isinstance(self, torch.nn.RNNCell) and self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")  # where torch.nn checks it
        weight_ih, weight_hh, bias_ih, bias_hh = self._cell_weights()
        states, promoted = self._check_cell_args(input, states, weight_ih, weight_hh, given)
        cell = _CELL_CODES[self._cell_name(lstm)]
        path = choose(input, torch.is_grad_enabled()
                      and any_requires_grad((input, *states, weight_ih, weight_hh, bias_ih, bias_hh)))
        if batch == 0 or weight_hh.size(1) == 0:  # nothing to compute: empty states, as torch.nn's
            out = tuple(_empty_results(input, [(batch, weight_hh.size(1))] * len(states),
                                       (input, *states, weight_ih, weight_hh, bias_ih, bias_hh)))
        elif input.is_cpu and path <= FUNCTION:
            # On the CPU the kernel's one-step entries: called directly for inference, inside a lean
            # autograd.Function for eager training (a batch-1 call's Python is most of its time).
            args = (cell, input.contiguous(), states[0].contiguous(), states[1].contiguous() if lstm else None,
                    weight_ih.contiguous(), weight_hh.contiguous(), contiguous(bias_ih), contiguous(bias_hh))
            if path == DIRECT:
                h, c = ops.cell_inference(*args)
                out = (h, c) if lstm else (h,)
            else:
                out = ops.cell_training(*args)
                out = out if lstm else (out,)
        else:
            y, h, c = _F.run_layer(self._cell_name(lstm), input.unsqueeze(0), states[0], states[1] if lstm else None,
                                   weight_ih, weight_hh, bias_ih, bias_hh)
            out = (h, c) if lstm else (h,)
        if promoted is not None:
            out = tuple(o.to(promoted) for o in out)
        if not batched:
            out = tuple(o.squeeze(0) for o in out)
        return out if lstm else out[0]

    def _cell_name(self, lstm: bool) -> str:
        return "lstm" if lstm else "gru" if isinstance(self, torch.nn.GRUCell) else f"rnn_{self.nonlinearity}"

    def _cell_weights(self):
        """(weight_ih, weight_hh, bias_ih, bias_hh), the biases None without bias. The registered
        parameters are read directly (a module attribute read costs a microsecond); a weight that
        is not one (a parametrization) comes through the attribute."""
        params = self._parameters
        try:
            return params["weight_ih"], params["weight_hh"], params["bias_ih"], params["bias_hh"]
        except KeyError:
            return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh

    def _torch_forward(self, input, hx):  # noqa: A002
        return super().forward(input, hx)  # torch.nn's own

    def _check_cell_args(self, input: Tensor, states, weight_ih: Tensor, weight_hh: Tensor, given):  # noqa: A002
        """ATen's checks of a cell's arguments, past torch.nn's: the state count, sizes, dtypes and
        devices; on a refusal torch.nn's own forward raises its error (_raise_torchs_error).
        Returns the states as a tuple and the dtype of the results: torch's LSTMCell takes a c of
        another real dtype (c' = f * c + i * g promotes), here converted to the weights' dtype and
        the results to the promoted one (None: the weights' dtype)."""
        refusal = promoted = None
        dtype = weight_ih.dtype
        if isinstance(self, torch.nn.LSTMCell) and not _two_states(states):
            refusal = "expected hx to be a tuple of two tensors (h, c)"
        elif input.size(1) != weight_ih.size(1) or input.dtype != dtype:
            refusal = f"expected input of size ({input.size(0)}, {weight_ih.size(1)}) and dtype " \
                      f"{dtype_name(dtype)}, got {tuple(input.shape)} and {dtype_name(input.dtype)}"
        else:
            shape = (input.size(0), weight_hh.size(1))
            cpu = input.is_cpu and weight_ih.is_cpu and weight_hh.is_cpu
            for k, s in enumerate(states):
                cpu = cpu and s.is_cpu
                if s.shape != shape:
                    if s.dim() == 3 and s.size(1) == shape[1]:
                        # An unbatched input's 2-D state of H rows passes ATen's checks, which then
                        # computes on it (LSTMCell crashes): torch.nn's layers' words for the mistake.
                        ranks = ", ".join(f"{t.dim() - 1}-D" for t in states)
                        raise RuntimeError(f"For unbatched 1-D input, hx should also be 1-D but got {ranks} tensor"
                                           if len(states) == 1 else f"For unbatched 1-D input, hx and cx should "
                                           f"also be 1-D but got ({ranks}) tensors")
                    refusal = f"expected hx[{k}] of size {shape}, got {tuple(s.shape)}"
                    break
                if s.dtype != dtype:
                    promoted = torch.promote_types(dtype, s.dtype)
                    if k == 0 or promoted.is_complex:  # (only c enters elementwise, where torch promotes)
                        refusal = f"expected hx[{k}] of dtype {dtype_name(dtype)}, got {dtype_name(s.dtype)}"
            if not cpu and refusal is None and any(t.device != input.device for t in (weight_ih, weight_hh, *states)):
                refusal = f"expected every tensor on {input.device}"
        if refusal is not None:
            _raise_torchs_error(self, given, refusal)
        _check_dtype(input, type(self).__name__)
        if promoted is not None:
            states = (states[0], states[1].to(dtype))
        return tuple(states), (promoted if promoted != dtype else None)


_CELL_CODES = ops.CELLS


class RNNCell(_FusedCellBase, torch.nn.RNNCell):
    """torch.nn.RNNCell on fastrnn's kernels."""


class LSTMCell(_FusedCellBase, torch.nn.LSTMCell):
    """torch.nn.LSTMCell on fastrnn's kernels."""


class GRUCell(_FusedCellBase, torch.nn.GRUCell):
    """torch.nn.GRUCell on fastrnn's kernels."""
