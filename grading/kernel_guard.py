"""Run by the grader inside a submission's kernel: put back what a submission changed, before each test cell.

Why: a submission's code runs in the same Python process as the tests that grade it, and IPython
lets that code hook into how every later cell runs. A custom exception handler
(``get_ipython().set_custom_exc``) swallows a failing ``assert``; an input or AST transformer
rewrites a test cell into ``pass``; an event callback runs code around it. Plain assignment does
the rest: a builtin (``isinstance``), a method of the shell or the kernel, a name a set-up cell
imported (``requests``), or a function of the course's modules that a hidden test compares
against (``servers.wire.sse.encode_event``).

:func:`install` records all of these as they are after the set-up cells (the course's own code)
and before the first solution cell; it first imports the modules the test cells import, so the
functions a hidden test uses are the course's. :func:`reset` puts everything back and returns, as
JSON, the kinds of change it found (the grader tells the instructor). The grader calls both through
an execute request whose code is empty, so IPython runs no transformer and no event callback for
it, and whose user expression makes the call.

:class:`Guard` is the grader's side of the same protocol, used by the worker in ``grading.run``.

What this cannot stop: code that patches this module or the grader's request on its way in,
the internals of the interpreter (``ctypes``, ``gc``), or the functions of third-party libraries;
nor correct answers written obscurely. README.md ("Grading safely") lists the limits.
"""
from __future__ import annotations

import ast
import builtins
import importlib
import json
import sys
import types

__all__ = ["install", "reset", "Guard", "GuardFailed", "test_imports"]

PROTECTED_PACKAGES = ("servers", "lab", "grading")
_ROUTINES = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, staticmethod, classmethod, property)

_saved: _Snapshot | None = None


def install(test_imports: list[str] | tuple[str, ...] = ()) -> str:
    """Import what the tests import, then record the state :func:`reset` restores. Returns "installed"."""
    global _saved
    from IPython import get_ipython

    importlib.import_module("grading.exact")  # the helper test cells compare with
    for name in test_imports:
        try:
            importlib.import_module(name)
        except Exception:  # a test that imports something missing fails by itself, visibly
            pass
    _saved = _Snapshot(get_ipython())
    return "installed"


def reset() -> str:
    """Undo every recorded kind of change; a JSON list naming the kinds that had changed."""
    if _saved is None:
        raise RuntimeError("kernel_guard.reset() before install()")
    return json.dumps(_saved.restore())


def _routines(namespace) -> dict[str, object]:
    return {k: v for k, v in dict(namespace).items() if isinstance(v, _ROUTINES)}


def _is_ours(module_name: str) -> bool:
    return module_name.split(".")[0] in PROTECTED_PACKAGES


class _Snapshot:
    def __init__(self, shell) -> None:
        self.shell = shell
        self.custom = (shell.custom_exceptions, shell.__dict__.get("CustomTB"))
        self.manager = shell.input_transformer_manager
        self.manager_lists = {name: (getattr(self.manager, name), list(getattr(self.manager, name)))
                              for name in ("cleanup_transforms", "line_transforms", "token_transformers")}
        self.post = list(shell.input_transformers_post)
        self.ast = list(shell.ast_transformers)
        self.events = shell.events
        self.callbacks = {event: list(callbacks) for event, callbacks in shell.events.callbacks.items()}
        kernel = getattr(shell, "kernel", None)
        self.handlers = {name: dict(getattr(kernel, name)) for name in ("shell_handlers", "control_handlers")
                         if isinstance(getattr(kernel, name, None), dict)}
        self.kernel = kernel
        machinery = [o for o in (shell, kernel, getattr(kernel, "session", None), shell.display_pub) if o is not None]
        self.instances = [(o, _routines(vars(o))) for o in machinery]
        classes = {cls for o in machinery for cls in type(o).__mro__ if cls is not object}
        self.modules = {name: (module, _routines_and_classes(module)) for name, module in list(sys.modules.items())
                        if _is_ours(name) and isinstance(module, types.ModuleType)}
        classes |= {value for _, (_, values) in self.modules.items() for value in values.values()
                    if isinstance(value, type) and _is_ours(getattr(value, "__module__", "") or "")}
        self.classes = [(cls, _routines(vars(cls))) for cls in classes]
        self.builtins = {k: v for k, v in vars(builtins).items() if k != "_"}  # "_": the last result, by design
        self.names = {k: v for k, v in shell.user_ns.items()
                      if isinstance(v, (types.ModuleType, type, *_ROUTINES)) and not k.startswith("_")}
        self.names["__builtins__"] = shell.user_ns.get("__builtins__", builtins)

    def restore(self) -> list[str]:
        changed: list[str] = []

        def note(what: str) -> None:
            if what not in changed:
                changed.append(what)

        shell = self.shell
        if (shell.custom_exceptions, shell.__dict__.get("CustomTB")) != self.custom:
            shell.custom_exceptions, shell.CustomTB = self.custom
            if self.custom[1] is None:
                shell.__dict__.pop("CustomTB", None)
            note("the exception handler (set_custom_exc)")
        if shell.input_transformer_manager is not self.manager \
                or any(getattr(self.manager, name) is not current for name, (current, _) in self.manager_lists.items()) \
                or any(list(current) != saved for current, saved in self.manager_lists.values()) \
                or list(shell.input_transformers_post) != self.post:
            shell.input_transformer_manager = self.manager
            for current, saved in self.manager_lists.values():
                current[:] = saved
            for name, (current, _) in self.manager_lists.items():
                setattr(self.manager, name, current)
            shell.input_transformers_post = list(self.post)
            note("input transformers")
        if list(shell.ast_transformers) != self.ast:
            shell.ast_transformers = list(self.ast)
            note("AST transformers")
        if shell.events is not self.events or any(shell.events.callbacks.get(e, []) != c for e, c in self.callbacks.items()):
            added = [cb for e, cbs in shell.events.callbacks.items() for cb in cbs if cb not in self.callbacks.get(e, [])]
            shell.events = self.events
            for event, callbacks in self.callbacks.items():
                self.events.callbacks[event] = list(callbacks)
            if any(getattr(cb, "__module__", None) in (None, "__main__") for cb in added):
                note("IPython event callbacks")
        for name, saved in self.handlers.items():
            if getattr(self.kernel, name) != saved:
                setattr(self.kernel, name, dict(saved))
                note("IPython's or the kernel's own methods")
        for obj, saved in self.instances:
            if _put_back(vars(obj), saved, lambda k, v, o=obj: object.__setattr__(o, k, v),
                         lambda k, o=obj: object.__delattr__(o, k)):
                note("IPython's or the kernel's own methods")
        for cls, saved in self.classes:
            try:
                if _put_back(vars(cls), saved, lambda k, v, c=cls: setattr(c, k, v), lambda k, c=cls: delattr(c, k)):
                    note("IPython's or the kernel's own methods" if not _is_ours(cls.__module__)
                         else "functions of the course's modules (servers, lab, grading)")
            except (TypeError, AttributeError):  # a class that refuses changes was not changed either
                pass
        for name, (module, saved) in self.modules.items():
            if sys.modules.get(name) is not module:
                sys.modules[name] = module
                note("functions of the course's modules (servers, lab, grading)")
            if _put_back(vars(module), saved, lambda k, v, m=module: setattr(m, k, v), None):
                note("functions of the course's modules (servers, lab, grading)")
        current = vars(builtins)
        if any(current.get(k, _MISSING) is not v for k, v in self.builtins.items()):
            for key, value in self.builtins.items():
                if current.get(key, _MISSING) is not value:
                    current[key] = value
            note("built-in names such as isinstance")
        user_ns = shell.user_ns
        if any(user_ns.get(k, _MISSING) is not v for k, v in self.names.items()):
            user_ns.update(self.names)
            note("names the set-up cells defined")
        return changed


