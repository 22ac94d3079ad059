"""The mail catcher of the embedded stack (`flows mail catch`): an SMTP server
keeping every email the demo sends (read them with `flows mail list | show`),
and beside it the SMS test gateway (`flows mail texts`). The worker sends to
them through the stack's settings; FLOWS_SMTP_URL (FLOWS_SMS_URL) set when
`flows up` starts the worker sends there instead (docs/notifications.md)."""

import os
import sys
from pathlib import Path

from flows.errors import FlowsError
from flows.paths import ROOT
from flows.settings import Settings

FLOWS = str(Path(sys.executable).parent / "flows")


def start(stack, say) -> None:
    from flows.stack.stack import wait_port  # the stack imports this module

    config = stack.config
    process = stack.process("mail")
    running = process.pid() is not None
    smtp = config.claim_port("mail_port", 1025, in_use_by_us=running)
    sms = config.claim_port("sms_port", 8125, in_use_by_us=running)
    if not running:
        folder = Settings(home=config.home_dir).mail_dir
        say(f"starting the mail catcher on smtp://127.0.0.1:{smtp} (flows mail list), SMS test gateway on "
            f"http://127.0.0.1:{sms} (flows mail texts)")
        process.start([FLOWS, "mail", "catch", "--port", str(smtp), "--sms-port", str(sms), "--dir", str(folder)],
                      env={"FLOWS_HOME": config.home}, cwd=ROOT)
        if not (wait_port(smtp, timeout=10, alive=process.pid) and wait_port(sms, timeout=10, alive=process.pid)):
            raise FlowsError(f"the mail catcher did not start; see {process.logfile}\n{process.tail(5)}")
    for variable, what in (("FLOWS_SMTP_URL", "email"), ("FLOWS_SMS_URL", "texts")):
        if os.environ.get(variable):
            say(f"{what} go to {variable}, not the catcher")


def status(config) -> dict:
    return {"url": f"smtp://127.0.0.1:{config.mail_port}", "sms_url": f"http://127.0.0.1:{config.sms_port}"}
