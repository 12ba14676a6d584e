"""Code the lessons would otherwise carry in their cells: workloads and measurement runs.

One module per lesson (``short_polling`` for 01, ``long_polling`` for 02, ``sse`` for 03) plus
``publishing``, the random-time publisher they share. A notebook calls one function per
measurement and gets DataFrames back, so the cells stay short and the same code is tested.
"""
