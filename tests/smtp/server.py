"""A real SMTP server for the tests (aiosmtpd): `server.py PORT MAILDIR`.

Listens on 127.0.0.1:PORT and writes every accepted message to MAILDIR as
one JSON file (`<ns>-<seq>.json`: envelope, headers, decoded text and HTML
parts, raw message), written to a temporary name and renamed, so a reader
never sees half a file. Recipients whose local part starts with
`tempfail` are refused with 451 (temporary), `permfail` with 550
(permanent). Exits when its parent (the test binary) is gone.
"""

import asyncio
import email
import email.policy
import itertools
import json
import os
import sys
import threading
import time

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, maildir):
        self.maildir = maildir
        self.seq = itertools.count()
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("tempfail"):
            return "451 4.3.0 Mailbox busy, try again later"
        if local.startswith("permfail"):
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        msg = email.message_from_bytes(raw, policy=email.policy.default)

        def part(subtype):
            body = msg.get_body(preferencelist=(subtype,))
            if body is None or body.get_content_type() != "text/" + subtype:
                return None
            # Line ends as the sender's text had them.
            return body.get_content().replace("\r\n", "\n")

        record = {
            "envelope_from": envelope.mail_from,
            "envelope_to": list(envelope.rcpt_tos),
            "from": str(msg.get("From", "")),
            "to": str(msg.get("To", "")),
            "subject": str(msg.get("Subject", "")),
            "content_type": msg.get_content_type(),
            "text": part("plain"),
            "html": part("html"),
            "raw": raw.decode("utf-8", "replace"),
        }
        with self.lock:
            name = "%020d-%06d" % (time.time_ns(), next(self.seq))
        tmp = os.path.join(self.maildir, ".tmp-" + name)
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, os.path.join(self.maildir, name + ".json"))
        return "250 Message accepted for delivery"


def exit_with_parent():
    parent = os.getppid()
    while True:
        time.sleep(1)
        if os.getppid() != parent:
            os._exit(0)


def main():
    port = int(sys.argv[1])
    maildir = sys.argv[2]
    os.makedirs(maildir, exist_ok=True)
    controller = Controller(Handler(maildir), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    exit_with_parent()


if __name__ == "__main__":
    main()
