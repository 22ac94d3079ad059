"""A local stand-in for Twilio's Messages API (a test double: Twilio cannot
be reached from here), speaking its wire format so that the real adapter
(sms.TwilioGateway) runs unchanged against it:

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json   form: To, From, Body
        HTTP Basic auth AccountSid:AuthToken
        201 {"sid": "SM...", "status": "queued", "to", "from", "body", "num_segments", ...}
        400 {"code": 21211, "message": "The 'To' number ... is not a valid phone number.", "status": 400, ...}
        401 {"code": 20003, "message": "Authentication Error - invalid username", "status": 401, ...}
    GET  /2010-04-01/Accounts/{AccountSid}/Messages.json   {"messages": [...], "page": 0, ...} (newest first)

Texts it accepts are kept in memory and, given a file, appended to it as JSON
lines (``flows mail texts`` reads them). For tests it can be told to fail:
``POST /_test/outage {"requests": N, "status": 503, "to": null}`` answers the
next N sends (to that number only, when given) with that status and Twilio's
error body, as a gateway outage would.
"""

import base64
import json
import re
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flows.settings import TEST_GATEWAY_ACCOUNT, TEST_GATEWAY_TOKEN

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
GSM_SEGMENT = 160
MORE_INFO = "https://www.twilio.com/docs/errors/{}"


def _error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "more_info": MORE_INFO.format(code), "status": status},
                        status_code=status)


class TestGateway:
    __test__ = False  # not a pytest class

    def __init__(self, account: str = TEST_GATEWAY_ACCOUNT, token: str = TEST_GATEWAY_TOKEN,
                 record: Path | None = None):
        self.account = account
        self.token = token
        self.record = record
        self.messages: list[dict] = []
        self.outage = {"requests": 0, "status": 503, "to": None}
        base = "/2010-04-01/Accounts/{account}/Messages.json"
        self.app = Starlette(routes=[
            Route(base, self.create, methods=["POST"]),
            Route(base, self.list, methods=["GET"]),
            Route("/_test/outage", self.set_outage, methods=["POST"]),
        ])

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user == self.account == request.path_params["account"] and password == self.token

    async def create(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return _error(401, 20003, "Authentication Error - invalid username")
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}  # x-www-form-urlencoded
        to, sender, body = form.get("To"), form.get("From"), form.get("Body")
        if self.outage["requests"] > 0 and self.outage["to"] in (None, to):
            self.outage["requests"] -= 1
            return _error(self.outage["status"], 20500 if self.outage["status"] >= 500 else 20429,
                          "Service unavailable (test gateway outage)")
        if not to or not E164.match(to):
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not sender:
            return _error(400, 21603, "The 'From' phone number is required.")
        if not body:
            return _error(400, 21602, "Message body is required.")
        now = format_datetime(datetime.now(UTC))
        sid = "SM" + secrets.token_hex(16)
        message = {"sid": sid, "account_sid": self.account, "to": to, "from": sender, "body": body,
                   "status": "queued", "num_segments": str(-(-len(body) // GSM_SEGMENT)), "direction": "outbound-api",
                   "date_created": now, "date_updated": now, "date_sent": None, "price": None,
                   "error_code": None, "error_message": None, "api_version": "2010-04-01",
                   "uri": f"/2010-04-01/Accounts/{self.account}/Messages/{sid}.json"}
        self.messages.append(message)
        if self.record is not None:
            with self.record.open("a") as out:
                out.write(json.dumps(message) + "\n")
        return JSONResponse(message, status_code=201)

    async def list(self, request: Request) -> JSONResponse:
        if not self._authorised(request):
            return _error(401, 20003, "Authentication Error - invalid username")
        return JSONResponse({"messages": list(reversed(self.messages)), "page": 0, "page_size": 50,
                             "uri": request.url.path, "first_page_uri": request.url.path,
                             "next_page_uri": None, "previous_page_uri": None})

    async def set_outage(self, request: Request) -> JSONResponse:
        self.outage.update(await request.json())
        return JSONResponse(self.outage)


def recorded_texts(path: Path) -> list[dict]:
    """The texts a gateway recorded in ``path`` (JSON lines), oldest first."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
