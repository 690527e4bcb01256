# make demo: fresh clone -> .venv -> generate -> train -> test -> predict -> plot
# make test: fresh clone -> .venv -> pytest
VENV := .venv
PY := $(VENV)/bin/python
TRAIN_COUNT ?= 30000
TEST_COUNT ?= 2000

.PHONY: demo test default-model bench-real clean

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

demo: $(VENV)/.installed
	$(PY) captchaGenerator.py --split=train --count=$(TRAIN_COUNT) --seed=1
	$(PY) captchaGenerator.py --split=test --count=$(TEST_COUNT) --seed=2
	$(PY) train.py
	$(PY) test.py --show=5
	$(PY) predict.py $$(ls dataset/test/*.png | head -n 5)
	$(PY) torch_util.py

# weights/default.pt: the shipped model (README "The default model"), then its accuracy on 10k unseen captchas
default-model: $(VENV)/.installed
	$(PY) captchaGenerator.py --split=big --count=100000 --seed=11
	$(PY) captchaGenerator.py --split=test --count=$(TEST_COUNT) --seed=2
	$(PY) train.py --model=cnn_ctc --sequence=none --train_dir=dataset/big --test_dir=dataset/test --epochs=8 \
		--augment=0.5 --run=default_cnn_ctc $(TRAIN_ARGS)
	cp weights/default_cnn_ctc_best.pt weights/default.pt
	$(PY) captchaGenerator.py --split=fresh10k --count=10000 --seed=99
	$(PY) test.py weights/default.pt --test_dir=dataset/fresh10k --show=10

# the real-captcha benchmark on ../shared/datasets (README "Real captchas")
bench-real: $(VENV)/.installed
	$(PY) bench_real.py

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

clean:
	rm -rf dataset/train dataset/test dataset/.cache results.txt results.png
