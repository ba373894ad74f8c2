"""A loopback SMTP server that appends every message it receives to a JSONL file.

    python smtp_sink.py PORT FILE

Each line: {"mail_from", "rcpt_tos", "to", "from", "subject", "body", "raw"}, with `body` the
decoded text of the message (its text/plain part when there are several).
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        message = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        part = message.get_body(preferencelist=("plain", "html"))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "to": str(message.get("to", "")),
            "from": str(message.get("from", "")),
            "subject": str(message.get("subject", "")),
            "body": part.get_content() if part is not None else "",
            "raw": (envelope.original_content or envelope.content).decode("utf-8", "replace"),
        }
        with self.lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Sink(path), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"smtp sink on 127.0.0.1:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
