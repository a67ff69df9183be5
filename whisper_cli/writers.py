"""Write a transcript as plain text, subtitles (SRT, WebVTT), TSV or JSON.

Each format is a tiny writer class in a registry keyed by its name, with its file extension and
its formatting knobs as class attributes. A writer writes to a text stream, so standard output
and files share one code path; `write_outputs` puts every chosen format next to an output base
path, each file written atomically.

Subtitle cues follow openai-whisper's layout rules (`--max-line-width`, `--max-line-count`,
`--max-words-per-line`, `--highlight-words`), with its warts fixed:

- no empty cues: segments and lines that are blank after stripping are skipped, and blank lines
  inside a cue are dropped, since a blank line ends an SRT or WebVTT cue;
- cue times never run backwards or overlap: a cue starting before the previous one ended starts
  where it ended, and every cue lasts at least one millisecond (a cue of zero length would be
  dropped by players and parsers, losing its text, so it is stretched instead);
- WebVTT cue text is escaped (`&`, `<`, `>`), so `-->` never appears in a payload; in SRT, which
  has no escapes, any arrow `-->` (or longer) becomes `->`, as openai-whisper does;
- a long pause is measured from the end of the previous word, not from its start.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, TextIO

from whisper_cli.atomic import atomic_write, signals_held
from whisper_cli.errors import OptionsError, WhisperCliError, os_reason
from whisper_cli.results import Segment, Transcript, Word

LONG_PAUSE = 3.0  # seconds between words that end a cue when cues flow across segments

# characters that end a line for `str.splitlines`; none may appear inside a cue line or TSV field
_LINE_BREAKS = re.compile(r"[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")
_TSV_BREAKS = re.compile(r"[\t\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_SRT_ARROW = re.compile(r"-{2,}>")
# what the `srt` parser (and players like it) take for a cue index and the start of a timing line
_SRT_INDEX_LINE = re.compile(r"-?[0-9]+\.?[0-9]*")
_SRT_TIMESTAMP_START = re.compile(r"\s*[0-9]+[,.:，．。：][0-9]+[,.:，．。：][0-9]+")


class OutputError(WhisperCliError):
    """An output file that cannot be written."""


@dataclass(frozen=True)
class WriterOptions:
    """How subtitle writers lay out cues.

    Every option needs word timestamps; a segment without words is always one cue holding its
    text. With words and no option, a segment is one cue timed from its first word to its last.
    """

    # line layout
    max_line_width: int | None = None  # characters per line; lines wrap between words
    max_line_count: int | None = None  # lines per cue; cues then flow across segments
    max_words_per_line: int | None = None  # words per cue; a segment is cut into such cues
    # styling
    highlight_words: bool = False  # a cue per word, the word underlined with <u>…</u>

    def __post_init__(self) -> None:
        _verify_options(self)

    @property
    def needs_words(self) -> bool:
        """Whether these options only take effect when segments carry word timestamps."""
        return (
            self.max_line_width is not None
            or self.max_line_count is not None
            or self.max_words_per_line is not None
            or self.highlight_words
        )


def _verify_options(options: WriterOptions) -> None:
    for name in ("max_line_width", "max_line_count", "max_words_per_line"):
        value = getattr(options, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise OptionsError(f"{name} must be a whole number, not {value!r}")
        if value is not None and value < 1:
            raise OptionsError(f"{name} must be at least 1, not {value}")
    if options.max_line_count is not None and options.max_line_width is None:
        raise OptionsError("max_line_count needs max_line_width")
    if options.max_words_per_line is not None and options.max_line_count is not None:
        raise OptionsError("max_words_per_line has no effect together with max_line_count")


# timestamps


def format_timestamp(
    seconds: float, always_include_hours: bool = False, decimal_marker: str = "."
) -> str:
    """Format seconds as `[HH:]MM:SS.mmm`, rounded to the nearest millisecond.

    Hours have at least two digits and appear when asked for or when not zero.
    The arithmetic is on integer milliseconds, so 3599.9996 s gives `01:00:00.000`.
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a timestamp must be a finite number of seconds >= 0, not {seconds}")
    return _format_milliseconds(round(seconds * 1000), always_include_hours, decimal_marker)


