"""Root conftest: load asgitrace's pytest plugin after coverage has started.

pyproject's addopts disable the ``asgitrace`` entry point (``-p no:asgitrace``); users of
the package get the plugin from the entry point as usual.
"""

pytest_plugins = ["asgitrace.pytest_plugin"]
