"""The key cache: revocation shows within its lifetime, and no later."""

import time

from branchloans.auth.service import KeyCache, _KeyRecord, parse_scopes

RECORD = _KeyRecord(name="app", key_hash="0" * 64, scopes=frozenset({"loans:read"}))


def test_cached_lookup_is_reused_within_its_lifetime() -> None:
    cache = KeyCache(ttl=60)
    cache.put("abc", RECORD)

    assert cache.get("abc") == (True, RECORD)


def test_cached_lookup_expires_so_revocation_is_seen() -> None:
    cache = KeyCache(ttl=0.05)
    cache.put("abc", RECORD)

    time.sleep(0.06)

    assert cache.get("abc") == (False, None)


def test_cache_forgets_the_oldest_unknown_ids_when_full_rather_than_growing() -> None:
    cache = KeyCache(ttl=60, max_entries=2)
    for key_id in ("a", "b", "c"):
        cache.put(key_id, None)

    assert cache.get("a") == (False, None)
    assert cache.get("c") == (True, None)


def test_a_flood_of_unknown_ids_never_pushes_out_a_real_key() -> None:
    cache = KeyCache(ttl=60, max_entries=2)
    cache.put("real", RECORD)
    for number in range(100):
        cache.put(f"made-up-{number}", None)

    assert cache.get("real") == (True, RECORD)


def test_an_unknown_id_is_remembered_for_its_own_shorter_time() -> None:
    cache = KeyCache(ttl=60, unknown_ttl=0.05)
    cache.put("guess", None)
    assert cache.get("guess") == (True, None)

    time.sleep(0.06)

    assert cache.get("guess") == (False, None)


def test_scopes_are_parsed_deduplicated_and_checked() -> None:
    assert parse_scopes("loans:read, loans:read,loans:manage") == ["loans:read", "loans:manage"]
