"""Normalisation of agent histories for strict chat templates (pure: no MLX, real Jinja)."""

from __future__ import annotations

import jinja2
import pytest

from gateway.adapters.base import GenerationRequest, TemplateMessage, ToolCallRecord
from gateway.adapters.mlx.render import RenderRules, normalize_for_template, probe_rules, template_kwargs

CODEX_START = [
    TemplateMessage(role="developer", content="You are Codex."),
    TemplateMessage(role="developer", content="Sandbox: workspace-write."),
    TemplateMessage(role="user", content="<environment_context>cwd</environment_context>"),
    TemplateMessage(role="user", content="list the files"),
]


def test_developer_messages_become_one_leading_system_message() -> None:
    out = normalize_for_template(CODEX_START, RenderRules())
    assert out[0] == {"role": "system", "content": "You are Codex.\n\nSandbox: workspace-write."}
    assert [m["role"] for m in out] == ["system", "user", "user"]


def test_a_later_system_message_stays_in_place_or_joins_the_leading_one() -> None:
    later = [TemplateMessage(role="assistant", content="ok"), TemplateMessage(role="developer", content="Now read-only.")]
    messages = [*CODEX_START, *later]
    before = normalize_for_template(CODEX_START + later[:1], RenderRules())
    kept = normalize_for_template(messages, RenderRules(late_system="system"))
    assert kept == [*before, {"role": "system", "content": "Now read-only."}]
    # A template that rejects it there: in place as a marked user turn, so everything before it is unchanged.
    as_user = normalize_for_template(messages, RenderRules(late_system="user"))
    assert as_user == [*before, {"role": "user", "content": "System: Now read-only."}]
    merged = normalize_for_template(messages, RenderRules(late_system="merge"))
    assert merged[0]["content"].endswith("\n\nNow read-only.")
    assert [m["role"] for m in merged].count("system") == 1


def test_templates_without_a_system_role_get_it_in_the_first_user_turn() -> None:
    out = normalize_for_template(CODEX_START, RenderRules(system_role=False, late_system="user", merge_users=True))
    assert out == [
        {"role": "user", "content": "You are Codex.\n\nSandbox: workspace-write.\n\n"
                                    "<environment_context>cwd</environment_context>\n\nlist the files"},
    ]


def test_tool_calls_keep_ids_arguments_become_objects_and_reasoning_travels() -> None:
    messages = [
        TemplateMessage(role="user", content="go"),
        TemplateMessage(role="assistant", reasoning="think first", tool_calls=[
            ToolCallRecord(call_id="call_1", name="exec_command", arguments='{"cmd": "ls"}'),
            ToolCallRecord(call_id="call_2", name="apply_patch", arguments="*** Begin Patch"),
        ]),
        TemplateMessage(role="tool", tool_call_id="call_1", name="exec_command", content="a.txt"),
    ]
    out = normalize_for_template(messages, RenderRules())
    assert out[1] == {
        "role": "assistant", "content": "", "reasoning_content": "think first",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "exec_command", "arguments": {"cmd": "ls"}}},
            {"id": "call_2", "type": "function", "function": {"name": "apply_patch", "arguments": "*** Begin Patch"}},
        ],
    }
    assert out[2] == {"role": "tool", "content": "a.txt", "tool_call_id": "call_1", "name": "exec_command"}


@pytest.mark.parametrize(
    ("effort", "manifest", "expected"),
    [
        (None, {}, None),
        (None, {"enable_thinking": False}, False),
        ("none", {}, False),
        ("minimal", {"enable_thinking": True}, False),
        ("low", {"enable_thinking": False}, True),
        ("high", {}, True),
    ],
)
def test_thinking_follows_reasoning_effort_then_the_manifest(
    effort: str | None, manifest: dict, expected: bool | None
) -> None:
    request = GenerationRequest(request_id="r", messages=[], reasoning_effort=effort, chat_template_kwargs=manifest)
    assert template_kwargs(request).get("enable_thinking") == expected


def _jinja(source: str):  # type: ignore[no-untyped-def]
    env = jinja2.Environment()

    def fail(message: str) -> None:
        raise jinja2.TemplateError(message)

    env.globals["raise_exception"] = fail
    template = env.from_string(source)
    return lambda messages: template.render(messages=messages)


LENIENT = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
STRICT_SYSTEM = (
    "{% for m in messages %}{% if m.role == 'system' and not loop.first %}{{ raise_exception('system first') }}"
    "{% endif %}<{{ m.role }}>{{ m.content }}{% endfor %}"
)
NO_SYSTEM_ALTERNATING = (
    "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
    "{% if loop.index0 > 0 and m.role == messages[loop.index0 - 1].role %}{{ raise_exception('alternate') }}{% endif %}"
    "<{{ m.role }}>{{ m.content }}{% endfor %}"
)
DROPS_LATE_SYSTEM = (
    "{% for m in messages %}{% if m.role != 'system' or loop.first %}{{ m.content }}{% endif %}{% endfor %}"
)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (LENIENT, RenderRules()),
        (STRICT_SYSTEM, RenderRules(late_system="user")),
        (DROPS_LATE_SYSTEM, RenderRules(late_system="user")),
        (NO_SYSTEM_ALTERNATING, RenderRules(late_system="user", system_role=False, merge_users=True)),
    ],
)
def test_probe_finds_what_a_template_accepts(template: str, expected: RenderRules) -> None:
    assert probe_rules(_jinja(template)) == expected


def test_manifest_overrides_the_probe() -> None:
    assert probe_rules(_jinja(LENIENT), "merge").late_system == "merge"
    assert probe_rules(_jinja(LENIENT), "user").late_system == "user"
    assert probe_rules(_jinja(STRICT_SYSTEM), "keep").late_system == "system"
    assert probe_rules(_jinja(NO_SYSTEM_ALTERNATING), "keep").late_system == "user"  # no system role to keep
