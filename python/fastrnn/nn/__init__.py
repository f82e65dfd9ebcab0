"""Drop-in replacements for torch.nn's recurrent layers: change the import, keep the model and
its checkpoints.

    import fastrnn.nn as nn          # instead of torch.nn, for these classes
    model = nn.LSTM(256, 512, num_layers=2, bidirectional=True, batch_first=True)
    model.load_state_dict(torch_lstm.state_dict())   # and the other way round
"""

from .pooling import AvgPool2d, MaxPool2d
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .conv import Conv2d, ConvReLUPool2d

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "Conv2d", "ConvReLUPool2d"]
__all__ += ["MaxPool2d", "AvgPool2d"]
