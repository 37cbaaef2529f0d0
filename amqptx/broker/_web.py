# -*- test-case-name: tests.test_status -*-
"""
The live status page of C{amqp-listen}, served with C{twisted.web}:

  - C{/}: an HTML page (with C{/status.js} and C{/status.css}) that polls
    the JSON every second and shows the queues, the connections and small
    rate charts (inline SVG), with nothing loaded from elsewhere;
  - C{/api/status}: the broker's L{snapshot} as JSON.

With credentials checkers, everything is behind HTTP Basic
authentication (C{twisted.web.guard}); anonymous access is never offered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from twisted.application.service import Service
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.portal import IRealm, Portal
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.guard import BasicCredentialFactory, HTTPAuthSessionWrapper
from twisted.web.http import Request
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, NoResource, Resource
from twisted.web.server import Site
from zope.interface import implementer

from ._broker import Broker
from ._status import StatusSampler, snapshot

__all__ = ["StatusWebService", "statusResource", "statusSite"]

_log = Logger()

REALM = b"amqp-listen"
"""
The HTTP Basic authentication realm of the page."""

_COMMON_HEADERS = {
    b"cache-control": b"no-store",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"x-frame-options": b"DENY",
}

_PAGE_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; "
    b"connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
    b"form-action 'none'; frame-ancestors 'none'"
)
"""
The page's content security policy: its own script, style and API only,
so nothing can come from elsewhere (these machines may have no Internet)."""

PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>amqp-listen status</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="status.css">
<script src="status.js" defer></script>
</head>
<body data-updates="0">
<header>
  <h1>amqp-listen</h1>
  <span id="state" class="state connecting">connecting…</span>
  <span id="updated"></span>
</header>
<main>
<section id="totals" aria-label="Totals">
  <dl>
    <div><dt>Connections</dt><dd id="total-connections">–</dd></div>
    <div><dt>Links</dt><dd id="total-links">–</dd></div>
    <div><dt>Queues</dt><dd id="total-queues">–</dd></div>
    <div><dt>Topics</dt><dd id="total-topics">–</dd></div>
    <div><dt>Messages waiting</dt><dd id="total-depth">–</dd></div>
    <div><dt>In / s</dt><dd id="total-in" class="in">–</dd></div>
    <div><dt>Out / s</dt><dd id="total-out" class="out">–</dd></div>
  </dl>
  <figure>
    <div id="total-chart" class="chart"></div>
    <figcaption>Messages per second over the last minute:
      <span class="in">in</span>, <span class="out">out</span></figcaption>
  </figure>
</section>
<section aria-labelledby="queues-title">
  <h2 id="queues-title">Queues and topics</h2>
  <table id="queues">
    <thead><tr>
      <th>Address</th><th>Kind</th><th class="num">Depth</th>
      <th class="num">Consumers</th><th class="num">Producers</th>
      <th class="num">In / s</th><th class="num">Out / s</th>
      <th>Last minute</th>
    </tr></thead>
    <tbody><tr class="empty"><td colspan="8">Loading…</td></tr></tbody>
  </table>
</section>
<section aria-labelledby="connections-title">
  <h2 id="connections-title">Connections</h2>
  <table id="connections">
    <thead><tr>
      <th>Peer</th><th>User</th><th>Container id</th><th>Links</th>
    </tr></thead>
    <tbody><tr class="empty"><td colspan="4">Loading…</td></tr></tbody>
  </table>
</section>
</main>
</body>
</html>
"""
"""
The HTML page; the script fills it in."""

