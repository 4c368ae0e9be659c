"""The OpenAPI schema fuzzed with schemathesis against the live node: no input makes it fail
with a 5xx, and every error is a JSON body with a code and a message. The fuzzing token is a
trade token of its own (its order rate limit is separate); a HALTED latch it may set is cleared
afterwards."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from .conftest import auth

EXAMPLES = 10  # per operation


def test_no_input_makes_the_api_fail(live, web_tokens):
    schema = schemathesis.openapi.from_url(f"{live.url}/api/v1/openapi.json")
    headers = auth(web_tokens["fuzz"])
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 20
    tried: dict[str, int] = {}
    try:
        for op in operations:

            @given(case=op.as_strategy())
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def check(case):
                label = f"{case.method.upper()} {case.path}"
                r = case.call(base_url=live.url, headers=headers, timeout=30)
                tried[label] = tried.get(label, 0) + 1
                assert r.status_code < 500, (
                    label,
                    case.path_parameters,
                    case.query,
                    case.body,
                    r.status_code,
                    r.text[:300],
                )
                if r.status_code >= 400:
                    body = r.json()
                    assert body.get("error") and body.get("message"), (label, r.text[:300])

            check()
    finally:
        httpx.post(
            f"{live.url}/api/v1/trading/resume",
            headers=headers,
            json={"reason": "fuzzing done"},
            timeout=30,
        )
        live.web.security.login_limit._hits.clear()
    assert len(tried) == len(operations) and min(tried.values()) >= 1
