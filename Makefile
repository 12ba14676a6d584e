# Server Push Lab. `make lab` opens the lessons; `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: lab test lessons exercises check grade clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

lab: $(STAMP)                      ## open the lessons in JupyterLab
	$(BIN)/jupyter lab notebooks/

test: $(STAMP)                     ## run every test (notebooks included)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

lessons: $(STAMP)                  ## execute every lesson headless; rendered HTML in build/
	$(BIN)/python -m grading.lessons build/

exercises: $(STAMP)                ## regenerate exercises/ from solutions/
	$(BIN)/python -m grading generate

check: $(STAMP)                    ## self-check one exercise: make check NB=exercises/04-websocket-exercises.ipynb
	$(BIN)/python -m grading check $(NB)

grade: $(STAMP)                    ## grade a class: make grade SUBMISSIONS=dir OUT=dir
	$(BIN)/python -m grading batch $(SUBMISSIONS) --out $(OUT)

clean:
	rm -rf build .pytest_cache
