"""The pure-torch references every suite compares fastrnn against, in one place.

Three levels, each usable on any device (the CUDA suites pass CUDA tensors or layers; ordinary CI
runs the same code on the CPU, tests/test_cuda_references.py):

* torch.nn's own layers and modules: `torch_layer`, `make_layer` (weights representable in a
  dtype), `run_layer` / `torch_reference` (one direction, reverse on the time-flipped sequence),
  `twins` (a torch.nn module and its fastrnn.nn twin holding the same weights);
* torch's layer ops with explicit weights (`layer_ops`), where a bias may be given on one side;
* a time loop written out (`cell_step`, `recurrent_layer`, `stacked_reference`): the one
  reference for what torch.nn does not have (a recurrent dropout mask) and a check of the
  packed-input (lengths), projection and stacked bidirectional rules, in float64 with autograd.

And the poisoned allocators the test process and the fuzz child install in fastrnn, so that an
element a kernel forgets to write shows as NaN (integers: an impossible value).
"""

import numpy as np
import torch

import fastrnn.nn

CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


def rounded(t, dtype):
    """t rounded to dtype, back in float64: the reference sees exactly the kernels' inputs."""
    return t.to(dtype).to(torch.float64)


# ---- torch.nn ----------------------------------------------------------------------------------------

def torch_layer(cell, input_size, hidden_size, bias, dtype, seed=0, proj_size=0):
    """The one-layer torch.nn layer of `cell` fastrnn must match, with torch's own initialisation
    under `seed`, in dtype."""
    torch.manual_seed(seed)
    if cell == "lstm":
        layer = torch.nn.LSTM(input_size, hidden_size, bias=bias, proj_size=proj_size)
    elif cell == "gru":
        layer = torch.nn.GRU(input_size, hidden_size, bias=bias)
    else:
        layer = torch.nn.RNN(input_size, hidden_size, bias=bias, nonlinearity=cell.split("_")[1])
    return layer.to(dtype)


def make_layer(cell, I, H, bias, dtype, seed, proj_size=0):
    """A float64 torch.nn layer on the CPU whose parameters are representable in dtype."""
    layer = torch_layer(cell, I, H, bias, torch.float32, seed, proj_size)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(rounded(p, dtype))
    return layer.double()


def run_layer(layer, cell, x, h0, c0):
    """(y, h_n, c_n) of a one-layer, one-direction torch.nn layer (c_n None but for an LSTM);
    h0 None: torch's zero state."""
    if cell == "lstm":
        hx = None if h0 is None else (h0.unsqueeze(0), c0.unsqueeze(0))
        y, (h_n, c_n) = layer(x, hx)
        return y, h_n[0], c_n[0]
    y, h_n = layer(x, None if h0 is None else h0.unsqueeze(0))
    return y, h_n[0], None


def torch_reference(cell, layer, x, h0, c0, reverse):
    """torch.nn's (y, h_n, c_n) for one direction; reverse runs on the time-flipped sequence."""
    y, h_n, c_n = run_layer(layer, cell, x.flip(0) if reverse else x, h0, c0)
    return (y.flip(0) if reverse else y), h_n, c_n


def twins(name, *args, dtype=torch.float64, seed=0, round_to=None, **kwargs):
    """(torch.nn.<name>, fastrnn.nn.<name>) in dtype holding the same weights: torch's
    initialisation under `seed`, rounded to `round_to` first when given."""
    torch.manual_seed(seed)
    reference = getattr(torch.nn, name)(*args, **kwargs)
    if round_to is not None:
        with torch.no_grad():
            for p in reference.parameters():
                p.copy_(rounded(p, round_to))
    reference = reference.to(dtype)
    ours = getattr(fastrnn.nn, name)(*args, **kwargs).to(dtype)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


# ---- torch's layer ops ---------------------------------------------------------------------------------

