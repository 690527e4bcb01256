"""results.txt -> results.png: sequence accuracy, character accuracy and loss per epoch, a line per run.

    python torch_util.py [results.txt] [--out=results.png]
"""
import os
import sys

import config
from core.plot import plot_results


def main():
    positional, opts = config.parse(arguments=1, out="results.png")
    path = positional[0] if positional else config.RESULTS
    if not os.path.exists(path):
        sys.exit(f"error: {path} not found (python train.py writes it)")
    print(f"wrote {plot_results(path, opts['out'])}")


if __name__ == "__main__":
    main()
