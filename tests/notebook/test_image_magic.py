"""%%mmo with images and documents (issue 25), through a real InteractiveShell against the sim."""

from __future__ import annotations

import struct
import zlib

import pytest
from helpers import magic_shell, sim_models
from IPython.utils.capture import capture_output

import mmo_magic as mmo

PARTS = "sim-fast?reply=parts"


def png(width: int = 2, height: int = 2) -> bytes:
    """A real PNG (grey pixels), small enough to write by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))  # fmt: skip


@pytest.fixture
def orc(sim, keys):
    with mmo.Orchestrator(sim_models(sim), default_model="oa", runlog=":memory:", cache=False) as o:
        for base in ("oa", "an"):
            o.add_model(o.catalogue.resolve(base).replace(name=f"{base}:parts", model_id=PARTS))
        o.add_model(o.catalogue.resolve("oa").replace(name="blind", model_id=PARTS, vision=False))
        yield o


@pytest.fixture
def ip(orc):
    with magic_shell(orc) as shell:
        yield shell


@pytest.fixture
def chart(tmp_path):
    path = tmp_path / "chart.png"
    path.write_bytes(png())
    return path


def run(ip, line: str, cell: str):
    with capture_output() as cap:
        ip.run_cell_magic("mmo", line, cell)
    return cap


def test_image_options_attach_each_image(ip, orc, chart, tmp_path):
    other = tmp_path / "other.png"
    other.write_bytes(png(4, 3))
    cap = run(ip, f"oa:parts --no-stream -o r --image {chart} --image {other}", "What is this?")
    assert cap.stderr == ""
    answer = ip.user_ns["r"].content
    assert "received 2 part(s)" in answer, answer
    assert answer.count("image image/png") == 2


def test_file_option_sends_a_pdf_to_anthropic(ip, tmp_path):
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    cap = run(ip, f"an:parts --no-stream -o r --file {pdf}", "Summarise the report.")
    assert cap.stderr == ""
    assert "received 1 part(s): document application/pdf" in ip.user_ns["r"].content


def test_an_image_variable_becomes_a_part_not_its_str(ip, chart):
    ip.user_ns["img"] = mmo.Image(str(chart))
    ip.user_ns["who"] = "a chart"
    cap = run(ip, "oa:parts --no-stream -o r", "Describe {who}: {img}")
    assert cap.stderr == ""
    answer = ip.user_ns["r"].content
    assert "received 1 part(s): image image/png" in answer, answer
    assert "Part(" not in answer


def test_a_missing_image_is_one_error_line_and_nothing_is_sent(ip, orc, tmp_path):
    before = len(orc.runs)
    cap = run(ip, f"oa:parts -o r --image {tmp_path / 'nope.png'}", "What is this?")
    lines = cap.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.png" in lines[0] and "does not exist" in lines[0], lines
    assert "r" not in ip.user_ns
    assert len(orc.runs) == before


def test_a_model_that_cannot_see_is_one_error_line(ip, orc, chart):
    cap = run(ip, f"blind --no-stream -o r --image {chart}", "What is this?")
    lines = cap.stderr.strip().splitlines()
    assert len(lines) == 1 and "blind" in lines[0], lines
    assert "r" not in ip.user_ns


# -- thumbnails: what the prompt carried, kept in the saved notebook ----------------------------


@pytest.fixture
def live_ip(ip):
    """The shell as a kernel's (display updates, widgets): see test_magics.live_ip."""
    ip.kernel = object()
    ip.run_line_magic("unload_ext", "mmo_magic")
    ip.run_line_magic("load_ext", "mmo_magic")
    yield ip
    del ip.kernel


def htmls(cap) -> list[str]:
    return [o.data["text/html"] for o in cap.outputs if "text/html" in o.data]


def test_mmo_output_shows_the_images_as_thumbnails(live_ip, chart, tmp_path):
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4\n%%EOF\n")
    cap = run(live_ip, f"oa:parts --no-stream --image {chart} --file {pdf}", "What is this?")
    assert cap.stderr == ""
    thumbs = [h for h in htmls(cap) if "mmo-thumbs" in h]
    assert len(thumbs) == 1, htmls(cap)
    assert '<img class="mmo-thumb" src="data:image/png;base64,' in thumbs[0]
    assert "document report.pdf application/pdf" in thumbs[0]  # a document is named
    plain = [o.data["text/plain"] for o in cap.outputs]
    assert "attached: image image/png 71 B; document report.pdf application/pdf 15 B" in plain


def test_race_keeps_the_thumbnails_in_its_static_rendering(live_ip, chart):
    cap = run(live_ip, f"--race oa:parts,an:parts -o r --image {chart}", "What is this?")
    assert cap.stderr == ""
    assert live_ip.user_ns["r"].winner is not None
    # The display's last state (the widget replaced by the static rendering) keeps the image.
    final = [o for o in cap.outputs if "mmo-race" in o.data.get("text/html", "")]
    assert final, [list(o.data) for o in cap.outputs]
    html = final[-1].data["text/html"]
    assert html.count('<img class="mmo-thumb" src="data:image/png;base64,') == 1
    assert "attached: image image/png 71 B" in final[-1].data["text/plain"]


def test_a_big_image_without_pil_is_named_not_inlined(chart):
    from mmo_magic.notebook import thumbnails

    big = mmo.Image(chart.read_bytes() + b"\0" * (thumbnails.MAX_INLINE + 1), "image/png")
    html = thumbnails.thumbnails_html([big])
    try:
        import PIL  # noqa: F401
    except ImportError:
        assert "<img" not in html and "image image/png 256 KB" in html
    else:
        assert html.count("<img") == 1 and len(html) < 20_000  # shrunk, not megabytes
