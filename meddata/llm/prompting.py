"""Prompt templates for LLM steps (generators, judges): Jinja files with a ``system`` and a
``user`` block, rendered into chat messages.

A shipped template (the judges' in ``templates/`` next to this file, a step's in
``templates/`` next to the step's module) names itself in its first line,
``{# prompt_id: passage_qa.v1 #}``; that id lands in ``meta.prompt_id`` of every row it
produced. A template given in a recipe (``template:`` path) gets its content hash appended to
the id (``my_qa@3f2a9c1e``), so two different files never share an id. Templates render in
Jinja's sandbox, and an undefined variable is an error rather than an empty string.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHIPPED = Path(__file__).parent / "templates"
_ID = re.compile(r"^\s*\{#\s*prompt_id:\s*([A-Za-z0-9_.@-]+)\s*#\}")


class TemplateError(ValueError):
    """A template cannot be loaded or rendered; the message names the file."""


def _env():
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False)


@dataclass(frozen=True)
class PromptTemplate:
    prompt_id: str
    source: str
    origin: str
    _compiled: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def load(cls, path: str | Path, *, shipped: bool = False) -> PromptTemplate:
        """Read and compile a template. ``shipped``: one of the package's own, which must
        declare its id (user files get ``<id or file stem>@<content hash>``)."""
        path = Path(path)
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TemplateError(f"cannot read prompt template {path}: {exc.strerror}") from None
        m = _ID.match(source)
        if shipped:
            if not m:
                raise TemplateError(f"{path}: shipped templates must start with '{{# prompt_id: ... #}}'")
            prompt_id = m.group(1)
        else:
            digest = hashlib.sha256(source.encode()).hexdigest()[:8]
            prompt_id = f"{m.group(1) if m else path.stem}@{digest}"
        return cls(prompt_id, source, str(path), _compile(source, str(path)))

    @classmethod
    def shipped(cls, filename: str, folder: Path = SHIPPED) -> PromptTemplate:
        """A template shipped with meddata: by default one of the core's (the judges')."""
        return cls.load(Path(folder) / filename, shipped=True)

    def render(self, variables: dict[str, Any]) -> list[dict[str, str]]:
        """``[{role: system, ...}, {role: user, ...}]`` (system only when its block is non-empty)."""
        from jinja2 import TemplateError as JinjaError

        tmpl = self._compiled
        try:
            ctx = tmpl.new_context(dict(variables))
            system = "".join(tmpl.blocks["system"](ctx)).strip() if "system" in tmpl.blocks else ""
            user = "".join(tmpl.blocks["user"](ctx)).strip()
        except JinjaError as exc:  # names the variable, never quotes row content
            raise TemplateError(f"prompt template {self.origin}: {exc.message}") from None
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": user})
        return messages


def _compile(source: str, origin: str):
    from jinja2 import TemplateSyntaxError

    try:
        tmpl = _env().from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{origin}:{exc.lineno}: not a valid Jinja template ({exc.message})") from None
    if "user" not in tmpl.blocks:
        raise TemplateError(f"{origin}: a prompt template needs a '{{% block user %}}' (and may have a 'system' block)")
    return tmpl