SCRIPT = """\
"use strict";
(function () {
  // The API, relative to the page, without the credentials the page's own
  // URL may hold (fetch() refuses those; the browser sends them anyway).
  const api = new URL("api/status", location.href);
  api.username = "";
  api.password = "";
  const SVG = "http://www.w3.org/2000/svg";
  let timer = null;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function rate(value) {
    if (value === null || value === undefined) return "–";
    return value < 10 ? value.toFixed(1) : String(Math.round(value));
  }

  function line(values, slots, width, height, top, className) {
    const step = width / Math.max(slots - 1, 1);
    const start = slots - values.length;
    const points = values.map(function (value, i) {
      const x = (start + i) * step;
      const y = height - 1 - (value / top) * (height - 2);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    const polyline = document.createElementNS(SVG, "polyline");
    polyline.setAttribute("points", points.join(" "));
    polyline.setAttribute("class", className);
    return polyline;
  }

  function chart(item, slots, width, height) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("class", "spark");
    const inValues = item.inHistory || [];
    const outValues = item.outHistory || [];
    const top = Math.max(1, ...inValues, ...outValues);
    const title = document.createElementNS(SVG, "title");
    title.textContent = "in " + rate(item.inRate) + "/s, out " +
      rate(item.outRate) + "/s (peak " + rate(top) + "/s)";
    svg.appendChild(title);
    const base = document.createElementNS(SVG, "line");
    base.setAttribute("x1", 0);
    base.setAttribute("x2", width);
    base.setAttribute("y1", height - 0.5);
    base.setAttribute("y2", height - 0.5);
    base.setAttribute("class", "base");
    svg.appendChild(base);
    [[inValues, "in"], [outValues, "out"]].forEach(function (pair) {
      if (pair[0].length) {
        svg.appendChild(line(pair[0], slots, width, height, top, pair[1]));
      }
    });
    return svg;
  }

  function emptyRow(columns, text) {
    const row = el("tr", "empty");
    const cell = el("td", "", text);
    cell.colSpan = columns;
    row.appendChild(cell);
    return row;
  }

  function renderQueues(status, slots) {
    const body = document.querySelector("#queues tbody");
    const rows = status.queues.map(function (queue) {
      const row = el("tr", queue.kind);
      row.dataset.address = queue.address;
      const name = el("td", "address", queue.address);
      if (queue.durable) name.appendChild(el("span", "tag", "durable"));
      if (queue.temporary) name.appendChild(el("span", "tag", "temporary"));
      row.appendChild(name);
      row.appendChild(el("td", "kind", queue.kind));
      row.appendChild(el("td", "num depth", queue.depth));
      row.appendChild(el("td", "num consumers", queue.consumers));
      row.appendChild(el("td", "num producers", queue.producers));
      row.appendChild(el("td", "num in-rate in", rate(queue.inRate)));
      row.appendChild(el("td", "num out-rate out", rate(queue.outRate)));
      const cell = el("td", "chart");
      cell.appendChild(chart(queue, slots, 120, 24));
      row.appendChild(cell);
      return row;
    });
    body.replaceChildren(...(rows.length ? rows : [emptyRow(8, "No queues yet")]));
  }

  function renderConnections(status) {
    const body = document.querySelector("#connections tbody");
    const rows = status.connections.map(function (connection) {
      const row = el("tr");
      row.appendChild(el("td", "peer", connection.peer || "?"));
      const user = el("td", "user", connection.user || "anonymous");
      if (!connection.user) user.classList.add("anonymous");
      row.appendChild(user);
      row.appendChild(el("td", "container", connection.containerId || "–"));
      const links = el("td", "links");
      if (connection.links.length) {
        const list = el("ul");
        connection.links.forEach(function (link) {
          const verb = link.role === "receiver" ? "receives from " : "sends to ";
          const item = el("li", link.role, verb);
          item.appendChild(el("span", "address", link.address || "(anonymous relay)"));
          item.appendChild(el("span", "detail",
            " credit " + link.credit + ", unsettled " + link.unsettled));
          list.appendChild(item);
        });
        links.appendChild(list);
      } else {
        links.textContent = "none";
      }
      row.appendChild(links);
      return row;
    });
    body.replaceChildren(...(rows.length ? rows : [emptyRow(4, "No connections")]));
  }

  function render(status) {
    const totals = status.totals;
    const slots = status.historyLength || 60;
    document.getElementById("total-connections").textContent = totals.connections;
    document.getElementById("total-links").textContent = totals.links;
    document.getElementById("total-queues").textContent = totals.queues;
    document.getElementById("total-topics").textContent = totals.topics;
    document.getElementById("total-depth").textContent = totals.depth;
    document.getElementById("total-in").textContent = rate(totals.inRate);
    document.getElementById("total-out").textContent = rate(totals.outRate);
    document.getElementById("total-chart")
      .replaceChildren(chart(totals, slots, 360, 64));
    renderQueues(status, slots);
    renderConnections(status);
    const body = document.body;
    body.dataset.updates = String(Number(body.dataset.updates || 0) + 1);
  }

  function state(name, text) {
    const node = document.getElementById("state");
    node.className = "state " + name;
    node.textContent = text;
  }

  async function refresh() {
    timer = null;
    try {
      const response = await fetch(
        api, {cache: "no-store", credentials: "same-origin"});
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
      state("live", "live");
      document.getElementById("updated").textContent =
        "updated " + new Date().toLocaleTimeString();
    } catch (error) {
      state("error", "not updating: " + error.message);
    } finally {
      timer = setTimeout(refresh, document.hidden ? 5000 : 1000);
    }
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && timer !== null) {
      clearTimeout(timer);
      refresh();
    }
  });
  refresh();
})();
"""
"""
The page's script: polls C{api/status} every second (every five while the
page is hidden) and redraws; text goes in with C{textContent} only, so
addresses and container ids chosen by clients cannot inject markup."""

