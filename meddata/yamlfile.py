"""Read a YAML file the user wrote (recipe, train/eval config, pattern or template file).

Safe loading only (a file never executes code). Every error names the file, and the line
where YAML reports one, in the caller's error type, so each kind of file keeps its own
exception while the wording stays the same everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: str | Path, error: type[Exception] = ValueError, what: str = "YAML") -> Any:
    """The parsed document; ``error(message)`` when the file is missing or not valid YAML."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such {what} file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise error(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None
