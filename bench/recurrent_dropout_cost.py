"""What recurrent (variational) dropout costs: one training step (forward + backward) of
fastrnn.nn.LSTM with recurrent_dropout=0.25 against the same layer without it, timed
alternately in one process (median of repeats, see timing.py's method).

    OMP_NUM_THREADS=1 python bench/recurrent_dropout_cost.py [--repeats 15] [--steps 100]
"""

import argparse
import statistics
import time

import torch

import fastrnn.nn as fnn


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--p", type=float, default=0.25)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    plain = fnn.LSTM(args.hidden, args.hidden)
    dropped = fnn.LSTM(args.hidden, args.hidden, recurrent_dropout=args.p)
    dropped.load_state_dict(plain.state_dict())
    x = torch.randn(args.steps, args.batch, args.hidden, requires_grad=True)

    def training_step(module):
        start = time.perf_counter()
        y, _ = module(x)
        y.sum().backward()
        return time.perf_counter() - start

    times = {"plain": [], "dropout": []}
    training_step(plain), training_step(dropped)  # warm-up
    for _ in range(args.repeats):
        times["plain"].append(training_step(plain))
        times["dropout"].append(training_step(dropped))
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"LSTM T={args.steps} B={args.batch} I=H={args.hidden}, 1 thread, training step, {args.repeats} repeats")
    print(f"  plain {median['plain'] * 1e3:.1f} ms, recurrent_dropout={args.p} {median['dropout'] * 1e3:.1f} ms, "
          f"ratio {median['dropout'] / median['plain']:.3f} (of the minima "
          f"{min(times['dropout']) / min(times['plain']):.3f})")


if __name__ == "__main__":
    main()
