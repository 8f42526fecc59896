"""Rate and concurrency limits per API key, one limit for the whole service.

Each worker of each instance decides a request in its own memory, a few dict operations with
no round trip, within an allowance it claimed at its last sync. Once per
KEY_LIMITS_SYNC_SECONDS it syncs through Postgres (`auth/sharing.py`), one worker at a time:
it reports what it admitted and what it has in flight, and claims its part of what each key it
serves has left, less what the other workers claimed. A worker spends no more than it claimed,
so together the workers never admit more than the limit. A key a worker did not serve since its
last sync gets a small first allowance there (every worker's is known to the others, who count
it as claimed), and its full part from the next sync on.

Written by hand because the maintained limiters ask their store on every request: `limits`
needs Redis, Memcached, MongoDB or etcd, and pyrate-limiter's Postgres bucket runs a query per
request, one more round trip on a request that makes one. The count is a sliding window
counter: the previous window's requests, weighted by how much of it the sliding window still
covers, plus the current window's.
"""

import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from uuid import UUID, uuid4

from branchloans.config import Settings
from branchloans.problems import ProblemError

POLICY = '"per-key"'  # the policy's name in the RateLimit-Policy and RateLimit fields

Slot = tuple[str, int]  # a key's name and a rate window's number (seconds since 1970 // window)


class TooManyRequestsError(ProblemError):
    """A key went over its rate or its concurrency limit (`limit`)."""

    def __init__(self, limit: str, detail: str, retry_after: int, headers: dict[str, str]) -> None:
        self.limit = limit
        super().__init__(
            429,
            detail,
            slug="too-many-requests",
            title="Too many requests",
            headers={"Retry-After": str(retry_after), **headers},
        )


@dataclass(frozen=True)
class Claim:
    """What a worker holds of a key until its next sync."""

    allowance: int  # requests it may still admit
    in_flight: int  # requests it is serving


@dataclass(frozen=True)
class SharedCounts:
    """What a sync read: every worker's admissions per key and window (this one's included),
    the other live workers' claims per key, and each other live worker's first allowance (what
    it may admit of a key it holds no claim on)."""

    hits: dict[Slot, int]
    claims: dict[str, dict[UUID, Claim]]
    first_allowances: dict[UUID, int]


@dataclass(frozen=True)
class Report:
    """What a worker writes at a sync: its admissions since the last one, and what it has in
    flight when the sync starts."""

    hits: dict[Slot, int]
    in_flight: dict[str, int]

    @property
    def keys(self) -> set[str]:
        """The keys the worker served since its last sync, or serves now."""
        return {key_name for key_name, _ in self.hits} | set(self.in_flight)


@dataclass(frozen=True)
class Plan:
    """What a sync decided for this worker: the claims it publishes, its allowance of each
    key admitted lately, and its first allowance of any other key."""

    claims: dict[str, Claim]
    allowances: dict[str, int]
    more: set[str]  # keys that have more left than this worker's allowance
    first_allowance: int
    others: SharedCounts = field(repr=False)


@dataclass(frozen=True)
class Places:
    """How many requests of a key this worker may have in flight, by what the others hold."""

    left: int  # the key's limit less the others' requests in flight
    fair: int  # this worker's share of the limit among those serving the key


