"""Known answers to the exercises: every wrong one loses points, every right one gets full marks.

Why: for a learner working alone, the self-check is the only feedback. A self-check that gives
full marks to an answer with the very mistake a question is about (a polling client that never
moves its cursor, an SSE client that ignores ``retry:``) teaches the mistake. So for each
question the suite keeps answers students really write, and grades them the two ways a course
does: the learner's self-check (visible tests only) and batch grading (hidden tests too).

Answer files: ``tests/exercise_answers/<exercise stem>/<name>.py``, starting with header comments::

    # cell: <grade_id of the solution cell it replaces>      (one line per cell)
    # expect: wrong                                           (or: right)
    # question: <grade_id of a test cell that must lose points>[, <another>]   (wrong answers)
    # concept: <one line: the mistake, or what the right answer does differently>

then the cell's source. An answer that replaces several cells has one ``# cell:`` line each, and
its body holds the cells' sources, each after a line ``# %% cell: <grade_id>``.

How it is graded, quickly: answers are packed into as few submissions as possible, each being the
generated exercise with every solution cell filled from the source's solutions except the cells
its answers replace. Two answers share a submission only when neither can change the result of a
question the other is checked on: a question depends on the solution cells before its test cell
and on every solution cell whose names its test cell uses (directly or through other cells), so a
wrong answer to question 1 never hides behind a wrong answer to question 2. In each submission,
every question a wrong answer names must lose points, and every question no wrong answer can reach
must get full marks (which checks the right answers, and that a wrong answer costs nothing
elsewhere). All submissions of an exercise go through one ``grade_class`` call (2 jobs) and, beside
it, through the self-check, one at a time.
"""
from __future__ import annotations

import ast
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

from grading.batch import grade_class
from grading.grade import GradeReport, grade_submission
from grading.notebook import grade_id, is_solution, is_test, questions, read_notebook

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"
ANSWERS = Path(__file__).resolve().parent / "exercise_answers"
STEMS = sorted(p.stem for p in SOLUTIONS.glob("*.ipynb"))

HEADER = re.compile(r"#\s*(cell|expect|question|concept):\s*(.*?)\s*$")
CELL_SEPARATOR = re.compile(r"#\s*%%\s*cell:\s*(\S+)\s*$")
MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")
NEEDS_A_PERSON = "needs_manual_grading"


# --- answer files ----------------------------------------------------------------------------------


@dataclass
class Answer:
    """One known answer: which solution cells it replaces, with what, and what grading must make of it."""

    path: Path
    cells: dict[str, str]
    expect: str
    questions: list[str]
    concept: str

    @property
    def name(self) -> str:
        return self.path.stem


