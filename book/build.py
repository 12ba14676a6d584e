"""Build the course site into build/site/: ``python book/build.py [--no-execute]`` (``make site``).

1. Lessons. By default every lesson runs first, headless, each in a fresh kernel, through the
   course's own runner (``python -m grading.lessons build/ --ipynb``, as ``make lessons``), and the
   site shows the executed copies it leaves in build/; a lesson that fails stops the build.
   ``--no-execute`` takes notebooks/ as committed, without outputs: fast, what CI builds to check
   the site's structure and links. ``--reuse`` takes the executed copies an earlier build left.
2. Stage. build/site-src/ gets the lessons, exercises/ as generated (shown, never executed: the
   stubs would only raise NotImplementedError) and index.md, the landing page: the README's lesson
   table with a link to each lesson, its exercises and where to run it. Nothing is read from
   solutions/, and the staged tree is searched for solution text all the same.
3. Sphinx renders it with book/conf.py; a warning (a broken cross-reference is one) fails the build.
4. book/check_links.py: every local href and src resolves, and nothing loads from another site.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from html import escape
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import check_links  # noqa: E402
import settings  # noqa: E402


@dataclass
class Lesson:
    number: str
    stem: str          # 04-websocket
    question: str


def readme_parts(readme: str) -> tuple[str, list[str], list[Lesson], list[str]]:
    """From the README: its title, the paragraphs before its first section (badges and notes in
    parentheses left out), the lesson table, and the paragraphs after the table in its section."""
    title = re.search(r"^# (.+)$", readme, re.M)
    section = re.search(r"^## The lessons\s*$(.*?)(?=^## |\Z)", readme, re.M | re.S)
    if not title or not section:
        raise SystemExit("README.md: no '# title' or no '## The lessons' section to build the landing page from")
    intro_text = readme[title.end():re.search(r"^## ", readme, re.M).start()]
    intro = [p.strip() for p in re.split(r"\n\s*\n", intro_text)
             if p.strip() and not p.strip().startswith(("[![", "("))]
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*`([^`]+)`\s*\|\s*(.*?)\s*\|\s*$", section.group(1), re.M)
    if not rows:
        raise SystemExit("README.md: the '## The lessons' section has no '| NN | `NN-topic` | question |' rows")
    after = [p.strip() for p in re.split(r"\n\s*\n", section.group(1)) if p.strip() and not p.strip().startswith("|")]
    return title.group(1).strip(), intro, [Lesson(*row) for row in rows], after


def _links(path: str) -> str:
    return " · ".join(f"[{label}]({url})" for label, url in settings.launch_links(path))


def landing_page(readme: str, lessons: list[Path], exercises: list[Path], executed: bool) -> str:
    title, intro, table, after = readme_parts(readme)
    by_stem = {p.stem: p for p in lessons}
    missing = [row.stem for row in table if row.stem not in by_stem]
    if missing:
        raise SystemExit(f"README.md's lesson table names notebooks that notebooks/ does not have: {missing}")
    exercise_of = {p.stem.removesuffix("-exercises"): p for p in exercises}
    lines = [f"# {title}", "", *[p + "\n" for p in intro], "## The lessons", "",
             "| # | lesson | the question it answers | exercises | run it |", "|---|---|---|---|---|"]
    for row in table:
        exercise = exercise_of.get(row.stem)
        exercise_link = f"[{exercise.stem}](exercises/{exercise.name})" if exercise else ""
        lines.append(f"| {row.number} | [{row.stem}](notebooks/{row.stem}.ipynb) | {row.question} | {exercise_link} | "
                     f"{_links(f'notebooks/{row.stem}.ipynb')} |")
    lines += ["", *[p + "\n" for p in after]]
    shown = ("Each lesson is shown as it ran, headless in a fresh kernel, when this site was built: every "
             "output and plot is that run's." if executed else
             "The lessons are shown as committed, without outputs (a quick build: `make site` runs them).")
    exercises_note = ("The exercises are shown as students get them, not run. To work on one, open it in Jupyter "
                      "(the *run it* links, `make lab`, or the launch button on its page) and check your work "
                      "with `python -m grading check exercises/NN-topic-exercises.ipynb`.")
    lines += [shown, "", exercises_note, ""]
    lines += _toctree("Lessons", [f"notebooks/{p.stem}" for p in lessons])
    lines += _toctree("Exercises", [f"exercises/{p.stem}" for p in exercises])
    return "\n".join(lines)


def _toctree(caption: str, entries: list[str]) -> list[str]:
    return ["```{toctree}", ":hidden:", f":caption: {caption}", "", *entries, "```", ""]


def _note_cell(text: str) -> dict:
    return {"cell_type": "markdown", "id": "site-note", "metadata": {"tags": ["site-note"]}, "source": text}


# lab.show() frames a page of a server the lesson started: on the site that server is long gone.
_LIVE_FRAME = re.compile(r"""<iframe\b[^>]*\bsrc=["'](https?://(?:127(?:\.\d+){3}|localhost|\[::1\])[:/][^"']*)""")


def _without_live_frames(nb: dict) -> None:
    """Replace each output that frames a page served during the run with a line that says so."""
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            shown = data.get("text/html")
            shown = "".join(shown) if isinstance(shown, list) else shown
            frame = _LIVE_FRAME.search(shown or "")
            if frame:
                data["text/html"] = (f"<p><em>In Jupyter, the page of the server this lesson started shows here, "
                                     f"live, in a frame (it was at <code>{escape(frame.group(1))}</code> during "
                                     f"the run this site shows). Run the lesson to use it.</em></p>")


def stage_notebook(source: Path, target: Path, note: str) -> None:
    """Copy a notebook, with a line of site navigation after its title cell."""
    nb = json.loads(source.read_text(encoding="utf-8"))
    _without_live_frames(nb)
    nb["cells"].insert(1 if nb["cells"] else 0, _note_cell(note))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def stage(src: Path, lesson_dir: Path, executed: bool) -> None:
    shutil.rmtree(src, ignore_errors=True)
    lessons = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    exercises = sorted((ROOT / "exercises").glob("[0-9]*.ipynb"))
    exercise_of = {p.stem.removesuffix("-exercises"): p for p in exercises}
    for lesson in lessons:
        shown = lesson_dir / lesson.name
        if not shown.is_file():
            raise SystemExit(f"{shown} is missing: did every lesson run?")
        note = f"*Run this lesson yourself:* {_links(f'notebooks/{lesson.name}')}"
        if lesson.stem in exercise_of:
            exercise = exercise_of[lesson.stem]
            note += f" · *Its exercises:* [{exercise.stem}](../exercises/{exercise.name})"
        stage_notebook(shown, src / "notebooks" / lesson.name, note)
    lesson_of = {p.stem: p for p in lessons}
    for exercise in exercises:
        stem = exercise.stem.removesuffix("-exercises")
        note = f"*The exercise as students get it, not run here.* Work on it: {_links(f'exercises/{exercise.name}')}"
        if stem in lesson_of:
            note += f" · *The lesson:* [{stem}](../notebooks/{lesson_of[stem].name})"
        stage_notebook(exercise, src / "exercises" / exercise.name, note)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (src / "index.md").write_text(landing_page(readme, lessons, exercises, executed), encoding="utf-8")
    solutions = ROOT / "solutions"
    if solutions.is_dir():  # the instructor's checkout: make sure no answer got into the pages
        from grading.release import find_leaks
        try:
            leaks = find_leaks(src, solutions)
        except FileNotFoundError as missing:
            raise SystemExit(f"exercises/ is not up to date with solutions/ ({missing}): make exercises") from None
        if leaks:
            raise SystemExit("the site would show solution or hidden-test text:\n  " + "\n  ".join(leaks[:20]))


def _step(name: str, started: float) -> None:
    print(f"site: {name} in {time.monotonic() - started:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python book/build.py", description=__doc__.splitlines()[0])
    parser.add_argument("--no-execute", action="store_true",
                        help="show the lessons as committed, without running them (quick; what CI checks)")
    parser.add_argument("--reuse", action="store_true",
                        help="show the executed lessons an earlier build left in build/, without running them again")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="default: build/site/")
    args = parser.parse_args(argv)
    build = ROOT / "build"
    if settings.REPOSITORY == settings.PLACEHOLDER:
        print(f"site: launch links name {settings.PLACEHOLDER}: set REPOSITORY in book/settings.py "
              "or make site REPO=owner/name", flush=True)

    started = time.monotonic()
    lesson_dir = ROOT / "notebooks" if args.no_execute else build
    if not (args.no_execute or args.reuse):
        ran = subprocess.run([sys.executable, "-m", "grading.lessons", str(build), "--ipynb"], cwd=ROOT, check=False)
        if ran.returncode != 0:
            print("site: a lesson failed (above); no site built", file=sys.stderr)
            return ran.returncode
        _step("lessons executed", started)

    started = time.monotonic()
    src = build / "site-src"
    stage(src, lesson_dir, executed=not args.no_execute)
    shutil.rmtree(args.out, ignore_errors=True)
    doctrees = build / "site-doctrees"
    shutil.rmtree(doctrees, ignore_errors=True)
    sphinx = subprocess.run([sys.executable, "-m", "sphinx", "build", "-b", "html", "-q", "-W", "--keep-going",
                             "-c", str(HERE), "-d", str(doctrees), str(src), str(args.out)], cwd=ROOT, check=False)
    if sphinx.returncode != 0:
        print("site: Sphinx reported the problems above; fix them (a warning is an error here)", file=sys.stderr)
        return sphinx.returncode
    _step("pages rendered", started)

    problems = check_links.check_site(args.out)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"site: {len(problems)} broken link(s) or off-site asset(s) in {args.out}", file=sys.stderr)
        return 1
    print(f"site: links checked; open {args.out / 'index.html'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
