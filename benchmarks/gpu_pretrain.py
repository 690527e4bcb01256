"""A starting point for own-data training, trained on one GPU on captchas of many fonts (GEN_STYLE "varied"),
printed as one summary whose parts appear as soon as they are known:

    make wheels fonts                                          # once: the captcha wheel and the fonts, in wheels/
    python benchmarks/gpu_pretrain.py --out=gpu_pretrain       # about 7 minutes, one GPU, 16 cores
    python benchmarks/gpu_pretrain.py --smoke=1 --out=/tmp/s   # the same script on the CPU at a tiny scale

1. environment: the GPU, versions, the CPU and its cores, the date, the fonts drawn from (FONTS: wheels/fonts when
   it holds fonts, a machine without font packages has none of its own);
2. generation: varied captchas rendered per second in memory by one process per core, each process's first ones
   (it loads a font at a size the first time it draws with it, so a long run renders faster: its epoch lines);
3. bench: benchmarks/bench.py's fed rate of the model as it trains (ONLINE, ONLINE_REPLAY): the rate the
   schedule is planned on;
4. training: `train.py --online=1 --gen_style=varied` with PRETRAIN's settings, from nothing, for the time the
   budget leaves: `cnn_ctc` as `weights/pretrained.pt` is (0.26 M parameters, so own-data models keep their
   speed), colour, 3-8 characters of 0-9A-Z (letters drawn in either case), 192x64; every core but one renders
   while the GPU trains, on fresh captchas when there are, else on those rendered so far (ONLINE_REPLAY);
5. final: the kept checkpoint read on 5 000 varied captchas of a seed no training renders (FINAL_SEED).

OUT receives summary.txt, summary.json, train.log, results.txt and the checkpoint as pretrained_varied.pt. Its use:
`python train.py --train_dir=F --init=OUT/pretrained_varied.pt` (BENCHMARKS.md "A starting point trained on
varied captchas"). Any other --NAME=value (config.py) goes to the bench and to the training run (`--widen=2`:
channels twice as wide); the planned epochs, images per epoch and time limit come after it.
"""
import os
import shlex
import shutil
import string
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks import gpu_run  # noqa: E402
from core import cli, fresh, varied  # noqa: E402
from core.plan import plan_batch  # noqa: E402

FONTS_DIR = os.path.join(ROOT, "wheels", "fonts")  # `make fonts` copies the machine's Latin fonts there
PRETRAIN = ["--model=cnn_ctc", "--sequence=none", "--online=1", "--gen_style=varied",
            f"--charset={string.digits + string.ascii_uppercase}", "--length=(3,8)", "--image_width=192",
            "--image_height=64", "--channels=3", "--augment=0.5", "--ema=0", "--batch_size=256",
            "--online_replay=1000000"]
FINAL_SEED = "varied-final"  # ONLINE renders "online<SEED>.<epoch>" and "online-test<SEED>": never this one
SCALES = {
    "gpu": dict(gen_images=200, bench_batch=256, bench_seconds=5.0, warmup=5, final=5000, reserve=60),
    "smoke": dict(gen_images=8, bench_batch=4, bench_seconds=0.3, warmup=1, final=40, reserve=30),
}
SMOKE_TRAIN = ["--online_count=64", "--epochs=2", "--batch_size=16", "--online_test=32", "--online_workers=1",
               "--online_replay=256", "--threads=1"]


def fonts_arg():
    """--fonts=... naming FONTS_DIR when it holds fonts, else nothing (the machine's own)."""
    return [f"--fonts=('{FONTS_DIR}',)"] if os.path.isdir(FONTS_DIR) and os.listdir(FONTS_DIR) else []


def task(settings, fonts):
    """render_set's keywords for the captchas `settings` (PRETRAIN's, resolved) train on."""
    return dict(charset=settings.CHARSET, length=settings.LENGTH, width=settings.IMAGE_WIDTH,
                height=settings.IMAGE_HEIGHT, channels=settings.CHANNELS, fonts=fonts, style=settings.GEN_STYLE)


def generation_rate(cores, per_process, size):
    """Captchas per second rendered in memory by `cores` processes (fresh.render_set), of render_set's `size`."""
    fresh.render_set("warm", cores, **size, processes=cores)
    t0 = time.perf_counter()
    fresh.render_set("rate", cores * per_process, **size, processes=cores)
    return cores * per_process / (time.perf_counter() - t0)


