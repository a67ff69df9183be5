"""Writers: exact output per format, subtitle validity against real parsers, line layout, files."""

from __future__ import annotations

import html
import io
import json
import os
import re
from datetime import timedelta

import pytest
import srt
import webvtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whisper_cli.errors import OptionsError
from whisper_cli.results import Segment, Transcript, Word
from whisper_cli.writers import (
    FORMATS,
    WRITERS,
    OutputError,
    SrtWriter,
    WriterOptions,
    format_timestamp,
    get_writer,
    iterate_cues,
    output_path,
    parse_formats,
    write_outputs,
)

SRT_TIMING = re.compile(r"^\d{2}:\d{2}:\d{2},\d{3} --> \d{2}:\d{2}:\d{2},\d{3}$")
VTT_TIMING = re.compile(r"^(\d{2,}:)?\d{2}:\d{2}\.\d{3} --> (\d{2,}:)?\d{2}:\d{2}\.\d{3}$")


def segment(
    start: float, end: float, text: str, words: tuple[Word, ...] | None = None, id: int = 0
) -> Segment:
    return Segment(
        id=id,
        seek=0,
        start=start,
        end=end,
        text=text,
        tokens=(50364, 2425),
        temperature=0.0,
        avg_logprob=-0.25,
        compression_ratio=1.5,
        no_speech_prob=0.01,
        words=words,
    )


def transcript(*segments: Segment) -> Transcript:
    return Transcript(
        text="".join(s.text for s in segments),
        language="en",
        duration=3725.5,
        segments=segments,
        model="tiny",
    )


def word(text: str, start: float, end: float) -> Word:
    return Word(text, start, end, 0.9)


def render(format_name: str, result: Transcript, options: WriterOptions | None = None) -> str:
    stream = io.StringIO()
    get_writer(format_name, options).write(result, stream)
    return stream.getvalue()


