"""What the examples share: command-line flags, their optional dependencies, thread count,
progress display, the classifiers' training loop, loss plots."""

import argparse
import importlib.util
import os
import sys
import time

# What the examples import beyond fastrnn and NumPy: the `examples` extra in pyproject.toml
# (`pip install "fastrnn[examples]"`). tqdm and rich only dress the progress bar, and are optional.
REQUIREMENTS = ("torch", "matplotlib")


def _installed(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require_extras(modules=REQUIREMENTS) -> None:
    """Stops the example at once, naming the extra to install, when a module it needs is missing,
    instead of after training, at the plot. The modules are looked up, not imported: importing
    torch here would start OpenMP before --threads sets OMP_NUM_THREADS."""
    missing = [name for name in modules if not _installed(name)]
    if missing:
        script = os.path.basename(sys.argv[0])
        raise SystemExit(f"{script} needs {' and '.join(missing)}, not installed here. Install what the examples "
                         f"use with\n    pip install \"fastrnn[examples]\"\n"
                         f"(or pip install \".[examples]\" in a checkout of fastrnn).")


def parser(description: str, out_default: str) -> argparse.ArgumentParser:
    """The flags every example takes: --quick, --threads, --out, --seed."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a short run (seconds) for CI")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", out_default),
                   help="where the PNG loss curve goes")
    p.add_argument("--seed", type=int, default=0)
    return p


def classifier_args(description: str, out_default: str, epochs: int, quick_train_size: int, **extra):
    """The flags of a classifier example, parsed: parser()'s, --epochs, --train-size, --batch-size
    and one --name per extra keyword (its default's type); --quick trains one epoch on
    quick_train_size examples. Stops at once when the examples' extras are missing, then sets the
    thread count."""
    p = parser(description, out_default)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--train-size", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=64)
    for name, default in extra.items():
        p.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    args = p.parse_args()
    require_extras()  # a missing plotting library fails here, not after training
    if args.quick:
        args.epochs, args.train_size = 1, quick_train_size
    set_threads(args.threads)
    return args


def set_threads(threads) -> None:
    """One thread count for torch and for fastrnn's OpenMP kernels."""
    import torch
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # read by OpenMP when fastrnn._C first loads
        torch.set_num_threads(threads)


class Progress:
    """A progress bar (tqdm or rich when installed, else a line every `every` steps) with the
    latest metrics; `log` prints a line above it."""

    def __init__(self, total: int, description: str, every: int = 50):
        self.total, self.every, self.step, self.start = total, every, 0, time.perf_counter()
        self._bar = self._rich = None
        if sys.stdout.isatty():
            try:
                from tqdm import tqdm
                self._bar = tqdm(total=total, desc=description, leave=False)
            except ImportError:
                try:
                    from rich.progress import Progress as RichProgress
                    self._rich = RichProgress(*RichProgress.get_default_columns(), "{task.fields[metrics]}")
                    self._task = self._rich.add_task(description, total=total, metrics="")
                    self._rich.start()
                except ImportError:
                    pass

    def update(self, **metrics) -> None:
        self.step += 1
        text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(text)
        elif self._rich is not None:
            self._rich.update(self._task, advance=1, metrics=text)
        elif self.step % self.every == 0 or self.step == self.total:
            elapsed = time.perf_counter() - self.start
            print(f"step {self.step}/{self.total}  {text}  ({elapsed:.0f} s)", flush=True)

    def log(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text)
        elif self._rich is not None:
            self._rich.console.print(text, markup=False, highlight=False)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._rich is not None:
            self._rich.stop()


def train_classifier(name, model, opt, schedule, train, test, args, generator, chance, title):
    """Trains model on train = (*inputs, labels) in shuffled batches (cross-entropy, one schedule
    step per batch of args.batch_size, args.epochs epochs), measures test accuracy after each
    epoch, prints the summary lines tests/test_examples.py reads (first and last training loss,
    final accuracy against chance) and writes the curves to args.out. Returns the final accuracy."""
    import torch

    @torch.no_grad()
    def accuracy(*inputs_and_labels):
        *inputs, labels = inputs_and_labels
        model.eval()
        correct = sum((model(*(t[i:i + 500] for t in inputs)).argmax(1) == labels[i:i + 500]).sum().item()
                      for i in range(0, len(labels), 500))
        model.train()
        return correct / len(labels)

    *inputs, labels = train
    epochs, batch_size = args.epochs, args.batch_size
    steps_per_epoch = len(labels) // batch_size
    losses, test_points = [], []
    progress = Progress(epochs * steps_per_epoch, name, every=100)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        for s in range(steps_per_epoch):
            batch = order[s * batch_size:(s + 1) * batch_size]
            loss = torch.nn.functional.cross_entropy(model(*(t[batch] for t in inputs)), labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            losses.append(loss.item())
            progress.update(loss=loss.item())
        acc = accuracy(*test)
        test_points.append((len(losses), acc))
        progress.log(f"epoch {epoch + 1}/{epochs}: train loss {smooth(losses)[-1]:.3f}  "
                     f"test accuracy {acc:.2%}  ({time.perf_counter() - start:.0f} s)")
    progress.close()
    final = test_points[-1][1]
    print(f"trained {len(losses)} steps in {time.perf_counter() - start:.0f} s")
    print_loss_fell("train loss", losses[0], smooth(losses, 10)[-1])  # the last 10 steps
    print(f"final test accuracy: {final:.2%} (chance: about {chance:.0%})")
    steps = list(range(1, len(losses) + 1))
    save_curves(args.out, [
        ("cross-entropy", {"train (smoothed)": (steps, smooth(losses))}),
        ("test accuracy", {"test": ([s for s, _ in test_points], [a for _, a in test_points])})],
        f"{title}: test accuracy {final:.2%}")
    return final


def print_loss_fell(what, first, last):
    """The line tests/test_examples.py reads to check that training lowered the loss."""
    print(f"{what}: first {first:.4f}, last {last:.4f}")


def save_curves(path: str, panels, title: str) -> None:
    """One PNG with a panel per (ylabel, {label: (xs, ys)}) in `panels`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (ylabel, curves) in zip(axes[0], panels):
        for label, (xs, ys) in curves.items():
            ax.plot(xs, ys, label=label, marker="o" if len(xs) < 30 else None, markersize=3)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def smooth(values, width: int = 20):
    """Running mean over the last `width` values (the curve of a noisy training loss)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= width:
            total -= values[i - width]
        out.append(total / min(i + 1, width))
    return out
