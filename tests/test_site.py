"""The course site's own parts (book/), without building it: CI builds it (make site) in .ci/run.

- book/check_links.py finds what it is there to find: a missing file, a missing anchor, a script
  or stylesheet from another site, a missing font in a stylesheet, solution text in a page; and
  lets through what is fine.
- The landing page is built from the README's lesson table, and links every lesson.
- The site's Binder links have the README badge's form.
- The lesson runner writes the executed notebooks the site shows (``--ipynb``).
- Every Mermaid diagram in the lessons parses with the Mermaid the site ships.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"book_{name}", BOOK / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


check_links = _load("check_links")


def _page(body: str, head: str = "") -> str:
    return f"<!DOCTYPE html><html><head>{head}</head><body>{body}</body></html>"


@pytest.fixture
def site(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "app.js").write_text("")
    (tmp_path / "_static" / "a.png").write_bytes(b"")
    (tmp_path / "_static" / "font.woff2").write_bytes(b"")
    (tmp_path / "_static" / "style.css").write_text("@font-face { src: url('font.woff2') }")
    (tmp_path / "lessons").mkdir()
    (tmp_path / "lessons" / "one.html").write_text(_page(
        '<h2 id="part">Part</h2><a href="../index.html#top">home</a> <a href="#part">here</a>'
        '<img src="data:image/png;base64,AAAA"> <a href="https://example.org/x">elsewhere</a>',
        head='<link rel="stylesheet" href="../_static/style.css"><script src="../_static/app.js"></script>'
             '<link rel="canonical" href="https://example.org/one.html">'))
    (tmp_path / "index.html").write_text(_page('<a id="top"></a><a href="lessons/one.html#part">one</a>'
                                               '<a href="lessons/">folder</a><a href="#">top</a>'))
    (tmp_path / "lessons" / "index.html").write_text(_page("<p>folder index</p>"))
    return tmp_path


def test_a_sound_site_passes(site):
    assert check_links.check_site(site) == []


@pytest.mark.parametrize("body, head, expected", [
    ('<a href="lessons/two.html">two</a>', "", "no such file"),
    ('<a href="lessons/one.html#nowhere">one</a>', "", "has no id 'nowhere'"),
    ('<a href="#nowhere">here</a>', "", "has no id 'nowhere'"),
    ("", '<script src="https://cdn.example.org/lib.js"></script>', "loads from another site"),
    ("", '<link rel="stylesheet" href="//cdn.example.org/lib.css">', "loads from another site"),
    ('<img src="http://example.org/badge.svg">', "", "loads from another site"),
    ('<img srcset="_static/a.png 1x, _static/missing.png 2x">', "", "no such file"),
    ("<pre>### BEGIN SOLUTION</pre>", "", "solution text"),
])
def test_each_kind_of_problem_is_reported(site, body, head, expected):
    (site / "index.html").write_text(_page('<a id="top"></a>' + body, head))
    problems = check_links.check_site(site)
    assert len(problems) == 1 and expected in problems[0], problems


def test_a_missing_font_in_a_stylesheet_is_reported(site):
    (site / "_static" / "font.woff2").unlink()
    problems = check_links.check_site(site)
    assert len(problems) == 1 and problems[0].startswith("_static/style.css:1: url(font.woff2)"), problems


def test_the_command_line_exits_1_on_a_problem(site, capsys):
    assert check_links.main([str(site)]) == 0
    (site / "lessons" / "one.html").unlink()
    assert check_links.main([str(site)]) == 1
    assert "lessons/one.html" in capsys.readouterr().out


@pytest.fixture
def build(monkeypatch):
    # book/build.py puts book/ on the path and imports its neighbours by their plain names: undo both.
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield _load("build")
    for name in {"settings", "check_links"} - before:
        sys.modules.pop(name, None)


def test_the_landing_page_has_every_lesson_of_the_readme(build):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    title, intro, table, _after = build.readme_parts(readme)
    lessons = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    exercises = sorted((ROOT / "exercises").glob("[0-9]*.ipynb"))
    assert title and intro and [row.stem for row in table] == [p.stem for p in lessons]
    page = build.landing_page(readme, lessons, exercises, executed=True)
    for lesson in lessons:
        assert f"](notebooks/{lesson.name})" in page and f"notebooks/{lesson.stem}\n" in page
    for exercise in exercises:
        assert f"](exercises/{exercise.name})" in page
    assert "solutions/" not in page


def test_a_readme_table_row_without_its_notebook_stops_the_build(build):
    readme = "# T\n\nIntro.\n\n## The lessons\n\n| # | notebook | q |\n|---|---|---|\n| 99 | `99-nothing` | Why? |\n"
    with pytest.raises(SystemExit, match="99-nothing"):
        build.landing_page(readme, [], [], executed=False)


def test_binder_links_have_the_readme_badge_form(build, monkeypatch):
    monkeypatch.setattr(build.settings, "REPOSITORY", "OWNER/REPO")
    monkeypatch.setattr(build.settings, "BRANCH", "HEAD")
    badge = re.search(r"\]\((https://mybinder\.org/v2/gh/[^)]+)\)", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert badge and build.settings.binder_url("notebooks/00-tour.ipynb") == badge.group(1)


@pytest.mark.notebook
def test_the_lesson_runner_also_writes_the_executed_notebooks(tmp_path):
    """make site shows what `python -m grading.lessons OUT --ipynb` ran: outputs included."""
    import nbformat

    from grading.lessons import main

    (tmp_path / "notebooks").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('shown on the site')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "notebooks" / "01-one.ipynb")
    out = tmp_path / "build"
    assert main([str(out), "--root", str(tmp_path), "--ipynb"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["01-one.html", "01-one.ipynb"]
    outputs = nbformat.read(out / "01-one.ipynb", as_version=4).cells[0].outputs
    assert outputs and outputs[0].text == "shown on the site\n"


def _diagrams() -> list[tuple[str, str]]:
    """(notebook, source) of every ```mermaid block in the lessons and exercises."""
    import nbformat

    found = []
    for path in sorted([*(ROOT / "notebooks").glob("*.ipynb"), *(ROOT / "exercises").glob("*.ipynb")]):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown":
                found += [(path.name, block) for block in re.findall(r"```mermaid\n(.*?)```", cell.source, re.S)]
    return found


@pytest.mark.browser
def test_every_diagram_parses_with_the_mermaid_the_site_ships(page):
    """A diagram Mermaid cannot parse shows "Syntax error" on the site (and in JupyterLab, which
    draws them too). Uses the copy `make site` fetched (CI builds the site before the tests)."""
    version = re.search(r'^mermaid_offline_version = "([^"]+)"', (BOOK / "conf.py").read_text(), re.M).group(1)
    script = ROOT / "build" / "vendor" / f"mermaid-{version}" / "mermaid.min.js"
    if not script.is_file():
        pytest.skip(f"no {script.relative_to(ROOT)}: `make site` fetches it")
    diagrams = _diagrams()
    assert diagrams, "no ```mermaid block found in the lessons"
    page.set_content("<!DOCTYPE html><html><body></body></html>")
    page.add_script_tag(path=str(script))
    errors = page.evaluate("""async (diagrams) => {
        const errors = [];
        for (const [name, source] of diagrams) {
            try { await mermaid.parse(source); }
            catch (e) { errors.push(name + ": " + String(e.message || e).split("\\n").slice(0, 3).join(" | ")); }
        }
        return errors;
    }""", diagrams)
    assert not errors, "diagrams Mermaid cannot draw:\n" + "\n".join(errors)
