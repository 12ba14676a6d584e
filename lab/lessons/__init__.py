"""Code the lessons would otherwise carry in their cells: workloads and measurement runs.

One module per lesson (e.g. ``short_polling`` for 01, ``long_polling`` for 02, ``sse`` for 03);
a longer lesson gets a package of the same name with one module per topic (``comparison`` for
06, ``qr_bug`` 07, ``fixes`` 08, ``faults`` 09, ``security`` 10), each short enough to read in
one sitting or to show in a cell with ``inspect.getsource``. A notebook calls one function per
measurement and gets DataFrames back, so the cells stay short and the code that produces a
lesson's numbers lives where it can be read, reused and tested.
"""
