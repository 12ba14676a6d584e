"""Mermaid diagrams drawn in the reader's browser from a copy of Mermaid inside the site.

A lesson's ```mermaid block (MyST reads it as this directive: ``myst_fence_as_directive``) becomes
``<pre class="mermaid">``; a page that has one loads ``_static/mermaid.min.js``, a classic script
(not an ES module, so the site also works opened from disk: browsers refuse module scripts from
file://), and draws its diagrams when it loads. Nothing is fetched while the site is read.

``mermaid.min.js`` (about 3 MB) is not committed. At build time it comes from the npm registry,
``npm pack mermaid@VERSION`` (npm checks the tarball against the registry's integrity hash), into
``mermaid_offline_cache`` once, with Mermaid's licence beside it; ``SITE_MERMAID_JS=path`` uses a
copy you already have instead. sphinxcontrib-mermaid is not used: it imports Mermaid as an ES
module, from a CDN unless told otherwise.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

# Draw every diagram once the page is parsed, in the theme's light or dark colours, and again in
# the other colours when the reader switches theme (pydata-sphinx-theme sets <html data-theme>).
_DRAW = """
document.addEventListener("DOMContentLoaded", function () {
  var diagrams = Array.prototype.slice.call(document.querySelectorAll("pre.mermaid"));
  var sources = diagrams.map(function (el) { return el.textContent; });
  var drawn = null;
  function draw() {
    var theme = document.documentElement.dataset.theme === "dark" ? "dark" : "default";
    if (theme === drawn) return;
    drawn = theme;
    diagrams.forEach(function (el, i) { el.removeAttribute("data-processed"); el.textContent = sources[i]; });
    mermaid.initialize({ startOnLoad: false, theme: theme, securityLevel: "strict" });
    mermaid.run({ nodes: diagrams });
  }
  draw();
  new MutationObserver(draw).observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
});
"""


class mermaid(nodes.General, nodes.Element):
    """One diagram: its Mermaid source in ``node["code"]``."""


class Mermaid(SphinxDirective):
    has_content = True

    def run(self) -> list[nodes.Node]:
        node = mermaid()
        node["code"] = "\n".join(self.content)
        self.set_source_info(node)
        return [node]


def visit_mermaid_html(self, node: mermaid) -> None:
    # Escaped like any text: Mermaid reads the element's text, entities decoded.
    self.body.append(f'<pre class="mermaid">{self.encode(node["code"])}</pre>\n')
    raise nodes.SkipNode


def visit_mermaid_text(self, node: mermaid) -> None:
    self.add_text(node["code"])
    raise nodes.SkipNode


def vendored_mermaid(version: str, cache: Path) -> Path:
    """The folder holding ``mermaid.min.js`` (and its licence), fetched from npm the first time."""
    own = os.environ.get("SITE_MERMAID_JS")
    if own:
        source = Path(own)
        if not source.is_file():
            raise ExtensionError(f"SITE_MERMAID_JS={own} is not a file")
        folder = cache / "mermaid-local"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / "mermaid.min.js")
        return folder
    folder = cache / f"mermaid-{version}"
    if (folder / "mermaid.min.js").is_file():
        return folder
    npm = shutil.which("npm")
    if npm is None:
        raise ExtensionError("the site's diagrams need mermaid.min.js: install Node.js (npm), which fetches it "
                             f"(npm pack mermaid@{version}), or set SITE_MERMAID_JS to a copy of it")
    logger.info(f"fetching mermaid@{version} from the npm registry (once; kept in {cache})")
    with tempfile.TemporaryDirectory(prefix="spl-mermaid-") as tmp:
        done = subprocess.run([npm, "pack", f"mermaid@{version}", "--silent"], cwd=tmp, capture_output=True,
                              text=True, check=False)
        tarballs = list(Path(tmp).glob("mermaid-*.tgz"))
        if done.returncode != 0 or not tarballs:
            raise ExtensionError(f"npm pack mermaid@{version} failed:\n{done.stderr.strip()}")
        staging = Path(tmp) / "out"
        staging.mkdir()
        with tarfile.open(tarballs[0]) as tar:
            for member, name in (("package/dist/mermaid.min.js", "mermaid.min.js"),
                                 ("package/LICENSE", "mermaid.LICENSE.txt")):
                data = tar.extractfile(member)
                if data is None:
                    raise ExtensionError(f"mermaid@{version}'s package has no {member}")
                (staging / name).write_bytes(data.read())
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.move(str(staging), folder)
    return folder


def add_static_path(app: Sphinx, config) -> None:
    if app.builder is not None and app.builder.format != "html":
        return
    folder = vendored_mermaid(config.mermaid_offline_version, Path(config.mermaid_offline_cache))
    config.html_static_path = [*config.html_static_path, str(folder)]


def add_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """Only pages with a diagram load Mermaid."""
    if doctree is not None and doctree.next_node(mermaid) is not None:
        app.add_js_file("mermaid.min.js", loading_method="defer")
        app.add_js_file(None, body=_DRAW)


def setup(app: Sphinx) -> dict:
    app.add_config_value("mermaid_offline_version", "11.12.2", "html")
    app.add_config_value("mermaid_offline_cache", "", "html")
    app.add_node(mermaid, html=(visit_mermaid_html, None), text=(visit_mermaid_text, None))
    app.add_directive("mermaid", Mermaid)
    app.connect("builder-inited", lambda app: add_static_path(app, app.config))
    app.connect("html-page-context", add_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
