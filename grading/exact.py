"""Comparisons a test cell can trust with a value a learner's code returned: ``same(got, expected)``.

Why: ``got == expected`` asks ``got`` whether it is equal, and an answer can return an object
whose ``__eq__`` always says yes (or a ``str`` subclass that does, which passes
``isinstance(got, str)`` too). Python also asks the left-hand object when ``expected`` comes
first, so the order does not help. :func:`same` first checks that every part of ``got`` is a
plain value (exactly a built-in type, or a numpy scalar), so that ``==`` runs Python's own
comparison, and only then compares.

Hidden tests use it wherever they compare a returned value::

    from grading.exact import same as _same
    assert _same(_got, (len(_raw) - _length, _length)), f"... but the answer was {_got!r}"
    assert _same(expected_mean_latency_ms(0.25), 125, abs_tol=1e-6)
"""
from __future__ import annotations

import math
import sys

__all__ = ["same", "plain"]

_ATOMS = (type(None), bool, int, float, complex, str, bytes, bytearray)
_SEQUENCES = (list, tuple)
_SETS = (set, frozenset)
_MAX_DEPTH = 50


def _numpy_scalar(value) -> bool:
    """Exactly one of numpy's own scalar types (pandas sums are numpy.int64 or numpy.float64)."""
    numpy = sys.modules.get("numpy")
    kind = type(value)
    return numpy is not None and kind.__module__ == "numpy" and getattr(numpy, kind.__name__, None) is kind \
        and isinstance(value, numpy.generic)


def plain(value, _depth: int = 0) -> bool:
    """Whether ``value`` and everything in it has exactly a built-in type (no subclass), or is a numpy scalar."""
    if _depth > _MAX_DEPTH:
        return False
    kind = type(value)
    if kind in _ATOMS or _numpy_scalar(value):
        return True
    if kind in _SEQUENCES or kind in _SETS:
        return all(plain(item, _depth + 1) for item in value)
    if kind is dict:
        return all(plain(k, _depth + 1) and plain(v, _depth + 1) for k, v in value.items())
    return False


def _number(value) -> bool:
    return (type(value) in (int, float) or _numpy_scalar(value)) and type(value) is not bool


def same(got, expected, *, rel_tol: float = 0.0, abs_tol: float = 0.0) -> bool:
    """``got == expected`` when ``got`` is a plain value; numbers within ``rel_tol``/``abs_tol`` when given.

    A ``bool`` equals only a ``bool`` (``1 == True`` is not an answer to a yes/no question).
    """
    if not plain(got):
        return False
    if isinstance(expected, bool) or isinstance(got, bool):
        return type(got) is bool and type(expected) is bool and got is expected
    if (rel_tol or abs_tol) and _number(got) and _number(expected):
        return math.isclose(float(got), float(expected), rel_tol=rel_tol, abs_tol=abs_tol)
    return bool(got == expected)
