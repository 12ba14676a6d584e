# Server Push Lab. `make lab` opens the lessons; `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
LAB_ARGS ?=
SITE_STAMP := $(VENV)/.installed-site
SITE_ARGS ?=
REPO ?=

.PHONY: lab test lessons site exercises check grade release clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

$(SITE_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[test,site]"
	touch $(SITE_STAMP)

# JupyterLab refuses to start as root (any container) without --allow-root: say so, and pass it.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)                      ## open the course in JupyterLab (lessons and exercises), on lesson 00
	@$(if $(ROOT_FLAG),echo "Running as root (a container?): starting JupyterLab with --allow-root.",true)
	$(BIN)/jupyter lab $(ROOT_FLAG) --ServerApp.root_dir=. $(LAB_ARGS) notebooks/00-tour.ipynb

test: $(STAMP)                     ## run every test (notebooks included)
	$(BIN)/python -m pytest -n 3 $(PYTEST_ARGS)

lessons: $(STAMP)                  ## execute every lesson headless; rendered HTML in build/
	$(BIN)/python -m grading.lessons build/

site: $(SITE_STAMP)                ## run the lessons, build the course site in build/site/ (REPO=owner/name; SITE_ARGS=--no-execute)
	$(if $(REPO),SITE_REPOSITORY=$(REPO) ,)$(BIN)/python book/build.py $(SITE_ARGS)

exercises: $(STAMP)                ## regenerate exercises/ from solutions/
	$(BIN)/python -m grading generate

check: $(STAMP)                    ## self-check one exercise: make check NB=exercises/04-websocket-exercises.ipynb
	$(BIN)/python -m grading check $(NB)

grade: $(STAMP)                    ## grade a class: make grade SUBMISSIONS=dir OUT=dir
	$(BIN)/python -m grading batch $(SUBMISSIONS) --out $(OUT)

release: $(STAMP)                  ## the students' tree, without solutions or tests: make release OUT=dir
	$(BIN)/python -m grading release $(OUT)

clean:
	rm -rf build .pytest_cache
