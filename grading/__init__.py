"""Autograding for the exercise notebooks: one source, a learner's self-check, batch grading for a class.

``solutions/`` holds the source notebooks (nbgrader markers and cell metadata); ``exercises/`` is
generated from them (``python -m grading generate``). A learner runs
``python -m grading check exercises/NN-topic-exercises.ipynb``; an instructor runs
``python -m grading batch SUBMISSIONS_DIR --out OUT_DIR``. Every submission runs in a fresh kernel
in a process of its own, under a per-cell and a per-notebook time limit, sandboxed where
bubblewrap is available (``grading.sandbox``), and is scored by nbgrader's own rule, so courses
that use nbgrader get the same points.
"""
