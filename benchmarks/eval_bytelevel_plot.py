"""The evaluation's figure: bits per byte per model, arithmetic accuracy per setting, and the
proxy-tuned accuracy against alpha (95% intervals as error bars)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["plot"]


def plot(bpb: dict, task: dict, alphas, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 1 + bool(task) * 2
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6), squeeze=False)
    ax = axes[0][0]
    names = [n for n in bpb if "bpb" in bpb[n]]
    means = [bpb[n]["bpb"] for n in names]
    errors = [[m - bpb[n]["ci"][0] for n, m in zip(names, means)], [bpb[n]["ci"][1] - m for n, m in zip(names, means)]]
    ax.bar(names, means, yerr=errors, capsize=4, color=["#4c72b0", "#dd8452", "#55a868", "#c44e52"][: len(names)])
    for i, n in enumerate(names):
        if bpb[n].get("token_bpb"):
            ax.plot([i - 0.4, i + 0.4], [float(bpb[n]["token_bpb"])] * 2, "k--", lw=1)
    ax.set_ylabel("bits per byte (lower is better)")
    ax.set_title("held-out text (dashed: token-level)", fontsize=9)
    if task:
        ax = axes[0][1]
        fixed = [s for s in task if not s.startswith("proxy")]
        acc = [task[s]["accuracy"] for s in fixed]
        err = [[a - task[s]["ci"][0] for s, a in zip(fixed, acc)], [task[s]["ci"][1] - a for s, a in zip(fixed, acc)]]
        ax.barh(fixed, acc, xerr=err, capsize=3, color="#8172b3")
        ax.axvline(0.2, color="grey", ls=":", lw=1)
        ax.set_xlim(0, 1)
        ax.set_xlabel("accuracy (5 choices; dotted: chance)")
        ax.set_title("arithmetic, members vs ensembles", fontsize=9)
        ax = axes[0][2]
        xs = [0.0] + list(alphas)
        keys = ["gemma zero-shot"] + [f"proxy alpha={a:g}" for a in alphas]
        ys = [task[k]["accuracy"] for k in keys]
        yerr = [[y - task[k]["ci"][0] for k, y in zip(keys, ys)], [task[k]["ci"][1] - y for k, y in zip(keys, ys)]]
        ax.errorbar(xs, ys, yerr=yerr, marker="o", capsize=3, label="Gemma zero-shot, proxy-tuned")
        ax.axhline(task["gemma"]["accuracy"], color="#dd8452", ls="--", lw=1, label="Gemma with examples")
        ax.axhline(task["smollm2"]["accuracy"], color="#4c72b0", ls=":", lw=1, label="SmolLM2 with examples")
        ax.set_ylim(0, 1)
        ax.set_xlabel("alpha")
        ax.set_ylabel("accuracy")
        ax.set_title("proxy-tuning across tokenizers", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
