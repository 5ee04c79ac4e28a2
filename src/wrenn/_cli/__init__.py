"""The ``wrenn`` command: ``main`` (arguments and verbs), ``shell`` (a terminal in a
capsule) and ``demo``."""
