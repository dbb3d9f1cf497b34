"""Importing this module registers every step module of :mod:`meddata.filters` (the registry's
``meddata.steps`` entry point)."""

import meddata.filters as _package

from meddata.registry import import_submodules

import_submodules(_package.__name__, _package.__path__)
