"""Printing, saving and plotting benchmark results."""

import datetime
import json
import os
import platform
import re
import subprocess

import torch

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def device_description(device):
    if device == "cuda":
        return torch.cuda.get_device_name()
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} threads"


def device_slug(device):
    if device == "cpu":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-")


def model_slug(description):
    """'Intel(R) Xeon(R) Processor, 2 threads' -> 'intel-xeon'."""
    model = re.sub(r"\((R|TM)\)|\b(Processor|CPU)\b", " ", description.split(",")[0], flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-") or "cpu"


def _other_device(path, description):
    try:
        with open(path) as f:
            return json.load(f).get("device", description).split(",")[0] != description.split(",")[0]
    except (OSError, ValueError):
        return False


def git_commit():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table_rows(results):
    """Recurrent layers report GFLOP/s against the matmul peak; optimizer steps GB/s against
    the memory bandwidth."""
    for r in results:
        if "gflops" in r:
            rate, limit, torch_rate = f"{r['gflops']:.1f} GFLOP/s", r["peak_fraction"], f"{r['torch_gflops']:.1f} GFLOP/s"
        else:
            rate, limit, torch_rate = f"{r['gbps']:.1f} GB/s", r["bandwidth_fraction"], f"{r['torch_gbps']:.1f} GB/s"
        yield [r["op"], r["mode"], r["config"], f"{r['fastrnn_ms']:.3f}", f"{r['torch_ms']:.3f}",
               f"{r['speedup']:.2f}x", rate, f"{100 * limit:.0f}%", torch_rate]


HEADER = ["op", "mode", "configuration", "fastrnn ms", "torch ms", "speedup", "fastrnn rate", "of limit",
          "torch rate"]


def limits(peak, bandwidth):
    text = f"matmul peak {peak:.0f} GFLOP/s"
    return text + (f", memory bandwidth {bandwidth:.0f} GB/s" if bandwidth else "")


def print_table(results, peak, bandwidth, console=None):
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"fastrnn vs torch ({limits(peak, bandwidth)})")
    for h in HEADER:
        table.add_column(h, justify="left" if h in ("op", "mode", "configuration") else "right")
    for row in table_rows(results):
        table.add_row(*row)
    (console or Console()).print(table)


def markdown_table(results, peak, bandwidth=None):
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    return f"Measured: {limits(peak, bandwidth)}.\n\n" + "\n".join(lines) + "\n"


def save(results, device, peak, bandwidth=None, extra=None):
    """Writes results/<device>-<date>.json (and .md); returns the JSON path."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    stem = os.path.join(RESULTS_DIR, f"{device_slug(device)}-{datetime.date.today().isoformat()}")
    description = device_description(device)
    if _other_device(stem + ".json", description):
        # The sessions' machines differ (an AMD EPYC one day, an Intel Xeon the next): a run on
        # another model the same day keeps the earlier file and names its own after the model.
        stem += "-" + model_slug(description)
    document = {"device": description, "commit": git_commit(), "torch": torch.__version__,
                "matmul_peak_gflops": round(peak, 1), "results": results}
    if bandwidth:
        document["memory_bandwidth_gbps"] = round(bandwidth, 1)
    document.update(extra or {})
    with open(stem + ".json", "w") as f:
        json.dump(document, f, indent=1)
    with open(stem + ".md", "w") as f:
        f.write(f"{document['device']}, torch {document['torch']}, fastrnn commit {document['commit']}\n\n")
        f.write(markdown_table(results, peak, bandwidth))
    return stem + ".json"


def plot(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['op']} {r['mode']}\n{r['config']}" for r in results]
    speedups = [r["speedup"] for r in results]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(results) + 1.2))
    colors = ["#2a9d8f" if s >= 1 else "#e76f51" for s in speedups]
    ax.barh(range(len(results)), speedups, color=colors)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(results)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ticks = [t for t in (0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 12) if min(speedups) / 1.3 <= t <= max(speedups) * 1.3]
    ax.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("speedup over torch (log scale; right of the line, fastrnn is faster)")
    ax.set_title(title, fontsize=9)
    for k, s in enumerate(speedups):
        ax.text(s, k, f" {s:.2f}x", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_json(path, document):
    """Writes document to path whole or not at all (a run killed at its time cap while writing
    leaves the previous version), so a script can rewrite its results after each row."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(document, f, indent=1)
    os.replace(tmp, path)
