"""The Grafana dashboard (docs/grafana-dashboard.json), drawn from a real run: docs/dashboard.png.

    python -m bench.dashboard [--seconds 90]

Starts a real web process and two workers against an embedded Redis and the Mastodon double, with
/metrics on, and drives a small instance's afternoon through them: ordinary reports, a report wave,
bad signatures and Mastodon's retries, failing posts, a peer scan, a moderator's DM commands, a block
and its held announcement. /metrics is scraped every two seconds. Grafana is not available here, so
each panel's PromQL (the few forms the dashboard uses: sum/max/min [by (…)] over rate, increase or a
plain series, and one division) is evaluated over the scrapes by this script, drawn as SVG in the
dashboard's grid, and photographed with headless Chromium. Prints what it drew.
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
from prometheus_client.parser import text_string_to_metric_families

from bot.ops.embedded_redis import EmbeddedRedis
from tests.helpers import report_event
from tests.mastodon_double import MastodonDouble
from tests.stack import Stack
from tests.waves import burst

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
PICTURE = ROOT / "docs" / "dashboard.png"
Sample = dict[tuple[str, tuple[tuple[str, str], ...]], float]
COLORS = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#96d98d", "#ffb357"]


def scrape(url: str) -> Sample:
    text = httpx2.get(f"{url}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def drive(stack: Stack, double: MastodonDouble, seconds: float, stop: threading.Event) -> None:
    """The afternoon: ordinary traffic all along, and an event every few seconds."""
    rng = random.Random(3)
    now = datetime.now(UTC).replace(microsecond=0)
    cli = [sys.executable, "-m", "bot.ops.cli"]
    webhook = f"{stack.url}/webhooks/mastodon"
    wave = burst(now - timedelta(minutes=30), "wave.example", 60, 0.5, first_id=800000)
    script = [
        (0.15, lambda: [stack.deliver(client, event) for event in wave]),
        (
            0.25,
            lambda: [client.post(webhook, content=b"{}", headers={"X-Hub-Signature": "sha256=0"}) for _ in range(20)],
        ),
        (0.3, lambda: [stack.deliver(client, event) for event in wave[:25]]),  # Mastodon's redeliveries
        (0.35, lambda: double.fail_next_posts.extend([500, 503])),
        (0.45, lambda: subprocess.run([*cli, "scan"], env=stack.env, capture_output=True, timeout=120)),
        (0.55, lambda: double.say("101", "@tocsin status")),
        (0.6, lambda: double.say("101", "@tocsin limit wave.example Crypto spam")),
        (0.65, lambda: subprocess.run([*cli, "blocks", "poll"], env=stack.env, capture_output=True, timeout=60)),
    ]
    subprocess.run([*cli, "blocks", "poll"], env=stack.env, capture_output=True, timeout=60)
    started = time.monotonic()
    n = 0
    with httpx2.Client(timeout=10) as client:
        while not stop.is_set() and time.monotonic() - started < seconds:
            share = (time.monotonic() - started) / seconds
            while script and script[0][0] <= share:
                script.pop(0)[1]()
            moment = now - timedelta(days=2) + timedelta(seconds=n * 30)
            domain = f"server{rng.randint(1, 40)}.example"
            event = report_event(100000 + n, moment.isoformat().replace("+00:00", "Z"), domain, str(5000 + n))
            stack.deliver(client, event)
            n += 1
            time.sleep(rng.uniform(0.05, 0.3))  # pacing ordinary traffic


# --- a little PromQL, over the scrapes -----------------------------------------------------------

AGG = re.compile(r"^(sum|max|min)(?: by \(([^)]*)\))? ?\((.+)\)$")
INNER = re.compile(r"^(rate|increase)\((\w+)\[(\d+)([mh])\]\)$")


def evaluate(expr: str, times: list[float], samples: list[Sample]) -> dict[tuple[tuple[str, str], ...], list[float]]:
    """Series (by their grouping labels) of `expr` at each scrape."""
    if " / " in expr:
        top, bottom = (evaluate(part, times, samples) for part in expr.split(" / "))
        return {
            key: [a / b if b else 0.0 for a, b in zip(values, bottom.get(key, [0.0] * len(values)), strict=True)]
            for key, values in top.items()
        }
    match = AGG.match(expr)
    if match is None:
        raise ValueError(f"this sketch does not read {expr!r}")
    how, by, inner = match.groups()
    keep = [label.strip() for label in by.split(",")] if by else []
    function = INNER.match(inner)
    metric = function.group(2) if function else inner
    window = (int(function.group(3)) * (60 if function.group(4) == "m" else 3600)) if function else 0
    series: dict[tuple[tuple[str, str], ...], list[float]] = defaultdict(lambda: [0.0] * len(times))
    for index, at in enumerate(times):
        groups: dict[tuple[tuple[str, str], ...], list[float]] = defaultdict(list)
        start = next(i for i, t in enumerate(times) if t >= at - window) if function else index
        for (name, labels), value in samples[index].items():
            if name != metric:
                continue
            key = tuple((label, dict(labels).get(label, "")) for label in keep)
            if function:
                before = samples[start].get((name, labels), 0.0)
                span = max(at - times[start], 1.0)
                value = (value - before) / span if function.group(1) == "rate" else value - before
            groups[key].append(value)
        for key, values in groups.items():
            series[key][index] = {"sum": sum, "max": max, "min": min}[how](values)
    return dict(series)


def legend(template: str, key: tuple[tuple[str, str], ...]) -> str:
    labels = dict(key)
    return re.sub(r"\{\{(\w+)\}\}", lambda match: labels.get(match.group(1), ""), template) or "value"


def svg(lines: list[tuple[str, list[float]]], times: list[float], width: int, height: int) -> str:
    top = max((max(values) for _name, values in lines), default=1.0) or 1.0
    span = (times[-1] - times[0]) or 1.0
    paths = []
    for n, (_name, values) in enumerate(lines):
        points = " ".join(
            f"{40 + (t - times[0]) / span * (width - 50):.1f},{10 + (1 - v / top) * (height - 30):.1f}"
            for t, v in zip(times, values, strict=True)
        )
        paths.append(f'<polyline points="{points}" fill="none" stroke="{COLORS[n % len(COLORS)]}" stroke-width="2"/>')
    axis = f'<text x="2" y="16" class="axis">{top:.3g}</text><text x="2" y="{height - 20}" class="axis">0</text>'
    rows = [10 + share * (height - 30) for share in (0, 0.25, 0.5, 0.75, 1)]
    grid = "".join(f'<line x1="40" x2="{width - 10}" y1="{y:.0f}" y2="{y:.0f}" class="grid"/>' for y in rows)
    return f'<svg width="{width}" height="{height}">{grid}{axis}{"".join(paths)}</svg>'


def render(times: list[float], samples: list[Sample]) -> tuple[str, list[str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    cell_w, cell_h = 64, 34
    boxes, drawn = [], []
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        width, height = grid["w"] * cell_w - 10, grid["h"] * cell_h - 10
        lines = []
        for target in panel["targets"]:
            for key, values in sorted(evaluate(target["expr"], times, samples).items()):
                lines.append((legend(target.get("legendFormat", ""), key), values))
        drawn.append(f"{panel['title']}: {len(lines)} series")
        legends = "".join(
            f'<span><i style="background:{COLORS[n % len(COLORS)]}"></i>{html.escape(name)}</span>'
            for n, (name, _values) in enumerate(lines)
        )
        boxes.append(
            f'<div class="panel" style="left:{grid["x"] * cell_w}px;top:{grid["y"] * cell_h + 50}px;'
            f'width:{width}px;height:{height}px"><h2>{html.escape(panel["title"])}</h2>'
            f"{svg(lines, times, width - 16, height - 70)}<div class='legend'>{legends}</div></div>"
        )
    page = f"""<!doctype html><meta charset="utf-8"><style>
