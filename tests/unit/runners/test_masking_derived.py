"""Secrets are masked in derived forms too, and in every error message."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

import pytest

from conveyor.executor.engine import upstream_among, upstream_nodes
from conveyor.executor.runners import ErrorCategory, execute
from conveyor.executor.runners.base import Masker

SECRET = "s3cr3t-T0ken/+=value"


def forms(secret: str) -> list[str]:
    raw = secret.encode()
    return [
        secret,
        secret.upper(),
        secret.lower(),
        secret.swapcase(),
        secret[::-1],
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        base64.b64encode(b"x" + raw).decode(),
        base64.b64encode(b"xy" + raw + b"z").decode(),
        base64.urlsafe_b64encode(b"Authorization: " + raw).decode(),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        json.dumps(secret),
        json.dumps({"k": secret + '"\n'}),
        raw.hex(),
    ]


@pytest.mark.parametrize("form", forms(SECRET))
def test_derived_forms_are_masked(form: str) -> None:
    masked = Masker([SECRET]).text(f"before {form} after")
    for shown in [*forms(SECRET)[:5], SECRET[2:-2]]:
        assert shown not in masked
    assert masked.startswith("before ") and masked.endswith(" after")
    assert "***" in masked


def test_short_secrets_are_masked_only_as_they_are() -> None:
    assert Masker(["abc"]).text("abc ABC cba") == "*** *** cba"


SCRIPTS = [
    "{{ secrets.TOKEN | upper }}",
    "{{ secrets.TOKEN | reverse | join }}",
    "{{ secrets.TOKEN | urlencode }}",
    "{{ secrets.TOKEN | tojson }}",
    "{{ secrets.TOKEN | title }}",
]


@pytest.mark.parametrize("template", SCRIPTS)
def test_transformed_secrets_never_reach_outputs(make_ctx: Any, template: str) -> None:
    ctx = make_ctx(secrets_to_mask=[SECRET])
    ctx.scope["secrets"] = {"TOKEN": SECRET}
    node = {"id": "n", "type": "action.command", "data": {"argv": ["echo", template]}}
    outcome = execute(node, ctx)
    text = json.dumps(outcome.outputs)
    assert SECRET.upper() not in text and SECRET not in text and SECRET[::-1] not in text
    assert "***" in outcome.outputs["stdout"]


def test_a_fail_message_built_from_a_secret_is_masked(make_ctx: Any) -> None:
    ctx = make_ctx(secrets_to_mask=[SECRET])
    ctx.scope["secrets"] = {"TOKEN": SECRET}
    node = {
        "id": "n",
        "type": "logic.fail",
        "data": {"message": "bad {{ secrets.TOKEN | upper }} {{ secrets.TOKEN | urlencode }}"},
    }
    outcome = execute(node, ctx)
    assert not outcome.succeeded
    assert outcome.error_message == "bad *** ***"


def test_a_template_error_showing_a_secret_is_masked(make_ctx: Any) -> None:
    ctx = make_ctx(secrets_to_mask=[SECRET])
    ctx.scope["secrets"] = {"TOKEN": SECRET}
    node = {
        "id": "n",
        "type": "action.command",
        "data": {"argv": ["echo", "{{ params[secrets.TOKEN | lower] }}"]},
    }
    outcome = execute(node, ctx)
    assert outcome.error_category == ErrorCategory.TEMPLATE
    assert SECRET.lower() not in (outcome.error_message or "")


def test_upstream_nodes_follow_parents_and_the_foreach_group() -> None:
    plan = {
        "nodes": {
            "start": {"parents": []},
            "a": {"parents": [{"node": "start", "handle": None}]},
            "side": {"parents": [{"node": "start", "handle": None}]},
            "loop": {"parents": [{"node": "a", "handle": None}]},
            "body": {"parents": [], "group": "loop"},
            "join": {"parents": [{"node": "a", "handle": None}, {"node": "side", "handle": None}]},
            "later": {"parents": [{"node": "join", "handle": None}]},
        }
    }
    assert upstream_nodes(plan, "a") == {"start"}
    assert upstream_nodes(plan, "body") == {"loop", "a", "start"}
    assert upstream_nodes(plan, "later") == {"join", "a", "side", "start"}
    assert "later" not in upstream_nodes(plan, "join")
    # The names a template reads, narrowed to the upstream ones, the walk stopping early.
    assert upstream_among(plan, "later", ["a", "later", "nowhere"]) == {"a"}
    assert upstream_among(plan, "body", ["start", "loop", "side"]) == {"start", "loop"}
    assert upstream_among(plan, "a", []) == set()
