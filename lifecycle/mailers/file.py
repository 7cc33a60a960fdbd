"""The default backend: each email is written as a standards-correct `.eml` file to the outbox folder.

The folder holds customers' emails (addresses, acknowledgement links): it is created mode 700.

The file name is derived from the delivery ids the email carries (and its recipient), and the file
appears whole or not at all (written aside, then renamed). So a send whose outcome was lost (the worker
died between writing and recording) is settled by looking: the file is there, it was sent; it is not,
it was not. A repeated send of the same deliveries rewrites the same file instead of adding one.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

from lifecycle.files import private_dir
from lifecycle.mailers import Email
from lifecycle.mailers.mime import to_mime


def _ids(raw: str | None) -> list[int]:
    return sorted({int(p) for p in (raw or "").split(",") if p.strip().isdigit()})


class FileMailer:
    def __init__(self, outbox: Path):
        self.outbox = Path(outbox)

    def _name(self, delivery_ids: list[int], to: str) -> tuple[str, Path]:
        safe_to = re.sub(r"[^A-Za-z0-9@._-]", "_", to)
        if delivery_ids:
            digest = hashlib.sha256(f"{','.join(map(str, sorted(delivery_ids)))}|{to.lower()}".encode())
            provider_id = f"file-{min(delivery_ids)}-{digest.hexdigest()[:12]}"
        else:  # not from the scheduler: nothing to reconcile
            provider_id = f"file-{uuid.uuid4().hex[:16]}"
        return provider_id, self.outbox / f"{provider_id}-{safe_to}.eml"

    def send(self, email: Email) -> str:
        private_dir(self.outbox)
        provider_id, path = self._name(_ids(email.custom_args.get("delivery_ids")), email.to)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(to_mime(email).as_bytes())
        os.replace(tmp, path)  # a reader never sees half a file
        return provider_id

    def lookup(self, delivery_ids: list[int], to: str) -> str | bool:
        """The provider id when the email of these deliveries was written, else False (certainly not)."""
        provider_id, path = self._name(sorted(delivery_ids), to)
        return provider_id if path.exists() else False
