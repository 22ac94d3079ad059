"""`flows mail catch | list | show | texts`, run as a user would: the catcher
process takes mail over SMTP (from the standard library's client) and texts
in Twilio's format (from the product's adapter), and the commands show them."""

import asyncio
import json
import os
import signal
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

from flows.notifications.sms import TwilioGateway
from flows.settings import TEST_GATEWAY_ACCOUNT, TEST_GATEWAY_TOKEN
from flows.stack.postgres import free_port
from flows.stack.stack import wait_port

FLOWS = str(Path(sys.executable).parent / "flows")


def flows(*args: str) -> str:
    return subprocess.run([FLOWS, *args], capture_output=True, text=True, check=True).stdout


def test_the_catcher_keeps_mail_and_texts_and_shows_them(tmp_path):
    smtp_port, sms_port = free_port(), free_port()
    folder = tmp_path / "mail"
    catcher = subprocess.Popen([FLOWS, "mail", "catch", "--port", str(smtp_port), "--sms-port", str(sms_port),
                                "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "FLOWS_HOME": str(tmp_path / "home")})
    try:
        assert wait_port(smtp_port, 10) and wait_port(sms_port, 10), catcher.stderr.read1().decode()
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@flows.test", "olive@x.example", "Your statement"
        message.set_content("Hello Olive")
        message.add_alternative("<p>Hello <b>Olive</b></p>", subtype="html")
        message.add_attachment(b"%PDF-1.7 ...", maintype="application", subtype="pdf", filename="statement-1.pdf")
        with smtplib.SMTP("127.0.0.1", smtp_port) as client:
            client.send_message(message)
        gateway = TwilioGateway(f"http://{TEST_GATEWAY_ACCOUNT}:{TEST_GATEWAY_TOKEN}@127.0.0.1:{sms_port}", "Flows")
        sid = asyncio.run(_text(gateway))

        caught = json.loads(flows("mail", "list", "--json", "--dir", str(folder)))
        assert [(m["to"], m["subject"], m["attachments"]) for m in caught] == [
            ("olive@x.example", "Your statement", ["statement-1.pdf"])]
        assert "Your statement" in flows("mail", "list", "--dir", str(folder))
        shown = json.loads(flows("mail", "show", caught[0]["id"][:8], "--json", "--dir", str(folder)))
        assert shown["text"].strip() == "Hello Olive" and "<b>Olive</b>" in shown["html"]
        assert "Hello Olive" in flows("mail", "show", caught[0]["id"], "--dir", str(folder))
        texts = json.loads(flows("mail", "texts", "--json", "--dir", str(folder)))
        assert [(t["sid"], t["to"], t["from"], t["body"]) for t in texts] == [(sid, "+447700900123", "Flows", "Hi")]
        missing = subprocess.run([FLOWS, "mail", "show", "nosuch", "--dir", str(folder)], capture_output=True,
                                 text=True)
        assert missing.returncode == 1 and "no caught message 'nosuch'" in missing.stderr
    finally:
        catcher.send_signal(signal.SIGTERM)
        catcher.wait(10)
    assert catcher.returncode in (0, -signal.SIGTERM)  # stopped (uvicorn re-raises the signal it handled)


async def _text(gateway: TwilioGateway) -> str:
    try:
        return await gateway.send("+447700900123", "Hi")
    finally:
        await gateway.close()


def test_waiting_for_a_port_gives_up():
    start = time.monotonic()
    assert not wait_port(free_port(), 0.3)
    assert time.monotonic() - start < 2
