"""Rate and concurrency limits per API key.

Counters live in each worker's memory, and each worker of `serve --workers N` enforces 1/N of
the instance's limits: a shared store would put a round trip on every request (Postgres a row
update on one hot row per key, Redis a service our stack does not run), for limits whose job,
keeping one key from taking an instance's capacity, is per instance anyway.

The rate is a token bucket (the `token-bucket` package: a dict lookup and some arithmetic,
about 2 us per request). `limits` was tried first: its memory storage starts a thread every
10 ms to expire counters, which contends with the event loop for the GIL (bench/RESULTS.md),
and its asyncio flavour costs 20 to 45 us per request. The in-flight count has no library: a
dict of ints.
"""

import math

from token_bucket import Limiter, MemoryStorage

from branchloans.config import Settings
from branchloans.problems import ProblemError

POLICY = '"per-key"'  # the policy's name in the RateLimit-Policy and RateLimit fields


class TooManyRequestsError(ProblemError):
    """A key went over its rate or its concurrency limit."""

    def __init__(self, detail: str, retry_after: int, headers: dict[str, str]) -> None:
        super().__init__(
            429,
            detail,
            slug="too-many-requests",
            title="Too many requests",
            headers={"Retry-After": str(retry_after), **headers},
        )


class KeyQuotas:
    """One worker's share of the per-key limits (KEY_RATE_LIMIT, KEY_CONCURRENCY_LIMIT)."""

    def __init__(self, settings: Settings) -> None:
        workers = settings.serve_workers
        self.rate = settings.key_rate_limit
        self.window = settings.key_rate_window_seconds
        # A bucket of a worker's share of the rate, refilled at that share per window: bursts
        # up to the limit, then the steady rate.
        share = max(1, self.rate // workers)
        self._per_second = share / self.window
        self._buckets = MemoryStorage()
        self._limiter = Limiter(self._per_second, share, self._buckets)
        self.concurrency = settings.key_concurrency_limit
        self._share = max(1, self.concurrency // workers)
        self._in_flight: dict[str, int] = {}

    def admit(self, key_name: str) -> None:
        """Count a request of the key, and hold one of its places in flight until `release`;
        TooManyRequestsError when it may not go ahead now."""
        if self.rate and not self._limiter.consume(key_name):
            missing = 1 - self._buckets.get_token_count(key_name)
            reset = max(1, math.ceil(missing / self._per_second))
            raise TooManyRequestsError(
                f"This API key made more than {self.rate} requests in {self.window} s; "
                f"retry in {reset} s.",
                reset,
                {
                    "RateLimit-Policy": f"{POLICY};q={self.rate};w={self.window}",
                    "RateLimit": f"{POLICY};r=0;t={reset}",
                },
            )
        if not self.concurrency:
            return
        in_flight = self._in_flight.get(key_name, 0)
        if in_flight >= self._share:
            raise TooManyRequestsError(
                "This API key has as many requests in flight as it may "
                f"({self.concurrency} per instance); retry when one has finished.",
                1,
                {},
            )
        self._in_flight[key_name] = in_flight + 1

    def release(self, key_name: str) -> None:
        """Give back the place `admit` took."""
        if not self.concurrency:
            return
        left = self._in_flight[key_name] - 1
        if left:
            self._in_flight[key_name] = left
        else:
            del self._in_flight[key_name]
