#!/usr/bin/python3
"""Draws the TLS benchmark's chart from the runs bench/https.py recorded.

    /usr/bin/python3 bench/https_chart.py RUNS.tsv OUT.png

Three panels: median server CPU time per request under wrk (keep-alive HTTPS and plain HTTP),
median new TLS connections per server CPU second (full and resumed handshakes), both by server
with the range of the runs as error bars; last, cogent's medians relative to nginx's, each with
its target drawn as a dash (CPU per request: lower is better, at most 1.05x; connections per
CPU second: higher is better, at least 0.95x). Needs matplotlib (Debian python3-matplotlib).
"""
import csv
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ORDER = ["cogent", "nginx"]
COLORS = {"cogent": "#1f77b4", "nginx": "#2ca02c"}
LABELS = {"keepalive_https": "keep-alive\nHTTPS", "keepalive_http": "keep-alive\nplain HTTP",
          "full": "full\nhandshakes", "resumed": "resumed\nhandshakes"}
SHORT = {"keepalive_https": "HTTPS\nCPU/req", "keepalive_http": "plain HTTP\nCPU/req",
         "full": "full\nconn/CPU-s", "resumed": "resumed\nconn/CPU-s"}
TARGETS = {"keepalive_https": 1.05, "full": 0.95, "resumed": 0.95}
PANELS = [(["keepalive_https", "keepalive_http"], "server CPU time per request (µs)",
           "keep-alive requests under wrk", "{:.2f}"),
          (["full", "resumed"], "new connections per server CPU second",
           "new TLS 1.3 connections", "{:,.0f}")]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: https_chart.py RUNS.tsv OUT.png")
    with open(sys.argv[1]) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        sys.exit(f"{sys.argv[1]}: no runs")
    figures = list(dict.fromkeys(r["figure"] for r in rows))
    servers = [s for s in ORDER if any(r["server"] == s for r in rows)]
    vals = {(f, s): [float(r["value"]) for r in rows if r["figure"] == f and r["server"] == s]
            for f in figures for s in servers}
    med = {k: statistics.median(v) for k, v in vals.items() if v}

    panels = [(fs, yl, t, fmt) for fs, yl, t, fmt in PANELS if any(f in figures for f in fs)]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.2 * len(panels) + 5, 4.4))
    width = 0.8 / max(len(servers), 1)
    for ax, (fs, ylabel, title, fmt) in zip(axes, panels):
        fs = [f for f in fs if f in figures]
        for i, s in enumerate(servers):
            xs = [j + (i - (len(servers) - 1) / 2) * width for j in range(len(fs))]
            ys = [med.get((f, s), 0) for f in fs]
            lo = [y - min(vals[f, s]) if vals[f, s] else 0 for y, f in zip(ys, fs)]
            hi = [max(vals[f, s]) - y if vals[f, s] else 0 for y, f in zip(ys, fs)]
            bars = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=s, color=COLORS[s])
            ax.bar_label(bars, labels=[fmt.format(y) for y in ys], label_type="center",
                         fontsize=8, color="white")
        ax.set_xticks(range(len(fs)), [LABELS.get(f, f) for f in fs])
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.margins(y=0.15)
        ax.legend(fontsize=8, loc="upper right")

    ax2 = axes[-1]
    rel = [f for f in figures if (f, "cogent") in med and (f, "nginx") in med]
    ys = [med[f, "cogent"] / med[f, "nginx"] for f in rel]
    bars = ax2.bar(range(len(rel)), ys, 0.6, color=COLORS["cogent"])
    ax2.bar_label(bars, labels=[f"{y:.2f}x" for y in ys], label_type="center", fontsize=9,
                  color="white")
    for j, f in enumerate(rel):
        if f in TARGETS:
            ax2.hlines(TARGETS[f], j - 0.4, j + 0.4, colors="red", linestyles="dashed",
                       label="target" if j == 0 or "target" not in
                       [h.get_label() for h in ax2.collections] else None)
    ax2.axhline(1.0, color="#7f7f7f", linewidth=1, label="nginx = 1")
    ax2.set_xticks(range(len(rel)), [SHORT.get(f, f) for f in rel], fontsize=8)
    ax2.set_ylabel("cogent / nginx (CPU/req: lower is better;\nconn/CPU-s: higher is better)")
    ax2.set_title("cogent relative to nginx")
    ax2.set_ylim(0, max([1.4] + [y * 1.25 for y in ys]))
    ax2.legend(fontsize=8, loc="upper left")
    fig.suptitle("TLS hello, one server thread: cogent's https_hello against nginx (one worker); "
                 "medians, bars: range of runs", fontsize=10)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
