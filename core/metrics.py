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


def one_confusion(pairs, least=10, share=0.5):
    """For confusions()' Counter: a line of advice when one (true, read) pair makes most of the character
    mistakes (at least `least` of them and `share` of all), else "". A character read as its look-alike this
    consistently is one the training labels hold too few of (the model's own readings of unlabelled images then
    complete the mistake); more labelled images that show it are the fix."""
    total = sum(pairs.values())
    if not total:
        return ""
    (a, b), k = pairs.most_common(1)[0]
    if k < least or k < share * total:
        return ""
    return (f"one confusion makes most mistakes: {a!r} read as {b!r} {k} times, of {total} wrong characters; "
            f"the training labels may hold too few {a!r}s: label more images that show {a!r} (the labelling page, "
            f"python app.py --label_dir=FOLDER) and train again")
