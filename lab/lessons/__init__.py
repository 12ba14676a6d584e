"""Code the lessons would otherwise carry in their cells: workloads and measurement runs.

One module per lesson (e.g. ``short_polling`` for 01, ``long_polling`` for 02, ``sse`` for 03),
plus ``publishing``, the random-time publisher several lessons share. A notebook calls one
function per measurement and gets DataFrames back, so the cells stay short and the code that
produces a lesson's numbers lives where it can be read, reused and tested.
"""
