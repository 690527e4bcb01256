"""Reading accuracy: character accuracy (1 - normalised edit distance) and sequence accuracy (the whole label right)."""
import collections


def edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def accuracy(truths, preds):
    """(character accuracy = 1 - normalised edit distance, sequence accuracy)."""
    errors = sum(edit_distance(t, p) for t, p in zip(truths, preds))
    chars = max(1, sum(len(t) for t in truths))
    seq = sum(t == p for t, p in zip(truths, preds)) / max(1, len(truths))
    return max(0.0, 1 - errors / chars), seq


def confusions(truths, preds):
    """Counter of (true char, predicted char) over same-length predictions."""
    pairs = collections.Counter()
    for t, p in zip(truths, preds):
        if len(t) == len(p):
            pairs.update((a, b) for a, b in zip(t, p) if a != b)
    return pairs
