"""The one path grammar the engine reads: JsonGet paths and step property paths.

SageMaker writes ``Result['rmse'][0]`` in JsonGet and
``ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri`` in property references; users
also write the dotted ``Result.rmse``. One small parser accepts all of them so a path is
checked once, when the plan is built, instead of failing halfway through a run.

Grammar: ``name ( '.' name | '[' integer ']' | '[' quoted-string ']' )*`` where a quoted
string uses single or double quotes and backslash escapes the quote.
"""

from __future__ import annotations

PathSegment = str | int


class PathSyntaxError(ValueError):
    """A path does not follow the grammar; the message says where it breaks."""


def parse_path(text: str) -> tuple[PathSegment, ...]:
    """Split a path into keys (str) and list indexes (int)."""
    if not isinstance(text, str) or not text:
        raise PathSyntaxError("the path is empty; write it like Result['key'][0]")
    segments: list[PathSegment] = []
    pos = 0
    name, pos = _read_name(text, pos)
    segments.append(name)
    while pos < len(text):
        char = text[pos]
        if char == ".":
            name, pos = _read_name(text, pos + 1)
            segments.append(name)
        elif char == "[":
            segment, pos = _read_bracket(text, pos + 1)
            segments.append(segment)
        else:
            raise _error(text, pos, "expected '.' or '['")
    return tuple(segments)


def format_path(segments: tuple[PathSegment, ...]) -> str:
    """Write segments back in SageMaker's style (``Result['k'][0]``) for messages."""
    out = str(segments[0]) if segments else ""
    for segment in segments[1:]:
        out += f"[{segment}]" if isinstance(segment, int) else f"[{segment!r}]"
    return out


def _read_name(text: str, pos: int) -> tuple[str, int]:
    start = pos
    while pos < len(text) and (text[pos].isalnum() or text[pos] in "_-"):
        pos += 1
    if pos == start:
        raise _error(text, pos, "expected a name")
    return text[start:pos], pos


def _read_bracket(text: str, pos: int) -> tuple[PathSegment, int]:
    if pos < len(text) and text[pos] in "'\"":
        quote = text[pos]
        pos += 1
        chars: list[str] = []
        while pos < len(text) and text[pos] != quote:
            if text[pos] == "\\" and pos + 1 < len(text):
                pos += 1
            chars.append(text[pos])
            pos += 1
        if pos >= len(text):
            raise _error(text, pos, f"unterminated string, expected {quote}")
        pos += 1
        segment: PathSegment = "".join(chars)
    else:
        start = pos
        if pos < len(text) and text[pos] == "-":
            pos += 1
        while pos < len(text) and text[pos].isdigit():
            pos += 1
        digits = text[start:pos]
        if digits in ("", "-"):
            raise _error(text, start, "expected an integer index or a quoted key")
        segment = int(digits)
    if pos >= len(text) or text[pos] != "]":
        raise _error(text, pos, "expected ']'")
    return segment, pos + 1


def _error(text: str, pos: int, what: str) -> PathSyntaxError:
    return PathSyntaxError(f"invalid path {text!r} at character {pos + 1}: {what}")
