# Two commands: `make demo` sets everything up and runs the main job; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test weights clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("mnistzoo needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mnistzoo data fetch all
	$(BIN)/mnistzoo data info
	$(BIN)/mnistzoo train mlp3_dropout_bn --json
	$(BIN)/mnistzoo export mlp3_dropout_bn --out demo
	$(BIN)/mnistzoo eval demo/mlp3_dropout_bn@1/model.onnx --compare-keras

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Every committed checkpoint (results/<id>/seed0/model.weights.h5) exported through the verified export into the
# published zoo dist/zoo/, each file checked against published/manifest.json (exit 1 if one differs), packaged as
# weights wheels in dist/weights/ and installed here: then every model loads offline, without TensorFlow.
weights: $(STAMP)
	$(BIN)/mnistzoo publish dist/zoo --results results --manifest published/manifest.json
	$(BIN)/mnistzoo package dist/zoo --out dist/weights
	$(BIN)/python -m pip install -q --no-deps --force-reinstall dist/weights/*.whl

clean:
	rm -rf $(VENV) build dist *.egg-info