def main():
    script = dict(out="gpu_pretrain", smoke=False, budget=420.0)
    scales = {k: gpu_run.SCALES[k] | v for k, v in SCALES.items()}
    opts, passed, scale, settings, device, s, cores = gpu_run.begin(script, scales)
    out, smoke = s.out, opts["smoke"]

    gpu_run.part_environment(s, device)
    given_fonts = fonts_arg()
    args = PRETRAIN + given_fonts + passed  # the bench and the plan measure the model as trained
    trained = gpu_run.with_args(settings, args)
    fonts = varied.style_fonts(trained.FONTS, trained.GEN_STYLE)
    size = task(trained, fonts)
    s.record("fonts", [os.path.basename(f) for f in fonts])
    s.say(f"fonts:    {len(fonts)} Latin fonts ({FONTS_DIR if given_fonts else 'the machine'}'s), and the "
          f"captcha package's for a third of the images")

    s.part(2, "varied captcha generation")
    rate = generation_rate(cores, scale["gen_images"], size)
    s.record("generation", dict(processes=cores, images_per_s=round(rate)))
    s.say(f"{rate:.0f} varied captchas/s with {cores} processes ({trained.IMAGE_WIDTH}x{trained.IMAGE_HEIGHT} "
          f"colour, in memory, each process's first {scale['gen_images']}: fonts loaded as they are first drawn)")

    s.part(3, "bench: the model fed as it trains")
    try:
        r = gpu_run.bench_model(args, device, scale, settings)
        fed = r["pipeline_images_per_s"]
        s.record("bench", r)
        s.say(f"fed {fed} img/s, model only {r['model_images_per_s']} img/s (ratio {r['ratio']:.3f}, batch "
              f"{r['batch']}, {r['parameters'] / 1e6:.2f} M parameters), peak memory {r['peak_gib']:.2f} GiB")
    except Exception as e:  # the training is still planned, on a guess
        fed = 1000.0
        s.say(f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:300]}; planned on {fed:.0f} img/s")

    s.part(4, "training: cnn_ctc on varied captchas (train.py --online=1 --gen_style=varied)")
    seconds = max(10.0, opts["budget"] - (time.time() - s.start) - scale["reserve"])
    epochs, per_epoch = gpu_run.plan_recipe(seconds, fed, plan_batch(trained, None), gpu_run.REPLAY_SAFETY)
    planned = SMOKE_TRAIN if smoke else [f"--epochs={epochs}", f"--online_count={per_epoch}",
                                         f"--time_limit={int(seconds)}"]
    s.say(f"plan: {seconds:.0f} s at about {gpu_run.REPLAY_SAFETY:.0%} of {fed:.0f} img/s: " +
          ("smoke scale" if smoke else f"{epochs} epochs of {per_epoch} captchas, fresh or replayed"))
    cmd = [sys.executable, "train.py", *args, "--patience=-1", "--show=4", "--init=", f"--train_dir={out}",
           "--run=pretrained_varied", f"--weights_dir={out}", f"--results={os.path.join(out, 'results.txt')}",
           *planned]
    shown = shlex.join(["python", *cmd[1:]])
    s.say(f"$ {shown}")
    run = dict(command=shown, planned_seconds=round(seconds), epochs=[])

    def on_epoch(epoch, accuracy, at):
        run["epochs"].append(dict(epoch=epoch, validation=accuracy, seconds=round(at, 1)))
        s.say(f"  epoch {epoch}: validation {accuracy:.4f} at {at:.0f} s")
        s.record("training", run)

    code, took = gpu_run.train_run(cmd, os.path.join(out, "train.log"), seconds + scale["reserve"], on_epoch)
    run.update(exit_code=code, train_seconds=round(took, 1))
    s.record("training", run)
    if code:
        with open(os.path.join(out, "train.log")) as f:
            s.say(f"train.py exited {code}; the end of {out}/train.log:\n" + "".join(f.readlines()[-15:]).rstrip())
    last = os.path.join(out, "pretrained_varied_last.pt")  # optimizer state for --resume: not worth collecting
    if os.path.exists(last):
        os.remove(last)
    best = os.path.join(out, "pretrained_varied_best.pt")
    if not os.path.exists(best):
        s.say(f"final: no checkpoint in {out}")
        return 1
    kept = os.path.join(out, "pretrained_varied.pt")
    shutil.move(best, kept)

    s.part(5, "final: the kept checkpoint on varied captchas no training renders")
    images, texts = fresh.render_set(FINAL_SEED, scale["final"], **size, processes=cores)
    final = gpu_run.read_fresh(kept, np.ascontiguousarray(images.transpose(0, 2, 3, 1)), texts, device)
    run["final"] = final
    s.record("training", run)
    s.say(f"final: {final['accuracy']:.4f} of {len(texts)} varied captchas (seed {FINAL_SEED!r}), character "
          f"accuracy {final['char_accuracy']}, {final['errors']} wrong ({final['o0_errors']} O/0); {kept}")
    if device.type == "cuda":
        s.say(f"peak GPU memory of this process {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    s.say(f"== done in {time.time() - s.start:.0f} s: {', '.join(sorted(os.listdir(out)))} in {out} ==")
    return 0 if not code else 1


if __name__ == "__main__":
    cli.run(main)
