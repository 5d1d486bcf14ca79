"""Many accounts against the four emulators: their config entries, and each account's quotas
recomputed from the emulators' seeded data (for ``make bench`` section 10 and the tests).

Accounts take turns over the providers and, within each, over identities the emulators know:
VirusTotal groups ``soc-team`` and ``legacy-lab``, the ReversingLabs company ``acme`` and the
users ``acme_bob`` and ``initech_dan``, the ZKScore accounts ``acct_acme`` and ``acct_orbit``
(each within its tier's per-minute limit for up to 500 gateway accounts per cold read), and for
ReputeAPI, whose ``/v1/usage`` allows 30 calls per key and minute, a key of its own per account
(:func:`providers.reputeapi.emulator.many_keys`). The gateway knows nothing of this: each entry
is an account of its own (own id, own cache keys, own vendor calls).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from providers.emulation import Emulator
from providers.reputeapi.emulator import DEFAULT_KEYS, ReputeEmulator, many_keys
from providers.reversinglabs.emulator import ReversingLabsEmulator
from providers.virustotal.emulator import QUOTAS, VirusTotalEmulator, quota_used
from providers.zkscore.emulator import ZkScoreEmulator

PROVIDERS = ("virustotal", "reversinglabs", "zkscore", "reputeapi")
IDENTITIES: dict[str, tuple[dict[str, str], ...]] = {
    "virustotal": (
        {"api_key": "vt_demo_admin_key", "group": "soc-team"},
        {"api_key": "vt_demo_admin_key", "group": "legacy-lab"},
    ),
    "reversinglabs": (
        {"username": "acme_alice", "password": "rl_demo_alice", "scope": "company"},
        {"username": "acme_bob", "password": "rl_demo_bob", "scope": "user"},
        {"username": "initech_dan", "password": "rl_demo_dan", "scope": "user"},
    ),
    "zkscore": (
        {"api_key": "zk_live_acme_prod_demo"},
        {"api_key": "zk_live_orbit_main_demo"},
    ),
}


def emulators(count: int, seed: int, clock: Callable[[], datetime]) -> dict[str, Emulator]:
    """One emulator per provider, knowing every identity of ``count`` accounts."""
    return {
        "virustotal": VirusTotalEmulator(seed=seed, clock=clock),
        "reversinglabs": ReversingLabsEmulator(seed=seed, clock=clock),
        "zkscore": ZkScoreEmulator(seed=seed, clock=clock),
        "reputeapi": ReputeEmulator(
            seed=seed, clock=clock, keys=(*DEFAULT_KEYS, *many_keys(repute_count(count)))
        ),
    }


def repute_count(count: int) -> int:
    return len(range(PROVIDERS.index("reputeapi"), count, len(PROVIDERS)))


def accounts(count: int, urls: Mapping[str, str]) -> list[dict[str, str]]:
    """``count`` config entries (``[[accounts]]``), taking turns over the providers."""
    entries = []
    repute = iter(many_keys(repute_count(count)))
    for index in range(count):
        provider = PROVIDERS[index % len(PROVIDERS)]
        turn = index // len(PROVIDERS)
        if provider == "reputeapi":
            identity = {"api_key": next(repute).key}
        else:
            choices = IDENTITIES[provider]
            identity = choices[turn % len(choices)]
        entries.append(
            {"id": f"a{index:05d}", "provider": provider, "base_url": urls[provider], **identity}
        )
    return entries


def expected_quotas(
    found: Mapping[str, Emulator], entry: Mapping[str, str], now: datetime
) -> list[tuple[int, int]]:
    """(limit, used) of each of the account's quotas, sorted, from the seeded data alone."""
    provider = entry["provider"]
    today = now.astimezone(UTC).date()
    emulator: Any = found[provider]
    if provider == "virustotal":
        group = emulator.groups[entry["group"]]
        pairs = [
            (allowed, quota_used(emulator.data, group.id, group.scale, rule, today))
            for allowed, _, rule in QUOTAS.values()
        ]
    elif provider == "reversinglabs":
        data = emulator.data
        user = entry["username"]
        company = entry.get("scope") == "company"
        users = data.company_users(data.users[user].company) if company else (user,)
        table = data.company_limits(data.users[user].company) if company else data.user_limits(user)
        pairs = [
            (
                limit.limit if limit.limit is not None else limit.limit_size.bytes,
                data.limit_used(limit, now, users),
            )
            for limit in table
        ]
    elif provider == "zkscore":
        data = emulator.data
        key = data.key_by_token(entry["api_key"])
        account = data.account_of(key.id)
        end = now.replace(second=0, microsecond=0)
        midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
        used = data.window([k.id for k in account.keys], midnight, end).requests
        pairs = [(account.limits.per_day, used)]
    else:
        data = emulator.data
        key = data.keys[entry["api_key"]]
        pairs = [(key.monthly_limit, data.month_to_date(key, now).requests)]
    return sorted(pairs)


def answered_quotas(account: Mapping[str, Any]) -> list[tuple[int, int]]:
    """(limit, used) of each quota of an ``accounts { quotas { limit used } }`` answer."""
    return sorted((q["limit"], q["used"]) for q in account["quotas"])


def serve(provider: str, count: int, seed: int) -> None:
    """Serve ``provider``'s emulator for ``count`` accounts on a free loopback port, print its
    URL, and go on until killed (``make bench`` runs it in a process of its own). Every
    account's quotas are worked out once first, so the emulator's own first reads (a new key's
    months of hours) are not timed as the gateway's."""
    import time

    from gateway.domain import utc_now
    from gateway.servers import ServerThread

    found = emulators(count, seed, utc_now)
    now = utc_now()
    for entry in accounts(count, dict.fromkeys(PROVIDERS, "http://unused")):
        if entry["provider"] == provider:
            expected_quotas(found, entry, now)
    with ServerThread(found[provider]) as server:
        print(server.urls[0], flush=True)
        while True:
            time.sleep(3600)