def read_answer(path: Path) -> Answer:
    """Parse an answer file; a malformed one raises ValueError naming the file and what is wrong."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fields: dict[str, list[str]] = {"cell": [], "expect": [], "question": [], "concept": []}
    body_start = 0
    for body_start, line in enumerate(lines):
        found = HEADER.fullmatch(line)
        if not found or CELL_SEPARATOR.fullmatch(line):
            break
        fields[found.group(1)].append(found.group(2))
    else:
        body_start = len(lines)
    cells_named = fields["cell"]
    expect = fields["expect"][0] if len(fields["expect"]) == 1 else ""
    asked = [q.strip() for line in fields["question"] for q in line.split(",") if q.strip()]
    concept = " ".join(fields["concept"])

    def bad(why: str) -> ValueError:
        return ValueError(f"{path.relative_to(ROOT)}: {why}")

    if not cells_named:
        raise bad("no '# cell: <grade_id>' line")
    if expect not in ("wrong", "right"):
        raise bad("needs exactly one '# expect: wrong' or '# expect: right' line")
    if expect == "wrong" and not asked:
        raise bad("a wrong answer needs '# question: <test cell grade_id>' (the question that must lose points)")
    if not concept:
        raise bad("needs '# concept: <the mistake, in one line>'")
    body = lines[body_start:]
    if len(cells_named) == 1 and not any(CELL_SEPARATOR.fullmatch(line) for line in body):
        cells = {cells_named[0]: _trimmed(body)}
    else:
        cells, current = {}, None
        for line in body:
            separator = CELL_SEPARATOR.fullmatch(line)
            if separator:
                current = separator.group(1)
                cells[current] = []
            elif current is not None:
                cells[current].append(line)
            elif line.strip():
                raise bad("code before the first '# %% cell: <grade_id>' line")
        cells = {gid: _trimmed(text) for gid, text in cells.items()}
        if sorted(cells) != sorted(cells_named):
            raise bad(f"the '# cell:' lines name {sorted(cells_named)} but the '# %% cell:' sections are {sorted(cells)}")
    return Answer(path, cells, expect, asked, concept)


def _trimmed(lines: list[str]) -> str:
    text = "\n".join(lines).strip("\n")
    return text + "\n" if text else ""


def answers_of(stem: str) -> list[Answer]:
    return [read_answer(p) for p in sorted((ANSWERS / stem).glob("*.py"))]


# --- what a question depends on --------------------------------------------------------------------


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell defines at top level, names it reads); IPython magics are left out."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:  # a notebook cell may await at top level
        tree = compile(code, "<cell>", "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except SyntaxError:
        return set(), set()
    defined: set[str] = set()
    for statement in tree.body:  # top-level definitions, also inside top-level if/try/with/for
        for node in ast.walk(statement):
            if not _at_top_level(statement, node):
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                defined.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
    return defined, set(_free_loads(tree, frozenset()))


def _free_loads(node: ast.AST, bound: frozenset):
    """Names read in ``node`` that no enclosing function, lambda or comprehension binds (a test's local ``got`` is no use of a global)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        outside = list(getattr(node, "decorator_list", [])) + node.args.defaults + [d for d in node.args.kw_defaults if d]
        for child in outside:
            yield from _free_loads(child, bound)
        inner = bound | _bound_in(node)
        for child in (node.body if isinstance(node.body, list) else [node.body]):
            yield from _free_loads(child, inner)
        return
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        inner = bound | {n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
        for child in ast.iter_child_nodes(node):
            yield from _free_loads(child, inner)
        return
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in bound:
        yield node.id
    for child in ast.iter_child_nodes(node):
        yield from _free_loads(child, bound)


def _bound_in(function) -> frozenset:
    """A function's local names: its parameters and what its own body (not nested scopes) assigns, defines or imports."""
    args = function.args
    names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
    names |= {a.arg for a in (args.vararg, args.kwarg) if a}
    declared_global: set[str] = set()
    for statement in (function.body if isinstance(function.body, list) else [function.body]):
        for node in ast.walk(statement):
            if not _at_top_level(statement, node):
                continue
            if isinstance(node, (ast.Global, ast.Nonlocal)):
                declared_global.update(node.names)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                names.add(node.name)
    return frozenset(names - declared_global)


SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
          ast.GeneratorExp)


def _at_top_level(statement: ast.AST, target: ast.AST) -> bool:
    """False when ``target`` sits in a scope of its own (function, class, comprehension) within ``statement``."""
    stack = [(statement, False)]
    while stack:
        node, nested = stack.pop()
        if node is target:
            return not nested
        inner = nested or isinstance(node, SCOPES)
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))
    return False


def question_footprints(source) -> dict[str, set[str]]:
    """For each autograded question (test cell grade_id): the solution cells its result can depend on."""
    code_cells = [(i, c) for i, c in enumerate(source.cells) if c.cell_type == "code"]
    names = {i: _names(c.source) for i, c in code_cells}
    definers: dict[str, list[int]] = {}
    for i, _ in code_cells:
        for name in names[i][0]:
            definers.setdefault(name, []).append(i)

    def depends_on(i: int) -> set[int]:
        found = set()
        for name in names[i][1] - names[i][0]:
            places = definers.get(name, [])
            earlier = [j for j in places if j < i]
            if earlier:
                found.add(earlier[-1])
            elif places:  # a name a function body reads, defined by a later cell (read when it runs)
                found.add(places[0])
        return found

    solution_at = {i: grade_id(c) for i, c in enumerate(source.cells) if is_solution(c)}
    footprints = {}
    for question in questions(source):
        test = next(i for i, c in enumerate(source.cells) if grade_id(c) == question.grade_id)
        if not is_test(source.cells[test]):
            continue
        seen, todo = set(), [test]
        while todo:
            for j in depends_on(todo.pop()) - seen:
                seen.add(j)
                todo.append(j)
        footprints[question.grade_id] = {solution_at[j] for j in seen if j in solution_at} | set(question.solution_ids)
    return footprints


