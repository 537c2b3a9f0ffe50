"""The HTTP API's response models: what each endpoint answers, as the OpenAPI spec shows it. Every answer is
validated against its model on the way out.

One candidate schema everywhere (`Candidate`, as `gallery.records.candidate_dicts` writes it); a verification has
the fields of `gallery.records.Decision`; the threshold in force is described as `threshold_policy.threshold_in_force`
does (`ThresholdInForce`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, RootModel


class Candidate(BaseModel):
    identity: str = Field(description="an enrolled identity")
    score: float = Field(description="cosine similarity of the probe to the identity's best template")


class ThresholdInForce(BaseModel):
    """The gallery's decision threshold and where it came from."""

    threshold: float | None = Field(None, description="the gallery's threshold; null when it has none")
    threshold_source: dict[str, Any] | None = Field(
        None, description='how it was set (calibration, model default...); {"source": "none"} without one')
    threshold_description: str | None = Field(None, description="the same, in words")


class Health(ThresholdInForce):
    """Without the API key (when one is set) only `status`; with it, the counts and the threshold too."""

    status: str = Field(description='always "ok" while the service answers')
    identities: int | None = None
    templates: int | None = None


class Stats(ThresholdInForce):
    identities: int
    templates: int
    indexed_vectors: int
    embedding_dim: int
    template_policy: str | None = Field(description="all templates, or each identity's mean template")
    index_factory: str
    backend: str
    embedder: str = Field(description="the fingerprint of the embedder the gallery was enrolled with")
    generation: int = Field(description="bumped by every write that changes what the index holds")
    bytes_on_disk: int
    bytes_per_identity: float | None
    bytes_per_template: float | None
    wal_bytes: int = Field(description="the SQLite write-ahead log's size")
    index: dict[str, Any] = Field(description="the index's snapshot, replay and tuning report")


class IdentitySummary(BaseModel):
    identity: str
    templates: int = Field(description="how many templates (enrolled samples) it has")
    metadata: dict[str, Any]
    created: float = Field(description="when it was enrolled, seconds since the epoch")


class IdentityList(RootModel[list[IdentitySummary]]):
    """Every enrolled identity, by name."""


class TemplateSummary(BaseModel):
    template: int = Field(description="the template's id")
    file_name: str | None = Field(description="the file name of its source image; null for an upload that was "
                                              "not kept, or an embedding")
    file_hash: str | None
    quality: float | None = Field(description="the face detector's confidence")
    created: float
    thumbnail: str | None = Field(None, description="a JPEG data URI (at most 96 px a side) of the kept image; "
                                                    "only when the gallery keeps images")


class IdentityDetail(IdentitySummary):
    samples: list[TemplateSummary] = Field(description="its templates, oldest first")


class Enrolment(BaseModel):
    added: int = Field(description="templates added")
    duplicates: list[str] = Field(description="the uploaded files skipped: the identity already had their content")


class Removal(BaseModel):
    removed: str = Field(description="the identity removed")
    templates: int = Field(description="how many templates it had")


class FaceQuality(BaseModel):
    """`faceid.face_quality.FaceQuality`: what tells an "unknown" from a bad photo."""

    interocular: float = Field(description="pixels between the eyes")
    sharpness: float = Field(description="variance of the Laplacian of the aligned crop (blur lowers it)")
    yaw: float = Field(description="degrees the face is turned, from its landmarks (0: frontal)")
    roll: float = Field(description="degrees the eye line is tilted")
    detector_score: float


class ProbeFace(BaseModel):
    """The probe photo's face that was used (`select`): where it is, its quality, and whether it was ambiguous."""

    box: list[float] = Field(description="x1, y1, x2, y2 in the photo's pixels")
    detector_score: float
    quality: FaceQuality
    ambiguous: bool = Field(description="another face was nearly as good a subject (see other_box)")
    other_box: list[float] | None = Field(None, description="that other face's box, when ambiguous")


class Verification(BaseModel):
    """1:1 (`gallery.records.Decision`)."""

    identity: str
    score: float = Field(description="cosine similarity of the probe to the identity")
    threshold: float | None = Field(description="the threshold applied; null when there is none")
    accepted: bool | None = Field(description="score >= threshold; null without a threshold")
    threshold_source: dict[str, Any]
    probe: ProbeFace | None = Field(None, description="the probe's face; null for an aligned-crop gallery")


class Identified(BaseModel):
    identity: str = Field(description='the best candidate, or "unknown" when it scores below the threshold')
    candidates: list[Candidate] = Field(description="the top k identities, best first")
    threshold: float | None
    threshold_source: dict[str, Any]


class Identification(Identified):
    """1:N for one probe (`gallery.records.IdentifyResult`)."""

    complete: bool = Field(True, description="false when the index's result cap left fewer than k candidates")
    probe: ProbeFace | None = Field(None, description="the probe's face; null for an aligned-crop gallery")


class FaceIdentification(Identified):
    """One face of a photo (`all_faces`), left to right."""

    box: list[float] = Field(description="x1, y1, x2, y2 in the photo's pixels")
    landmarks: list[list[float]] = Field(description="eyes, nose and mouth corners: five (x, y)")
    score: float = Field(description="the face detector's confidence")


class IdentifyAnswer(RootModel[Identification | list[FaceIdentification]]):
    """One probe's identification, or with `all_faces` one per face found in the photo."""
