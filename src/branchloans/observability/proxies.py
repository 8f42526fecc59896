"""Who the client is: the peer, or what a trusted proxy says in X-Forwarded-For."""

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from branchloans.config import IPNetwork


class TrustedProxies:
    """The proxies whose X-Forwarded-For header is believed; nobody else's is."""

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self._networks = tuple(networks)
        # Peers repeat (the proxy, the load balancer): remember the verdict, in bounded memory.
        self.trusts = lru_cache(maxsize=1024)(self._trusts)

    def _trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def client(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address for a request from `peer` carrying `forwarded_for`.

        Walks the X-Forwarded-For chain from the right, past every trusted proxy; the first
        address not trusted is the client. A malformed entry ends the walk: what lies left
        of it cannot be trusted.
        """
        if not forwarded_for or peer is None or not self.trusts(peer):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            address = hop.strip()
            try:
                ipaddress.ip_address(address)
            except ValueError:
                break
            client = address
            if not self.trusts(address):
                break
        return client
