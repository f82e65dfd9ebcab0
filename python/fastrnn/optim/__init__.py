"""Drop-in torch.optim optimizers with fused steps, and fused gradient clipping.

    import fastrnn.optim as optim     # instead of torch.optim, for these classes
    opt = optim.Adam(model.parameters(), lr=1e-3, max_grad_norm=1.0)   # clipping inside the step
"""

from .clip import clip_grad_norm_
from .optimizers import SGD, Adagrad, Adam, AdamW, RMSprop

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "clip_grad_norm_"]
