"""What every dialogue builder shares: its params (shape, speakers, merging) and the reader
loop that keeps one speaker map for the whole input and counts how rows were shaped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from meddata.builders import source_io
from meddata.builders.dialogue.shaping import DialogueShape, dialogue_row, shape_dialogue
from meddata.builders.dialogue.speakers import Role, SpeakerMap, UnknownPolicy
from meddata.builders.rows_out import checked_rows

from meddata.steps import Builder, Drop, Quarantine, StepContext


class DialogueParams(source_io.SourceParams):
    phi_status: source_io.PhiStatus = "raw"
    #: chat: an assistant-first turn -> system preamble, trailing user turns trimmed (TRL
    #: ``messages`` ready); drop_opening: the same, but the opening turn is dropped; as_is: keep
    #: every turn (for dialogue_note, which turns the whole transcript into a prompt).
    dialogue_shape: DialogueShape = "chat"
    #: Speaker label -> user | assistant | system | drop, merged over the defaults.
    speakers: dict[str, Role] = {}
    fuzzy_speakers: bool = True
    unknown_speakers: UnknownPolicy = "quarantine"
    #: Joins merged consecutive turns of one role.
    merge_separator: str = "\n"

    def speaker_map(self) -> SpeakerMap:
        return SpeakerMap(self.speakers, fuzzy=self.fuzzy_speakers)


class DialogueBuilder(Builder):
    """Shared reader: one speaker map for the whole input (its fuzzy matches are counted into
    stats.json), then each file in turn."""

    default_patterns: ClassVar[tuple[str, ...]] = ()
    default_source: ClassVar[str | None] = None
    def independent_files(self, ctx: StepContext) -> list[Path]:
        """Each file is read on its own (the speaker map only counts fuzzy matches; transcripts
        learn their labels per file), with ids scoped by the file's name."""
        return source_io.if_names_distinct(source_io.input_files(self.params, self.default_patterns))

    @checked_rows
    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        p: DialogueParams = self.params
        speakers = p.speaker_map()
        source = source_io.source_name(p, self.default_source)
        for path in source_io.input_files(p, self.default_patterns, ctx.files):
            scope = source_io.id_scope(p, path, source)
            yield from self.read_file(path, ctx.display_path(path), source, scope, speakers)
        self.stat_update("speaker_fuzzy_matches", speakers.fuzzy_hits)

    def read_file(self, path: Path, display: str, source: str, scope: str,
                  speakers: SpeakerMap) -> Iterator[dict | Drop | Quarantine]:
        """The rows of one file; ``scope`` prefixes ids taken from the data."""
        raise NotImplementedError

    def row(self, msgs: list[dict[str, str]], **kwargs: Any) -> dict | Drop:
        """The row (or Drop) for one dialogue, in the ``dialogue_shape`` asked for; each change
        is counted (``shape.opening_to_system`` ...) and named in ``meta.annotations.shaped``."""
        shaped, changes = shape_dialogue(msgs, self.params.dialogue_shape)
        if changes:
            kwargs["annotations"] = {**(kwargs.get("annotations") or {}), "shaped": changes}
        out = dialogue_row(self.name, shaped, **kwargs)
        if isinstance(out, Drop):
            if out.reason == "no_assistant_turn" and any(m["role"] == "assistant" for m in msgs):
                return Drop(out.row, "no_assistant_reply")  # the doctor only opened; nobody answered
            return out
        for change in changes:  # rows out only: a dropped dialogue is counted under its reason
            self.stat_update(f"shape.{change}")
        return out