def layer_ops(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
    """torch's one-layer, one-direction result (the aten ops behind torch.nn) for explicit
    weights: (y, h_n, c_n) for an LSTM, else (y, h_n); a missing bias of a present pair is zeros,
    a missing state zeros; reverse by flipping time."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    h0 = x.new_zeros(B, H) if h0 is None else h0
    if b_ih is None and b_hh is not None:
        b_ih = torch.zeros_like(b_hh)
    if b_hh is None and b_ih is not None:
        b_hh = torch.zeros_like(b_ih)
    params = [w_ih, w_hh] + ([b_ih, b_hh] if b_ih is not None else [])
    has_bias = b_ih is not None
    xin = x.flip(0) if reverse else x
    if cell == "lstm":
        c0 = x.new_zeros(B, H) if c0 is None else c0
        y, h_n, c_n = torch.lstm(xin, (h0[None], c0[None]), params, has_bias, 1, 0.0, False, False, False)
        result = [y, h_n[0], c_n[0]]
    else:
        fn = {"gru": torch.gru, "rnn_tanh": torch.rnn_tanh, "rnn_relu": torch.rnn_relu}[cell]
        y, h_n = fn(xin, h0[None], params, has_bias, 1, 0.0, False, False, False)
        result = [y, h_n[0]]
    if reverse:
        result[0] = result[0].flip(0)
    return tuple(result)


# ---- the time loop written out -------------------------------------------------------------------------

def cell_step(cell, x_t, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, mask):
    """One time step: (h_new, c_new); only the recurrent product sees the mask; w_hr (an LSTM's
    projection) maps the new hidden state to the output."""
    xp = x_t @ w_ih.T + (0 if b_ih is None else b_ih)
    hp = (h * mask) @ w_hh.T + (0 if b_hh is None else b_hh)
    if cell == "lstm":
        i, f, g, o = (xp + hp).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c)
        return (h_new if w_hr is None else h_new @ w_hr.T), c
    if cell == "gru":
        (xr, xz, xn), (hr, hz, hn) = xp.chunk(3, 1), hp.chunk(3, 1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return n + z * (h - n), c  # the blend reads the unmasked h
    return (torch.tanh if cell == "rnn_tanh" else torch.relu)(xp + hp), c


def recurrent_layer(cell, x, lengths, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, reverse):
    """(y, h_n, c_n) of one layer and direction on padded x (T, B, I); row b runs for
    lengths[b] steps (all T when lengths is None); y is 0 past a row's end."""
    steps, batch = x.shape[:2]
    lengths = torch.tensor(lengths if lengths is not None else [steps] * batch)
    h, c = h0, c0
    ys = [None] * steps
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        active = (lengths > t).unsqueeze(1)
        h_new, c_new = cell_step(cell, x[t], h, c, w_ih, w_hh, b_ih, b_hh, w_hr, mask)
        ys[t] = torch.where(active, h_new, torch.zeros_like(h_new))
        h = torch.where(active, h_new, h)
        if cell == "lstm":
            c = torch.where(active, c_new, c)
    return torch.stack(ys), h, c


def stacked_reference(module, cell, x, lengths, hx, masks=None):
    """The forward of an nn.RNN/LSTM/GRU-shaped module (either library's: its weights are read by
    torch.nn's names) in pure torch: layers, directions, projection, lengths; masks as drawn by
    fastrnn.nn (module._dropout_masks: per layer, an input mask and one recurrent mask per
    direction), or none. Returns (y padded, h_n, c_n (None but for an LSTM))."""
    D = 2 if module.bidirectional else 1
    h0, c0 = hx if cell == "lstm" else (hx, None)
    layer_in, h_n, c_n = x, [], []
    for layer in range(module.num_layers):
        input_mask, rec_masks = masks[layer] if masks is not None else (None, [None] * D)
        if input_mask is not None:
            layer_in = layer_in * input_mask
        ys = []
        for k, suffix in enumerate(["", "_reverse"][:D]):
            w = [getattr(module, f"{name}_l{layer}{suffix}", None)
                 for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")]
            index = layer * D + k
            mask = rec_masks[k] if rec_masks[k] is not None else torch.ones_like(h0[index])
            y, h, c = recurrent_layer(cell, layer_in, lengths, h0[index], c0[index] if c0 is not None else None, *w,
                                      mask, k == 1)
            ys.append(y)
            h_n.append(h)
            c_n.append(c)
        layer_in = torch.cat(ys, -1)
    return layer_in, torch.stack(h_n), (torch.stack(c_n) if cell == "lstm" else None)


# ---- poisoned buffers ------------------------------------------------------------------------------------

def poisoned_empty(shape, like, dtype=None):
    """fastrnn.ops' allocator, but every element NaN (integer outputs such as pooling indices:
    an impossible value)."""
    dtype = dtype or like.dtype
    t = torch.empty(shape, dtype=dtype, device=like.device)
    if not dtype.is_floating_point:
        return t.fill_(255 if dtype == torch.uint8 else -1)
    return t.fill_(float("nan"))


def poisoned_numpy_empty(shape, dtype):
    """fastrnn.numpy's allocator, likewise poisoned."""
    a = np.empty(shape, dtype)
    a.fill(255 if np.dtype(dtype) == np.uint8 else np.nan)
    return a
