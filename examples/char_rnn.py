"""A character-level LSTM language model, trained with truncated BPTT on stateful batches.

    python examples/char_rnn.py                      # Python's own standard library as the corpus
    python examples/char_rnn.py --text my_book.txt   # or your own text
    python examples/char_rnn.py --compare-torch      # the same model on torch.nn.LSTM: speeds

Embedding -> fastrnn.nn.LSTM -> linear, trained on B parallel streams of the text
(fastrnn.utils.batchify) in chunks of k characters; the last state of each chunk starts the next
(fastrnn.utils.StatefulBatches), detached. fastrnn.optim.Adam clips the gradient norm inside its
fused step (max_grad_norm). Prints the loss in nats per character, samples text as it trains,
and writes the loss curve to examples/results/char_rnn.png.
"""

import math
import os
import statistics
import sysconfig
import time

import common

# A fixed list of standard-library modules: present on every Python, read at run time.
CORPUS_MODULES = ["argparse", "textwrap", "difflib", "heapq", "bisect", "calendar", "fractions", "statistics",
                  "string", "shlex", "fnmatch", "functools", "configparser", "pprint", "dataclasses", "inspect",
                  "tokenize", "random", "typing", "enum"]


def load_corpus(path=None) -> str:
    if path:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    stdlib = sysconfig.get_paths()["stdlib"]
    texts = []
    for name in CORPUS_MODULES:
        file = os.path.join(stdlib, name + ".py")
        if os.path.exists(file):
            with open(file, encoding="utf-8", errors="replace") as f:
                texts.append(f.read())
    if not texts:
        raise SystemExit(f"no standard-library sources under {stdlib}; pass --text FILE")
    return "\n".join(texts)


