"""Channel secrets at rest: a subscription's settings (its URL, which for Slack and Teams is the
credential, and a webhook's signing secret) are sealed with Fernet under a key derived (HKDF-SHA256)
from the secret key (lifecycle.keys), so a database backup alone does not give them away.

Any key of the ring opens them, previous keys included (however long ago they stopped verifying
links): a rotation never makes a subscription unreadable. `lifecycle secret rotate` re-seals every
subscription with the new key at once; with the key in LIFECYCLE_SECRET_KEY, `lifecycle channel reseal`
does it, after which the old value can leave LIFECYCLE_SECRET_KEY_PREVIOUS.
"""

from __future__ import annotations

import base64
import json

from lifecycle import keys
from lifecycle.errors import LifecycleError

INFO = b"lifecycle.channel-secrets.v1"


def _fernet(key: str):
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def _ring(*extra: keys.KeyRing):
    """The current key first (it seals), then every other key known (they open)."""
    from cryptography.fernet import MultiFernet

    rings = [keys.load(), *extra]
    ordered = list(
        dict.fromkeys(
            [rings[0].current, *(k for r in rings for k in [r.current, *(p for p, _ in r.previous)])]
        )
    )
    return MultiFernet([_fernet(k) for k in ordered])


def seal(values: dict) -> str:
    return _ring().encrypt(json.dumps(values, sort_keys=True).encode()).decode("ascii")


def unseal(token: str) -> dict:
    from cryptography.fernet import InvalidToken

    try:
        return json.loads(_ring().decrypt(token.encode("ascii")))
    except (InvalidToken, ValueError):
        raise LifecycleError(
            "a channel subscription's settings cannot be decrypted: the secret key that sealed "
            "them is not in the key ring any more (add the subscription again)"
        ) from None


def reseal(token: str, *previous: keys.KeyRing) -> str:
    """The same settings sealed with the current key (`previous`: rings that may have sealed them)."""
    return _ring(*previous).rotate(token.encode("ascii")).decode("ascii")