STYLE = """\
:root {
  color-scheme: light dark;
  --fg: #1d2330; --muted: #667085; --bg: #ffffff; --panel: #f4f6f9;
  --line: #d9dee7; --in: #2f6fdf; --out: #1b9e5a; --bad: #c23934;
}
@media (prefers-color-scheme: dark) {
  :root {
    --fg: #e6e9ef; --muted: #9aa3b2; --bg: #15181e; --panel: #1e222b;
    --line: #323846; --in: #6d9ef5; --out: #4cc98a; --bad: #f0726d;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; padding: 1rem 1.5rem; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
}
header { display: flex; align-items: baseline; gap: 1rem; flex-wrap: wrap; }
h1 { font-size: 1.4rem; margin: 0 0 .5rem; }
h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
#updated { color: var(--muted); }
.state { padding: .1rem .5rem; border-radius: 1rem; font-size: .85rem; }
.state.live { background: var(--out); color: #fff; }
.state.connecting { background: var(--panel); color: var(--muted); }
.state.error { background: var(--bad); color: #fff; }
#totals { display: flex; gap: 1.5rem; flex-wrap: wrap; align-items: flex-start; }
#totals dl { display: flex; flex-wrap: wrap; gap: .5rem; margin: 0; }
#totals dl div {
  background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
  padding: .4rem .75rem; min-width: 7rem;
}
dt { color: var(--muted); font-size: .8rem; }
dd { margin: 0; font-size: 1.3rem; font-variant-numeric: tabular-nums; }
figure { margin: 0; }
figcaption { color: var(--muted); font-size: .8rem; }
table { border-collapse: collapse; width: 100%; }
th, td {
  text-align: left; padding: .3rem .6rem; vertical-align: top;
  border-bottom: 1px solid var(--line);
}
th { color: var(--muted); font-weight: 600; font-size: .8rem; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
td.address, td.container, .links .address {
  font-family: ui-monospace, monospace; word-break: break-all;
}
tr.empty td { color: var(--muted); font-style: italic; }
.tag {
  margin-left: .4rem; padding: 0 .35rem; border: 1px solid var(--line);
  border-radius: 4px; font: .7rem system-ui, sans-serif; color: var(--muted);
}
.anonymous { color: var(--muted); font-style: italic; }
.links ul { margin: 0; padding: 0; list-style: none; }
.links .detail { color: var(--muted); }
span.in, dd.in, td.in { color: var(--in); }
span.out, dd.out, td.out { color: var(--out); }
svg.spark { display: block; background: var(--panel); border-radius: 3px; }
svg.spark polyline { fill: none; stroke-width: 1.5; stroke-linejoin: round; }
svg.spark polyline.in { stroke: var(--in); }
svg.spark polyline.out { stroke: var(--out); }
svg.spark line.base { stroke: var(--line); stroke-width: 1; }
"""
"""
The page's style sheet."""


def _headers(request: IRequest, contentType: bytes) -> None:
    request.setHeader(b"content-type", contentType)
    for name, value in _COMMON_HEADERS.items():
        request.setHeader(name, value)


class _Static(Resource):
    """
    A constant document.
    """

    def __init__(
        self, body: str, contentType: bytes, policy: bytes | None = None
    ) -> None:
        """
        @param body: the document.
        @param contentType: its media type.
        @param policy: its content security policy, or L{None}.
        """
        super().__init__()  # type: ignore[no-untyped-call]
        self._body = body.encode("utf-8")
        self._contentType = contentType
        self._policy = policy

    def render_GET(self, request: IRequest) -> bytes:
        """
        @param request: the request.
        @return: the document.
        """
        _headers(request, self._contentType)
        if self._policy is not None:
            request.setHeader(b"content-security-policy", self._policy)
        return self._body


