"""What every `faceid` command prints: a human-readable view by default, the same result as JSON with `--json`.

`report(args, value, human)` is the one way a command prints its result: `human(value)` (default `render`, a
generic view of mappings and lists of rows) unless `--json` was given. JSON is always valid: a NaN or infinite
number becomes null, with `KEY_reason` beside it in a mapping.
"""

import argparse
import json
import math


def add_output_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a human-readable "
                                                            "view")


def report(args: argparse.Namespace, value, human=None) -> None:
    if getattr(args, "json", False):
        print_json(value)
    else:
        print((human or render)(value))


def print_json(value) -> None:
    print(json.dumps(_finite(value), indent=2, default=_plain, allow_nan=False))


def _plain(value):
    """A numpy scalar or array as the Python number or list it holds; anything else (a path...) as its text."""
    return _finite(value.tolist()) if hasattr(value, "tolist") else str(value)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        finite = {}
        for key, item in value.items():
            finite[key] = _finite(item)
            if isinstance(item, float) and not math.isfinite(item):
                finite[f"{key}_reason"] = f"not a finite number ({item})"
        return finite
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def render(value, indent: str = "") -> str:
    """A mapping as aligned `key: value` lines (nested ones indented), a list of mappings as a table."""
    if isinstance(value, dict):
        if not value:
            return f"{indent}(none)"
        width = max(len(str(key)) for key in value) + 1
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item and not _is_flat_list(item):
                lines += [f"{indent}{key}:", render(item, indent + "  ")]
            else:
                lines.append(f"{indent}{str(key) + ':':<{width}} {cell(item)}")
        return "\n".join(lines)
    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        return table(value, indent)
    if isinstance(value, list):
        return "\n".join(f"{indent}{cell(item)}" for item in value) or f"{indent}(none)"
    return f"{indent}{cell(value)}"


def table(rows: list[dict], indent: str = "") -> str:
    """Rows (mappings with the same keys) as columns under an upper-case header."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[column.upper() for column in columns]] + [[cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(indent + "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
                     for line in cells)


def cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return ", ".join(f"{key}={cell(item)}" for key, item in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(item) for item in value) or "-"
    return str(value)


def _is_flat_list(value) -> bool:
    return isinstance(value, list) and all(not isinstance(item, (dict, list)) for item in value)


def probe_note(probe: dict | None) -> str:
    """What a human answer adds about the probe photo's face: that it was ambiguous, or fails the enrolment quality
    gate (an "unknown" may then be the photo's fault); empty for a good, clear face."""
    from faceid.face_quality import FaceQuality, QualityGate

    if not probe:
        return ""
    notes = [f"another face could be the subject at [{', '.join(f'{v:.0f}' for v in probe['other_box'])}]"
             ] if probe["ambiguous"] else []
    notes += QualityGate().problems(FaceQuality(**probe["quality"]))
    return f"  [photo: {'; '.join(notes)}]" if notes else ""
