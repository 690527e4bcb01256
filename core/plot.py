"""results.txt -> results.png: sequence accuracy, character accuracy and loss per epoch, a line per run."""
from core.files import read_results


def plot_results(path="results.txt", out="results.png"):
    """results.txt -> results.png: sequence accuracy, character accuracy, loss per epoch; a line per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_results(path)
    runs = {}
    for row in rows:
        runs.setdefault(row["run"], {})[int(row["epoch"])] = row  # a resumed epoch replaces the old row
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for run, by_epoch in runs.items():
        epochs = sorted(by_epoch)
        for ax, col in zip(axes, ["seq_acc", "char_acc", "train_loss"]):
            line, = ax.plot(epochs, [float(by_epoch[e][col]) for e in epochs], marker=".", label=f"{run} validation")
            test = [float(by_epoch[e].get("test_" + col, "nan") or "nan") for e in epochs] if col != "train_loss" else []
            if any(v == v for v in test):  # not all nan: the run had a test folder
                ax.plot(epochs, test, ls="--", color=line.get_color(), label=f"{run} test")
    for ax, title in zip(axes, ["sequence accuracy", "character accuracy", "train loss"]):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
