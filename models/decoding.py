"""Decoding of head outputs (B, T, K) into texts, and the likeliest alternatives for each character.

Each decoder returns (texts, sequence confidences, per-character probabilities); each candidates function
returns, per image and per character it reads, the k likeliest characters [(char, probability), ...] best
first, taken from the same position or frame the decoder read that character from.

A CTC path is the greedy one (the likeliest class of every frame) when it reads a length the codec allows
(LENGTH: the labels' length, or their range); otherwise it is the likeliest path that does (length_paths):
a captcha whose labels all have 5 characters is never read with 4 or 6.

`temperature` (a checkpoint's, fitted on its validation part; 1 = none) divides the scores before the softmax
that gives the reported probabilities; the texts are read from the scores as they are.
"""
import torch


def fixed_decode(logits, codec, temperature=1.0):
    """Fixed-length head: texts, sequence confidence (product of position maxima), per-character probabilities."""
    probs = (logits.float() / temperature).softmax(-1)
    conf, ids = probs.max(-1)  # (B, T)
    texts, confs, chars = [], [], []
    for row_ids, row_conf in zip(ids.tolist(), conf.tolist()):
        keep = [(i, p) for i, p in zip(row_ids, row_conf) if i < len(codec.charset)]
        texts.append("".join(codec.charset[i] for i, _ in keep))
        chars.append([p for _, p in keep])
        confs.append(float(torch.tensor(row_conf).prod()))
    return texts, confs, chars


def fixed_candidates(logits, codec, k, temperature=1.0):
    """The k likeliest characters of each position fixed_decode keeps (padding positions are left out)."""
    top_p, top_i = (logits.float() / temperature).softmax(-1).topk(min(k, logits.shape[-1]), -1)  # (B, T, k)
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


def length_paths(log_probs, lo, hi):
    """The likeliest frame paths (lists of T class ids, 0 = blank) of (B, T, K) log-probabilities whose CTC
    readings have lo..hi characters; None for a row whose T frames cannot hold lo.

    Viterbi over states (characters read so far, class of the last frame), all rows at once: a blank keeps
    the count, the class of the last frame repeated keeps it (the run goes on), any other class adds one.
    """
    rows, steps, classes = log_probs.shape
    if lo > steps:
        return [None] * rows
    score = log_probs.new_full((rows, hi + 1, classes), -torch.inf)
    score[:, 0, 0] = log_probs[:, 0, 0]
    if hi:
        score[:, 1, 1:] = log_probs[:, 0, 1:]
    # per frame and state: the class of the frame before, and whether the count was one less there
    back_cls = torch.zeros((steps, rows, hi + 1, classes), dtype=torch.int16 if classes < 2**15 else torch.int32)
    back_adv = torch.zeros((steps, rows, hi + 1, classes), dtype=torch.bool)
    same = torch.arange(classes)[None, None, :]  # compared with the best last class
    for t in range(1, steps):
        top, order = score.topk(min(2, classes), dim=2)  # (B, hi + 1, 2): best and second-best last class
        top2, order2 = (top[..., 1:2], order[..., 1:2]) if classes > 1 else (top[..., :1] - torch.inf, order[..., :1])
        new = torch.full_like(score, -torch.inf)
        new[:, :, 0] = top[:, :, 0]  # blank: the count stays, after the best last class
        back_cls[t, :, :, 0] = order[:, :, 0]
        # a character s after count - 1 characters: from the best last class that is not s itself
        clash = order[:, :-1, :1] == same  # (B, hi, K)
        adv = torch.where(clash, top2[:, :-1], top[:, :-1, :1])
        stay = score[:, 1:]  # the same class as the last frame: the count stays
        take_stay = stay >= adv
        new[:, 1:, 1:] = torch.where(take_stay, stay, adv)[..., 1:]
        back_adv[t, :, 1:, 1:] = ~take_stay[..., 1:]
        adv_from = torch.where(clash, order2[:, :-1], order[:, :-1, :1])
        back_cls[t, :, 1:, 1:] = torch.where(take_stay, same, adv_from)[..., 1:].to(back_cls.dtype)
        score = new + log_probs[:, t, None, :]
    end = score[:, lo:hi + 1].reshape(rows, -1)
    best = end.argmax(1)
    found = torch.isfinite(end).any(1).tolist()
    k, c = best // classes + lo, best % classes  # (B,): the end state of every row, then traced back at once
    path = [c]
    row = torch.arange(rows)
    for t in range(steps - 1, 0, -1):
        k, c = k - back_adv[t, row, k, c].long(), back_cls[t, row, k, c].long()
        path.append(c)
    path = torch.stack(path[::-1], 1).tolist()  # (B, T)
    return [p if ok else None for p, ok in zip(path, found)]


def ctc_paths(probs, codec):
    """The frame path of each row of probs (B, T, K): greedy, or where its reading has a length the codec does
    not allow, the likeliest path that has one (length_paths)."""
    lo, hi = codec.length
    paths = probs.argmax(-1).tolist()
    off = [row for row, ids in enumerate(paths) if not lo <= len(greedy_path(ids)) <= hi]
    if off:
        for row, better in zip(off, length_paths(probs[off].clamp_min(1e-30).log(), lo, hi)):
            if better is not None:  # else the frames cannot hold the length: the greedy path stays
                paths[row] = better
    return paths


def ctc_decode(logits, codec, temperature=1.0):
    """CTC head: texts, sequence confidence, per-character probabilities from the path of ctc_paths.

    A character's probability is its highest frame probability within its run; the sequence confidence is
    their product (for an empty reading, the product over frames of the path).
    """
    logits = logits.float().cpu()
    paths = ctc_paths(logits.softmax(-1), codec)
    probs = (logits / temperature).softmax(-1)
    path_probs = probs.gather(2, torch.tensor(paths, dtype=torch.long)[..., None])[..., 0]  # (B, T)
    texts, confs, chars = [], [], []
    for ids, row_conf in zip(paths, path_probs.tolist()):
        runs = greedy_path(ids)
        texts.append("".join(codec.charset[i - 1] for i, _, _ in runs))
        chars.append([max(row_conf[a:b + 1]) for _, a, b in runs])
        confs.append(float(torch.tensor(chars[-1] or row_conf).prod()))
    return texts, confs, chars


def ctc_candidates(logits, codec, k, temperature=1.0):
    """k characters (blank left out) at the frame where each character of ctc_decode's path peaks, the frame
    whose probability ctc_decode reports: the character read, then the likeliest others, best first. (On a
    greedy path the character read is the likeliest there; on a path kept to the labels' length it may not be.)"""
    logits = logits.float().cpu()
    probs = (logits / temperature).softmax(-1)  # (B, T, K)
    k = min(k, probs.shape[-1] - 1)
    rows = []
    for row_probs, ids in zip(probs, ctc_paths(logits.softmax(-1), codec)):
        chars = []
        for cls, first, last in greedy_path(ids):
            t = max(range(first, last + 1), key=lambda f: float(row_probs[f, cls]))
            top_p, top_i = row_probs[t, 1:].topk(k)
            others = [(i + 1, p) for i, p in zip(top_i.tolist(), top_p.tolist()) if i + 1 != cls][:k - 1]
            chars.append([(codec.charset[i - 1], p) for i, p in [(cls, float(row_probs[t, cls]))] + others])
        rows.append(chars)
    return rows