def main():
    p = common.parser(__doc__.split("\n")[0], "char_rnn.png")
    p.add_argument("--text", help="train on this text file instead of the standard library's sources")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--bptt", type=int, default=64, help="k: characters per truncated-BPTT chunk")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--compare-torch", action="store_true", help="also time the same model on torch.nn.LSTM")
    p.add_argument("--compare-steps", type=int, default=40)
    args = p.parse_args()
    common.require_extras()  # a missing plotting library fails here, not after training
    if args.quick:
        args.steps, args.hidden, args.compare_steps = 30, 32, 3
    common.set_threads(args.threads)

    import torch
    import fastrnn.nn as fnn
    import fastrnn.optim
    from fastrnn.utils import StatefulBatches, batchify, init_rnn_

    torch.manual_seed(args.seed)
    text = load_corpus(args.text)
    if args.quick:
        text = text[:50_000]
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)
    split = int(0.95 * len(data))
    train, val = batchify(data[:split], args.batch_size), batchify(data[split:], 64)
    print(f"corpus: {len(text):,} characters ({len(chars)} distinct); train streams {tuple(train.shape)}; "
          f"val {tuple(val.shape)}; torch threads {torch.get_num_threads()}")

    class CharModel(torch.nn.Module):
        def __init__(self, lstm_class):
            super().__init__()
            self.embed = torch.nn.Embedding(len(chars), 64)
            self.lstm = lstm_class(64, args.hidden, num_layers=args.layers)
            self.head = torch.nn.Linear(args.hidden, len(chars))

        def forward(self, x, state=None):  # x (T, B) -> logits (T, B, V)
            y, state = self.lstm(self.embed(x), state)
            return self.head(y), state

    model = CharModel(fnn.LSTM)
    init_rnn_(model.lstm, forget_bias=1.0)
    initial_weights = {k: v.clone() for k, v in model.state_dict().items()}
    loss_fn = torch.nn.CrossEntropyLoss()

    def train_step(m, opt, x, y, state, clip=None):
        logits, state = m(x, state)
        loss = loss_fn(logits.flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(m.parameters(), clip)
        opt.step()
        return loss.item(), state

    @torch.no_grad()
    def evaluate(m):
        m.eval()
        walk, total, count = StatefulBatches(val, args.bptt, target_shift=1), 0.0, 0
        for x, y in walk:
            logits, walk.state = m(x, walk.state)
            total += loss_fn(logits.flatten(0, 1), y.flatten()).item() * y.numel()
            count += y.numel()
        m.train()
        return total / count

    @torch.no_grad()
    def sample(m, prompt="def ", length=200, temperature=0.8):
        m.eval()
        x = torch.tensor([[index.get(c, 0)] for c in prompt])
        logits, state = m(x)
        out = []
        for _ in range(length):
            probs = torch.softmax(logits[-1, 0] / temperature, -1)
            nxt = torch.multinomial(probs, 1)
            out.append(chars[nxt.item()])
            logits, state = m(nxt.view(1, 1), state)
        m.train()
        return prompt + "".join(out)

    if args.compare_torch:
        compare(args, CharModel, initial_weights, train, train_step, fnn, fastrnn.optim, torch)

    opt = fastrnn.optim.Adam(model.parameters(), lr=args.lr, max_grad_norm=1.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps, eta_min=args.lr / 10)
    walk = StatefulBatches(train, args.bptt, target_shift=1)
    losses, val_points = [], [(0, evaluate(model))]
    eval_every = max(args.steps // 10, 20)
    progress = common.Progress(args.steps, "char_rnn", every=50)
    start = time.perf_counter()
    step = 0
    while step < args.steps:
        for x, y in walk:  # each pass over the text starts from a zero state
            loss, walk.state = train_step(model, opt, x, y, walk.state)
            schedule.step()
            losses.append(loss)
            step += 1
            progress.update(loss=loss)
            if step % eval_every == 0 or step == args.steps:
                v = evaluate(model)
                val_points.append((step, v))
                progress.log(f"step {step}: train {common.smooth(losses)[-1]:.3f}  val {v:.3f} nats/char "
                             f"({v / math.log(2):.2f} bits)  {(time.perf_counter() - start) / step * 1e3:.0f} ms/step")
                if step % (eval_every * 5) == 0 or step == args.steps:
                    progress.log("--- sample ---\n" + sample(model, length=120 if args.quick else 300) + "\n---")
            if step >= args.steps:
                break
    progress.close()
    report(args, losses, val_points, time.perf_counter() - start)


def report(args, losses, val_points, elapsed):
    """The summary lines (time, the validation loss's fall, the final loss) and the loss curves."""
    initial, final = val_points[0][1], val_points[-1][1]
    print(f"trained {args.steps} steps in {elapsed:.0f} s ({elapsed / args.steps * 1e3:.0f} ms/step)")
    common.print_loss_fell("val loss", initial, final)
    print(f"final val loss: {final:.3f} nats/char ({final / math.log(2):.3f} bits/char)")
    common.save_curves(args.out, [("cross-entropy (nats/char)", {
        "train (smoothed)": (list(range(1, len(losses) + 1)), common.smooth(losses)),
        "validation": ([s for s, _ in val_points], [v for _, v in val_points])})],
        f"char-level LSTM (H={args.hidden}, B={args.batch_size}, k={args.bptt}): val {final:.3f} nats/char")

def compare(args, CharModel, initial_weights, train, train_step, fnn, foptim, torch):
    """The same model from the same weights on the same batches, one step of each in turn:
    fastrnn.nn.LSTM with fastrnn.optim.Adam (clipping fused) against torch.nn.LSTM with
    torch.optim.Adam and torch.nn.utils.clip_grad_norm_. Median milliseconds per step."""
    from fastrnn.utils import StatefulBatches
    runs = {}
    for name, lstm_class in (("fastrnn", fnn.LSTM), ("torch", torch.nn.LSTM)):
        m = CharModel(lstm_class)
        m.load_state_dict(initial_weights)
        opt = foptim.Adam(m.parameters(), lr=args.lr, max_grad_norm=1.0) if name == "fastrnn" else \
            torch.optim.Adam(m.parameters(), lr=args.lr)
        runs[name] = dict(model=m, opt=opt, walk=StatefulBatches(train, args.bptt, target_shift=1), times=[], losses=[])
    iters = {name: iter(r["walk"]) for name, r in runs.items()}
    for _ in range(args.compare_steps + 2):  # the first two steps are warm-up, not timed
        for name, r in runs.items():
            x, y = next(iters[name])
            t0 = time.perf_counter()
            loss, r["walk"].state = train_step(r["model"], r["opt"], x, y, r["walk"].state,
                                               clip=1.0 if name == "torch" else None)
            r["times"].append(time.perf_counter() - t0)
            r["losses"].append(loss)
    fast, ref = (statistics.median(runs[n]["times"][2:]) * 1e3 for n in ("fastrnn", "torch"))
    drift = max(abs(a - b) for a, b in zip(runs["fastrnn"]["losses"], runs["torch"]["losses"]))
    print(f"compare ({args.compare_steps} training steps each, alternating, median; "
          f"H={args.hidden}, B={args.batch_size}, k={args.bptt}, {torch.get_num_threads()} threads):")
    print(f"  fastrnn.nn.LSTM + fastrnn.optim.Adam: {fast:.1f} ms/step")
    print(f"  torch.nn.LSTM + torch.optim.Adam:     {ref:.1f} ms/step")
    print(f"  speed-up {ref / fast:.2f}x; largest loss difference between the two runs {drift:.2e}")


if __name__ == "__main__":
    main()