def _format_milliseconds(ms: int, always_include_hours: bool, decimal_marker: str) -> str:
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds, ms = divmod(ms, 1_000)
    hours_part = f"{hours:02d}:" if always_include_hours or hours > 0 else ""
    return f"{hours_part}{minutes:02d}:{seconds:02d}{decimal_marker}{ms:03d}"


def _milliseconds(seconds: float) -> int | None:
    """Seconds as whole milliseconds; None for NaN or infinity."""
    return round(seconds * 1000) if math.isfinite(seconds) else None


# cues


@dataclass(frozen=True)
class Cue:
    """One subtitle cue: times in seconds and its lines, each a run of word strings.

    The first word of a line has no leading and the last no trailing whitespace; no line is blank.
    """

    start: float
    end: float
    lines: tuple[tuple[str, ...], ...]
    highlight: tuple[int, int] | None = None  # (line, word) of the word to underline

    @property
    def text(self) -> str:
        """The plain text, lines separated by `\\n`."""
        return "\n".join("".join(line) for line in self.lines)


def iterate_cues(
    segments: Iterable[Segment], options: WriterOptions | None = None
) -> Iterator[Cue]:
    """Lay segments out as subtitle cues, lazily, following openai-whisper's rules.

    Times are as given (possibly overlapping); `SubtitleWriter` makes them monotone.
    """
    options = options or WriterOptions()
    for block in _layout(segments, options):
        if isinstance(block, Segment):
            lines = _text_lines(block.text)
            if lines:
                yield Cue(block.start, block.end, tuple((line,) for line in lines))
        else:
            yield from _word_cues(block, options.highlight_words)


def _text_lines(text: str) -> list[str]:
    """The non-blank lines of a text, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _clean_words(words: Sequence[Word] | None) -> list[Word]:
    """Words with line breaks turned into spaces, blank words dropped."""
    cleaned = []
    for word in words or ():
        text = _LINE_BREAKS.sub(" ", word.word)
        if text.strip():
            cleaned.append(word if text == word.word else replace(word, word=text))
    return cleaned


def _runs(words: list[Word], size: int | None) -> Iterator[list[Word]]:
    """The words cut into consecutive runs of at most `size` words (one run if None)."""
    step = size or max(len(words), 1)
    for index in range(0, len(words), step):
        yield words[index : index + step]


def _layout(
    segments: Iterable[Segment], options: WriterOptions
) -> Iterator[Segment | list[list[Word]]]:
    """Group words into cues made of lines; yield a segment without words as it is.

    Without `max_line_count` every segment (or run of `max_words_per_line` words) starts a cue,
    and lines wrap at `max_line_width`. With it, words flow across segments, and a cue ends when
    it is full or before a pause longer than `LONG_PAUSE`.
    """
    width = options.max_line_width or math.inf
    max_lines = options.max_line_count
    lines: list[list[Word]] = []  # the cue being filled
    line_len = 0
    previous_end: float | None = None
    for segment in segments:
        words = _clean_words(segment.words)
        if not words:
            if lines:
                yield lines
                lines = []
            yield segment
            continue
        for run in _runs(words, options.max_words_per_line):
            for word in run:
                pause = (
                    max_lines is not None
                    and previous_end is not None
                    and word.start - previous_end > LONG_PAUSE
                )
                if lines and not pause and line_len + len(word.word) <= width:
                    lines[-1].append(word)
                    line_len += len(word.word)
                else:
                    if lines and max_lines is not None and (pause or len(lines) >= max_lines):
                        yield lines
                        lines = []
                    lines.append([word])
                    line_len = len(word.word.strip())
                previous_end = word.end
            if max_lines is None:  # the cue is complete: emit it now, for streaming
                yield lines
                lines = []
    if lines:
        yield lines


def _trim_line(words: list[str]) -> tuple[str, ...]:
    trimmed = list(words)
    trimmed[0] = trimmed[0].lstrip()
    trimmed[-1] = trimmed[-1].rstrip()
    return tuple(trimmed)


def _word_cues(lines: list[list[Word]], highlight: bool) -> Iterator[Cue]:
    """One cue for lines of words; with `highlight`, a cue per word plus cues for the gaps."""
    text = tuple(_trim_line([word.word for word in line]) for line in lines)
    start, end = lines[0][0].start, lines[-1][-1].end
    if not highlight:
        yield Cue(start, end, text)
        return
    last = start
    for line_index, line in enumerate(lines):
        for word_index, word in enumerate(line):
            if word.start > last:
                yield Cue(last, word.start, text)
            if word.end > word.start:  # a word of no duration is never shown on its own
                yield Cue(word.start, word.end, text, highlight=(line_index, word_index))
            last = max(last, word.end)


def _monotone(cues: Iterable[Cue]) -> Iterator[tuple[int, int, Cue]]:
    """Cues with integer-millisecond times that never overlap, each at least 1 ms long."""
    previous_end = 0
    for cue in cues:
        start = max(_milliseconds(cue.start) or 0, previous_end)
        end = max(_milliseconds(cue.end) or 0, start + 1)
        previous_end = end
        yield start, end, cue


def _render_lines(cue: Cue, escape: Callable[[str], str]) -> list[str]:
    """The cue's lines as markup: text escaped, the highlighted word wrapped in <u>…</u>."""
    rendered = []
    for line_index, line in enumerate(cue.lines):
        parts = []
        for word_index, word in enumerate(line):
            if cue.highlight == (line_index, word_index):
                body = word.lstrip()
                lead = word[: len(word) - len(body)]
                parts.append(f"{escape(lead)}<u>{escape(body)}</u>")
            else:
                parts.append(escape(word))
        rendered.append("".join(parts))
    return rendered