class _Folder(Resource):
    """
    A resource that only holds others: not found itself.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def render(self, request: IRequest) -> bytes:
        """
        @param request: the request.
        @return: the page of a resource not found.
        """
        page: bytes = NoResource().render(request)
        return page


class _StatusAPI(Resource):
    """
    C{/api/status}: the broker's snapshot as JSON.
    """

    def __init__(self, broker: Broker, sampler: StatusSampler | None) -> None:
        """
        @param broker: the broker described.
        @param sampler: the sampler of its rates, or L{None}.
        """
        super().__init__()  # type: ignore[no-untyped-call]
        self._broker = broker
        self._sampler = sampler

    def render_GET(self, request: IRequest) -> bytes:
        """
        @param request: the request.
        @return: the snapshot, in JSON.
        """
        _headers(request, b"application/json; charset=utf-8")
        status = snapshot(self._broker, self._sampler)
        return json.dumps(status, separators=(",", ":")).encode("utf-8")


def statusResource(broker: Broker, sampler: StatusSampler | None = None) -> IResource:
    """
    The status page's resource tree, without authentication.

    @param broker: the broker described.
    @param sampler: the sampler of its rates (its service must run for the
        rates to move), or L{None} for none.
    @return: the root resource: C{/}, C{/status.js}, C{/status.css} and
        C{/api/status}.
    """
    root = Resource()
    root.putChild(b"", _Static(PAGE, b"text/html; charset=utf-8", policy=_PAGE_POLICY))
    root.putChild(b"status.js", _Static(SCRIPT, b"text/javascript; charset=utf-8"))
    root.putChild(b"status.css", _Static(STYLE, b"text/css; charset=utf-8"))
    api = _Folder()
    api.putChild(b"status", _StatusAPI(broker, sampler))
    root.putChild(b"api", api)
    return root


@implementer(IRealm)
class _Realm:
    """
    Gives every authenticated user the status resource.
    """

    def __init__(self, resource: IResource) -> None:
        self._resource = resource

    def requestAvatar(
        self, avatarId: Any, mind: Any, *interfaces: Any
    ) -> tuple[Any, IResource, Any]:
        if IResource in interfaces:
            return IResource, self._resource, lambda: None
        raise NotImplementedError()


class _StatusSite(Site):
    """
    A site that writes no access log: the page polls every second.
    """

    def log(self, request: Request) -> None:
        """
        Log nothing.

        @param request: the request served.
        """


def statusSite(
    broker: Broker,
    sampler: StatusSampler | None = None,
    checkers: Sequence[ICredentialsChecker] = (),
) -> Site:
    """
    The status page as an HTTP factory.

    @param broker: the broker described.
    @param sampler: the sampler of its rates, or L{None}.
    @param checkers: credentials checkers; with any, every request must
        authenticate with HTTP Basic (else: 401 Unauthorized), checked by
        those that check user names and passwords (L{IUsernamePassword}):
        anonymous access is not offered even if a checker would allow it.
        Empty: no authentication.
    @return: the site.
    @raise ValueError: when no checker checks user names and passwords.
    """
    resource = statusResource(broker, sampler)
    if checkers:
        portal = Portal(_Realm(resource))
        for checker in checkers:
            if IUsernamePassword in checker.credentialInterfaces:
                portal.registerChecker(checker, IUsernamePassword)
        if not portal.listCredentialsInterfaces():
            raise ValueError("no checker of user names and passwords")
        resource = HTTPAuthSessionWrapper(portal, [BasicCredentialFactory(REALM)])
    site = _StatusSite(resource)  # type: ignore[no-untyped-call]
    site.displayTracebacks = False
    return site


class StatusWebService(Service):
    """
    Serves the status page on a server endpoint.

    A port that cannot be opened stops C{twistd} at start with a one-line
    message, as the AMQP ports do.

    @ivar port: the listening port while the service runs, else L{None}.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, site: Site) -> None:
        """
        @param endpoint: where to listen.
        @param site: the status site (see L{statusSite}).
        """
        self._endpoint = endpoint
        self._site = site
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        """
        Open the port (before twistd drops privileges).

        @raise SystemExit: when it cannot be opened.
        """
        super().privilegedStartService()  # type: ignore[no-untyped-call]
        results: list[object] = []
        self._endpoint.listen(self._site).addBoth(results.append)
        [result] = results or [Failure(RuntimeError("listening did not end"))]
        if isinstance(result, Failure):
            raise SystemExit(f"amqp-listen --web: {result.getErrorMessage()}")
        assert IListeningPort.providedBy(result)
        self.port = result
        host = result.getHost()
        if isinstance(host, IPv6Address):
            where = f"http://[{host.host}]:{host.port}/"
        elif isinstance(host, IPv4Address):
            where = f"http://{host.host}:{host.port}/"
        else:
            where = str(host)
        _log.info("amqp-listen: status page on {where}", where=where)

    def startService(self) -> None:
        """
        Start; open the port unless that was done with privileges.
        """
        if self.port is None:
            self.privilegedStartService()
        super().startService()  # type: ignore[no-untyped-call]

    def stopService(self) -> Deferred[None] | None:
        """
        Stop listening.

        @return: a Deferred that fires once the port is closed, or L{None}.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        port, self.port = self.port, None
        if port is None:
            return None
        return port.stopListening()
