# make install: fresh clone -> .venv (the pinned requirements), nothing else
# make demo:    fresh clone -> .venv -> generate -> train -> test -> predict -> plot
# make test:    fresh clone -> .venv (with the optional ddddocr extra) -> the whole suite (what CI runs)
# make test-fast: the tests that train nothing and start no server or browser (under 2 minutes on 2 cores)
VENV := .venv
PY := $(VENV)/bin/python
TRAIN_COUNT ?= 30000
TEST_COUNT ?= 2000
# 6 epochs fit the demo in 15 minutes on a 2-core CPU (EPOCHS=0, train.py's default, plans 15 for 27 000 images)
DEMO_EPOCHS ?= 6

.PHONY: install demo test test-fast pretrained-model varied-model default-model bench-real wheels fonts gpu-run gpu-pretrain clean

# pip byte-compiles on one core; compileall does the same on every core (about 45 s less on 2 cores). As with pip,
# the few files of the installed packages that do not compile (e.g. torch test code in newer Python syntax) are skipped
$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-compile -r requirements.txt
	$(VENV)/bin/python -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) captchaGenerator.py --split=train --count=$(TRAIN_COUNT) --seed=1
	$(PY) captchaGenerator.py --split=test --count=$(TEST_COUNT) --seed=2
	$(PY) train.py --epochs=$(DEMO_EPOCHS) --init=
	$(PY) test.py --show=5
	$(PY) predict.py $$(ls dataset/test/*.png | head -n 5)
	$(PY) torch_util.py

# weights/pretrained.pt: where own-data training starts (INIT auto; BENCHMARKS.md "The shipped models"), trained
# on a CPU with affine augmentation, then its accuracy on 10k unseen captchas. The run goes to a folder of its own,
# so a rerun never copies an earlier run's checkpoint; --ema=0: it was trained without the weight average
# one time stamp for every make target's own output folder (computed once, when make reads this file)
STAMP := $(shell date +%Y%m%d-%H%M%S)
PRETRAINED_DIR := weights/pretrained-model-$(STAMP)
pretrained-model: $(VENV)/.installed
	$(PY) captchaGenerator.py --split=big --count=100000 --seed=11
	$(PY) captchaGenerator.py --split=test --count=$(TEST_COUNT) --seed=2
	$(PY) train.py --model=cnn_ctc --sequence=none --train_dir=dataset/big --test_dir=dataset/test --epochs=8 \
		--augment=0.5 --ema=0 --init= --run=pretrained_cnn_ctc --weights_dir=$(PRETRAINED_DIR) $(TRAIN_ARGS)
	cp $(PRETRAINED_DIR)/pretrained_cnn_ctc_best.pt weights/pretrained.pt
	$(PY) captchaGenerator.py --split=fresh10k --count=10000 --seed=99
	$(PY) test.py weights/pretrained.pt --test_dir=dataset/fresh10k --show=10

# weights/varied.pt: where a run with unlabelled images and no teacher starts (INIT auto; BENCHMARKS.md "Without a
# teacher: a starting point of many fonts"), trained on a CPU on captchas of the machine's Latin fonts in many sizes
# and colours, light, dark and shaded pages (GEN_STYLE varied; 39 minutes on 2 cores), then its accuracy on 2000 unseen ones
VARIED_DIR := weights/varied-model-$(STAMP)
varied-model: $(VENV)/.installed
	$(PY) captchaGenerator.py --split=varied --count=100000 --seed=21 --gen_style=varied --gen_length="(3,8)" --gen_height=64
	$(PY) captchaGenerator.py --split=varied_val --count=2000 --seed=22 --gen_style=varied --gen_length="(3,8)" --gen_height=64
	$(PY) train.py --model=cnn_ctc --sequence=none --train_dir=dataset/varied --test_dir=dataset/varied_val --epochs=6 \
		--augment=0.5 --ema=0 --init= --validation=0.02 --case_sensitive=0 --run=varied_cnn_ctc --weights_dir=$(VARIED_DIR) \
		$(TRAIN_ARGS)
	cp $(VARIED_DIR)/varied_cnn_ctc_best.pt weights/varied.pt
	$(PY) test.py weights/varied.pt --test_dir=dataset/varied_val --show=10

# the real-captcha benchmark on ../shared/datasets (README "Real captchas")
bench-real: $(VENV)/.installed
	$(PY) benchmarks/bench_real.py

# the project's Python where it is set up, else the machine's (a GPU machine without network has no .venv)
ANY_PY = $(if $(wildcard $(PY)),$(PY),python3)
CAPTCHA_WHEEL := wheels/captcha-0.7.1-py3-none-any.whl

# the captcha wheel in wheels/ (git-ignored), to bring to a machine without network
wheels: $(CAPTCHA_WHEEL)
$(CAPTCHA_WHEEL):
	$(ANY_PY) -m pip download -q --disable-pip-version-check --no-deps -d wheels captcha==0.7.1

# the machine's Latin fonts in wheels/fonts (git-ignored), for GEN_STYLE varied where no font package is installed
# (a GPU machine without network): FONTS may name the folder
fonts:
	$(ANY_PY) -c "import os, shutil; from core import varied; os.makedirs('wheels/fonts', exist_ok=True); \
	[shutil.copy(f, 'wheels/fonts') for f in varied.fonts(own=False)]; print(len(os.listdir('wheels/fonts')), 'fonts in wheels/fonts')"

# a starting point trained on varied captchas on one GPU, about 7 minutes -> $(GPU_PRETRAIN_OUT)/pretrained_varied.pt
GPU_PRETRAIN_OUT ?= gpu_pretrain
gpu-pretrain: $(CAPTCHA_WHEEL) fonts
	$(ANY_PY) benchmarks/gpu_pretrain.py --out=$(GPU_PRETRAIN_OUT)

# one GPU run, about 7 minutes: environment, generation rate, bench ratios, the recipe trained, resnet18 compiled -> $(GPU_OUT)/
GPU_OUT ?= gpu_run
gpu-run: $(CAPTCHA_WHEEL)
	$(ANY_PY) benchmarks/gpu_run.py --out=$(GPU_OUT) $(GPU_ARGS)

# weights/default.pt: the shipped reader of generated captchas, trained on one GPU (BENCHMARKS.md "GPU figures",
# run C): the GPU run's recipe (WIDEN=2, batch 256, ONLINE_REPLAY) with its 23 epochs of 466 688 images, its
# checkpoint copied. Needs CUDA
DEFAULT_OUT := gpu_run-default-$(STAMP)
default-model: $(CAPTCHA_WHEEL)
	$(ANY_PY) benchmarks/gpu_run.py --out=$(DEFAULT_OUT) --budget=540 \
		--train_args="--epochs=23 --online_count=466688 --time_limit=351"
	cp $(DEFAULT_OUT)/gpu_cnn_ctc_best.pt weights/default.pt

# ddddocr (MIT), an optional extra: the zero-label teacher (TEACHER=ddddocr) and export.py --format=ddddocr; the
# suite tests both with it
$(VENV)/.ddddocr: requirements-ddddocr.txt $(VENV)/.installed
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-ddddocr.txt
	touch $@

test: $(VENV)/.installed $(VENV)/.ddddocr
	$(PY) -m pytest -q -n auto --dist=loadfile --durations=20 tests

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -n auto --dist=loadfile -m "not slow" tests

clean:
	rm -rf dataset/train dataset/test dataset/.cache results.txt results.png
