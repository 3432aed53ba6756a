"""The store on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import asyncio

from sessions.db import Places
from sessions.store import ConversationKey, Origin, Proposal, Store


async def test_concurrent_first_messages_create_one_session(db_url: str) -> None:
    stores = [Store(db_url) for _ in range(5)]  # separate caches, like replicas
    await stores[0].upgrade()
    key = ConversationKey("slack", "T1", "C1", "1700000000.000100")
    try:
        ids = await asyncio.gather(*(stores[i % 5].session_id_for(key) for i in range(50)))
        assert len(set(ids)) == 1
    finally:
        for s in stores:
            await s.close()


async def test_session_survives_restart(db_url: str) -> None:
    key = ConversationKey("cli", "local", "terminal", "incident-42")
    first = Store(db_url)
    await first.upgrade()
    sid = await first.session_id_for(key)
    await first.update_session(sid, current_service="checkout")
    turn = await first.create_turn(sid, "req_1", "diagnose checkout", "alice", "inst-a")
    await first.update_turn(turn, "completed", intent="diagnose", answer={"summary": "ok"})
    await first.close()

    second = Store(db_url)
    await second.upgrade()  # idempotent at every start
    try:
        assert await second.find_session_id(key) == sid
        conv = await second.get_session(sid)
        assert conv is not None and conv.current_service == "checkout"
        turns = await second.recent_turns(sid)
        assert [(t.text, t.status, t.answer) for t in turns] == [("diagnose checkout", "completed", {"summary": "ok"})]
    finally:
        await second.close()


async def test_event_claimed_once(store: Store) -> None:
    results = await asyncio.gather(*(store.claim_event("slack", "Ev123") for _ in range(10)))
    assert results.count(True) == 1
    assert await store.claim_event("slack", "Ev124") is True
    assert await store.claim_event("teams", "Ev123") is True  # ids are per platform


async def test_a_burst_of_claims_on_two_replicas_takes_each_event_once(db_url: str) -> None:
    """Claims arriving together go to the database together (group commit); each event is still taken
    exactly once across replicas, and an event whose copies share a key (a channel mention arrives as
    app_mention and as message, with different event ids) is taken by one copy only."""
    replicas = [Store(db_url) for _ in range(2)]
    await replicas[0].upgrade()
    try:
        first_copies = [(f"msg:C1:{i}", f"EvA{i}") for i in range(60)]
        second_copies = [(f"msg:C1:{i}", f"EvB{i}") for i in range(60)]
        redeliveries = [(f"msg:C1:{i}", f"EvA{i}") for i in range(60)]
        claims = [(replica, keys) for keys in [*first_copies, *second_copies, *redeliveries] for replica in replicas]
        results = await asyncio.gather(*(replica.claim_event("slack", *keys) for replica, keys in claims))
        taken: dict[str, int] = {}
        for (_, keys), won in zip(claims, results):
            taken[keys[0]] = taken.get(keys[0], 0) + won
        assert taken == {f"msg:C1:{i}": 1 for i in range(60)}
        # what was not taken stays taken later, on either replica; a new event is taken at once
        assert not await replicas[1].claim_event("slack", "msg:C1:7", "EvC7")
        assert await replicas[1].claim_event("slack", "msg:C1:60", "EvA60")
    finally:
        for replica in replicas:
            await replica.close()


async def test_approval_transition_is_atomic(store: Store) -> None:
    approval = await store.create_approval(
        Proposal("restart", "shop/checkout", {}, "restart 3 pods of shop/checkout", Origin("U1", "slack")),
        ttl_seconds=60,
    )
    results = await asyncio.gather(
        *(store.transition_approval(approval.id, "pending", "approved", decided_by=f"U{i}") for i in range(10))
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0].status == "approved"
    assert (await store.get_approval(approval.id)).decided_by == winners[0].decided_by


async def test_expired_approval_cannot_be_approved(store: Store) -> None:
    approval = await store.create_approval(
        Proposal("scale", "shop/checkout", {"replicas": 5}, "replicas 3 → 5", Origin("U1", "cli")), ttl_seconds=0
    )
    assert await store.transition_approval(approval.id, "pending", "approved", decided_by="U2") is None
    assert [a.id for a in await store.due_for_expiry()] == [approval.id]


async def test_orphaned_turns_are_interrupted_once(store: Store) -> None:
    sid = await store.session_id_for(ConversationKey("slack", "T1", "C1", "1.0"))
    await store.register("dead", lease_seconds=0.8)
    turn = await store.create_turn(sid, "req_x", "diagnose checkout", "U1", "dead")
    await store.update_turn(turn, "running")
    await store.register("alive", lease_seconds=0.8)
    other = await store.create_turn(sid, "req_y", "logs checkout", "U1", "alive")
    await store.update_turn(other, "running")
    # "dead" took its lease a second ago and let it expire; "alive" renewed its own in time
    await asyncio.sleep(0.5)
    assert await store.renew_lease("alive", lease_seconds=0.8)
    await asyncio.sleep(0.5)
    assert not await store.renew_lease("dead", lease_seconds=0.8)  # an expired lease is lost, not renewed
    found = await store.interrupt_orphans("me", stale_after=0.8)
    assert [i.turn.request_id for i in found] == ["req_x"]
    assert found[0].conversation.key.thread == "1.0"
    assert await store.interrupt_orphans("me2", stale_after=0.8) == []
    assert (await store.get_turn("req_y")).status == "running"


async def test_a_turn_recorded_and_started_at_once_waits_for_another_replicas_earlier_turn(store: Store) -> None:
    key = ConversationKey("slack", "T1", "C1", "2.0")
    first = await store.record_turn(key, None, "req_a", "diagnose checkout", "U1", "replica-a", start=True,
                                    placeholder={"channel": "C1", "ts": "2.1"})
    assert first.start is not None and first.start.conversation is not None
    assert first.start.conversation.id == first.session_id
    running = await store.get_turn("req_a")
    assert running.status == "running" and running.placeholder == {"channel": "C1", "ts": "2.1"}
    second = await store.record_turn(key, None, "req_b", "logs checkout", "U2", "replica-b", start=True)
    assert second.start is not None and second.start.blocked  # recorded, but waits for replica-a's turn
    assert (await store.get_turn("req_b")).status == "queued"
    await store.update_turn(first.turn_id, "completed")
    started = await store.start_turn(second.turn_id, "replica-b")
    assert started.conversation is not None and (await store.get_turn("req_b")).status == "running"
    # a retry of the write (its commit landed, its answer was lost) finds the same rows, still running
    again = await store.record_turn(key, None, "req_b", "logs checkout", "U2", "replica-b", start=True)
    assert (again.session_id, again.turn_id) == (second.session_id, second.turn_id)
    assert again.start is not None and again.start.conversation is not None


async def test_a_turns_finish_takes_the_next_place_ahead_of_waiting_records() -> None:
    """Under a backlog, finishing a turn (which answers a person and frees a slot) goes before recording
    new requests, which can wait; among equals, places go in order, and a waiter that gives up keeps none."""
    places = Places(1)
    order: list[str] = []

    async def use(name: str, ahead: bool = False) -> None:
        await places.acquire(ahead=ahead)
        order.append(name)
        await asyncio.sleep(0)
        places.release()

    await places.acquire()
    waiting = [asyncio.create_task(use("record 1")), asyncio.create_task(use("record 2"))]
    gives_up = asyncio.create_task(use("finish that gave up", ahead=True))
    waiting.append(asyncio.create_task(use("finish", ahead=True)))
    await asyncio.sleep(0)
    gives_up.cancel()
    places.release()
    await asyncio.gather(*waiting)
    assert order == ["finish", "record 1", "record 2"]
    async with asyncio.timeout(1):  # every place came back
        await places.acquire()
