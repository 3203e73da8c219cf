"""Pictures people would rather see than read: loss curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

CURVES = ("loss", "loss_caption", "loss_ret_lm", "loss_t2i", "loss_i2t")


def plot_loss_curves(log_history: list[dict], path: str, title: str = "RS-CapRet training") -> str | None:
    """Plot each logged loss term (and eval_loss) against the step; returns the path, or None with nothing logged."""
    curves = {name: [(e["step"], e[name]) for e in log_history if name in e and "step" in e]
              for name in (*CURVES, "eval_loss")}
    curves = {name: points for name, points in curves.items() if points}
    if not curves:
        return None
    figure, axis = plt.subplots(figsize=(7, 4))
    for name, points in curves.items():
        steps, values = zip(*points)
        axis.plot(steps, values, marker="o" if name == "eval_loss" else None, markersize=3, label=name)
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.set_title(title)
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
