"""A bidirectional GRU classifying variable-length sequences, fed as a PackedSequence.

    python examples/sequence_classification.py

The task (generated here): each sequence is 8 to 64 random symbols out of 6; its class is the
one of symbols 0-3 that occurs most often (ties are never generated; 4 and 5 are distractors).
The answer depends on every element, so the model has to read the whole sequence: a
bidirectional fastrnn.nn.GRU over the packed batch (pack_padded_sequence with
enforce_sorted=False, so the batch keeps its order), the final states of both directions, a
linear layer. Reports test accuracy and writes examples/results/sequence_classification.png.
"""

import time

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
    p = common.parser(__doc__.split("\n")[0], "sequence_classification.png")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-size", type=int, default=10000)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()
    common.require_extras()  # a missing plotting library fails here, not after training
    if args.quick:
        args.epochs, args.train_size = 1, 800
    common.set_threads(args.threads)

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

    @torch.no_grad()
    def accuracy(tokens, lengths, labels):
        model.eval()
        correct = sum((model(tokens[i:i + 500], lengths[i:i + 500]).argmax(1) == labels[i:i + 500]).sum().item()
                      for i in range(0, len(labels), 500))
        model.train()
        return correct / len(labels)

    losses, test_points = [], []
    progress = common.Progress(args.epochs * steps_per_epoch, "sequence_classification", every=100)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(train[0]), generator=generator)
        for s in range(steps_per_epoch):
            batch = order[s * args.batch_size:(s + 1) * args.batch_size]
            loss = torch.nn.functional.cross_entropy(model(train[0][batch], train[1][batch]), train[2][batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            losses.append(loss.item())
            progress.update(loss=loss.item())
        acc = accuracy(*test)
        test_points.append((len(losses), acc))
        progress.log(f"epoch {epoch + 1}/{args.epochs}: train loss {common.smooth(losses)[-1]:.3f}  "
                     f"test accuracy {acc:.2%}  ({time.perf_counter() - start:.0f} s)")
    progress.close()
    final = test_points[-1][1]
    print(f"trained {len(losses)} steps in {time.perf_counter() - start:.0f} s")
    print(f"final test accuracy: {final:.2%} (chance: about {1 / CLASSES:.0%})")
    steps = list(range(1, len(losses) + 1))
    common.save_curves(args.out, [
        ("cross-entropy", {"train (smoothed)": (steps, common.smooth(losses))}),
        ("test accuracy", {"test": ([s for s, _ in test_points], [a for _, a in test_points])})],
        f"bidirectional GRU on packed sequences: test accuracy {final:.2%}")


if __name__ == "__main__":
    main()
