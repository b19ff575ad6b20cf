"""Images and documents in prompts (issue 25, part 1): every way in, each provider's wire form
read back at the simulated provider through the real openai and anthropic SDKs, refusals
before sending, token counts and budgets, and run records that keep hashes, not bytes."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from helpers import sim_models, with_model_id

import mmo_magic as mmo
from mmo_magic.core.catalogue import builtin_models
from mmo_magic.core.errors import BudgetExceededError, InvalidRequestError
from mmo_magic.core.parts import Document, Image, Part, image_size, part_tokens
from mmo_magic.core.pricing import estimate_cost
from mmo_magic.orchestration.calls import build_request


def png(width: int = 64, height: int = 48, color: str = "red") -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


PDF = b"%PDF-1.4\n1 0 obj << /Type /Pages /Count 2 >>\n2 0 obj << /Type /Page >>\n" \
      b"3 0 obj << /Type /Page >>\n%%EOF\n"  # fmt: skip


def body(sim: Any) -> dict[str, Any]:
    last = sim.last_request()
    assert last is not None
    found: dict[str, Any] = last["body"]
    return found


def user_content(sim: Any) -> list[dict[str, Any]]:
    content = [m for m in body(sim)["messages"] if m["role"] == "user"][-1]["content"]
    assert isinstance(content, list)
    return content


@pytest.fixture
def seeing(orc: mmo.Orchestrator) -> mmo.Orchestrator:
    """``orc`` whose models answer with what they received (reply=parts)."""
    for name in ("oa", "an", "lo"):
        with_model_id(orc, name, "sim-fast?reply=parts")
    return orc


def source_of(kind: str, tmp_path: Path) -> Any:
    data = png()
    if kind == "path":
        path = tmp_path / "chart.png"
        path.write_bytes(data)
        return str(path)
    if kind == "bytes":
        return data
    if kind == "pil":
        from PIL import Image as PILImage

        return PILImage.open(io.BytesIO(data))
    if kind == "figure":
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(2, 1.5))
        axes.plot([1, 3, 2])
        plt.close(figure)
        return figure
    assert kind == "url"
    return "https://example.com/chart.png"


# -- every source, both wires ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["path", "bytes", "pil", "figure", "url"])
@pytest.mark.parametrize("model", ["oa", "an"])
def test_an_image_from_each_source_reaches_each_wire(seeing, sim, tmp_path, kind, model):
    image = Image(source_of(kind, tmp_path))
    r = seeing.complete(
        ["What does this chart show?", image], model=f"{model}:sim-fast?reply=parts"
    )
    assert r.ok, r.error
    content = user_content(sim)
    assert content[0] == {"type": "text", "text": "What does this chart show?"}
    part = content[1]
    if model == "oa":
        assert part["type"] == "image_url"
        url = part["image_url"]["url"]
        if kind == "url":
            assert url == "https://example.com/chart.png"
        else:
            assert url.startswith("data:image/png;base64,")
            assert base64.b64decode(url.split(",", 1)[1]) == image.data
    else:
        assert part["type"] == "image"
        if kind == "url":
            assert part["source"] == {"type": "url", "url": "https://example.com/chart.png"}
        else:
            assert part["source"]["type"] == "base64"
            assert part["source"]["media_type"] == "image/png"
            assert base64.b64decode(part["source"]["data"]) == image.data
    # The simulation read the part it got: one image, its size in bytes.
    assert "1 part(s): image" in r.content
    if kind != "url":
        assert f"{image.size} bytes" in r.content


def test_a_pdf_goes_to_anthropic_as_a_document_block(seeing, sim):
    r = seeing.complete(["Summarise this report.", Document(PDF)], model="an:sim-fast?reply=parts")
    assert r.ok, r.error
    block = user_content(sim)[1]
    assert block["type"] == "document"
    assert block["source"] == {"type": "base64", "media_type": "application/pdf",
                               "data": base64.b64encode(PDF).decode()}  # fmt: skip
    assert f"document application/pdf {len(PDF)} bytes" in r.content


def test_a_pdf_goes_to_openai_as_a_file_input(seeing, sim, tmp_path):
    path = tmp_path / "report.pdf"
    path.write_bytes(PDF)
    r = seeing.complete(["Summarise.", Document(path)], model="oa:sim-fast?reply=parts")
    assert r.ok, r.error
    part = user_content(sim)[1]
    assert part == {"type": "file", "file": {
        "filename": "report.pdf",
        "file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode()}}  # fmt: skip


def test_openai_part_dicts_and_anthropic_blocks_are_both_accepted(seeing, sim):
    data = png()
    b64 = base64.b64encode(data).decode()
    openai_form = {"role": "user", "content": [
        {"type": "text", "text": "Compare"},
        {"type": "image_url",
         "image_url": {"url": f"data:image/png;base64,{b64}", "detail": "low"}},
    ]}  # fmt: skip
    anthropic_form = {"role": "user", "content": [
        {"type": "text", "text": "Compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64}},
    ]}  # fmt: skip
    for message, model in [(openai_form, "an"), (anthropic_form, "oa")]:  # each into the other
        r = seeing.complete([message], model=f"{model}:sim-fast?reply=parts")
        assert r.ok, r.error
        assert f"image image/png {len(data)} bytes" in r.content
    # The OpenAI form's detail survives to OpenAI's wire.
    seeing.complete([openai_form], model="oa:sim-fast?reply=parts")
    assert user_content(sim)[1]["image_url"]["detail"] == "low"


def test_openai_compatible_servers_get_image_url(seeing, sim):
    r = seeing.complete(["What is it?", Image(png())], model="lo:sim-fast?reply=parts")
    assert r.ok and "1 part(s): image" in r.content
    assert user_content(sim)[1]["type"] == "image_url"


def test_text_blocks_alone_stay_plain_text(orc, sim):
    orc.complete([{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
                 model="an")  # fmt: skip
    assert body(sim)["messages"] == [{"role": "user", "content": "hello there"}]


def test_a_vision_race(orc, sim):
    # Both answer after 150 ms or more, so both requests are on the wire before one wins.
    fast = with_model_id(orc, "oa", "sim-fast?reply=parts&ttft_ms=150")
    slow = with_model_id(orc, "an", "sim-fast?reply=parts&ttft_ms=400")
    rr = orc.race(["Which colour?", Image(png())], models=[fast, slow])
    assert rr.winner is not None and rr.winner.ok and rr.winner.model == fast
    assert "1 part(s): image image/png" in rr.winner.content
    openai_body = sim.last_request("sim-fast?reply=parts&ttft_ms=150")
    anthropic_body = sim.last_request("sim-fast?reply=parts&ttft_ms=400")
    assert openai_body is not None and anthropic_body is not None
    assert openai_body["body"]["messages"][0]["content"][1]["type"] == "image_url"
    assert anthropic_body["body"]["messages"][0]["content"][1]["type"] == "image"


# -- refusals before sending ----------------------------------------------------------------------


def test_a_model_that_cannot_see_refuses_before_sending(sim, keys):
    smol = mmo.ModelConfig("embedded", "SmolLM2-135M-Instruct", name="smollm2")
    with mmo.Orchestrator([smol, *sim_models(sim)], runlog=":memory:", cache=False) as orc:
        with pytest.raises(InvalidRequestError) as info:
            orc.complete(["What is this?", Image(png())], model="smollm2")
        message = str(info.value)
        assert "'smollm2' cannot see" in message
        assert "gpt-4o-mini" in message  # what to use instead
        row = orc.runs.to_dataframe().iloc[-1]
        assert row["status"] == "error" and row["error_type"] == "InvalidRequestError"
    assert sim.request_count() == 0


def test_the_catalogue_marks_text_only_models(sim, keys):
    catalogue = {m.name: m for m in builtin_models()}
    assert not catalogue["smollm2"].sees and not catalogue["deepseek-chat"].sees
    assert catalogue["gpt-4o"].sees and catalogue["claude-haiku-4-5"].sees
    text_only = sim_models(sim)[0].replace(name="blind", vision=False)
    with (
        mmo.Orchestrator([text_only], runlog=":memory:", cache=False) as orc,
        pytest.raises(InvalidRequestError, match="'blind' cannot see"),
    ):
        orc.complete(["Look", Image(png())], model="blind")
    assert sim.request_count() == 0


def test_a_part_over_the_providers_limit_is_refused_with_the_limit_named(orc, sim):
    big = Image(b"\x89PNG\r\n\x1a\n" + bytes(6 * 1024 * 1024))  # 6 MB: over Anthropic's 5
    with pytest.raises(InvalidRequestError, match=r"over anthropic's limit of 5 MB per image"):
        orc.complete(["Look", big], model="an")
    assert sim.request_count() == 0
    r = orc.complete(["Look", big], model="oa")  # OpenAI takes 20 MB
    assert r.ok, r.error


def test_bytes_that_are_not_their_media_type_are_refused(orc, sim):
    with pytest.raises(InvalidRequestError, match="bytes are not image/jpeg"):
        orc.complete(["Look", Image(png(), "image/jpeg")], model="oa")
    with pytest.raises(InvalidRequestError, match="not valid base64"):
        orc.complete([{"role": "user", "content": [{"type": "image", "source": {
            "type": "base64", "media_type": "image/png", "data": "@@not base64@@"}}]}])  # fmt: skip
    assert sim.request_count() == 0


def test_local_servers_take_no_documents(orc, sim):
    with pytest.raises(InvalidRequestError, match="takes no documents"):
        orc.complete(["Read", Document(PDF)], model="lo")
    assert sim.request_count() == 0


def test_bad_sources_say_what_to_give():
    with pytest.raises(InvalidRequestError, match="does not exist"):
        Image("no/such/chart.png")
    with pytest.raises(InvalidRequestError, match="Cannot make an image from int"):
        Image(42)
    with pytest.raises(InvalidRequestError, match="Cannot tell the media type"):
        Image(b"not an image")
    with pytest.raises(InvalidRequestError, match="only user messages"):
        build_request([{"role": "assistant", "content": [Image(png())]}], None, None, None)


# -- the simulated provider validates as the real APIs do -----------------------------------------


def test_the_sim_refuses_bad_parts_on_both_wires(oa, an):
    import anthropic
    import openai

    bad = [{"type": "text", "text": "look"},
           {"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}]  # fmt: skip
    with pytest.raises(openai.BadRequestError, match="not valid base64"):
        oa.chat.completions.create(model="sim-fast", messages=[{"role": "user", "content": bad}])
    jpeg_claimed = base64.b64encode(png()).decode()
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                         "data": jpeg_claimed}}  # fmt: skip
    with pytest.raises(anthropic.BadRequestError, match="does not match the media type"):
        an.messages.create(model="sim-fast", max_tokens=10,
                           messages=[{"role": "user", "content": [block]}])  # fmt: skip
    huge = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(5 * 1024 * 1024 + 1)).decode()
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": huge}}  # fmt: skip
    with pytest.raises(anthropic.BadRequestError, match="exceeds the 5 MB maximum"):
        an.messages.create(model="sim-fast", max_tokens=10,
                           messages=[{"role": "user", "content": [block]}])  # fmt: skip
    tiff = {"type": "image", "source": {"type": "base64", "media_type": "image/tiff",
                                        "data": jpeg_claimed}}  # fmt: skip
    with pytest.raises(anthropic.BadRequestError, match="media type 'image/tiff'"):
        an.messages.create(model="sim-fast", max_tokens=10,
                           messages=[{"role": "user", "content": [tiff]}])  # fmt: skip


# -- tokens, cost and budgets ---------------------------------------------------------------------


def test_image_tokens_are_counted_where_reported_and_estimated_where_not(orc, sim):
    r = orc.complete(["two words", Image(png())], model="oa")
    assert r.input_tokens == 2 + 85 and not r.tokens_estimated  # the sim reports 85 an image
    no_usage = with_model_id(orc, "lo", "sim-fast?usage=false")
    r = orc.complete(["two words", Image(png(1024, 1024))], model=no_usage)
    # Not reported: estimated (marked so), the image included (OpenAI's tiles: 85 + 170 x 4).
    assert r.tokens_estimated and r.input_tokens is not None and r.input_tokens > 765


def test_image_token_estimates():
    assert image_size(png(800, 600)) == (800, 600)
    assert part_tokens(Image(png(1024, 1024)), "openai") == 85 + 170 * 4
    assert part_tokens(Image(png(1024, 1024), detail="low"), "openai") == 85
    assert part_tokens(Image(png(1000, 750)), "anthropic") == 1000
    assert part_tokens(Document(PDF), "anthropic") == 2 * 1500  # two pages


def test_a_budget_counts_images(sim, keys):
    image = Image(png(2000, 2000))
    catalogue = sim_models(sim)
    text = build_request("What is this?", None, None, None)
    with_image = build_request(["What is this?", image], None, None, None)
    config = catalogue[0]
    without = estimate_cost(config, text, config.max_tokens)
    including = estimate_cost(config, with_image, config.max_tokens)
    assert without is not None and including is not None and including > without
    budget = (without + including) / 2  # enough for the words, not for the image
    with mmo.Orchestrator(catalogue, runlog=":memory:", cache=False, budget=budget) as orc:
        assert orc.complete("What is this?", model="oa").ok
        with pytest.raises(BudgetExceededError):
            orc.complete(["What is this?", image], model="oa")
    assert sim.request_count() == 1  # the image call was never sent


# -- run log and cache ----------------------------------------------------------------------------


def test_the_run_log_keeps_hash_and_size_but_never_the_bytes(sim, keys, tmp_path):
    data = png(300, 200, "blue")
    encoded = base64.b64encode(data).decode()
    path = tmp_path / "runs.sqlite3"
    with mmo.Orchestrator(sim_models(sim), runlog=path, cache=False) as orc:
        r = orc.complete(["Describe", Image(data), Document(PDF)], model="an")
        assert r.ok
        row = orc.runs.to_dataframe().iloc[-1]
    parts = json.loads(row["parts"])
    assert parts == [
        {"kind": "image", "media_type": "image/png", "size": len(data),
         "sha256": hashlib.sha256(data).hexdigest()},
        {"kind": "document", "media_type": "application/pdf", "size": len(PDF),
         "sha256": hashlib.sha256(PDF).hexdigest()},
    ]  # fmt: skip
    assert row["prompt"] == "Describe"
    with sqlite3.connect(path) as conn:
        dump = "\n".join(conn.iterdump())
    assert encoded[:200] not in dump and "base64" not in dump


def test_the_cache_keys_on_the_images_hashes(sim, keys, tmp_path):
    red, blue = Image(png(color="red")), Image(png(color="blue"))
    with mmo.Orchestrator(sim_models(sim), runlog=":memory:", cache=tmp_path / "c.sqlite3") as orc:
        first = orc.complete(["What colour?", red], model="oa")
        again = orc.complete(["What colour?", Image(red.data)], model="oa")
        other = orc.complete(["What colour?", blue], model="oa")
    assert not first.cached and again.cached and not other.cached
    assert sim.request_count() == 2


def test_a_part_repr_never_shows_bytes():
    image = Image(png())
    assert repr(image) == f"Image(image/png, {image.size} bytes)"
    assert isinstance(image, Part) and image.kind == "image"
