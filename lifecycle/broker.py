"""The no-server broker: kombu's file-system transport, with messages written atomically.

kombu's `filesystem` transport creates the message file and then writes it; a consumer polling the
folder can move and read the file in between, gets an empty payload, fails to decode it and the
message is lost (seen here with `worker -B`, where beat and the tick task produce while the worker
consumes). Writing to a hidden temporary name and renaming it into place makes a message appear whole
or not at all. Used through `broker_transport = "lifecycle.broker:Transport"`.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot: the consumer's `name.partition('.')[2] == '<queue>.msg'` test never matches it.
        tmp = os.path.join(self.data_folder_out, f".{name}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
