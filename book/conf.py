"""Sphinx configuration of the course site. Build it with ``make site`` (book/build.py), not by hand:
the build stages the pages first (book/README.md says how, and why this tool).

Sphinx + MyST-NB + sphinx-book-theme is the engine of Jupyter Book 1, used directly. Jupyter Book 2
(mystmd) does not build here: ``myst build --html`` downloads its theme from api.mystmd.org, and
this machine and CI reach only the package registries. This stack installs whole from PyPI
(``pip install -e ".[site]"``), renders the outputs stored in the notebooks without a kernel, and
writes static HTML that loads nothing from another site (book/check_links.py checks that).
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE / "_ext")]

import settings  # noqa: E402  (book/settings.py: where the course lives)

project = "Server Push Lab"
html_title = "Server Push Lab"
author = "Server Push Lab authors"
copyright = "Server Push Lab authors"

# githubpages: a .nojekyll file, so GitHub Pages serves _static/ as it is.
extensions = ["myst_nb", "mermaid_offline", "sphinx.ext.githubpages"]
exclude_patterns = ["**.ipynb_checkpoints"]

# Never run a notebook here: the lessons were executed before (make site runs them with the
# course's own runner, grading.lessons), and the exercises are shown as students get them.
nb_execution_mode = "off"
nb_merge_streams = True
# No widget outputs in the course; without this, MyST-NB adds require.js and the widget manager
# from a CDN to every notebook page.
nb_ipywidgets_js = {}
# ```mermaid fences are diagrams (mermaid_offline), drawn from the site's own copy of Mermaid.
myst_fence_as_directive = ["mermaid"]
myst_heading_anchors = 3
mermaid_offline_version = "11.12.2"
mermaid_offline_cache = str(HERE.parent / "build" / "vendor")  # fetched once (npm pack), never committed

html_theme = "sphinx_book_theme"
html_static_path: list[str] = []
html_show_sourcelink = False
html_copy_source = True  # the download button offers each page's notebook
html_last_updated_fmt = None
html_theme_options = {
    "repository_url": settings.repository_url(),
    "repository_branch": settings.BRANCH,
    "path_to_docs": "",  # the staged pages sit where they sit in the repository: notebooks/, exercises/
    "use_repository_button": True,
    "use_download_button": True,
    "use_fullscreen_button": True,
    "home_page_in_toc": True,
    "show_toc_level": 2,
    # Binder only: the JupyterHub links (nbgitpuller) are on each page and the landing page, from
    # book/settings.py, where the default branch can be left unnamed.
    "launch_buttons": {"binderhub_url": settings.BINDERHUB_URL, "notebook_interface": "jupyterlab"},
}