def _escape_vtt(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _srt_safe(lines: list[str]) -> list[str]:
    """Lines that an SRT parser cannot mistake for cue structure.

    Arrows become `->`, and a line that looks like a cue index is joined to the next line when
    that one starts like a timestamp (a parser would end the cue there).
    """
    lines = [_SRT_ARROW.sub("->", line) for line in lines]
    safe: list[str] = []
    for line in lines:
        if safe and _SRT_INDEX_LINE.fullmatch(safe[-1]) and _SRT_TIMESTAMP_START.match(line):
            safe[-1] = f"{safe[-1]} {line}"
        else:
            safe.append(line)
    return safe


# writers


class Writer:
    """Writes a whole transcript to a text stream in one format."""

    extension: ClassVar[str]

    def __init__(self, options: WriterOptions | None = None) -> None:
        self.options = options or WriterOptions()

    def write(self, transcript: Transcript, stream: TextIO) -> None:
        """Write the transcript to the stream."""
        raise NotImplementedError


class SegmentWriter(Writer):
    """A writer that can also stream segments as they are transcribed."""

    def write(self, transcript: Transcript, stream: TextIO) -> None:
        self.write_segments(transcript.segments, stream)

    def write_segments(self, segments: Iterable[Segment], stream: TextIO) -> None:
        """Write segments as they come, flushing the stream after each complete entry."""
        raise NotImplementedError


class TxtWriter(SegmentWriter):
    """Plain text: one segment per line, stripped; blank segments are skipped."""

    extension = "txt"

    def write_segments(self, segments: Iterable[Segment], stream: TextIO) -> None:
        for segment in segments:
            text = segment.text.strip()
            if text:
                stream.write(f"{text}\n")
                stream.flush()


class SubtitleWriter(SegmentWriter):
    """Cues with timestamps; subclasses set the timestamp style and the cue layout."""

    always_include_hours: ClassVar[bool]
    decimal_marker: ClassVar[str]

    def format_timestamp(self, ms: int) -> str:
        """Whole milliseconds as this format's timestamp."""
        return _format_milliseconds(ms, self.always_include_hours, self.decimal_marker)

    def write_segments(self, segments: Iterable[Segment], stream: TextIO) -> None:
        self.write_header(stream)
        cues = _monotone(iterate_cues(segments, self.options))
        for index, (start, end, cue) in enumerate(cues, start=1):
            stream.write(self.format_cue(index, start, end, cue))
            stream.flush()

    def write_header(self, stream: TextIO) -> None:
        """Write what comes before the first cue."""

    def format_cue(self, index: int, start: int, end: int, cue: Cue) -> str:
        """One cue with its trailing blank line; times in milliseconds, `index` from 1."""
        raise NotImplementedError


class SrtWriter(SubtitleWriter):
    """SubRip: numbered cues, `HH:MM:SS,mmm` times, a blank line after each cue."""

    extension = "srt"
    always_include_hours = True
    decimal_marker = ","

    def format_cue(self, index: int, start: int, end: int, cue: Cue) -> str:
        text = "\n".join(_srt_safe(_render_lines(cue, str)))
        timing = f"{self.format_timestamp(start)} --> {self.format_timestamp(end)}"
        return f"{index}\n{timing}\n{text}\n\n"


class VttWriter(SubtitleWriter):
    """WebVTT: a `WEBVTT` header, `[HH:]MM:SS.mmm` times, escaped cue text."""

    extension = "vtt"
    always_include_hours = False
    decimal_marker = "."

    def write_header(self, stream: TextIO) -> None:
        stream.write("WEBVTT\n\n")

    def format_cue(self, index: int, start: int, end: int, cue: Cue) -> str:
        text = "\n".join(_render_lines(cue, _escape_vtt))
        timing = f"{self.format_timestamp(start)} --> {self.format_timestamp(end)}"
        return f"{timing}\n{text}\n\n"


class TsvWriter(SegmentWriter):
    """Tab-separated `start`, `end` (integer milliseconds) and `text`, one row per segment."""

    extension = "tsv"

    def write_segments(self, segments: Iterable[Segment], stream: TextIO) -> None:
        stream.write("start\tend\ttext\n")
        for segment in segments:
            start, end = _milliseconds(segment.start), _milliseconds(segment.end)
            text = _TSV_BREAKS.sub(" ", segment.text.strip())
            stream.write(f"{_blank_if_none(start)}\t{_blank_if_none(end)}\t{text}\n")
            stream.flush()


def _blank_if_none(value: int | None) -> str:
    return "" if value is None else str(value)


class JsonWriter(Writer):
    """The transcript's dictionary as UTF-8 JSON, with NaN and infinities written as null."""

    extension = "json"

    def write(self, transcript: Transcript, stream: TextIO) -> None:
        json.dump(finite(transcript.to_dict()), stream, ensure_ascii=False, allow_nan=False)
        stream.write("\n")


def finite(value: Any) -> Any:
    """The value with every NaN or infinite float replaced by None (strict JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


WRITERS: dict[str, type[Writer]] = {
    writer.extension: writer for writer in (TxtWriter, SrtWriter, VttWriter, TsvWriter, JsonWriter)
}
FORMATS: tuple[str, ...] = tuple(WRITERS)


def get_writer(format_name: str, options: WriterOptions | None = None) -> Writer:
    """The writer for a format name from `FORMATS`."""
    try:
        writer_class = WRITERS[format_name]
    except KeyError:
        raise OptionsError(_unknown_format(format_name)) from None
    return writer_class(options)


def parse_formats(spec: str) -> tuple[str, ...]:
    """Parse `all` or a comma-separated list such as `srt,vtt` into format names.

    Names are case-insensitive; duplicates are dropped, the order kept. Raises `OptionsError`
    (a `ValueError`) for an unknown or missing name.
    """
    names = [name.strip().lower() for name in spec.split(",")]
    if "all" in names:
        return FORMATS
    for name in names:
        if name not in WRITERS:
            raise OptionsError(_unknown_format(name))
    return tuple(dict.fromkeys(names))


def _unknown_format(name: str) -> str:
    return f"unknown output format {name!r} (choose from {', '.join(FORMATS)} or all)"


def output_path(base: Path, format_name: str) -> Path:
    """Where a format is written for an output base: `talk` → `talk.srt`, `a.mp3` → `a.mp3.srt`."""
    base = Path(base)
    return base.with_name(f"{base.name}.{WRITERS[format_name].extension}")


# files


def write_outputs(
    transcript: Transcript,
    base_path: Path,
    formats: Sequence[str],
    options: WriterOptions | None = None,
) -> list[Path]:
    """Write the transcript in every format next to `base_path`; return the paths written.

    `base_path` is the output path without an extension (`out/talk` gives `out/talk.srt`); its
    folder is created if needed. Each file is written atomically. Raises `OutputError` when a
    file cannot be written; the files already written stay, complete.
    """
    base_path = Path(base_path)
    writers = [get_writer(name, options) for name in dict.fromkeys(formats)]
    try:
        base_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create folder {base_path.parent}: {os_reason(error)}") from error
    written = []
    with signals_held():  # the formats of one input are written together or not at all
        for writer in writers:
            path = output_path(base_path, writer.extension)
            try:
                with atomic_write(path) as stream:
                    writer.write(transcript, stream)
            except OSError as error:
                raise OutputError(f"cannot write {path}: {os_reason(error)}") from error
            written.append(path)
    return written
