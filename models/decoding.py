"""Greedy decoding of head outputs (B, T, K) into texts, and the likeliest alternatives for each character.

Each decoder returns (texts, sequence confidences, per-character probabilities); each candidates function
returns, per image and per character it reads, the k likeliest characters [(char, probability), ...] best
first, taken from the same position or frame the decoder read that character from.
"""
import torch


def fixed_decode(logits, codec):
    """Fixed-length head: texts, sequence confidence (product of position maxima), per-character probabilities."""
    probs = logits.float().softmax(-1)
    conf, ids = probs.max(-1)  # (B, T)
    texts, confs, chars = [], [], []
    for row_ids, row_conf in zip(ids.tolist(), conf.tolist()):
        keep = [(i, p) for i, p in zip(row_ids, row_conf) if i < len(codec.charset)]
        texts.append("".join(codec.charset[i] for i, _ in keep))
        chars.append([p for _, p in keep])
        confs.append(float(torch.tensor(row_conf).prod()))
    return texts, confs, chars


def fixed_candidates(logits, codec, k):
    """The k likeliest characters of each position fixed_decode keeps (padding positions are left out)."""
    top_p, top_i = logits.float().softmax(-1).topk(min(k, logits.shape[-1]), -1)  # (B, T, k)
    rows = []
    for ids, probs in zip(top_i.tolist(), top_p.tolist()):
        rows.append([[(codec.charset[i], p) for i, p in zip(pos_ids, pos_probs) if i < len(codec.charset)]
                     for pos_ids, pos_probs in zip(ids, probs) if pos_ids[0] < len(codec.charset)])
    return rows


def greedy_path(ids):
    """[(class id, first step, last step)] of the best CTC path: runs of one class, blanks (0) dropped.

    Repeats merge only within a run, so a blank between two runs keeps a genuine double: the path
    A A - A B - B reads AABB. (Dropping blanks before merging, a common bug, would read AB.)
    """
    runs, prev = [], 0
    for t, i in enumerate(ids):
        if i != 0 and i == prev:
            runs[-1][2] = t
        elif i != 0:
            runs.append([i, t, t])
        prev = i
    return runs


def ctc_decode(logits, codec):
    """CTC head: texts, sequence confidence, per-character probabilities from the greedy path.

    A character's probability is its highest frame probability within its run; the sequence confidence is
    their product (for an empty reading, the product over frames of the best path).
    """
    probs = logits.float().softmax(-1)
    conf, ids = probs.max(-1)  # (B, T)
    texts, confs, chars = [], [], []
    for row_ids, row_conf in zip(ids.tolist(), conf.tolist()):
        runs = greedy_path(row_ids)
        texts.append("".join(codec.charset[i - 1] for i, _, _ in runs))
        chars.append([max(row_conf[a:b + 1]) for _, a, b in runs])
        confs.append(float(torch.tensor(chars[-1] or row_conf).prod()))
    return texts, confs, chars


def ctc_candidates(logits, codec, k):
    """The k likeliest characters (blank left out) at the frame where each character of the greedy path peaks,
    the frame whose probability ctc_decode reports."""
    probs = logits.float().softmax(-1)  # (B, T, K)
    best, ids = probs.max(-1)  # (B, T)
    rows = []
    for row_probs, row_ids, row_best in zip(probs, ids.tolist(), best.tolist()):
        chars = []
        for _, first, last in greedy_path(row_ids):
            t = max(range(first, last + 1), key=row_best.__getitem__)
            top_p, top_i = row_probs[t, 1:].topk(min(k, probs.shape[-1] - 1))
            chars.append([(codec.charset[i], p) for i, p in zip(top_i.tolist(), top_p.tolist())])
        rows.append(chars)
    return rows