# --- submissions -----------------------------------------------------------------------------------


@dataclass
class Submission:
    name: str
    answers: list[Answer] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)  # questions whose result these answers may change
    cells: set[str] = field(default_factory=set)      # solution cells they replace
    uses: set[str] = field(default_factory=set)       # other solution cells their code calls into

    @property
    def wrong(self) -> list[Answer]:
        return [a for a in self.answers if a.expect == "wrong"]


def touched_by(answer: Answer, footprints: dict[str, set[str]]) -> set[str]:
    return {q for q, cells in footprints.items() if cells & set(answer.cells)} | set(answer.questions)


def uses_cells(answer: Answer, source) -> set[str]:
    """The other solution cells an answer's own code reads names from (a right answer may call question 2's function)."""
    used = set().union(*(_names(text)[1] - _names(text)[0] for text in answer.cells.values()))
    return {grade_id(c) for c in source.cells if is_solution(c) and grade_id(c) not in answer.cells
            and _names(c.source)[0] & used}


def pack(answers: list[Answer], footprints: dict[str, set[str]], source) -> list[Submission]:
    """First fit, most crowded cells first: answers that cannot change each other's questions share a notebook."""
    crowd: dict[str, int] = {}
    for answer in answers:
        for gid in answer.cells:
            crowd[gid] = crowd.get(gid, 0) + 1
    order = sorted(answers, key=lambda a: (-max(crowd[g] for g in a.cells), a.expect != "wrong", a.name))
    submissions: list[Submission] = []
    for answer in order:
        touched, cells, uses = touched_by(answer, footprints), set(answer.cells), uses_cells(answer, source)
        home = next((s for s in submissions
                     if not (s.touched & touched or s.cells & (cells | uses) or s.uses & cells)), None)
        if home is None:
            home = Submission(f"submission-{len(submissions) + 1:02d}")
            submissions.append(home)
        home.answers.append(answer)
        home.touched |= touched
        home.cells |= cells
        home.uses |= uses
    return submissions


def solution_text(cell) -> str:
    """What a learner who wrote the solution would have in the cell: the source without the markers."""
    return "\n".join(line for line in cell.source.splitlines() if not MARKER.match(line))


def write_submission(stem: str, submission: Submission, folder: Path) -> Path:
    source = read_notebook(SOLUTIONS / f"{stem}.ipynb")
    solutions = {grade_id(c): solution_text(c) for c in source.cells if is_solution(c)}
    replaced = {gid: text for answer in submission.answers for gid, text in answer.cells.items()}
    notebook = read_notebook(EXERCISES / f"{stem}.ipynb")
    for cell in notebook.cells:
        if is_solution(cell):
            cell.source = replaced.get(grade_id(cell), solutions[grade_id(cell)])
    path = folder / f"{submission.name}.ipynb"
    nbformat.write(notebook, str(path))
    return path


# --- the tests -------------------------------------------------------------------------------------


def _validate(stem: str, answers: list[Answer]) -> None:
    source = read_notebook(SOLUTIONS / f"{stem}.ipynb")
    solution_ids = {grade_id(c) for c in source.cells if is_solution(c)}
    test_ids = {grade_id(c) for c in source.cells if is_test(c)}
    for answer in answers:
        where = answer.path.relative_to(ROOT)
        unknown_cells = set(answer.cells) - solution_ids
        assert not unknown_cells, f"{where}: {sorted(unknown_cells)} are not solution cells of {stem}"
        unknown_questions = set(answer.questions) - test_ids
        assert not unknown_questions, f"{where}: {sorted(unknown_questions)} are not test cells of {stem}"


def _result_line(report: GradeReport, gid: str) -> str:
    q = next(q for q in report.questions if q.grade_id == gid)
    return f"{q.points:g}/{q.max_points:g} {q.status}" + (f" ({q.reason[:300]})" if q.reason else "")


