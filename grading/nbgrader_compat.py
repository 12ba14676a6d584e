"""nbgrader's own preprocessors, applied without an nbgrader course or database.

Why: ``exercises/`` must be what nbgrader's ``generate_assignment`` would hand to students, so
courses that use nbgrader and learners who use our one-command self-check see the same
notebook. nbgrader's pipeline is LockCells, ClearSolutions, ClearOutput, CheckCellMetadata,
ComputeChecksums, SaveCells (database), ClearHiddenTests, ClearMarkScheme, ComputeChecksums,
CheckCellMetadata; we run the same preprocessors in the same order, minus the database step
and the header/footer/test-template steps our exercises do not use.
"""
from __future__ import annotations

import copy

from nbformat import NotebookNode
from nbgrader.preprocessors import (CheckCellMetadata, ClearHiddenTests, ClearMarkScheme, ClearOutput,
                                    ClearSolutions, ComputeChecksums, LockCells)

__all__ = ["release_version", "strip_hidden_tests"]


def _run(nb: NotebookNode, preprocessors) -> NotebookNode:
    resources: dict = {}
    for preprocessor in preprocessors:
        nb, resources = preprocessor.preprocess(nb, resources)
    return nb


def release_version(source: NotebookNode, *, keep_hidden_tests: bool = False) -> NotebookNode:
    """The student version of a source notebook (a deep copy; the source is not touched).

    ``keep_hidden_tests=True`` gives the version an instructor's grader runs: solutions
    replaced by stubs, hidden tests kept.
    """
    nb = copy.deepcopy(source)
    steps = [LockCells(), ClearSolutions(), ClearOutput(), CheckCellMetadata(), ComputeChecksums()]
    if not keep_hidden_tests:
        steps += [ClearHiddenTests(), ClearMarkScheme(), ComputeChecksums(), CheckCellMetadata()]
    nb = _run(nb, steps)
    nb.metadata.pop("celltoolbar", None)
    return nb


def strip_hidden_tests(nb: NotebookNode) -> NotebookNode:
    """A copy with the ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` regions removed."""
    return _run(copy.deepcopy(nb), [ClearHiddenTests()])
