"""The hostile corpus against the step runners: injection, sandbox escapes, template bombs,
path traversal, SSRF and secret exfiltration. Each test counts what it tried and what got
through, and requires nothing to get through (0 executions, 0 escapes, 0 plain secrets,
0 hung workers, 0 requests reaching a denied address)."""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conveyor.executor.egress import EgressPolicy, parse_rules, system_resolver
from conveyor.executor.runners import ErrorCategory, StepContext, StepOutcome, execute
from tests.unit.runners.local_sink import LocalArtifactSink

# --- fixtures ---------------------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    """Records every request; /redirect?to=URL answers 302 to URL."""

    seen: list[dict[str, Any]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace")
        self.seen.append(
            {"path": url.path, "query": url.query, "headers": dict(self.headers), "body": body}
        )
        if url.path == "/redirect":
            target = urllib.parse.parse_qs(url.query)["to"][0]
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()


@pytest.fixture(scope="module")
def web() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


def context(tmp: Path, params: dict[str, Any], **options: Any) -> StepContext:
    scope = {
        "params": params,
        "steps": {},
        "run": {"id": "run-1", "job": "job-1", "trigger": "manual"},
        "secrets": options.pop("secrets", {}),
    }
    return StepContext(
        run_id="run-1",
        node_id="n",
        attempt=1,
        scope=scope,
        artifacts=LocalArtifactSink(tmp / "artifacts"),
        work_root=str(tmp / "work"),
        **options,
    )


def node(node_type: str, data: dict[str, Any], timeout_s: float = 30) -> dict[str, Any]:
    return {"id": "n", "type": node_type, "data": data, "timeout_s": timeout_s}


def run_bounded(step: dict[str, Any], ctx: StepContext, limit_s: float = 90) -> StepOutcome | None:
    """Execute in a thread; None when it did not return within `limit_s` (a hung worker)."""
    box: list[StepOutcome] = []
    thread = threading.Thread(target=lambda: box.append(execute(step, ctx)), daemon=True)
    thread.start()
    thread.join(limit_s)
    return box[0] if box else None


# --- injection payloads x fields x shell quoting contexts -------------------------------

PAYLOADS = [
    "; touch {m}",
    "&& touch {m}",
    "| touch {m}",
    "|| touch {m}",
    "\ntouch {m}\n",
    "$(touch {m})",
    "`touch {m}`",
    "' ; touch {m} ; '",
    '" ; touch {m} ; "',
    "'$(touch {m})'",
    '"$(touch {m})"',
    "\\'; touch {m} #",
    '\\"; touch {m} #',
    "'\"`touch {m}`\"'",
    "}}; touch {m}; ${{x",
    "${{IFS}}touch${{IFS}}{m}",
    "EOF\ntouch {m}\nEOF",
    "')\"; touch {m}; echo \"('",
    "$((0))$(touch {m})",
    "-o /dev/null; touch {m}",
    "{{{{ 7*7 }}}}; touch {m}",
    "%0atouch {m}",
    "\x00; touch {m}",
]

SHELL_CONTEXTS = {
    "unquoted": "printf '%s' {{ params.x }}",
    "single-quoted": "printf '%s' '{{ params.x }}'",
    "double-quoted": "printf '%s' \"{{ params.x }}\"",
    "in-word": "printf '%s' pre{{ params.x }}post",
    "command-substitution": "printf '%s' \"$(printf '%s' \"{{ params.x }}\")\"",
    "command-substitution-single": "printf '%s' \"$(printf '%s' '{{ params.x }}')\"",
    "backticks": "printf '%s' \"`printf '%s' '{{ params.x }}'`\"",
    "parameter-default": "printf '%s' \"${UNSET:-{{ params.x }}}\"",
    "heredoc": "cat <<EOF\n{{ params.x }}\nEOF",
    "after-comment-quote": "# it's here\nprintf '%s' {{ params.x }}",
}


def command_fields(marker: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every templated field of action.command and action.script, as (type, data)."""
    fields: dict[str, tuple[str, dict[str, Any]]] = {
        f"command.shell.{name}": ("action.command", {"command": text, "shell": True})
        for name, text in SHELL_CONTEXTS.items()
    }
    fields["command.argv"] = ("action.command", {"argv": ["printf", "%s", "{{ params.x }}"]})
    fields["command.split"] = ("action.command", {"command": "printf %s {{ params.x }}"})
    fields["command.split.quoted"] = ("action.command", {"command": "printf %s '{{ params.x }}'"})
    fields["command.env"] = (
        "action.command",
        {"command": 'printf "%s" "$V"', "shell": True, "env": {"V": "{{ params.x }}"}},
    )
    fields["command.stdin"] = ("action.command", {"argv": ["cat"], "stdin": "{{ params.x }}"})
    fields["script.env"] = (
        "action.script",
        {"interpreter": "sh", "script": 'printf "%s" "$V"', "env": {"V": "{{ params.x }}"}},
    )
    fields["script.param"] = (
        "action.script",
        {"interpreter": "bash", "script": 'printf "%s" "$CONVEYOR_PARAM_X"'},
    )
    fields["script.text"] = (
        "action.script",
        {"interpreter": "sh", "script": "echo '{{ params.x }}'"},  # never rendered
    )
    return fields


def test_injection_never_executes(tmp_path: Path, counts: Counter[str]) -> None:
    marker = tmp_path / "PWNED"
    executed: list[str] = []
    for field, (node_type, data) in command_fields(marker).items():
        for template in PAYLOADS:
            payload = template.format(m=marker)
            outcome = execute(node(node_type, data), context(tmp_path, {"x": payload}))
            counts["injection tried"] += 1
            if marker.exists():
                executed.append(f"{field}: {payload!r}")
                marker.unlink()
            if outcome.succeeded and "\x00" not in payload and field != "script.text":
                stdout = outcome.outputs["stdout"]
                if payload.rstrip("\n") not in stdout and field != "command.split":
                    counts["injection value altered"] += 1
    counts["injection executed"] += len(executed)
    assert executed == []


def test_injection_through_http_and_notify_fields(
    tmp_path: Path, web: int, counts: Counter[str]
) -> None:
    marker = tmp_path / "PWNED"
    policy = EgressPolicy(allow=parse_rules(f"127.0.0.1:{web}"))
    base = f"http://127.0.0.1:{web}"
    fields = {
        "http.url": ("action.http", {"url": base + "/u/{{ params.x }}"}),
        "http.query": ("action.http", {"url": base + "/q", "query": {"a": "{{ params.x }}"}}),
        "http.header": ("action.http", {"url": base + "/h", "headers": {"X-A": "{{ params.x }}"}}),
        "http.body": (
            "action.http",
            {"url": base + "/b", "method": "POST", "body": "{{ params.x }}"},
        ),
        "http.json": (
            "action.http",
            {"url": base + "/j", "method": "PUT", "json": {"a": "{{ params.x }}"}},
        ),
        "notify.json": ("action.notify", {"url": base + "/n", "json": {"a": "{{ params.x }}"}}),
        "notify.body": ("action.notify", {"url": base + "/n", "body": "{{ params.x }}"}),
        "notify.header": (
            "action.notify",
            {"url": base + "/n", "headers": {"X-A": "{{ params.x }}"}},
        ),
    }
    smuggled = 0
    for _field, (node_type, data) in fields.items():
        for template in [*PAYLOADS, "v\r\nX-Injected: 1", "v\r\n\r\nGET /smuggled HTTP/1.1"]:
            payload = template.format(m=marker)
            Recorder.seen.clear()
            execute(node(node_type, data), context(tmp_path, {"x": payload}, egress=policy))
            counts["injection tried"] += 1
            for request in Recorder.seen:
                if "X-Injected" in request["headers"] or request["path"] == "/smuggled":
                    smuggled += 1
            if marker.exists():
                counts["injection executed"] += 1
                marker.unlink()
    counts["injection smuggled"] += smuggled
    assert smuggled == 0
    assert not marker.exists()


# --- Jinja sandbox escapes ---------------------------------------------------------------

ESCAPES = [
    # CVE-2016-10745: str.format reaching attributes.
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ '{0.__globals__}'.format(lipsum) }}",
    "{{ '{0.__init__.__globals__[os]}'.format(cycler) }}",
    # CVE-2019-10906: str.format_map.
    "{{ '{a.__class__.__mro__}'.format_map({'a': ''}) }}",
    "{{ '{a.__globals__}'.format_map({'a': lipsum}) }}",
    # CVE-2024-56326: an indirect reference to str.format.
    "{% set f = '{0.__class__.__mro__}'.format %}{{ f('') }}",
    "{{ ('{0.__globals__}'.format)(lipsum) }}",
    "{% set d = {'f': '{0.__globals__}'.format} %}{{ d.f(lipsum) }}",
    "{{ ['{0.__globals__}'.format][0](lipsum) }}",
    # CVE-2025-27516: the attr filter fetching format.
    "{{ '{0.__globals__}' | attr('format') | list }}",
    "{{ ('{0.__globals__}' | attr('format'))(lipsum) }}",
    "{{ ('{0.__class__.__init__.__globals__}' | attr('format'))(cycler) }}",
    # Classic attribute walks.
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''|attr('__class__')|attr('__mro__') }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('touch {m}').read() }}",
    "{{ cycler.__init__.__globals__.os.system('touch {m}') }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ range.__self__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ dict.__base__.__subclasses__() }}",
    "{{ (params|attr('__class__')).__mro__ }}",
    "{{ params.__class__.__init__.__globals__ }}",
    "{{ ''.join.__self__.__class__ }}",
    "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{{ c }}{% endfor %}",
    "{{ config }}{{ request }}{{ self }}",
    "{% import 'os' as os %}{{ os }}",
    "{% include '/etc/passwd' %}",
    "{% extends '/etc/passwd' %}",
    "{{ '%s' % lipsum.__globals__ }}",
    "{{ lipsum|attr('\\x5f\\x5fglobals\\x5f\\x5f') }}",
    "{{ ''['\\x5f\\x5fclass\\x5f\\x5f'] }}",
    "{{ params['__class__'] }}",
]
LEAKS = ("<class", "<module", "<function", "<built-in", "__builtins__", "root:x:0", "Popen")


def test_sandbox_escapes_fail(tmp_path: Path, counts: Counter[str]) -> None:
    marker = tmp_path / "PWNED"
    escaped: list[str] = []
    for template in ESCAPES:
        source = template.replace("{m}", str(marker))
        for step in (
            node("action.command", {"argv": ["echo", source]}),
            node("logic.fail", {"message": source}),
            node("action.sleep", {"seconds": source}),
        ):
            outcome = execute(step, context(tmp_path, {"x": 1}))
            counts["sandbox escape tried"] += 1
            text = json.dumps(outcome.outputs) + (outcome.error_message or "")
            if marker.exists() or (
                any(leak in text for leak in LEAKS) and outcome.error_category != "TEMPLATE"
            ):
                escaped.append(source)
            if marker.exists():
                marker.unlink()
    counts["sandbox escape escaped"] += len(escaped)
    assert escaped == []


# --- template bombs ------------------------------------------------------------------------

BOMBS = [
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for a in range(3000) %}{% for b in range(3000) %}{% for c in range(3000) %}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "{% for c in 'x' * 1000000 %}{% for d in 'y' * 1000000 %}{% endfor %}{% endfor %}",
    "{% set ns = namespace(a='x') %}{% for i in range(80) %}{% set ns.a = ns.a ~ ns.a %}"
    "{% endfor %}{{ ns.a }}",
    "{% set ns = namespace(a=['x']) %}{% for i in range(80) %}{% set ns.a = ns.a + ns.a %}"
    "{% endfor %}{{ ns.a | length }}",
    "{{ 'x' * 10 ** 12 }}",
    "{{ 9 ** (9 ** 9) }}",
    "{{ ('x' * 1000000) | replace('x', 'x' * 1000) }}",
    "{{ ('x' * 1000000).replace('x', 'xx') }}",
    "{{ '%999999999d' % 1 }}",
    "{{ '%*d' % (999999999, 1) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ '{:>{}}'.format(1, 999999999) }}",
    "{{ 'a' | center(999999999) }}",
    "{{ 'a'.ljust(999999999) }}",
    "{{ 'a\\nb' | indent(999999999) }}",
    "{{ lipsum(1000000) }}",
    "{{ range(100000) | list | join(',') * 100 }}",
    "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{% macro f(n) %}{% for i in range(99999) %}{{ caller() if caller else '' }}{% endfor %}"
    "{% endmacro %}{% call f(1) %}{% call f(1) %}x{% endcall %}{% endcall %}",
    "{{ params.big ~ params.big ~ params.big }}",
    "{% for x in params.big %}{% for y in params.big %}{% endfor %}{% endfor %}",
]


def test_template_bombs_fail_fast_and_free_the_worker(tmp_path: Path, counts: Counter[str]) -> None:
    hung: list[str] = []
    passed: list[str] = []
    params = {"big": "z" * 600_000}
    for bomb in BOMBS:
        for step in (
            node("action.command", {"argv": ["echo", bomb]}, timeout_s=5),
            node("action.command", {"command": "echo {{ '' }}" + bomb, "shell": True}, timeout_s=5),
            node("action.http", {"url": "http://192.0.2.1/" + bomb}, timeout_s=5),
        ):
            counts["template bomb tried"] += 1
            outcome = run_bounded(step, context(tmp_path, params))
            if outcome is None:
                hung.append(bomb)
            elif outcome.error_category != ErrorCategory.TEMPLATE:
                passed.append(f"{bomb}: {outcome.error_category} {outcome.error_message}")
    counts["template bomb hung workers"] += len(hung)
    counts["template bomb not stopped"] += len(passed)
    assert hung == []
    assert passed == []


# --- path traversal in cwd -------------------------------------------------------------------

TRAVERSALS = [
    "..",
    "../..",
    "../../../../../../etc",
    "/etc",
    "/",
    "//etc",
    "a/../../b",
    "./../x",
    "{{ params.x }}",
    "sub/{{ params.x }}",
    "/proc/self/cwd",
    "/proc/1/root/etc",
    "~/../..",
    "....//....//etc",
    "a/b/../../../../etc",
]


def test_cwd_never_leaves_the_working_directory(tmp_path: Path, counts: Counter[str]) -> None:
    left: list[str] = []
    work = tmp_path / "work"
    for cwd in TRAVERSALS:
        for value in ("../../../../etc", "/etc", "..", "a/../.."):
            step = node("action.command", {"argv": ["pwd"], "cwd": cwd})
            outcome = execute(step, context(tmp_path, {"x": value}))
            counts["path traversal tried"] += 1
            if outcome.succeeded:
                where = Path(outcome.outputs["stdout"].strip()).resolve()
                if not where.is_relative_to(work.resolve()):
                    left.append(f"{cwd} ({value}) -> {where}")
    counts["path traversal escaped"] += len(left)
    assert left == []


# --- SSRF ------------------------------------------------------------------------------------


def ssrf_targets(port: int) -> list[str]:
    hosts = [
        "127.0.0.1",
        "localhost",
        "127.1",
        "127.0.1",
        "0x7f000001",
        "0x7f.0x0.0x0.0x1",
        "2130706433",
        "017700000001",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "0.0.0.0",
        "0",
        "[::]",
        "127.0.0.1.",
        "LOCALHOST",
        "localhost.",
        "127.255.255.254",
    ]
    urls = [f"http://{h}:{port}/hit" for h in hosts]
    urls += [f"http://user:pass@{h}:{port}/hit" for h in ("127.0.0.1", "localhost")]
    urls += [f"https://{h}:{port}/hit" for h in ("127.0.0.1", "[::1]")]
    urls += [
        f"http://169.254.169.254:{port}/latest/meta-data/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[fe80::1]/",
        "http://metadata.google.internal.localhost/",
    ]
    return urls


def test_ssrf_targets_are_denied(tmp_path: Path, web: int, counts: Counter[str]) -> None:
    reached: list[str] = []

    # A name the policy allows, resolving to the recording server: every redirect from it
    # to a denied target must be refused.
    def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"] if host == "public.test" else system_resolver(host, port)

    policy = EgressPolicy(allow=parse_rules("public.test"), resolver=resolver)
    targets = ssrf_targets(web)
    redirects = [
        f"http://public.test:{web}/redirect?to=" + urllib.parse.quote(t, safe="") for t in targets
    ]
    chained = f"http://public.test:{web}/redirect?to=" + urllib.parse.quote(redirects[0], safe="")
    for url in [*targets, *redirects, chained]:
        for node_type in ("action.http", "action.notify"):
            Recorder.seen.clear()
            outcome = run_bounded(
                node(node_type, {"url": url}, timeout_s=5), context(tmp_path, {}, egress=policy)
            )
            counts["ssrf tried"] += 1
            if outcome is None:
                counts["ssrf hung workers"] += 1
            hit = any(r["path"] in ("/hit", "/latest/meta-data/") for r in Recorder.seen)
            if hit or (outcome is not None and outcome.succeeded):
                reached.append(url)
    counts["ssrf reached"] += len(reached)
    assert reached == []


# --- secret exfiltration by transformation -----------------------------------------------

SECRET = "Tr0ub4dor&3-horse/battery+staple"
TRANSFORMS = [
    "{{ secrets.K }}",
    "{{ secrets.K | upper }}",
    "{{ secrets.K | lower }}",
    "{{ secrets.K | title }}",
    "{{ secrets.K | capitalize }}",
    "{{ secrets.K.swapcase() }}",
    "{{ secrets.K | reverse | join }}",
    "{{ secrets.K[::-1] }}",
    "{{ secrets.K | urlencode }}",
    "{{ secrets.K | tojson }}",
    "{{ {'k': secrets.K} | tojson }}",
    "{{ 'x=%s' | format(secrets.K) }}",
    "{{ 'pre' ~ secrets.K ~ 'post' }}",
    "{{ secrets.K.encode().hex() if false else secrets.K | string }}",
    "{{ secrets | tojson }}",
    "{{ secrets.values() | list }}",
    "{{ secrets.K | list | join('') }}",
]
SHELL_TRANSFORMS = [
    'printf %s "$S" | base64',
    'printf %s "pad$S" | base64',
    'printf %s "$S" | base64 | tr -d "\\n" | tr "+/" "-_"',
    'printf %s "$S" | rev',
    'printf %s "$S" | tr a-z A-Z',
    'printf %s "$S" | od -An -tx1 | tr -d " \\n"',
    'python3 -c \'import os, urllib.parse; print(urllib.parse.quote(os.environ["S"], safe=""))\'',
    "python3 -c 'import json, os; print(json.dumps(os.environ[\"S\"]))'",
    'printf %s "$S" >&2; exit 1',
]


def plain_forms(secret: str) -> list[str]:
    raw = secret.encode()
    return [
        secret,
        secret.upper(),
        secret.lower(),
        secret[::-1],
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote(secret),
        json.dumps(secret)[1:-1],
        raw.hex(),
    ]


def test_secrets_never_leave_in_plain_or_derived_form(tmp_path: Path, counts: Counter[str]) -> None:
    leaked: list[str] = []
    forms = plain_forms(SECRET)
    steps = [node("action.command", {"argv": ["echo", t]}) for t in TRANSFORMS]
    steps += [node("logic.fail", {"message": t}) for t in TRANSFORMS]
    steps += [node("action.command", {"argv": ["echo", "{{ params[" + "secrets.K" + "] }}"]})]
    steps += [node("action.command", {"argv": ["echo", "{{ params[secrets.K | upper] }}"]})]
    steps += [
        node("action.command", {"command": c, "shell": True, "env": {"S": "{{ secrets.K }}"}})
        for c in SHELL_TRANSFORMS
    ]
    for step in steps:
        ctx = context(tmp_path, {}, secrets={"K": SECRET}, secrets_to_mask=[SECRET])
        outcome = execute(step, ctx)
        counts["secret exfiltration tried"] += 1
        text = json.dumps(outcome.outputs) + (outcome.error_message or "")
        unescaped = json.loads(json.dumps(text))
        if any(f.lower() in unescaped.lower() for f in forms):
            leaked.append(json.dumps(step["data"]))
    counts["secret exfiltration plain secrets"] += len(leaked)
    assert leaked == []
