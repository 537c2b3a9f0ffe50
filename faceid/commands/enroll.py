"""`faceid enroll`: enroll images of one identity, or a whole identity-folder tree, into a gallery (created on first
use). A failed enrolment into a new gallery leaves no gallery behind."""

import argparse
from pathlib import Path

from faceid.commands.options import add_photo_gallery_options, add_workers_option, open_gallery_from
from faceid.commands.output import report

SUMMARY = "enroll identities into a gallery"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_photo_gallery_options(parser, creates=True)
    parser.add_argument("--allow-low-quality", action="store_true",
                        help="enroll faces that fail the quality gate (too small, blurred, turned away or uncertain: "
                             "see docs/models.md, Enrolment quality); by default such a photo is reported and skipped")
    parser.add_argument("images", nargs="*", type=Path, help="images of --identity, or folders of them")
    parser.add_argument("--identity", help="the identity the images belong to")
    parser.add_argument("--from-folder", type=Path, help="an identity-folder tree: one identity per sub-folder")
    parser.add_argument("--index", default="Flat", help="FAISS factory string for a new gallery (default Flat: exact), "
                        "or auto: exact while small, then IVF with nprobe tuned to recall@1 0.99; with --backend "
                        "milvus: Flat, auto (Milvus AUTOINDEX) or a Milvus index type such as HNSW")
    parser.add_argument("--backend", default=None,
                        help="where a new gallery keeps its vectors: faiss, an index inside the gallery (default), "
                             "or milvus")
    parser.add_argument("--milvus-uri", default=None,
                        help="Milvus server of a new --backend milvus gallery (default: Milvus Lite inside the "
                             "gallery, one process at a time)")
    parser.add_argument("--policy", choices=["all", "mean"], default="all", help="template policy of a new gallery")
    parser.add_argument("--keep-images", action="store_true",
                        help="a new gallery keeps a copy of every enrolled image, so it can be re-embedded later "
                             "(change it with `faceid gallery keep-images GALLERY on|off`)")
    add_workers_option(parser, 1, help="parallel decode + detect processes, as for `faceid align` (the embedder "
                                       "batches in this process; default 1)")


def run(args: argparse.Namespace) -> int:
    from faceid.data.folder import expand_images, list_identity_folder
    from faceid.gallery.enrollment import enroll_folder, enroll_images
    from faceid.gallery.session import removed_unless_kept

    if bool(args.identity) == bool(args.from_folder):
        raise ValueError("give either --identity NAME IMAGES... or --from-folder DIR")
    if args.from_folder:
        list_identity_folder(args.from_folder)  # a missing or empty tree is refused before any gallery is made
        images = None
    else:
        images = expand_images(args.images)
        if not images:
            raise ValueError("no images to enroll: name them after --identity NAME")
    with removed_unless_kept(args.gallery) as new_gallery:
        with open_gallery_from(args, index_factory=args.index, template_policy=args.policy, create=True,
                               keep_images=args.keep_images, backend=args.backend,
                               backend_options={"uri": args.milvus_uri} if args.milvus_uri else None) as gallery:
            summary = (enroll_folder(gallery, args.from_folder, args.workers) if args.from_folder
                       else enroll_images(gallery, args.identity, images, args.workers))
        if summary["enrolled_samples"]:
            new_gallery.keep()
        elif not new_gallery.kept:
            summary["gallery"] = f"not created: no image of {args.from_folder or args.identity} could be enrolled"
    report(args, summary, _summary_text)
    return 0 if summary["enrolled_samples"] or summary["duplicates"] else 1


def _summary_text(summary: dict) -> str:
    lines = [f"enrolled {summary['enrolled_samples']} image(s) of {summary['identities']} identit"
             f"{'y' if summary['identities'] == 1 else 'ies'} ({summary['images']} given, {summary['duplicates']} "
             f"duplicate(s) skipped, {summary['failed']} failed)"]
    lines += [f"  failed: {path}: {reason}" for path, reason in summary["failures"].items()]
    if "gallery" in summary:
        lines.append(f"gallery {summary['gallery']}")
    return "\n".join(lines)
