"""The gateway the fuzz tests run against: limits, policies, clients and scripted models the generated requests
run into, and the model names request bodies draw from."""

from __future__ import annotations

MANIFEST = """
server:
  keepalive_seconds: 0.2
  max_body_bytes: 262144      # long strings cross it now and then: 413
  max_input_items: 24
  max_tools: 12
store:
  max_chain_depth: 6          # chains from the id pool reach it: 400
policies:
  strict:
    tools: {custom: reject, local_shell: drop, names: {forbidden: reject}, types: {web_search: drop}}
    items: {unknown: reject, reasoning: drop, images: reject}
  dropper:
    tools: {hosted: drop, unknown: drop, namespace: drop}
    items: {unknown: drop}
clients:
  - name: codex
    match: {originator: "^codex"}
    policy: dropper
  - name: strict-cli
    match: {user-agent: "^strict/"}
    policy: strict
    models: [scripted]
models:
  - name: scripted
    aliases: [demo]
    adapter: scripted
    script:
      chunk_chars: 4
      steps:
        - reasoning: "I should run a command."
          text: "Running it."
          calls:
            - {function: exec_command, arguments: {cmd: "echo hi"}}
            - {custom: apply_patch, input: "*** Begin Patch\\n*** Add File: a.txt\\n+hi\\n*** End Patch\\n"}
        - text: "Searching."
          calls: [{function: docs__search, arguments: '{"q": "x"}'}, {function: exec_command, arguments: "not json"}]
        - reasoning: "done"
          text: "The command printed hi."
  - name: echo
    adapter: scripted
    script: {mode: echo, chunk_chars: 700}
  - name: slow                # background runs still going while later cases poll, replay, cancel and chain
    adapter: scripted
    script: {chunk_chars: 1, delay_ms: 4, first_delay_ms: 250, steps: [{reasoning: "hmm", text: "%s"}]}
  - name: strict
    adapter: scripted
    policy: strict
    script: {chunk_chars: 2, steps: [{text: "ok", calls: [{custom: apply_patch, input: "x"}]}]}
""" % ("y" * 40)

MODELS = ["scripted", "demo", "echo", "strict"]
