"""meddata.filters: step modules register when the step registry loads them (the
``meddata.steps`` entry point names :mod:`meddata.filters.registered`), so importing one filter,
such as ``meddata.filters.deid`` for ``meddata deid``, does not import all the others."""