body {{ background:#111217; color:#ccccdc; font:12px Inter, Helvetica, Arial, sans-serif; margin:0 }}
h1 {{ font-size:16px; margin:14px 16px; font-weight:500 }} h2 {{ font-size:13px; margin:0 0 6px; font-weight:500 }}
.panel {{ position:absolute; background:#181b1f; border:1px solid #2c3235; border-radius:3px; padding:8px;
  box-sizing:border-box }}
.legend span {{ margin-right:10px; white-space:nowrap }}
.legend i {{ display:inline-block; width:10px; height:3px; margin-right:4px; vertical-align:middle }}
.axis {{ fill:#8e8e8e; font-size:10px }} .grid {{ stroke:#2c3235 }}
</style><h1>Tocsin · {html.escape(dashboard["description"])}</h1>{"".join(boxes)}"""
    return page, drawn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=90)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        server = EmbeddedRedis(tmp / "redis", persistent=False).start()
        double = MastodonDouble(peers=["gone.invalid", "closed.invalid"]).start()
        double.max_characters = 5000
        stack = Stack(
            tmp,
            server.url,
            double,
            workers=2,
            TOCSIN_METRICS="true",
            PROMETHEUS_MULTIPROC_DIR=str(tmp / "metrics"),
            TOCSIN_COMMAND_POLL_SECONDS="2",
            TOCSIN_ANNOUNCE_HOLD_MINUTES="0.25",
            TOCSIN_SCAN_TIMEOUT="2",
            TOCSIN_MODERATORS="mod_anna",
        )
        (tmp / "metrics").mkdir()
        stack.start()
        stop = threading.Event()
        driver = threading.Thread(target=drive, args=(stack, double, options.seconds, stop), daemon=True)
        times: list[float] = []
        samples: list[Sample] = []
        try:
            started = time.monotonic()
            driver.start()
            while driver.is_alive() or time.monotonic() - started < options.seconds + 10:
                times.append(time.monotonic() - started)
                samples.append(scrape(stack.url))
                time.sleep(2)  # the scrape interval
        finally:
            stop.set()
            stack.stop()
            double.stop()
            server.stop()
    page, drawn = render(times, samples)
    (tmp_page := Path(tempfile.mkdtemp()) / "dashboard.html").write_text(page)
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={PICTURE}",
            "--window-size=1540,1000",
            tmp_page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    print(f"{len(samples)} scrapes over {times[-1]:.0f} s; {PICTURE.relative_to(ROOT)} drawn:")
    for line in drawn:
        print(f"  {line}")


if __name__ == "__main__":
    main()
