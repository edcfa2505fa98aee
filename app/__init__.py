"""The PySide6 desktop viewer over dvan (search by voice, map, captions, training)."""
