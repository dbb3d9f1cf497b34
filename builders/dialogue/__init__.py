"""Doctor-patient dialogues -> TRL conversational rows (``messages``): one builder a shape read.

Shapes read:

* ``dialogue_transcripts`` – a CSV/JSONL/JSON table with a transcript column, speakers as
  ``Doctor:`` / ``Patient:`` line prefixes (MTS-Dialog) or ``[doctor]`` / ``[patient]`` tags
  (ACI-Bench). A paired note (MTS-Dialog ``section_header`` + ``section_text``, ACI-Bench
  ``note``) is kept in ``sections``, so a task maker can build dialogue -> note examples.
* ``meddialog`` – the MedDialog English text files (``id=N``, URL line, ``Description``,
  ``Dialogue``, ``Patient:`` / ``Doctor:`` blocks); the description is kept as a section.
* ``sharegpt`` – ShareGPT JSON / JSONL (``conversations`` of ``{from, value}``), streamed.

Speakers map to TRL roles with ``speakers`` (defaults: the doctor -> assistant; patient,
family, a guest clinician or nurse talking to the doctor -> user; human -> user, gpt -> assistant), merged over the defaults; a speaker
may also map to ``drop``. Labels are matched case-insensitively, with numbering stripped
(``Doctor_2``, ``Guest_family_1``) and, with ``fuzzy_speakers``, typos forgiven
(``Docotr``). A turn written on the line of the one before ("... fine - Guest_family_1: He
...") is split off: each file's label set is learned from its line starts first
(:class:`LabelSplitter`; counted as ``speaker_labels_mid_line``). Consecutive turns with the same role merge; empty turns drop. A dialogue with an
unknown speaker is quarantined by default (``unknown_speakers``), because guessing a role
would teach the model to speak for the wrong side. Error messages never quote a speaker
label or any text: labels can be names.

Modules: ``speakers`` (labels -> roles, transcript parsing), ``shaping`` (merging, the chat
shape, one row), ``base`` (shared params and reader loop), and one module per builder:
``transcripts``, ``meddialog``, ``sharegpt``.
"""

from meddata.builders.dialogue.base import DialogueBuilder, DialogueParams
from meddata.builders.dialogue.meddialog import MedDialog, MedDialogParams
from meddata.builders.dialogue.shaping import (
    OPENING_PREAMBLE,
    DialogueShape,
    dialogue_row,
    merge_turns,
    shape_dialogue,
)
from meddata.builders.dialogue.sharegpt import ShareGpt, ShareGptParams
from meddata.builders.dialogue.speakers import (
    DEFAULT_SPEAKERS,
    LabelSplitter,
    Role,
    SpeakerMap,
    TranscriptError,
    UnknownPolicy,
    parse_transcript,
)
from meddata.builders.dialogue.transcripts import DialogueTranscripts, TranscriptParams

__all__ = [
    "DEFAULT_SPEAKERS", "OPENING_PREAMBLE", "DialogueBuilder", "DialogueParams", "DialogueShape",
    "DialogueTranscripts", "LabelSplitter", "MedDialog", "MedDialogParams", "Role", "ShareGpt",
    "ShareGptParams", "SpeakerMap", "TranscriptError", "TranscriptParams", "UnknownPolicy",
    "dialogue_row", "merge_turns", "parse_transcript", "shape_dialogue",
]
