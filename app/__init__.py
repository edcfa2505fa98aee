"""The PySide6 desktop viewer over dvan (search by voice, map, captions, training).

Importing the package applies :mod:`app._pyside_fix` (PySide6 6.12 on Python 3.11 drops a
reference to ``None`` on every void call, which would abort the interpreter within seconds).
"""

from app._pyside_fix import immortalize_singletons

immortalize_singletons()
