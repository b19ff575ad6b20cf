"""``mmo-serve`` settings and exit time (issue 27 #14): a bad [server] setting is one line on
stderr, never a traceback; after SIGTERM the process is gone at most a second after the grace,
as README says (it took 5.2-5.5 s after a 3 s grace)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest
from helpers import chat, mmo_serve

GRACE_S = 3.0


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [("graceful_shutdown_s = nan", "finite"), ("graceful_shutdown_s = inf", "finite"),
     ("port = 70000", "1-65535")],
)  # fmt: skip
def test_a_bad_server_setting_is_one_line_not_a_traceback(tmp_path, setting, complaint):
    config = tmp_path / "mmo.toml"
    config.write_text(f"[server]\n{setting}\n")
    done = subprocess.run(
        [sys.executable, "-m", "mmo_magic.service", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and complaint in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_bad_port_on_the_command_line_is_one_line():
    done = subprocess.run(
        [sys.executable, "-m", "mmo_magic.service", "--port", "70000"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr and "1-65535" in done.stderr


def test_the_process_exits_within_a_second_of_the_grace(sim_server, tmp_path):
    config = tmp_path / "mmo.toml"
    config.write_text(
        f"default_model = 'slow'\n[server]\ngraceful_shutdown_s = {GRACE_S}\n"
        + textwrap.dedent(f"""
            [models.slow]
            provider = "local"
            model_id = "sim-fast?tps=5&tokens=200"
            base_url = "{sim_server.openai_base_url}"
        """)
    )
    with mmo_serve(config, tmp_path / "runs.sqlite3") as (process, url):
        started = threading.Event()

        def stream() -> None:
            with (
                httpx.Client(base_url=url, timeout=60) as http,
                http.stream(
                    "POST", "/v1/chat/completions", json=chat("slow", stream=True)
                ) as response,
            ):
                for _ in response.iter_lines():
                    started.set()

        reader = threading.Thread(target=stream, daemon=True)
        reader.start()
        assert started.wait(20)
        stopped_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=GRACE_S + 20) == 0
        exited_after = time.monotonic() - stopped_at
        reader.join(10)
    assert GRACE_S * 0.9 < exited_after <= GRACE_S + 1.0, exited_after