_MISSING = object()


def _routines_and_classes(module) -> dict[str, object]:
    return {k: v for k, v in dict(vars(module)).items() if isinstance(v, (type, *_ROUTINES))}


def _put_back(current, saved: dict, set_value, delete) -> bool:
    """Restore the routines in ``saved`` and, when ``delete`` is given, remove routines added since."""
    changed = False
    for key, value in saved.items():
        if current.get(key, _MISSING) is not value:
            set_value(key, value)
            changed = True
    if delete is not None:
        for key in [k for k, v in dict(current).items() if k not in saved and isinstance(v, _ROUTINES)]:
            delete(key)
            changed = True
    return changed


# ---------------------------------------------------------------------------------------------
# The grader's side (the worker in grading.run), outside the kernel.


def test_imports(nb) -> list[str]:
    """The course's modules a notebook's test cells import (imported by :func:`install`)."""
    names: set[str] = set()
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader") or {}
        if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return sorted(n for n in names if _is_ours(n))


class GuardFailed(Exception):
    """The kernel could not be reset; ``busy`` when it did not answer in time (still running a cell)."""

    def __init__(self, reason: str, busy: bool = False) -> None:
        super().__init__(reason)
        self.busy = busy


class Guard:
    """Calls :func:`install` before a kernel's first answer and :func:`reset` before each test, from outside.

    Each call is an execute request with empty code (IPython runs no transformer and no event
    callback for it) whose user expression calls this module in the kernel.
    """

    def __init__(self, client, imports: list[str], timeout: float) -> None:
        self.client, self.imports, self.timeout = client, imports, timeout
        self.installed = False
        self.broken = ""

    def new_kernel(self) -> None:
        self.installed, self.broken = False, ""

    def _ask(self, expression: str):
        from jupyter_core.utils import run_sync

        async def ask():
            return await self.client.kc.execute("", silent=True, store_history=False, allow_stdin=False,
                                                stop_on_error=False, user_expressions={"guard": expression},
                                                reply=True, timeout=self.timeout)

        try:
            reply = run_sync(ask)()
        except TimeoutError:
            raise GuardFailed("the kernel was still busy", busy=True) from None
        content = reply.get("content", {})
        answer = (content.get("user_expressions") or {}).get("guard") or {}
        if content.get("status") != "ok" or answer.get("status") != "ok":
            said = f"{answer.get('ename', '')}: {answer.get('evalue', '')}" if answer else content.get("status")
            raise GuardFailed(f"the kernel did not run the grader's reset ({said})")
        try:
            return ast.literal_eval(answer["data"]["text/plain"])
        except (KeyError, ValueError, SyntaxError):
            raise GuardFailed("the kernel's answer to the grader's reset was not readable") from None

    def install(self) -> None:
        if self.installed or self.broken:
            return
        try:
            self._ask(f"__import__({__name__!r}, fromlist=['install']).install({self.imports!r})")
            self.installed = True
        except GuardFailed as exc:
            self.broken = str(exc)

    def reset(self) -> list[str]:
        """The kinds of change put back, in words; raises :class:`GuardFailed` when the kernel could not be reset."""
        self.install()
        if self.broken:
            raise GuardFailed(f"the grader could not prepare the kernel ({self.broken})")
        undone = json.loads(self._ask(f"__import__({__name__!r}, fromlist=['reset']).reset()"))
        if not isinstance(undone, list) or not all(isinstance(u, str) for u in undone):
            raise GuardFailed("the kernel's answer to the grader's reset was not readable")
        return undone