def _check(submission: Submission, report: GradeReport, footprints: dict[str, set[str]], mode: str) -> list[str]:
    problems = []
    if report.problem:
        problems.append(f"{submission.name} ({mode}): {report.problem}")
    results = {q.grade_id: q for q in report.questions}
    for answer in submission.wrong:
        for gid in answer.questions:
            q = results[gid]
            if q.points >= q.max_points:
                problems.append(f"{answer.path.relative_to(ANSWERS)} ({mode}): {gid} should lose points "
                                f"(the mistake: {answer.concept}), but it got {_result_line(report, gid)}")
    reachable = set().union(*(touched_by(a, footprints) for a in submission.wrong)) if submission.wrong else set()
    for gid, q in results.items():
        if q.status == NEEDS_A_PERSON or gid in reachable or gid not in footprints:
            continue
        if q.points < q.max_points:
            right = [a.path.name for a in submission.answers if a.expect == "right" and touched_by(a, footprints) & {gid}]
            problems.append(f"{submission.name} ({mode}): {gid} should get full marks "
                            f"(right answers here: {right or 'the solution'}), but it got {_result_line(report, gid)}")
    return problems


@pytest.mark.parametrize("stem", STEMS)
def test_every_question_has_known_wrong_and_right_answers(stem):
    """Two wrong answers per autograded question and one right one written differently from the solution."""
    answers = answers_of(stem)
    _validate(stem, answers)
    source = read_notebook(SOLUTIONS / f"{stem}.ipynb")
    footprints = question_footprints(source)
    solutions = {grade_id(c): solution_text(c) for c in source.cells if is_solution(c)}
    missing = []
    for gid, cells in footprints.items():
        wrong = [a.name for a in answers if a.expect == "wrong" and gid in a.questions]
        right = [a.name for a in answers if a.expect == "right" and set(a.cells) & cells
                 and any(_code_differs(text, solutions[c]) for c, text in a.cells.items())]
        if len(wrong) < 2 or not right:
            missing.append(f"{gid}: {len(wrong)} wrong answer(s) {wrong}, {len(right)} right one(s) written differently")
    assert not missing, (f"{stem}: every question needs at least two known wrong answers and one right answer "
                         f"written differently from the solution, in tests/exercise_answers/{stem}/:\n  "
                         + "\n  ".join(missing))


def _code_differs(answer: str, solution: str) -> bool:
    """Different code, not only different comments or layout (markdown compares as text)."""
    try:
        return ast.dump(ast.parse(answer)) != ast.dump(ast.parse(solution))
    except SyntaxError:
        return " ".join(answer.split()) != " ".join(solution.split())


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("stem", STEMS)
def test_known_answers_are_graded_as_expected(stem, tmp_path):
    """Wrong answers lose points at their question, right ones get full marks: self-check and batch alike."""
    answers = answers_of(stem)
    if not answers:
        pytest.skip(f"no known answers for {stem} yet (test_every_question_has_known_wrong_and_right_answers says which)")
    _validate(stem, answers)
    source_path = SOLUTIONS / f"{stem}.ipynb"
    footprints = question_footprints(read_notebook(source_path))
    submissions = pack(answers, footprints, read_notebook(source_path))
    folder = tmp_path / "class"
    folder.mkdir()
    paths = {s.name: write_submission(stem, s, folder) for s in submissions}

    def self_checks() -> dict[str, GradeReport]:
        return {s.name: grade_submission(source_path, paths[s.name], student=s.name, hidden_tests=False)
                for s in submissions}

    # The self-checks run one after another beside the batch's two jobs: with an odd number of
    # submissions, two phases of two lanes each would leave a lane idle at the end of both.
    with ThreadPoolExecutor(max_workers=1) as lane:
        visible_future = lane.submit(self_checks)
        batch = {r.student: r for r in grade_class(folder, source=source_path, jobs=2)}
        visible = visible_future.result()

    problems = []
    for submission in submissions:
        problems += _check(submission, visible[submission.name], footprints, "self-check")
        problems += _check(submission, batch[submission.name], footprints, "batch")
    packing = "; ".join(f"{s.name}: {', '.join(a.name for a in s.answers)}" for s in submissions)
    assert not problems, f"{stem} ({packing}):\n  " + "\n  ".join(problems)
