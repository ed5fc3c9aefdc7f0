"""Ids carry their chain's hash tag; every key of a chain lands in one cluster slot."""

from __future__ import annotations

from redis.crc import key_slot

from gateway.ids import new_id
from gateway.store import Keys, new_tag, tag_of, tagged_id


def test_tagged_ids_look_like_every_other_id_and_give_back_their_tag() -> None:
    tag = new_tag()
    made = tagged_id("resp", tag)
    assert len(made) == len(new_id("resp")) and made.startswith("resp_" + tag)
    assert tag_of(made) == tag
    assert tag_of(tagged_id("msg", tag)) == tag
    assert tagged_id("resp", tag) != made


def test_ids_from_elsewhere_have_no_tag() -> None:
    for foreign in ("resp_nope", "msg_client_kept", "rs_" + "A" * 48, "resp_" + "ab" * 23, "resp-" + "ab" * 24, ""):
        assert tag_of(foreign) is None


def test_one_chain_one_slot_and_chains_spread() -> None:
    keys = Keys("mlxgw")
    tag = new_tag()
    response, item = tagged_id("resp", tag), tagged_id("msg", tag)
    names = (keys.record(tag, response), keys.item(tag, item), keys.events(tag, response),
             keys.space(tag) + ":c:" + response, keys.space(tag) + ":o:" + response)
    slots = {key_slot(name.encode()) for name in names}
    assert len(slots) == 1
    assert keys.record(tag, response) == f"mlxgw:{{{tag}}}:r:{response}"
    assert len({key_slot(keys.space(new_tag()).encode()) for _ in range(64)}) > 32
