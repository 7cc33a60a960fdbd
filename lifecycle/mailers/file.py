"""The default backend: each email is written as a standards-correct `.eml` file to the outbox folder.

The folder holds customers' emails (addresses, acknowledgement links): it is created mode 700.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from lifecycle.files import private_dir
from lifecycle.mailers import Email
from lifecycle.mailers.mime import to_mime


class FileMailer:
    def __init__(self, outbox: Path):
        self.outbox = Path(outbox)

    def send(self, email: Email) -> str:
        private_dir(self.outbox)
        provider_id = f"file-{uuid.uuid4().hex[:16]}"
        safe_to = re.sub(r"[^A-Za-z0-9@._-]", "_", email.to)
        path = self.outbox / f"{provider_id}-{safe_to}.eml"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(to_mime(email).as_bytes())
        os.replace(tmp, path)  # a reader never sees half a file
        return provider_id
