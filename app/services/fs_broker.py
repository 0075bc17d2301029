"""The embedded broker: kombu's filesystem transport with whole message files.

Kombu's filesystem transport creates a message file and then writes into it, so a polling consumer can
move and read the file in between, get an empty payload and crash the worker's consumer (seen in the
test suite). Here a message is written under a name no consumer looks at and then renamed into place
(an atomic rename on one filesystem), so it appears whole or not at all. Everything else is kombu's.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        # Same name scheme as kombu's (consumers sort by it and match '<queue>.msg' after the first dot).
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"  # ends in '.part', not '<queue>.msg': consumers skip it
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
