"""Code the lessons would otherwise carry in their cells: workloads and measurement runs.

One module per lesson (e.g. ``short_polling`` for 01, ``long_polling`` for 02, ``sse`` for 03);
a longer lesson gets a package of the same name with one module per topic (``comparison`` for
06, ``qr_bug`` 07, ``fixes`` 08, ``faults`` 09, ``security`` 10), each short enough to read in
one sitting or to show in a cell with ``inspect.getsource``. A notebook calls one function per
measurement and gets DataFrames back, so the cells stay short and the code that produces a
lesson's numbers lives where it can be read, reused and tested.
"""

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def benchmark(name: str):
    """``benchmarks.<name>`` from the checkout this package lives in: the benchmarks are scripts of
    the repository, not an installed package (their servers and workers run from there too)."""
    if not (ROOT / "benchmarks" / f"{name}.py").exists():
        raise RuntimeError(f"this needs the repository's benchmarks/{name}.py beside lab/")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"benchmarks.{name}")
