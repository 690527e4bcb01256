# make demo: fresh clone -> .venv -> generate -> train -> test -> predict -> plot
# make test: fresh clone -> .venv -> pytest
VENV := .venv
PY := $(VENV)/bin/python
TRAIN_COUNT ?= 30000
TEST_COUNT ?= 2000

.PHONY: demo test clean

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

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

clean:
	rm -rf dataset/train dataset/test dataset/.cache results.txt results.png
