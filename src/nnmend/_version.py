"""The package version, defined here only: ``pyproject.toml`` reads it (setuptools ``dynamic``), and
``nnmend.__version__``, ``nnmend --version`` and every report take it from here."""
__version__ = "0.2.0"
