"""The warnings a build carries wherever it is shown (dataset card, HTML report).

Derived once from :class:`BuildInfo` so the card and the report can never disagree about
whether a build holds raw patient data or data under a licence that limits its use. Each
warning is plain text: a short title and what it means; the card bolds the title.
"""

from __future__ import annotations

from dataclasses import dataclass

from meddata.publish.buildinfo import BuildInfo, is_non_commercial, is_restricted


@dataclass(frozen=True)
class BuildWarning:
    """One warning: a title that names the problem, and a body that says what it means and what to do."""

    title: str
    body: str

    @property
    def text(self) -> str:
        return f"{self.title}: {self.body}"

    @property
    def markdown(self) -> str:
        return f"**{self.title}:** {self.body}"


def build_warnings(info: BuildInfo) -> list[BuildWarning]:
    """Raw patient rows, non-commercial and restricted licences, in that order (most serious first)."""
    out = []
    if info.raw_rows:
        out.append(BuildWarning("Raw patient data", f"{info.raw_rows:,} rows are raw patient data (phi_status "
                                "raw) and were never de-identified. Do not share or publish this build."))
    nc = info.non_commercial_licences
    if nc:
        srcs = sorted(s.name for s in info.sources.values() if any(is_non_commercial(lic) for lic in s.licences))
        out.append(BuildWarning("Non-commercial licence", f"{', '.join(srcs)} ({'; '.join(nc)}). The dataset as a whole may not be used commercially; drop these sources for a "
                                "commercial build."))
    restricted = sorted({lic for lic in info.licences if is_restricted(lic)})
    if restricted:
        out.append(BuildWarning("Restricted licence", f"{'; '.join(restricted)}. Sources under a data use agreement usually forbid redistribution, even "
                                "de-identified; check the agreement before sharing."))
    return out
