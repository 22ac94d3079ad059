"""Real servers for the notification tests: the mail catcher (aiosmtpd, a real
SMTP server) in a thread of its own, stopped and started again on the same
port to play an outage; and the SMS test gateway (Twilio's wire format)
served by uvicorn in a thread."""

import threading
import time
from pathlib import Path

import httpx
import uvicorn
from aiosmtpd.controller import Controller

from flows.notifications.catcher import CaughtMail, MaildirHandler, caught_mail
from flows.notifications.sms_test_gateway import TestGateway
from flows.settings import TEST_GATEWAY_ACCOUNT, TEST_GATEWAY_TOKEN
from flows.stack.postgres import free_port


class SmtpServer:
    def __init__(self, folder: Path, handler: MaildirHandler | None = None):
        self.inbox = folder / "inbox"
        self.port = free_port()
        self.handler = handler or MaildirHandler(self.inbox)
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def mail(self, to: str | None = None) -> list[CaughtMail]:
        return [m for m in caught_mail(self.inbox) if to is None or to in m.to]


class SmsServer:
    def __init__(self):
        self.gateway = TestGateway()
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.gateway.app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{TEST_GATEWAY_ACCOUNT}:{TEST_GATEWAY_TOKEN}@127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the SMS test gateway did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)

    def outage(self, requests: int, status: int = 503, to: str | None = None) -> None:
        httpx.post(f"http://127.0.0.1:{self.port}/_test/outage",
                   json={"requests": requests, "status": status, "to": to})

    def texts(self, to: str | None = None) -> list[dict]:
        return [m for m in self.gateway.messages if to is None or m["to"] == to]
