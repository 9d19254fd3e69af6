#!/usr/bin/python3
"""Draws the HTTP benchmark's chart from the runs bench/http.py recorded.

    /usr/bin/python3 bench/http_chart.py RUNS.tsv OUT.png

One panel per mode: median server CPU time per request by server, with the range of the
runs as error bars. Last panel: the same medians relative to the libev C server, with
cogent's targets (1.10x without pipelining, 1.25x with 16 pipelined requests) drawn as dashes.
Needs matplotlib (Debian python3-matplotlib).
"""
import csv
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ORDER = ["libev", "cogent", "asio", "gevent"]
COLORS = {"libev": "#7f7f7f", "cogent": "#1f77b4", "asio": "#ff7f0e", "gevent": "#2ca02c"}
LABELS = {"plain": "no pipelining", "pipeline16": "16 pipelined"}
TARGETS = {"plain": 1.10, "pipeline16": 1.25}


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: http_chart.py RUNS.tsv OUT.png")
    with open(sys.argv[1]) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        sys.exit(f"{sys.argv[1]}: no runs")
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    servers = [s for s in ORDER if any(r["server"] == s for r in rows)]
    vals = {(m, s): [float(r["cpu_us_per_req"]) for r in rows
                     if r["mode"] == m and r["server"] == s] for m in modes for s in servers}
    med = {k: statistics.median(v) for k, v in vals.items() if v}

    # One panel per mode (pipelining divides the cost by ~10: one scale would hide it), then
    # the ratios.
    fig, axes = plt.subplots(1, len(modes) + 1, figsize=(4 * len(modes) + 4.5, 4.2))
    for ax, m in zip(axes, modes):
        ys = [med.get((m, s), 0) for s in servers]
        lo = [y - min(vals[m, s]) if vals[m, s] else 0 for y, s in zip(ys, servers)]
        hi = [max(vals[m, s]) - y if vals[m, s] else 0 for y, s in zip(ys, servers)]
        bars = ax.bar(servers, ys, 0.7, yerr=[lo, hi], capsize=3,
                      color=[COLORS[s] for s in servers])
        ax.bar_label(bars, labels=[f"{y:.2f}" for y in ys], padding=2, fontsize=8)
        ax.set_ylabel("server CPU time per request (µs)")
        ax.set_title(LABELS.get(m, m))
        ax.margins(y=0.15)
    ax2 = axes[-1]

    # Relative to libev; gevent is far off that scale, so it is left out of this panel.
    rel = [s for s in servers if s not in ("libev", "gevent")]
    width2 = 0.8 / max(len(rel), 1)
    for i, s in enumerate(rel):
        xs = [j + (i - (len(rel) - 1) / 2) * width2 for j in range(len(modes))]
        ys = [med[m, s] / med[m, "libev"] if (m, s) in med and (m, "libev") in med else 0
              for m in modes]
        bars = ax2.bar(xs, ys, width2, label=s, color=COLORS[s])
        ax2.bar_label(bars, labels=[f"{y:.2f}x" for y in ys], label_type="center", fontsize=9,
                      color="white")
    for j, m in enumerate(modes):
        if m in TARGETS:
            ax2.hlines(TARGETS[m], j - 0.45, j + 0.45, colors="red", linestyles="dashed",
                       label="cogent target" if j == 0 else None)
    ax2.axhline(1.0, color="#7f7f7f", linewidth=1, label="libev = 1")
    ax2.set_xticks(range(len(modes)), [LABELS.get(m, m) for m in modes])
    ax2.set_ylabel("CPU per request / libev's")
    ax2.set_title("relative to the libev C server")
    ax2.set_ylim(0, max([1.6] + [med[m, s] / med[m, "libev"] * 1.3 for m in modes
                                  for s in rel if (m, s) in med and (m, "libev") in med]))
    ax2.legend(fontsize=8, loc="upper left", ncol=2)
    fig.suptitle("HTTP keep-alive hello under wrk, 100 connections, one server thread "
                 "(median server CPU time per request; bars: range of runs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
