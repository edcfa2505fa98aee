"""Work around PySide6 6.12 dropping a reference to ``None`` on every call of a void method (Python < 3.12).

PySide6 6.12's wheels use the stable ABI, built with Python 3.12+ headers, where ``None``,
``True`` and ``False`` are immortal (PEP 683) and returning ``None`` needs no reference. On
Python 3.11, which this project runs, every call of a method returning ``void``
(``widget.update()``, ``painter.drawRect(...)``, ``QCoreApplication.processEvents()``, ...) thus
takes one reference from ``None`` that was never given. A fresh interpreter holds a few thousand
references to ``None``; after that many void calls (seconds of painting), CPython aborts with
"Fatal Python error: none_dealloc: deallocating None".

The fix gives ``None`` (and, as a precaution, ``True`` and ``False``) 2**40 extra references at
import, which is what immortality amounts to: at a million void calls per second they would last
twelve days. Nothing else changes. On Python 3.12+ it does nothing.
"""

from __future__ import annotations

import ctypes
import sys

#: References added to each singleton.
EXTRA_REFERENCES = 2**40


def immortalize_singletons() -> bool:
    """Give None, True and False enough references to survive PySide6's drops; True when applied."""
    if sys.version_info >= (3, 12):
        return False
    for singleton in (None, True, False):
        count = ctypes.c_ssize_t.from_address(id(singleton))
        if count.value < EXTRA_REFERENCES:
            count.value += EXTRA_REFERENCES
    return True
