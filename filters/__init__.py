"""meddata.filters: importing this package registers every step module in it."""

from meddata.registry import import_submodules

import_submodules(__name__, __path__)
