"""Face losses, one small module per family, behind one registry.

    from faceid.losses import build_loss, available_losses
    loss = build_loss("arcface", embedding_dim=512, num_classes=10_000, s=64, m=0.5)
    value = loss(embeddings, labels)          # (B, d) float, (B,) int64 -> 0-dim tensor

Joint supervision composes with `+`: `build_loss("arcface+center", ...)` is ArcFace plus
`aux_weight` times the center term. Keyword arguments go to whichever part accepts them; a name
both accept is addressed with a `main_` or `aux_` prefix.
"""

import torch.nn as nn

from faceid.losses import lace, lgm, margin, ncm, pair, softmax, terms  # noqa: F401  (register themselves)
from faceid.losses.base import ClassificationLoss, FaceLoss
from faceid.losses.registry import AUX_TERMS, LOSSES
from faceid.losses.terms import JointLoss
from faceid.registry import option_names


def available_losses() -> list[str]:
    """Every name `build_loss` accepts (compositions `main+term` aside): the losses, and each auxiliary
    term on its own, which means SoftMax plus that term (the classic joint losses)."""
    return sorted(set(LOSSES.names()) | set(AUX_TERMS.names()))


def available_aux_terms() -> list[str]:
    return AUX_TERMS.names()


def _hyperparameters(factory) -> list[str]:
    """Every keyword a loss or term takes after (embedding_dim, num_classes)."""
    return option_names(factory, skip=2)


def _build_joint(main_name: str, term_name: str, embedding_dim: int, num_classes: int, options: dict) -> JointLoss:
    main_factory, term_factory = LOSSES.get(main_name), AUX_TERMS.get(term_name)
    if not issubclass(main_factory, ClassificationLoss):
        raise ValueError(f"the main loss of a composition must be a classification loss, got {main_name!r}; "
                         f"classification losses: "
                         f"{[n for n in LOSSES.names() if issubclass(LOSSES.get(n), ClassificationLoss)]}")
    options = dict(options)
    aux_weight = options.pop("aux_weight", None)
    main_names, term_names = set(_hyperparameters(main_factory)), set(_hyperparameters(term_factory))
    main_options, term_options = {}, {}
    for key, value in options.items():
        if key.startswith("main_") and key[5:] in main_names:
            main_options[key[5:]] = value
        elif key.startswith("aux_") and key[4:] in term_names:
            term_options[key[4:]] = value
        elif key in main_names and key in term_names:
            raise ValueError(f"hyperparameter {key!r} fits both {main_name!r} and {term_name!r}; "
                             f"write main_{key} or aux_{key}")
        elif key in main_names:
            main_options[key] = value
        elif key in term_names:
            term_options[key] = value
        else:
            raise ValueError(f"unknown hyperparameter {key!r} for {main_name}+{term_name}; valid: "
                             f"{sorted(main_names | term_names | {'aux_weight'})}")
    return JointLoss(main_factory(embedding_dim, num_classes, **main_options),
                     term_factory(embedding_dim, num_classes, **term_options), aux_weight)


def build_loss(name: str, embedding_dim: int, num_classes: int | None = None, **hyperparameters) -> nn.Module:
    """Build the loss `name` (see `available_losses()`), or a composition `main+term`."""
    if "+" in name:
        main_name, _, term_name = name.partition("+")
        return _build_joint(main_name.strip(), term_name.strip(), embedding_dim, num_classes, hyperparameters)
    if name in AUX_TERMS:
        return _build_joint("softmax", name, embedding_dim, num_classes, hyperparameters)
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(available_losses())}; "
                         f"or main+term with a term among {', '.join(available_aux_terms())}")
    return LOSSES.build(name, embedding_dim, num_classes, **hyperparameters)


__all__ = ["FaceLoss", "ClassificationLoss", "JointLoss", "available_losses", "available_aux_terms", "build_loss"]
