"""Engines execute steps; :mod:`meddata.pipeline` decides which and in what order."""

from meddata.engine.base import Engine, ReadResult, get_engine, register_engine
from meddata.engine.local import LocalEngine

__all__ = ["Engine", "LocalEngine", "ReadResult", "get_engine", "register_engine"]
