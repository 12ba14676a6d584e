"""Old import paths of modules that moved out of ``servers``, kept working for one release.

``servers`` once also held the lab's instruments, the lessons' workloads and the lesson runner.
They moved to where their audience looks for them (``lab``, ``lab.lessons``, ``grading``), but
notebooks already handed in by students still say ``from servers.tap import start_tap``. This
finder makes each old name the very module at its new place (not a copy), so both names share
one state. New code uses the new names; remove this file after the next release.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

MOVED = {
    "servers.tap": "lab.tap",
    "servers.measure": "lab.measure",
    "servers.plots": "lab.plots",
    "servers.display": "lab.display",
    "servers.faults": "lab.lessons.faults",
    "servers.lessons": "grading.lessons",
    "servers.gateway": "servers.qrlogin.fixes.gateway_tier",
    "servers.cluster_cli": "servers.cluster.cli",
    "servers.feed.outbox": "servers.outbox",  # shared with the QR-login app's push channels
    "servers.lessons_support": "lab.lessons",
    "servers.lessons_support.publishing": "lab.publishing",
    **{f"servers.lessons_support.{name}": f"lab.lessons.{name}"
       for name in ("short_polling", "long_polling", "sse", "websocket", "stomp", "comparison", "qr_bug",
                    "fixes", "security")},
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):  # the default: a fresh module, replaced in exec_module
        return None

    def exec_module(self, module: ModuleType) -> None:
        # The import system returns whatever sys.modules holds for the name once this returns.
        sys.modules[module.__name__] = importlib.import_module(self.target)


class MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, _Alias(MOVED[fullname]))
        return None


def install() -> None:
    if not any(isinstance(finder, MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedFinder())  # before the path finder, which would load a second copy
