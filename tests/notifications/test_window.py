"""The one window in which a message is delivered twice: between the
provider's acceptance and the record's commit. A `flows worker` process
(the real CLI, sending over SMTP to a real server) is killed (SIGKILL) by the
server at chosen points of the conversation; its lease runs out and a second
worker takes the message over.

- Killed before the server has the message (at MAIL FROM): sent once, by the
  second worker.
- Killed after the server has it, before the sender hears 250 (the server
  commits, then answers: a crash there is inside the window): sent twice,
  both copies with the same Message-ID, so mail clients show it once; the
  outbox says sent, on attempt 2.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flows import factories as f
from flows.notifications.catcher import MaildirHandler
from tests.support.mailserver import SmtpServer
from tests.worker.conftest import new_esco, wait_for

FLOWS = str(Path(sys.executable).parent / "flows")
pytestmark = pytest.mark.slow


class Killing(MaildirHandler):
    """Keeps mail like the catcher, but SIGKILLs the sender at one point of its first conversation."""

    def __init__(self, directory: Path, at: str):
        super().__init__(directory)
        self.at = at
        self.victim: int | None = None

    def _kill(self) -> None:
        if self.victim is not None:
            os.kill(self.victim, signal.SIGKILL)
            self.victim = None

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.at == "mail":
            self._kill()
        envelope.mail_from = address
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        answer = await super().handle_DATA(server, session, envelope)  # kept: the server has it
        if self.at == "data":
            self._kill()  # ... and the sender dies before it hears so
        return answer


def worker(stack, smtp: SmtpServer, tmp_path: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [FLOWS, "worker", "--jobs", "email", "--scheduler-interval", "0", "--poll", "0.2", "--name", name],
        env={**os.environ, "FLOWS_DATABASE_URL": stack.worker_url, "FLOWS_SMTP_URL": smtp.url,
             "FLOWS_HOME": str(tmp_path / "home"), "FLOWS_LOG_FORMAT": "json"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("killed_at, copies", [("mail", 1), ("data", 2)])
async def test_a_sender_killed_mid_send(stack, tmp_path, killed_at, copies):
    esco, code = new_esco(stack)
    ops = f"ops@{code.lower()}.example"
    with stack.sql() as conn:
        f.set_notification_settings(conn, esco, operator_emails=[ops], offline_hours=1)
        meter = f.add_meter(conn, esco).id
        f.record_states(conn, [{"meter_id": meter, "observed_at": conn.execute(
            "SELECT now() - interval '2 hours'").fetchone()[0], "health": "healthy"}])
        f.queue_notifications(conn)  # one message: the operators' offline report
    handler = Killing(tmp_path / "mail" / "inbox", killed_at)
    smtp = SmtpServer(tmp_path / "mail", handler)
    smtp.start()
    first = worker(stack, smtp, tmp_path, "first")
    handler.victim = first.pid
    second = None
    try:
        await wait_for(lambda: first.poll() is not None, timeout=30)
        assert first.returncode == -signal.SIGKILL
        with stack.sql() as conn:
            status, attempts = conn.execute("SELECT status, attempts FROM flows.notification_outbox WHERE esco = %s",
                                            (esco,)).fetchone()
            assert (status, attempts) == ("sending", 1), "the dead sender's lease still holds it"
            # two minutes later (the lease): moved on rather than waited for
            conn.execute("UPDATE flows.notification_outbox SET lease_expires_at = now() - interval '1 second'"
                         " WHERE esco = %s", (esco,))
        second = worker(stack, smtp, tmp_path, "second")

        def recorded():
            with stack.sql() as conn:
                return conn.execute("SELECT status, attempts, provider_message_id FROM flows.notification_outbox"
                                    " WHERE esco = %s AND status = 'sent'", (esco,)).fetchone()

        status, attempts, message_id = await wait_for(recorded, timeout=30)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(10)
        smtp.stop()
    caught = smtp.mail(ops)
    assert (status, attempts) == ("sent", 2)
    assert len(caught) == copies
    assert {m.message["Message-ID"] for m in caught} == {message_id}, "every copy is the same message"
