"""A bidirectional GRU classifying variable-length sequences, fed as a PackedSequence.

    python examples/sequence_classification.py

The task (generated here): each sequence is 8 to 64 random symbols out of 6; its class is the
one of symbols 0-3 that occurs most often (ties are never generated; 4 and 5 are distractors).
The answer depends on every element, so the model has to read the whole sequence: a
bidirectional fastrnn.nn.GRU over the packed batch (pack_padded_sequence with
enforce_sorted=False, so the batch keeps its order), the final states of both directions, a
linear layer. Reports test accuracy and writes examples/results/sequence_classification.png.
"""

import common

CLASSES, SYMBOLS, MIN_LEN, MAX_LEN = 4, 6, 8, 64


def make_data(count, generator, torch):
    """count sequences (padded (count, MAX_LEN) tokens), their lengths and classes."""
    lengths = torch.randint(MIN_LEN, MAX_LEN + 1, (count,), generator=generator)
    tokens = torch.randint(0, SYMBOLS, (count, MAX_LEN), generator=generator)
    positions = torch.arange(MAX_LEN)
    tokens[positions >= lengths[:, None]] = 0  # padding (never read: the batch is packed)
    valid = positions < lengths[:, None]
    counts = torch.stack([((tokens == c) & valid).sum(1) for c in range(CLASSES)], 1)  # (count, 4)
    top2 = counts.topk(2, 1).values
    keep = top2[:, 0] > top2[:, 1]  # a unique most frequent symbol
    return tokens[keep], lengths[keep], counts[keep].argmax(1)


def main():
    args = common.classifier_args(__doc__.split("\n")[0], "sequence_classification.png", epochs=3,
                                  quick_train_size=2400, hidden=64)

    import torch
    from torch.nn.utils.rnn import pack_padded_sequence

    import fastrnn.nn as fnn
    import fastrnn.optim
    from fastrnn.utils import init_rnn_

    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    train = make_data(args.train_size, generator, torch)
    test = make_data(2000 if not args.quick else 500, generator, torch)
    print(f"{len(train[0])} training and {len(test[0])} test sequences of {MIN_LEN}-{MAX_LEN} symbols, "
          f"{CLASSES} classes; torch threads {torch.get_num_threads()}")

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(SYMBOLS, 16)
            self.gru = fnn.GRU(16, args.hidden, batch_first=True, bidirectional=True)
            self.head = torch.nn.Linear(2 * args.hidden, CLASSES)

        def forward(self, tokens, lengths):  # (B, T), (B,) -> logits (B, CLASSES)
            packed = pack_padded_sequence(self.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
            _, h_n = self.gru(packed)  # (2, B, H), in the batch's own order
            return self.head(torch.cat([h_n[0], h_n[1]], 1))

    model = Classifier()
    init_rnn_(model.gru)
    steps_per_epoch = len(train[0]) // args.batch_size
    opt = fastrnn.optim.Adam(model.parameters(), lr=3e-3, max_grad_norm=1.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=args.epochs * steps_per_epoch)
    common.train_classifier("sequence_classification", model, opt, schedule, train, test, args, generator,
                            chance=1 / CLASSES, title="bidirectional GRU on packed sequences")


if __name__ == "__main__":
    main()
