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


def case_only(truths, preds):
    """How many readings differ from their label in a letter's case alone ('aB3' for 'Ab3'): right where a site
    takes its answer without case, as many do."""
    return sum(t != p and t.lower() == p.lower() for t, p in zip(truths, preds))


def confusions(truths, preds):
    """Counter of (true char, predicted char) over same-length predictions."""
    pairs = collections.Counter()
    for t, p in zip(truths, preds):
        if len(t) == len(p):
            pairs.update((a, b) for a, b in zip(t, p) if a != b)
    return pairs


def one_confusion(pairs, least=10, share=0.5, folder="<your training folder>"):
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
            f"python app.py --label_dir={folder}) and train again")


def rare_readings(labels, readings, ratio=0.2, least=20, folder="<your training folder>", min_chars=100):
    """A line of advice, or "": the character the model reads far more rarely in `readings` (its texts of the
    unlabelled images) than the `labels` hold it: under `ratio` times its share of the labels' characters, where
    that share would give at least `least`. A character the labels hold few of that the model has learnt to read
    as a look-alike (a rare `8` read as `B`) all but vanishes from its readings, and its own pseudo-labels keep it
    so; no test folder is needed to see it. Measured on models trained with 50-100 labels: such a character read
    0.01-0.05 times its labels' share; in seven runs without such a collapse, every character at least 0.49 times.
    Labels of fewer than `min_chars` characters (a few labels) give no share to compare with: nothing is said."""
    held = collections.Counter(c for t in labels for c in t)
    read = collections.Counter(c for t in readings for c in t)
    n_held, n_read = sum(held.values()), sum(read.values())
    if n_held < min_chars or not n_read:
        return ""
    expected = {c: k / n_held * n_read for c, k in held.items()}
    rare = [c for c in held if expected[c] >= least and read[c] < ratio * expected[c]]
    if not rare:
        return ""
    c = min(rare, key=lambda c: (read[c] / expected[c], c))
    line = (f"the model reads {c!r} in {read[c]} of the {n_read} characters it reads in the unlabelled images, "
            f"against about {expected[c]:.0f} by its share of the labels ({held[c]} of {n_held}): it may read {c!r} "
            f"as a look-alike")
    # the look-alike: the character read most beyond its labels' share, where that is at least twice
    other = max((o for o in read if o != c), key=lambda o: (read[o] - expected.get(o, 0.0), o))
    if expected.get(other) and read[other] >= 2 * expected[other]:
        line += f" (it reads {other!r} {read[other] / expected[other]:.1f} times as often as the labels hold it)"
    return (line + f"; label more images that show {c!r} (the labelling page, python app.py --label_dir={folder}) "
            f"and train again")
