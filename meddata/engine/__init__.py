"""Engines execute steps; :mod:`meddata.pipeline` decides which and in what order."""

from meddata.engine.base import Engine, get_engine, register_engine
from meddata.engine.local import LocalEngine
from meddata.engine.sink import SinkReport, StepSink

__all__ = ["Engine", "LocalEngine", "SinkReport", "StepSink", "get_engine", "register_engine"]
