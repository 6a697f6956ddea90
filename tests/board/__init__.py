"""The board-side tests: the light install (sw only) on numpy 1.26 beside PYNQ 4.0.

Run by ``nox -s board`` (docs/boards.md), where ``pynq`` is installed; the tests that need it
are skipped elsewhere, so the main suite (``nox -s tests``) never imports pynq.  This package
is imported as ``board`` there (pytest puts tests/ on sys.path, not the repository root, so
``sw`` is the installed package) and as ``tests.board`` by the main suite.
"""
