"""A headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`): no extra
package, no download. Opens a local HTML file, records every network request and script error, waits
until every plotly plot drew its SVG and every image decoded, and can take a screenshot.

`browser_binary()` is the installed Chromium (Debian's `chromium` package; `.ci/run` installs it) or None.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BINARIES = ("chromium", "chromium-browser", "google-chrome", "chrome")

# resolves once every plotly div holds its SVG (or after `limit` ms) and every image decoded
PAGE_CHECK = """(async (limit) => {
  const plots = () => [...document.querySelectorAll('.js-plotly-plot, .plotly-graph-div')];
  const drawn = () => plots().filter(p => p.querySelector('svg.main-svg')).length;
  while (drawn() < plots().length && performance.now() < limit) await new Promise(r => setTimeout(r, 20));
  const plotsDrawnMs = performance.now();
  const images = [...document.images];
  const decoded = await Promise.all(images.map(i => i.decode().then(() => i.naturalWidth > 0, () => false)));
  return {plots: plots().length, drawn: drawn(), plotsDrawnMs, images: images.length,
          decoded: decoded.filter(Boolean).length, height: document.documentElement.scrollHeight};
})"""


def browser_binary() -> str | None:
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageResult:
    """What the browser saw: the page check's result, requested URLs, script errors, the load time."""

    check: dict[str, Any]
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    load_ms: float = 0.0
    screenshot: bytes | None = None


class Chromium:
    """One headless browser process, one page; use as a context manager."""

    def __init__(self, binary: str, width: int = 1280, height: int = 900) -> None:
        self.width, self.height = width, height
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        self._profile = tempfile.mkdtemp(prefix="datosearch-chromium-")

        def fds() -> None:  # the protocol is on the child's fds 3 (commands in) and 4 (replies out)
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child_r, from_child_w)]  # no clash with 3, 4
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                "--no-first-run", "--disable-extensions", "--disable-background-networking",
                f"--user-data-dir={self._profile}", f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(args, preexec_fn=fds, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     pass_fds=(3, 4, to_child_r, from_child_w))
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def _read(self, timeout: float) -> dict[str, Any]:
        import select

        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise RuntimeError("the browser did not answer in time")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: bool = False, timeout: float = 60.0, **params: Any) -> dict[str, Any]:
        """Send one command (to the page's session with `session=True`) and return its result; events seen
        meanwhile are kept in `events`."""
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read(timeout)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60.0) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = self._read(max(0.01, deadline - time.monotonic()))
            self.events.append(event)
            if event.get("method") == method:
                return event

    def open(self, path: str | Path, limit_ms: float = 30000, screenshot_height: int | None = None) -> PageResult:
        """Load a local file and check it (see `PAGE_CHECK`); `screenshot_height` > 0 also takes a PNG of the
        page's top `screenshot_height` pixels."""
        for domain in ("Page", "Network", "Runtime"):
            self.send(f"{domain}.enable", session=True)
        self.send("Emulation.setDeviceMetricsOverride", session=True, width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        start = time.perf_counter()
        self.send("Page.navigate", session=True, url=Path(path).resolve().as_uri())
        self.wait_event("Page.loadEventFired", timeout=limit_ms / 1000)
        load_ms = (time.perf_counter() - start) * 1000
        value = self.send("Runtime.evaluate", session=True, timeout=limit_ms / 1000 + 30, awaitPromise=True,
                          returnByValue=True, expression=f"{PAGE_CHECK}({limit_ms})")
        if "exceptionDetails" in value:
            raise RuntimeError(f"the page check failed: {value['exceptionDetails']}")
        result = PageResult(value["result"]["value"], load_ms=load_ms)
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Network.requestWillBeSent":
                result.requests.append(params["request"]["url"])
            elif event.get("method") == "Runtime.exceptionThrown":
                result.errors.append(json.dumps(params.get("exceptionDetails", {}))[:500])
        if screenshot_height:
            shot = self.send("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True,
                             clip={"x": 0, "y": 0, "width": self.width, "height": screenshot_height, "scale": 1})
            result.screenshot = base64.b64decode(shot["data"])
        return result