def plain(text: str) -> str:
    """A segment's text as a cue shows it: lines stripped, blank lines dropped."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def check_srt(out: str) -> list[tuple[int, int, str]]:
    """Assert the SRT output is canonical and valid; return its (start ms, end ms, text)."""
    subtitles = list(srt.parse(out))
    assert srt.compose(subtitles) == out
    assert [s.index for s in subtitles] == list(range(1, len(subtitles) + 1))
    blocks = out.split("\n\n")
    assert blocks.pop() == ""
    assert len(blocks) == len(subtitles)
    for number, block in enumerate(blocks, start=1):
        index, timing, *lines = block.split("\n")
        assert index == str(number)
        assert SRT_TIMING.match(timing), timing
        assert lines and all(line.strip() for line in lines)
        assert not any("-->" in line for line in lines)
    cues = [
        (s.start // timedelta(milliseconds=1), s.end // timedelta(milliseconds=1), s.content)
        for s in subtitles
    ]
    check_times(cues)
    return cues


def check_vtt(out: str) -> list[tuple[int, int, str]]:
    """Assert the WebVTT output is valid; return its (start ms, end ms, unescaped plain text)."""
    assert out.startswith("WEBVTT\n\n")
    captions = webvtt.from_string(out).captions
    blocks = out.split("\n\n")
    assert blocks.pop(0) == "WEBVTT"
    assert blocks.pop() == ""
    assert len(captions) == len(blocks)  # catches cues the parser dropped silently
    for block in blocks:
        timing, *lines = block.split("\n")
        assert VTT_TIMING.match(timing), timing
        assert lines and all(line.strip() for line in lines)
        assert not any("-->" in line for line in lines)
    cues = [
        (c.start_time.in_milliseconds(), c.end_time.in_milliseconds(), html.unescape(c.text))
        for c in captions
    ]
    check_times(cues)
    return cues


def check_times(cues: list[tuple[int, int, str]]) -> None:
    previous_end = 0
    for start, end, _ in cues:
        assert previous_end <= start < end
        previous_end = end


BASIC = transcript(
    segment(0.0, 2.5, " Hello world."),
    segment(2.5, 4.0, " AT&T <3 --> ok", id=1),
    segment(3599.9996, 3725.5, " Grüße 🎉", id=2),
)

EXPECTED = {
    "txt": "Hello world.\nAT&T <3 --> ok\nGrüße 🎉\n",
    "srt": (
        "1\n00:00:00,000 --> 00:00:02,500\nHello world.\n\n"
        "2\n00:00:02,500 --> 00:00:04,000\nAT&T <3 -> ok\n\n"
        "3\n01:00:00,000 --> 01:02:05,500\nGrüße 🎉\n\n"
    ),
    "vtt": (
        "WEBVTT\n\n"
        "00:00.000 --> 00:02.500\nHello world.\n\n"
        "00:02.500 --> 00:04.000\nAT&amp;T &lt;3 --&gt; ok\n\n"
        "01:00:00.000 --> 01:02:05.500\nGrüße 🎉\n\n"
    ),
    "tsv": (
        "start\tend\ttext\n"
        "0\t2500\tHello world.\n"
        "2500\t4000\tAT&T <3 --> ok\n"
        "3600000\t3725500\tGrüße 🎉\n"
    ),
}


# timestamps


@pytest.mark.parametrize(
    ("seconds", "hours", "marker", "expected"),
    [
        (0.0, False, ".", "00:00.000"),
        (0.0, True, ",", "00:00:00,000"),
        (1.0004, False, ".", "00:01.000"),
        (59.9996, False, ".", "01:00.000"),
        (3599.9996, False, ".", "01:00:00.000"),
        (3599.9994, True, ",", "00:59:59,999"),
        (3725.5, False, ".", "01:02:05.500"),
        (360_000.0, True, ",", "100:00:00,000"),
    ],
)
def test_format_timestamp(seconds: float, hours: bool, marker: str, expected: str) -> None:
    assert format_timestamp(seconds, hours, marker) == expected


@pytest.mark.parametrize("seconds", [-0.001, float("nan"), float("inf")])
def test_format_timestamp_rejects_impossible_times(seconds: float) -> None:
    with pytest.raises(ValueError):
        format_timestamp(seconds)


# exact output


@pytest.mark.parametrize("format_name", sorted(EXPECTED))
def test_exact_output(format_name: str) -> None:
    assert render(format_name, BASIC) == EXPECTED[format_name]


def test_registry() -> None:
    assert FORMATS == ("txt", "srt", "vtt", "tsv", "json")
    for name, writer in WRITERS.items():
        assert writer.extension == name
    assert SrtWriter.always_include_hours and SrtWriter.decimal_marker == ","
    assert not WRITERS["vtt"].always_include_hours and WRITERS["vtt"].decimal_marker == "."


def test_json_keys_snapshot() -> None:
    words = (word(" Hi", 0.0, 0.5),)
    result = transcript(segment(0.0, 0.5, " Hi", words), segment(1.0, 2.0, " 東京 🎉", id=1))
    out = render("json", result)
    assert out.endswith("}\n")
    assert "東京 🎉" in out  # not escaped to \uXXXX
    data = json.loads(out)
    assert list(data) == ["text", "segments", "language", "duration", "model"]
    assert list(data["segments"][0]) == [
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
        "words",
    ]
    assert "words" not in data["segments"][1]
    assert list(data["segments"][0]["words"][0]) == ["word", "start", "end", "probability"]
    assert data == result.to_dict()


def test_json_writes_nan_and_infinity_as_null() -> None:
    bad = Segment(0, 0, 0.0, 1.0, " x", (), 0.0, float("-inf"), float("nan"), 0.0)
    data = json.loads(render("json", transcript(bad)))
    assert data["segments"][0]["avg_logprob"] is None
    assert data["segments"][0]["compression_ratio"] is None


def test_txt_strips_and_skips_blank_segments() -> None:
    result = transcript(segment(0, 1, "  one  "), segment(1, 2, " \n "), segment(2, 3, " two"))
    assert render("txt", result) == "one\ntwo\n"


def test_tsv_keeps_one_line_per_segment() -> None:
    result = transcript(segment(0.0004, 1.0006, " a\tb\nc\r\nd\u2028e "), segment(1.5, 2, ""))
    assert render("tsv", result) == "start\tend\ttext\n0\t1001\ta b c  d e\n1500\t2000\t\n"


def test_empty_transcript() -> None:
    empty = transcript()
    assert render("txt", empty) == ""
    assert render("srt", empty) == ""
    assert render("vtt", empty) == "WEBVTT\n\n"
    assert render("tsv", empty) == "start\tend\ttext\n"
    check_vtt(render("vtt", empty))


# adversarial texts and times

ADVERSARIAL = [
    "",
    "   ",
    "AT&T <3",
    "a --> b",
    "a ---> b -- > c",
    "line1\nline2",
    "a\n\n\nb",
    "a\r\nb\rc",
    " x\u2028y\x85z ",
    "Grüße aus Zürich, 東京, Кириллица",
    "emoji 🎉👍🏽 family 👨‍👩‍👧",
    "&amp; <b>bold</b> &lt;",
    "WEBVTT",
    "NOTE this is not a comment",
    "1\n00:00:01,000 --> 00:00:02,000",
    "Chapter\n3\n10:30:00 meeting",
]


def adversarial_transcript() -> Transcript:
    return transcript(
        *(segment(i * 10.0, i * 10.0 + 5, text, id=i) for i, text in enumerate(ADVERSARIAL))
    )


def test_srt_adversarial_texts() -> None:
    cues = check_srt(render("srt", adversarial_transcript()))
    expected = [plain(text) for text in ADVERSARIAL if plain(text)]
    assert len(cues) == len(expected)
    got = {text: content for text, (_, _, content) in zip(expected, cues, strict=True)}
    assert got["AT&T <3"] == "AT&T <3"
    assert got["a --> b"] == "a -> b"
    assert got["a ---> b -- > c"] == "a -> b -- > c"
    assert got["line1\nline2"] == "line1\nline2"
    assert got["a\nb"] == "a\nb"
    assert got["a\nb\nc"] == "a\nb\nc"
    assert got["x\ny\nz"] == "x\ny\nz"
    # a parser would take "1" or "3" for the index of a new cue timed "00:00:01,000 …"
    assert got["1\n00:00:01,000 --> 00:00:02,000"] == "1 00:00:01,000 -> 00:00:02,000"
    assert got["Chapter\n3\n10:30:00 meeting"] == "Chapter\n3 10:30:00 meeting"
    unchanged = [t for t in expected if "->" not in t and "\n3\n" not in t]
    assert all(got[text] == text for text in unchanged)


def test_vtt_adversarial_texts_round_trip() -> None:
    cues = check_vtt(render("vtt", adversarial_transcript()))
    expected = [plain(text) for text in ADVERSARIAL if plain(text)]
    assert [text for _, _, text in cues] == expected


def test_vtt_escapes_markup_in_text() -> None:
    out = render("vtt", transcript(segment(0, 1, "AT&T <3 a-->b")))
    assert "AT&amp;T &lt;3 a--&gt;b" in out


def test_times_never_run_backwards_or_overlap() -> None:
    result = transcript(
        segment(5.0, 8.0, "first"),
        segment(6.0, 9.0, "overlaps: starts where first ends"),
        segment(2.0, 3.0, "backwards: lasts 1 ms after the previous cue"),
        segment(20.0, 20.0, "no length: lasts 1 ms"),
        segment(-1.0, 0.5, "negative: clamped"),
        segment(float("nan"), float("inf"), "not finite: clamped"),
    )
    srt_cues = check_srt(render("srt", result))
    assert [(start, end) for start, end, _ in srt_cues] == [
        (5000, 8000),
        (8000, 9000),
        (9000, 9001),
        (20000, 20001),
        (20001, 20002),
        (20002, 20003),
    ]
    vtt_cues = check_vtt(render("vtt", result))
    assert [c[:2] for c in vtt_cues] == [c[:2] for c in srt_cues]


def test_hours_in_vtt_only_when_needed() -> None:
    out = render("vtt", transcript(segment(3599.0, 3601.0, "x")))
    assert "59:59.000 --> 01:00:01.000\n" in out
    assert out.splitlines()[2] == "59:59.000 --> 01:00:01.000"


# property test: anything in, valid subtitles out

# arbitrary Unicode, seasoned with the pieces that break subtitle files
TRICKY = [
    "-->",
    "--",
    ">",
    "<",
    "&",
    "&amp;",
    "<u>",
    "\n",
    "\r\n",
    "\u2028",
    " ",
    "3",
    "00:01:02,5",
]
texts = st.lists(st.text(max_size=6) | st.sampled_from(TRICKY), max_size=8).map("".join)
times = st.floats(min_value=0, max_value=359_000, allow_nan=False, allow_infinity=False)
words = st.lists(st.builds(word, texts, times, times), max_size=6).map(tuple)
segments = st.lists(st.builds(segment, times, times, texts, st.none() | words), max_size=8)
layouts = st.sampled_from(
    [
        WriterOptions(),
        WriterOptions(highlight_words=True),
        WriterOptions(max_line_width=12),
        WriterOptions(max_line_width=12, max_line_count=2),
        WriterOptions(max_line_width=1, max_line_count=1, highlight_words=True),
        WriterOptions(max_words_per_line=2),
        WriterOptions(max_words_per_line=1, max_line_width=5, highlight_words=True),
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segments, layouts, st.booleans())
def test_subtitles_stay_valid(segs: list[Segment], options: WriterOptions, ordered: bool) -> None:
    if ordered:  # also the usual case: times that only move forward
        stamps = sorted(t for s in segs for t in (s.start, s.end))
        segs = [
            segment(stamps[2 * i], stamps[2 * i + 1], s.text, s.words) for i, s in enumerate(segs)
        ]
    result = transcript(*segs)
    srt_cues = check_srt(render("srt", result, options))
    vtt_cues = check_vtt(render("vtt", result, options))
    assert [c[:2] for c in srt_cues] == [c[:2] for c in vtt_cues]
    expected = [cue.text for cue in iterate_cues(segs, options)]
    assert [text for _, _, text in vtt_cues] == expected
    if all(not s.words for s in segs):
        assert expected == [plain(s.text) for s in segs if plain(s.text)]


# line layout with word timestamps

WORDY = transcript(
    segment(
        0.0,
        3.0,
        " The quick brown fox",
        (
            word(" The", 0.0, 0.4),
            word(" quick", 0.5, 0.9),
            word(" brown", 1.0, 1.4),
            word(" fox", 1.5, 2.0),
        ),
    ),
    segment(3.0, 4.5, " jumps over", (word(" jumps", 3.0, 3.5), word(" over", 3.6, 4.0)), id=1),
    segment(9.0, 10.0, " the dog.", (word(" the", 9.0, 9.4), word(" dog.", 9.5, 10.0)), id=2),
)


def srt_cues(options: WriterOptions, result: Transcript = WORDY) -> list[tuple[int, int, str]]:
    return check_srt(render("srt", result, options))


def test_words_without_options_give_a_cue_per_segment_timed_by_words() -> None:
    assert srt_cues(WriterOptions()) == [
        (0, 2000, "The quick brown fox"),
        (3000, 4000, "jumps over"),
        (9000, 10000, "the dog."),
    ]


def test_max_line_width_wraps_within_each_segment() -> None:
    assert srt_cues(WriterOptions(max_line_width=10)) == [
        (0, 2000, "The quick\nbrown fox"),
        (3000, 4000, "jumps over"),
        (9000, 10000, "the dog."),
    ]


def test_max_line_count_flows_across_segments_and_breaks_at_pauses() -> None:
    assert srt_cues(WriterOptions(max_line_width=20, max_line_count=2)) == [
        (0, 4000, "The quick brown fox\njumps over"),
        (9000, 10000, "the dog."),  # 5 s after "over" ended
    ]
    assert srt_cues(WriterOptions(max_line_width=10, max_line_count=1)) == [
        (0, 900, "The quick"),
        (1000, 2000, "brown fox"),
        (3000, 4000, "jumps over"),
        (9000, 10000, "the dog."),
    ]


def test_max_words_per_line_cuts_segments_into_cues() -> None:
    assert srt_cues(WriterOptions(max_words_per_line=3)) == [
        (0, 1400, "The quick brown"),
        (1500, 2000, "fox"),
        (3000, 4000, "jumps over"),
        (9000, 10000, "the dog."),
    ]
    assert srt_cues(WriterOptions(max_words_per_line=3, max_line_width=8))[0] == (
        0,
        1400,
        "The\nquick\nbrown",
    )


def test_a_word_longer_than_the_line_gets_its_own_line() -> None:
    long = transcript(
        segment(
            0,
            2,
            " a extraordinarily b",
            (word(" a", 0, 0.5), word(" extraordinarily", 0.5, 1.5), word(" b", 1.5, 2)),
        )
    )
    assert srt_cues(WriterOptions(max_line_width=5), long) == [(0, 2000, "a\nextraordinarily\nb")]


def test_segment_without_words_keeps_its_text() -> None:
    mixed = transcript(
        segment(0, 1, " one two", (word(" one", 0, 0.5), word(" two", 0.5, 1))),
        segment(1, 2, " no words here", ()),
        segment(2, 3, " three", (word(" three", 2, 3),)),
    )
    assert srt_cues(WriterOptions(max_line_width=20, max_line_count=2), mixed) == [
        (0, 1000, "one two"),
        (1000, 2000, "no words here"),
        (2000, 3000, "three"),
    ]


def test_blank_words_and_line_breaks_in_words_are_cleaned() -> None:
    odd = transcript(
        segment(0, 2, "x", (word(" a\nb", 0, 1), word("  ", 1, 1.5), word(" c", 1.5, 2)))
    )
    assert srt_cues(WriterOptions(), odd) == [(0, 2000, "a b c")]


def test_highlight_words_exact_vtt() -> None:
    hi = transcript(
        segment(
            1.0,
            3.0,
            " Hi <there>",
            (word(" Hi", 1.0, 1.5), word(" <there>", 2.0, 2.5), word(" !", 2.5, 2.5)),
        )
    )
    assert render("vtt", hi, WriterOptions(highlight_words=True)) == (
        "WEBVTT\n\n"
        "00:01.000 --> 00:01.500\n<u>Hi</u> &lt;there&gt; !\n\n"
        "00:01.500 --> 00:02.000\nHi &lt;there&gt; !\n\n"
        "00:02.000 --> 00:02.500\nHi <u>&lt;there&gt;</u> !\n\n"
    )
    assert render("srt", hi, WriterOptions(highlight_words=True)).split("\n\n")[2] == (
        "3\n00:00:02,000 --> 00:00:02,500\nHi <u><there></u> !"
    )


def test_highlight_words_across_lines() -> None:
    out = render("vtt", WORDY, WriterOptions(max_line_width=10, highlight_words=True))
    cues = check_vtt(out)
    assert cues[0] == (0, 400, "The quick\nbrown fox")
    assert "00:01.000 --> 00:01.400\nThe quick\n<u>brown</u> fox\n\n" in out
    assert "00:01.500 --> 00:02.000\nThe quick\nbrown <u>fox</u>\n\n" in out


def test_without_words_line_options_have_no_effect() -> None:
    options = WriterOptions(max_line_width=5, max_line_count=1, highlight_words=True)
    assert render("srt", BASIC, options) == EXPECTED["srt"]


# options


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_line_width": 0}, "at least 1"),
        ({"max_words_per_line": -2}, "at least 1"),
        ({"max_line_width": 4.5}, "whole number"),
        ({"max_line_width": True}, "whole number"),
        ({"max_line_count": 2}, "needs max_line_width"),
        ({"max_line_width": 40, "max_line_count": 2, "max_words_per_line": 3}, "no effect"),
    ],
)
def test_writer_options_are_verified(kwargs: dict, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        WriterOptions(**kwargs)


def test_writer_options_need_words() -> None:
    assert not WriterOptions().needs_words
    assert WriterOptions(highlight_words=True).needs_words
    assert WriterOptions(max_words_per_line=2).needs_words


def test_parse_formats() -> None:
    assert parse_formats("all") == FORMATS
    assert parse_formats("srt,vtt") == ("srt", "vtt")
    assert parse_formats(" SRT, vtt,srt ") == ("srt", "vtt")
    assert parse_formats("json,all") == FORMATS
    for bad in ("docx", "srt,,vtt", "", "srt,mp3"):
        with pytest.raises(ValueError, match="unknown output format"):
            parse_formats(bad)


def test_get_writer_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match="choose from txt, srt, vtt, tsv, json or all"):
        get_writer("docx")


# streaming


def test_subtitles_stream_each_cue_as_soon_as_it_is_complete() -> None:
    stream = io.StringIO()
    seen_while_transcribing = []

    def lazy_segments():
        yield segment(0, 1, " one", (word(" one", 0, 1),))
        seen_while_transcribing.append(stream.getvalue())
        yield segment(1, 2, " two")
        seen_while_transcribing.append(stream.getvalue())

    SrtWriter().write_segments(lazy_segments(), stream)
    assert seen_while_transcribing == [
        "1\n00:00:00,000 --> 00:00:01,000\none\n\n",
        "1\n00:00:00,000 --> 00:00:01,000\none\n\n2\n00:00:01,000 --> 00:00:02,000\ntwo\n\n",
    ]


# files


def test_write_outputs_writes_every_format(tmp_path) -> None:
    base = tmp_path / "out" / "sub" / "talk.mp3"
    paths = write_outputs(BASIC, base, ["srt", "txt", "srt", "vtt", "tsv"])
    folder = tmp_path / "out" / "sub"
    assert paths == [folder / f"talk.mp3.{ext}" for ext in ("srt", "txt", "vtt", "tsv")]
    for path in paths:
        assert path.read_text(encoding="utf-8") == EXPECTED[path.suffix[1:]]
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths)
    assert json.loads(write_outputs(BASIC, base, ["json"])[0].read_bytes().decode("utf-8"))


def test_written_files_get_the_usual_permissions(tmp_path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    (path,) = write_outputs(BASIC, tmp_path / "talk", ["txt"])
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    path.chmod(0o600)
    write_outputs(BASIC, tmp_path / "talk", ["txt"])
    assert path.stat().st_mode & 0o777 == 0o600  # a replaced file keeps its mode


def test_output_path_appends_the_extension() -> None:
    from pathlib import Path

    assert output_path(Path("out/a.mp3"), "srt") == Path("out/a.mp3.srt")
    assert output_path(Path("out/talk"), "json") == Path("out/talk.json")


class Boom(Exception):
    pass


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path, monkeypatch) -> None:
    target = tmp_path / "talk.srt"
    target.write_text("old", encoding="utf-8")
    calls = []

    def fail_on_second_cue(self, index, start, end, cue):
        calls.append(index)
        if index == 2:
            raise Boom
        return f"{index}\n"

    monkeypatch.setattr(SrtWriter, "format_cue", fail_on_second_cue)
    with pytest.raises(Boom):
        write_outputs(BASIC, tmp_path / "talk", ["srt"])
    assert calls == [1, 2]
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["talk.srt"]


def test_write_outputs_reports_unwritable_paths(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot create folder"):
        write_outputs(BASIC, tmp_path / "file" / "talk", ["txt"])
    folder = tmp_path / "folder"
    (folder / "talk.txt").mkdir(parents=True)  # a folder where the file should go
    with pytest.raises(OutputError, match="cannot write"):
        write_outputs(BASIC, folder / "talk", ["txt"])
    assert [p.name for p in folder.iterdir()] == ["talk.txt"]
