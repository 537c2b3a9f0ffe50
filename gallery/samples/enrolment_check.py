"""What a photo must pass before its face becomes a template: one clear subject (unless the caller chose the face
with an explicit selection) and the quality gate (`faceid.face_quality.QualityGate`, unless low quality is allowed).
A wrong or poor template makes every later answer about that person wrong, so a photo that fails is reported with
the reason and the fix, and skipped. Probes are never refused: their quality travels with the answer instead."""

from __future__ import annotations

from dataclasses import dataclass, field

from faceid.face_quality import FaceQuality, QualityGate
from faceid.face_selection import DetectedFace


@dataclass(frozen=True)
class EnrolmentCheck:
    gate: QualityGate | None = field(default_factory=QualityGate)  # None: --allow-low-quality
    refuse_ambiguous: bool = True  # False once a selection is named explicitly

    @classmethod
    def from_options(cls, select: str | None = None, allow_low_quality: bool = False) -> EnrolmentCheck:
        """The check of `faceid enroll --select S --allow-low-quality`: naming a selection accepts its choice."""
        return cls(None if allow_low_quality else QualityGate(), select is None)

    def problem(self, name: str, face: DetectedFace, quality: FaceQuality) -> str | None:
        """Why the face of the photo `name` may not be enrolled, with the fix; None when it may."""
        if self.refuse_ambiguous and face.ambiguous:
            return (f"{name}: two faces could be its subject ({_box(face.box)} and {_box(face.rival)}): crop the photo "
                    "to one face, or name the face to take with --select (largest, best, center)")
        problems = self.gate.problems(quality) if self.gate else []
        if problems:
            return f"{name}: {'; '.join(problems)} (enrol it anyway with --allow-low-quality)"
        return None


def _box(box) -> str:
    return "[" + ", ".join(f"{float(v):.0f}" for v in box) + "]"