class KeyQuotas:
    """One worker's view of the per-key limits (KEY_RATE_LIMIT, KEY_CONCURRENCY_LIMIT)."""

    def __init__(self, settings: Settings) -> None:
        self.worker: UUID = uuid4()
        self.rate = settings.key_rate_limit
        self.window = settings.key_rate_window_seconds
        self.concurrency = settings.key_concurrency_limit
        self.sync_seconds = settings.key_limits_sync_seconds
        # Until a sync tells who else is alive: the workers of this instance.
        self._instance_workers = settings.serve_workers
        self._hits: dict[Slot, int] = {}  # everyone's, as of the last sync
        self._unreported: dict[Slot, int] = {}
        self._allowance: dict[str, int] = {}  # what is left of each key's claim
        self._more: set[str] = set()  # keys that had more left than their allowance here
        self._claimed_at: dict[str, float] = {}  # when a spent allowance last made a sync
        # Syncs now (or waits for the sync under way), set by whoever shares the counts.
        self.claim: Callable[[], Awaitable[None]] | None = None
        self.first_allowance = self.first_allowance_among(self._instance_workers)
        self._in_flight: dict[str, int] = {}
        self._places: dict[str, Places] = {}

    async def admit(self, key_name: str) -> None:
        """Count a request of the key, and hold one of its places in flight until `release`;
        TooManyRequestsError when it may not go ahead now (and then nothing is counted).

        Only when the worker's allowance of the key is spent, and the key may have more left,
        does it wait for a sync that claims more (the requests that meet it then wait for the
        same one)."""
        slot = None
        if self.rate:
            left = self._allowance.get(key_name)
            if left is None:
                left = self.first_allowance
                self._more.add(key_name)
            elif left <= 0:
                left = await self._claimed_more(key_name)
                if left <= 0:
                    raise self._over_rate(key_name)
            self._allowance[key_name] = left - 1
            slot = (key_name, int(time.time() // self.window))
            self._unreported[slot] = self._unreported.get(slot, 0) + 1
        if not self.concurrency:
            return
        in_flight = self._in_flight.get(key_name, 0)
        places = self._places.get(key_name)
        if places is None:
            allowed = self.concurrency
        else:
            # A worker already serving the key keeps its fair share, however many the others
            # took before they saw it; one not serving it may take only what is left.
            allowed = max(places.left, places.fair) if in_flight else places.left
        if in_flight >= allowed:
            if slot is not None:  # not counted after all
                self._allowance[key_name] += 1
                if self._unreported[slot] == 1:
                    del self._unreported[slot]
                else:
                    self._unreported[slot] -= 1
            raise self._over_concurrency()
        self._in_flight[key_name] = in_flight + 1

    async def _claimed_more(self, key_name: str) -> int:
        """The key's allowance after a sync, when one may give it more; else 0. At most one
        such sync per key and sync interval: a key at its last requests, split among busy
        workers, would otherwise have each of its requests wait for one."""
        now = time.monotonic()
        if (
            self.claim is None
            or key_name not in self._more
            or now - self._claimed_at.get(key_name, -math.inf) < self.sync_seconds
        ):
            return 0
        self._claimed_at[key_name] = now
        await self.claim()
        return self._allowance.get(key_name, self.first_allowance)

    def release(self, key_name: str) -> None:
        """Give back the place `admit` took."""
        if not self.concurrency:
            return
        left = self._in_flight[key_name] - 1
        if left:
            self._in_flight[key_name] = left
        else:
            del self._in_flight[key_name]

    def report(self) -> Report:
        """What a sync writes; its admissions are this worker's to report no longer, unless
        `unsent` gives them back."""
        hits, self._unreported = self._unreported, {}
        return Report(hits, dict(self._in_flight))

    def unsent(self, report: Report) -> None:
        """A report the sync could not write: its admissions count here until the next one."""
        for slot, hits in report.hits.items():
            self._unreported[slot] = self._unreported.get(slot, 0) + hits

    def plan(self, report: Report, others: SharedCounts, first_allowance: int) -> Plan:
        """This worker's allowances until the next sync. Of a key it served, it claims its
        part of what the key has left once everyone's admissions and the other workers'
        claims (their first allowances included) are counted; of another key, it keeps its
        `first_allowance`, within what the key has left."""
        served = {name for name, _ in report.hits}
        claims, allowances, more = {}, {}, set()
        for key_name in served | {name for name, _ in others.hits}:
            claimed = others.claims.get(key_name, {})
            unclaimed = others.first_allowances.keys() - claimed.keys()
            left = max(
                0,
                self._left(key_name, others.hits)
                - sum(claim.allowance for claim in claimed.values())
                - sum(others.first_allowances[worker] for worker in unclaimed),
            )
            if key_name in served:
                allowances[key_name] = self._part(left, claimed.keys())
            else:
                allowances[key_name] = min(first_allowance, left)
            if left > allowances[key_name]:
                more.add(key_name)
        for key_name in report.keys:
            claims[key_name] = Claim(
                allowances.get(key_name, first_allowance), report.in_flight.get(key_name, 0)
            )
        return Plan(claims, allowances, more, first_allowance, others)

    def apply(self, plan: Plan) -> None:
        """Take on the allowances of a sync that committed; what was admitted meanwhile is
        spent of them."""
        self._hits = plan.others.hits
        self.first_allowance = plan.first_allowance
        self._allowance = dict(plan.allowances)
        self._more = set(plan.more)
        now = time.monotonic()
        self._claimed_at = {
            key_name: at
            for key_name, at in self._claimed_at.items()
            if now - at < self.sync_seconds
        }
        for (key_name, _), hits in self._unreported.items():
            if key_name not in plan.allowances:  # first met during the sync
                self._more.add(key_name)
            self._allowance[key_name] = self._allowance.get(key_name, plan.first_allowance) - hits
        self._places = {}
        for key_name, claims in plan.others.claims.items():
            serving = [claim.in_flight for claim in claims.values() if claim.in_flight]
            if serving:
                self._places[key_name] = Places(
                    left=self.concurrency - sum(serving),
                    fair=math.ceil(self.concurrency / (len(serving) + 1)),
                )

    def alone(self) -> None:
        """Syncs have failed for a while: until one succeeds, each worker of the instance
        allows, per sync interval, its part of what it sees each key has left."""
        self._places = {}
        self.first_allowance = self.first_allowance_among(self._instance_workers)
        self._allowance = {}
        self._more = set()
        for key_name in {name for name, _ in self._unreported}:
            left = self._left(key_name, self._hits, self._unreported)
            self._allowance[key_name] = math.ceil(max(0, left) / self._instance_workers)

    def first_allowance_among(self, workers: int) -> int:
        """What a worker may admit of a key it claimed none of: its part of what the limit
        allows in one sync interval (small: the other workers count it as claimed of every
        key)."""
        if not self.rate:
            return 0
        return max(1, math.ceil(self.rate * self.sync_seconds / self.window / workers))

    def _left(self, key_name: str, *counts: dict[Slot, int]) -> int:
        """What the limit allows the key now, by the sliding count of `counts`."""
        previous_hits, current_hits, elapsed = self._window_hits(key_name, *counts)
        return math.floor(self.rate - previous_hits * (1 - elapsed) - current_hits)

    def _window_hits(self, key_name: str, *counts: dict[Slot, int]) -> tuple[int, int, float]:
        """The key's admissions in the previous and the current window, and how much of the
        current window has gone by."""
        now = time.time() / self.window
        current = int(now)
        previous_slot, current_slot = (key_name, current - 1), (key_name, current)
        return (
            sum(hits.get(previous_slot, 0) for hits in counts),
            sum(hits.get(current_slot, 0) for hits in counts),
            now - current,
        )

    def _part(self, amount: int, others: Iterable[UUID]) -> int:
        """This worker's part of `amount` split with the workers `others`: every worker
        splits alike, so with the same counts the parts add up to `amount`."""
        ordered = sorted({*others, self.worker})
        whole, extra = divmod(amount, len(ordered))
        return whole + (ordered.index(self.worker) < extra)

    def _over_concurrency(self) -> TooManyRequestsError:
        return TooManyRequestsError(
            "concurrency",
            "This API key has as many requests in flight as it may "
            f"({self.concurrency} at once); retry when one has finished.",
            1,
            {},
        )

    def _over_rate(self, key_name: str) -> TooManyRequestsError:
        reset = self._seconds_to_a_free_request(key_name)
        return TooManyRequestsError(
            "rate",
            f"This API key made more than {self.rate} requests in {self.window} s; "
            f"retry in {reset} s.",
            reset,
            {
                "RateLimit-Policy": f"{POLICY};q={self.rate};w={self.window}",
                "RateLimit": f"{POLICY};r=0;t={reset}",
            },
        )

    def _seconds_to_a_free_request(self, key_name: str) -> int:
        """When the sliding count falls one request below the limit (or, when it is below
        already and only this worker's claim is spent, the next sync)."""
        previous_hits, current_hits, elapsed = self._window_hits(
            key_name, self._hits, self._unreported
        )
        still_counted = previous_hits * (1 - elapsed)
        excess = still_counted + current_hits - (self.rate - 1)
        if excess <= 0:
            seconds = self.sync_seconds
        elif excess <= still_counted:  # the previous window's weight falls enough in this one
            seconds = excess / previous_hits * self.window
        else:  # this window's count becomes the previous one, and falls in the next
            seconds = (1 - elapsed) * self.window
            if current_hits > self.rate - 1:
                seconds += (1 - (self.rate - 1) / current_hits) * self.window
        return max(1, math.ceil(seconds))
