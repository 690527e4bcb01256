"""Train a model on TRAIN_DIR, evaluate on TEST_DIR after every epoch, keep the best checkpoint.

    python train.py                         # config.py as it is
    python train.py --model=resnet18 --epochs=10 --run=r18
    python train.py --resume=1              # continue weights/<RUN>_last.pt
"""
import math
import os
import sys
import time

import torch
from tqdm import tqdm

import config
import data
import models
import torch_util
from models.heads import DECODERS, LOSSES


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


def train_step(model, optimizer, loss_fn, train, idx, device, augment=0.0):
    """One optimizer step on the batch `idx` of the device-resident (images, labels, lengths); returns the
    loss as a detached device tensor (no host sync)."""
    images, labels, lengths = train
    x = data.to_float(images[idx])
    if augment:
        x = data.augment(x, augment)
    with torch_util.autocast(device):
        logits = model(x)
    loss = loss_fn(logits, labels[idx], lengths[idx])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def train_one_epoch(model, optimizer, scheduler, loss_fn, train, device, batch_size, generator, desc, augment=0.0):
    """One pass over the device-resident training tensors; returns (mean loss, images/s)."""
    model.train()
    total = torch.zeros((), device=device)
    steps = seen = 0
    start = time.time()
    n = len(train[0])
    bar = tqdm(data.batches(n, batch_size, device, generator, drop_last=True), total=n // batch_size, desc=desc,
               unit="batch", file=sys.stdout, leave=False)
    for idx in bar:
        total += train_step(model, optimizer, loss_fn, train, idx, device, augment)
        scheduler.step()
        steps += 1
        seen += len(idx)
        if steps % 20 == 0:  # the only host sync: a logging point
            bar.set_postfix(loss=f"{total.item() / steps:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
    bar.close()
    return total.item() / max(1, steps), seen / max(time.time() - start, 1e-9)


@torch.inference_mode()
def evaluate(model, test, codec, decode, device, batch_size):
    """Predicted texts for the test tensors."""
    images, _, _ = test
    model.eval()
    texts = []
    for idx in data.batches(len(images), batch_size, device):
        with torch_util.autocast(device):
            logits = model(data.to_float(images[idx]))
        texts += decode(logits, codec)[0]
    return texts


def show_samples(truths, preds, n, seed):
    """A short `truth | prediction | ok` table: a few samples, mistakes first."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(truths), generator=g).tolist()
    order.sort(key=lambda i: truths[i] == preds[i])
    width = max(5, max(len(t) for t in truths))
    lines = [f"  {'truth':<{width}} | {'prediction':<{width}} | ok"]
    lines += [f"  {truths[i]:<{width}} | {preds[i]:<{width}} | {'yes' if truths[i] == preds[i] else 'NO'}"
              for i in order[:n]]
    return "\n".join(lines)


def append_result(path, row):
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a") as f:
        if new:
            f.write("\t".join(torch_util.RESULT_COLUMNS) + "\n")
        f.write("\t".join(str(row[c]) for c in torch_util.RESULT_COLUMNS) + "\n")


def load_data(codec, quiet=False):
    """(train set, test set) as CaptchaSets; with TEST_DIR = "" a seeded 10 % of TRAIN_DIR is held out."""
    size = (config.IMAGE_WIDTH, config.IMAGE_HEIGHT, config.CHANNELS)
    train = data.load_folder(config.TRAIN_DIR, codec, *size, config.CACHE_DIR, config.SKIP_BAD, quiet)
    if config.TEST_DIR:
        return train, data.load_folder(config.TEST_DIR, codec, *size, config.CACHE_DIR, config.SKIP_BAD, quiet)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.SEED)).numpy()
    cut = max(1, len(train) // 10)
    pick = lambda ix: data.CaptchaSet([train.paths[i] for i in ix], [train.texts[i] for i in ix],
                                      train.images[ix], codec)
    return pick(order[cut:]), pick(order[:cut])


def main():
    _, opts = config.parse(resume=False)
    torch_util.set_threads(config.THREADS)
    device = torch_util.pick_device(config.DEVICE)
    run = config.run_name()
    last_path = os.path.join(config.WEIGHTS_DIR, f"{run}_last.pt")
    best_path = os.path.join(config.WEIGHTS_DIR, f"{run}_best.pt")

    codec = data.Codec(config.CHARSET, config.LENGTH)
    train_set, test_set = load_data(codec)
    print(f"run {run}: model {config.MODEL} on {device}, {len(train_set)} train / {len(test_set)} test images "
          f"{config.IMAGE_WIDTH}x{config.IMAGE_HEIGHT}x{config.CHANNELS}, charset {len(codec.charset)}")
    train, test = train_set.tensors(device), test_set.tensors(device)

    torch_util.seed_everything(config.SEED)
    try:  # an unknown model, a trick it does not take, or an unusable weight file: a configuration error
        head = models.head_of(config.MODEL)
        classes = codec.fixed_classes if head == "fixed" else codec.ctc_classes
        build_args = dict(name=config.MODEL, in_channels=config.CHANNELS, num_classes=classes,
                          positions=codec.max_len, height=config.IMAGE_HEIGHT, width=config.IMAGE_WIDTH,
                          **models.model_options(config.MODEL, config.as_dict()))
        model = models.build_model(**build_args)
        if config.PRETRAINED:
            print(models.load_pretrained(model, config.PRETRAINED))
        model = model.to(device)
        loss_fn = models.heads.make_loss(LOSSES[head], model, classes, config.LABEL_SMOOTHING, config.CENTER_LOSS,
                                         config.CENTER_LR)
    except (KeyError, ValueError) as e:
        raise config.ConfigError(e.args[0]) from None
    decode = DECODERS[head]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.LR, weight_decay=config.WEIGHT_DECAY,
                                  fused=device.type == "cuda")
    steps_per_epoch = len(train_set) // config.BATCH_SIZE
    if steps_per_epoch == 0:
        raise data.DataError(f"{config.TRAIN_DIR}: {len(train_set)} images, fewer than one batch "
                             f"(BATCH_SIZE={config.BATCH_SIZE}); lower --batch_size")
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.LR, total_steps=config.EPOCHS * steps_per_epoch,
                                                    pct_start=0.15)
    start_epoch, best = 1, -1.0
    if opts["resume"]:
        ckpt = torch_util.load_checkpoint(last_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch, best = ckpt["epoch"] + 1, ckpt["best_accuracy"]
        print(f"resumed {last_path} after epoch {ckpt['epoch']} (best sequence accuracy {best:.4f})")
    params = sum(p.numel() for p in model.parameters())
    print(f"{params / 1e6:.2f} M parameters, {config.EPOCHS} epochs of {steps_per_epoch} steps, batch {config.BATCH_SIZE}")

    for epoch in range(start_epoch, config.EPOCHS + 1):
        t0 = time.time()
        generator = torch.Generator().manual_seed(config.SEED * 1000 + epoch)
        loss, rate = train_one_epoch(model, optimizer, scheduler, loss_fn, train, device, config.BATCH_SIZE,
                                     generator, f"epoch {epoch}/{config.EPOCHS}", config.AUGMENT)
        preds = evaluate(model, test, codec, decode, device, 512)
        char_acc, seq_acc = accuracy(test_set.texts, preds)
        seconds = time.time() - t0
        if not math.isfinite(loss):
            raise RuntimeError(f"loss became {loss} at epoch {epoch}; lower --lr")
        print(f"epoch {epoch}: loss {loss:.4f}, char acc {char_acc:.4f}, seq acc {seq_acc:.4f}, "
              f"{rate:.0f} img/s, {seconds:.0f}s")
        print(show_samples(test_set.texts, preds, config.SHOW, epoch))
        meta = dict(epoch=epoch, accuracy=seq_acc, char_accuracy=char_acc, config=config.as_dict())
        if seq_acc > best:
            best = seq_acc
            torch_util.save_checkpoint(best_path, model, build_args, codec, **meta)
        torch_util.save_checkpoint(last_path, model, build_args, codec, **meta, best_accuracy=best,
                                   optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
        # after the checkpoint: a row in results.txt means its epoch can be resumed from
        append_result(config.RESULTS, dict(run=run, epoch=epoch, train_loss=f"{loss:.5f}", char_acc=f"{char_acc:.5f}",
                                           seq_acc=f"{seq_acc:.5f}", lr=f"{scheduler.get_last_lr()[0]:.3e}",
                                           seconds=f"{seconds:.1f}", images_per_s=f"{rate:.0f}"))
        if seq_acc >= config.TARGET_ACCURACY:
            print(f"reached TARGET_ACCURACY {config.TARGET_ACCURACY}")
            break

    print(f"best sequence accuracy {best:.4f} -> {best_path}")
    print(f"plot: {torch_util.plot_results(config.RESULTS, os.path.splitext(config.RESULTS)[0] + '.png')}")


if __name__ == "__main__":
    try:
        main()
    except (config.ConfigError, data.DataError, torch_util.CheckpointError) as e:
        sys.exit(f"error: {e}")
