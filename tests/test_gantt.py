"""cli._gantt: the SVG is well-formed and says what the run did; headless Chromium draws it."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest

from cli._gantt import COLOURS, render_html, render_svg, tick_label
from coordinator import Status

from .history_support import N, P, S, edge, run_events, status

SVG = "{http://www.w3.org/2000/svg}"
UNITS = ["repo", "git", "claude", "lint", "deploy", "docs"]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def units(root: ET.Element) -> dict[str, ET.Element]:
    return {g.get("data-unit"): g for g in root.iter(f"{SVG}g")
            if "unit" in (g.get("class") or "").split()}


def bars(group: ET.Element, kind: str) -> list[ET.Element]:
    return [r for r in group.iter(f"{SVG}rect") if kind in (r.get("class") or "").split()]


def test_one_group_per_unit_in_order_of_appearance() -> None:
    found = units(parse(render_svg(run_events())))
    assert list(found) == UNITS
    assert found["git"].get("data-status") == "completed"
    assert found["docs"].get("data-status") == ""
    assert [len(bars(found[u], "bar")) for u in UNITS] == [2, 2, 2, 3, 2, 0]


def test_bars_are_proportional_to_times() -> None:
    found = units(parse(render_svg(run_events(), width=1000)))
    (claude_wait,) = bars(found["claude"], "waiting")
    (claude_run,) = bars(found["claude"], "running")
    (git_run,) = bars(found["git"], "running")
    assert "completed" in claude_run.get("class", "")
    assert (claude_run.get("data-start"), claude_run.get("data-end")) == ("2.104", "4.604")
    per_second = float(git_run.get("width")) / 2.0
    assert float(claude_run.get("width")) == pytest.approx(2.5 * per_second, abs=0.02)
    assert float(claude_wait.get("width")) == pytest.approx(2.094 * per_second, abs=0.02)
    # the run starts where the wait ends; git's run ends where claude's starts, 0.004s before
    assert float(claude_wait.get("x")) + float(claude_wait.get("width")) == pytest.approx(
        float(claude_run.get("x")), abs=0.02)
    assert float(claude_run.get("x")) - (float(git_run.get("x")) + float(git_run.get("width"))) \
        == pytest.approx(0.004 * per_second, abs=0.02)


def test_outcomes_have_their_classes_colours_and_reasons() -> None:
    found = units(parse(render_svg(run_events())))
    (running,) = bars(found["repo"], "running")
    assert "still-running" in running.get("class", "")
    assert running.get("fill") == COLOURS["still-running"]
    (skip,) = bars(found["deploy"], "outcome")
    assert "skipped" in skip.get("class", "") and skip.get("fill") == COLOURS["skipped"]
    assert skip.find(f"{SVG}title").text == "deploy: skipped: dependency lint failed"
    (earlier,) = bars(found["lint"], "earlier")
    assert earlier.get("fill") == COLOURS["failed"]
    assert earlier.find(f"{SVG}title").text.endswith("failed: exit code 1")
    assert len(set(COLOURS.values())) == len(COLOURS)


def test_dependency_arrows_and_the_critical_chain() -> None:
    root = parse(render_svg(run_events(), chain_of="claude"))
    lines = [line for line in root.iter(f"{SVG}line")
             if "dependency" in (line.get("class") or "").split()]
    assert {(line.get("data-from"), line.get("data-to")) for line in lines} == {
        ("repo", "git"), ("git", "claude")}  # docs came after claude started; lint's dependent
    assert all("critical" in line.get("class", "") for line in lines)  # never started
    found = units(root)
    assert {u for u, g in found.items() if "critical" in g.get("class", "")} == {
        "claude", "git", "repo"}
    # by default: the chain of the unit whose outcome came last (lint, which waited for nothing)
    found = units(parse(render_svg(run_events())))
    assert {u for u, g in found.items() if "critical" in g.get("class", "")} == {"lint"}


def test_axis_ticks() -> None:
    root = parse(render_svg(run_events()))
    ticks = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert ticks == ["0s", "1s", "2s", "3s", "4s", "5s", "6s"]
    assert tick_label(0.5, 0.5) == "0.5s"
    assert tick_label(90, 30) == "1min 30s"
    assert tick_label(120, 60) == "2min"
    assert tick_label(5400, 1800) == "1h 30min"
    assert tick_label(0.05, 0.01) == "0.05s"
    long_run = [status(1, 0.0, "a", N, P), status(2, 200.0, "a", P, S)]
    ticks = [t.text for t in parse(render_svg(long_run)).iter(f"{SVG}text")
             if t.get("class") == "tick"]
    assert ticks == ["0s", "30s", "1min", "1min 30s", "2min", "2min 30s", "3min", "3min 30s"]


def test_names_and_reasons_are_escaped() -> None:
    nasty = 'a<b>&"c\'d'
    events = [status(1, 0.0, nasty, N, P), edge(2, 0.0, "x", nasty, Status.COMPLETED, P),
              status(3, 1.0, nasty, P, Status.SKIPPED, "</svg><script>&\x1b[31m")]
    svg = render_svg(events, title="t<&>")
    root = parse(svg)
    assert list(units(root)) == [nasty, "x"]
    assert "<script>" not in svg
    (skip,) = bars(units(root)[nasty], "outcome")
    assert skip.find(f"{SVG}title").text == f"{nasty}: skipped: </svg><script>&\ufffd[31m"
    page = render_html(events, title="t<&>")
    assert "<script" not in page and "<title>t&lt;&amp;&gt;</title>" in page


def test_no_events() -> None:
    root = parse(render_svg([]))
    assert units(root) == {}
    assert "No events." in render_html([])


def test_html_is_self_contained() -> None:
    page = render_html(run_events())
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 1 and "<style>" in page
    assert not re.search(r"(src|href)=|url\((?!#)|<script|@import", page)


# --- drawn by a real browser ----------------------------------------------------------------


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) bytes of an 8-bit non-interlaced PNG (what Chromium
    writes), with the scanline filters undone."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace, colour in (2, 6)) == (8, 0, True), header
    step = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * step
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        at = y * (stride + 1)
        kind, line = raw[at], bytearray(raw[at + 1:at + 1 + stride])
        for i in range(stride):
            a = line[i - step] if i >= step else 0
            b, c = previous[i], previous[i - step] if i >= step else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(r[i:i + 3]) for r in rows for i in range(0, stride, step)]


def chromium(tmp_path: Path, target: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary is not None
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", *args, target.as_uri()],
        capture_output=True, timeout=60, check=False,
    )


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="chromium is not on PATH (apt-get install chromium) to draw the chart")
@pytest.mark.parametrize("kind", ["html", "svg"])
def test_chromium_draws_the_chart(tmp_path: Path, kind: str) -> None:
    """A screenshot shows the bars in their colours; the DOM Chromium built has every unit."""
    target = tmp_path / f"timeline.{kind}"
    render = render_html if kind == "html" else render_svg
    target.write_text(render(run_events(), chain_of="claude"), encoding="utf-8")
    dom = chromium(tmp_path, target, "--dump-dom").stdout.decode()
    assert len(re.findall(r'<g class="unit( critical)?" data-unit=', dom)) == len(UNITS)
    if kind == "svg":  # the same drawing as the page's: one screenshot is enough
        return
    png = tmp_path / "shot.png"
    shot = chromium(tmp_path, target, f"--screenshot={png}", "--window-size=1200,600")
    assert png.exists() and png.stat().st_size > 0, shot.stderr.decode(errors="replace")
    width, height, pixels = png_pixels(png.read_bytes())
    assert (width, height) == (1200, 600)
    colours = set(pixels)
    assert len(colours) > 10  # not one colour: text, bars, axis
    for name in ("completed", "failed", "skipped", "still-running", "waiting"):
        assert bytes.fromhex(COLOURS[name][1:]) in colours, name
